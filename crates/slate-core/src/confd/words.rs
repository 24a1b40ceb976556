//! Splitting a configuration line into words the way systemd's
//! `extract_first_word()` does: whitespace separates words, runs of it
//! count once, `'…'` and `"…"` quote, a backslash takes the next byte
//! literally (or, with C unescaping, starts a C escape).

use std::fmt;

/// How words are split.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flags {
    /// Remove quotes (`EXTRACT_UNQUOTE`).
    pub unquote: bool,
    /// Decode C escapes such as `\n`, `\x41`, `\101` (`EXTRACT_CUNESCAPE`).
    pub cunescape: bool,
}

/// A word could not be split: an unterminated quote or a bad escape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError;

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Invalid argument")
    }
}

const WHITESPACE: &[u8] = b" \t\n\r";

/// The first word of `*rest`, advancing `*rest` past it and the separators
/// after it; `*rest` becomes `None` at the end of the input. `Ok(None)`
/// when no word is left.
pub fn extract_first(
    rest: &mut Option<&[u8]>,
    flags: Flags,
) -> Result<Option<Vec<u8>>, SyntaxError> {
    let Some(s) = *rest else {
        return Ok(None);
    };
    let mut i = 0;
    while i < s.len() && WHITESPACE.contains(&s[i]) {
        i += 1;
    }
    if i == s.len() {
        *rest = None;
        return Ok(None);
    }
    let mut out = Vec::new();
    let mut quote: u8 = 0;
    loop {
        if i == s.len() {
            if quote != 0 {
                return Err(SyntaxError);
            }
            *rest = None;
            return Ok(Some(out));
        }
        let c = s[i];
        if c == b'\\' {
            i += 1;
            if i == s.len() {
                return Err(SyntaxError);
            }
            if flags.cunescape {
                let (bytes, used) = cunescape_one(&s[i..]).ok_or(SyntaxError)?;
                out.extend_from_slice(&bytes);
                i += used;
            } else {
                out.push(s[i]);
                i += 1;
            }
            continue;
        }
        if quote != 0 {
            if c == quote {
                quote = 0;
                if !flags.unquote {
                    out.push(c);
                }
            } else {
                out.push(c);
            }
            i += 1;
            continue;
        }
        if (c == b'\'' || c == b'"') && flags.unquote {
            quote = c;
            i += 1;
            continue;
        }
        if WHITESPACE.contains(&c) {
            while i < s.len() && WHITESPACE.contains(&s[i]) {
                i += 1;
            }
            *rest = if i == s.len() { None } else { Some(&s[i..]) };
            return Ok(Some(out));
        }
        out.push(c);
        i += 1;
    }
}

/// Up to `n` words; what is left after them stays in `*rest`.
pub fn extract_many(
    rest: &mut Option<&[u8]>,
    n: usize,
    flags: Flags,
) -> Result<Vec<Vec<u8>>, SyntaxError> {
    let mut words = Vec::with_capacity(n);
    while words.len() < n {
        match extract_first(rest, flags)? {
            Some(w) => words.push(w),
            None => break,
        }
    }
    Ok(words)
}

fn unhex(c: u8) -> Option<u32> {
    (c as char).to_digit(16)
}

/// One C escape at the start of `p` (the byte after the backslash): the
/// bytes it stands for and how many input bytes it used. NUL is refused.
pub fn cunescape_one(p: &[u8]) -> Option<(Vec<u8>, usize)> {
    let simple = |b: u8| Some((vec![b], 1));
    match *p.first()? {
        b'a' => simple(7),
        b'b' => simple(8),
        b'f' => simple(12),
        b'n' => simple(b'\n'),
        b'r' => simple(b'\r'),
        b't' => simple(b'\t'),
        b'v' => simple(11),
        b'\\' => simple(b'\\'),
        b'"' => simple(b'"'),
        b'\'' => simple(b'\''),
        b's' => simple(b' '),
        b'x' => {
            let v = unhex(*p.get(1)?)? << 4 | unhex(*p.get(2)?)?;
            (v != 0).then(|| (vec![v as u8], 3))
        }
        b'u' | b'U' => {
            let n = if p[0] == b'u' { 4 } else { 8 };
            let mut v: u32 = 0;
            for k in 1..=n {
                v = v << 4 | unhex(*p.get(k)?)?;
            }
            let ch = char::from_u32(v).filter(|_| v != 0)?;
            Some((ch.to_string().into_bytes(), n + 1))
        }
        b'0'..=b'7' => {
            let mut v: u32 = 0;
            for k in 0..3 {
                let d = *p.get(k)?;
                if !(b'0'..=b'7').contains(&d) {
                    return None;
                }
                v = v * 8 + u32::from(d - b'0');
            }
            (v != 0 && v <= 255).then(|| (vec![v as u8], 3))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str, flags: Flags) -> Result<(Vec<String>, Option<String>), SyntaxError> {
        let mut rest = Some(s.as_bytes());
        let words = extract_many(&mut rest, 3, flags)?;
        Ok((
            words
                .into_iter()
                .map(|w| String::from_utf8(w).expect("utf8"))
                .collect(),
            rest.map(|r| String::from_utf8_lossy(r).into_owned()),
        ))
    }

    #[test]
    fn splitting_follows_systemd() {
        let uq = Flags {
            unquote: true,
            cunescape: false,
        };
        assert_eq!(
            split("  a  'b c'\td", uq),
            Ok((vec!["a".into(), "b c".into(), "d".into()], None))
        );
        assert_eq!(
            split("a\"b c\"d e f g", uq),
            Ok((
                vec!["ab cd".into(), "e".into(), "f".into()],
                Some("g".into())
            ))
        );
        assert_eq!(
            split("a\\ b \\n", uq),
            Ok((vec!["a b".into(), "n".into()], None))
        );
        assert_eq!(split("'unterminated", uq), Err(SyntaxError));
        assert_eq!(split("trailing\\", uq), Err(SyntaxError));
        assert_eq!(split("''", uq), Ok((vec!["".into()], None)));
        let ce = Flags {
            unquote: true,
            cunescape: true,
        };
        assert_eq!(
            split("a\\x41\\101\\u00e9 \\s", ce),
            Ok((vec!["aAAé".into(), " ".into()], None))
        );
        assert_eq!(split("\\x00", ce), Err(SyntaxError));
        assert_eq!(split("\\q", ce), Err(SyntaxError));
    }
}
