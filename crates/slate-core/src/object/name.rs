//! Names are bytes. Linux file names are any bytes but `/` and NUL, and a
//! tree keeps them exactly; where a name or path must become text (a
//! message, a listing, `--json`), it is written with a lossless escape
//! (`docs/format/paths.md`):
//!
//! - printable UTF-8 characters stand for themselves, except `\`;
//! - `\` is written `\\`; newline, tab and carriage return `\n`, `\t`, `\r`;
//! - every other byte (control characters, DEL, the C1 controls' UTF-8
//!   bytes, and bytes that are not valid UTF-8) is `\xHH`, two lowercase
//!   hex digits.
//!
//! [`unescape`] inverts [`escape`] for every byte string, so a path read
//! back from JSON or a listing names the same file.

use std::fmt;

/// The escaped text of `bytes`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    push_escaped(&mut out, bytes);
    out
}

/// Append the escaped text of `bytes` to `out`.
pub fn push_escaped(out: &mut String, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let (valid, bad, rest) = match std::str::from_utf8(bytes) {
            Ok(s) => (s, &[][..], &[][..]),
            Err(e) => {
                let (ok, after) = bytes.split_at(e.valid_up_to());
                let s = std::str::from_utf8(ok).expect("prefix validated by from_utf8");
                let bad_len = e.error_len().unwrap_or(after.len());
                (s, &after[..bad_len], &after[bad_len..])
            }
        };
        for c in valid.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        push_hex(out, b);
                    }
                }
                c => out.push(c),
            }
        }
        for b in bad {
            push_hex(out, *b);
        }
        bytes = rest;
    }
}

fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('\\');
    out.push('x');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

/// Text that is not a valid escaped name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid escape in {text:?} at character {at}: expected \\\\, \\n, \\t, \\r or \\xHH")]
pub struct UnescapeError {
    pub text: String,
    pub at: usize,
}

/// The bytes an escaped text stands for.
pub fn unescape(text: &str) -> Result<Vec<u8>, UnescapeError> {
    let mut out = Vec::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    let err = |at| UnescapeError {
        text: text.to_owned(),
        at,
    };
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'\\') => out.push(b'\\'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'x') => {
                let hex = b.get(i + 2..i + 4).ok_or_else(|| err(i))?;
                let s = std::str::from_utf8(hex).map_err(|_| err(i))?;
                if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(err(i));
                }
                out.push(u8::from_str_radix(s, 16).map_err(|_| err(i))?);
                i += 4;
                continue;
            }
            _ => return Err(err(i)),
        }
        i += 2;
    }
    Ok(out)
}

/// A byte string shown escaped: `format!("{}", Escaped(name))`.
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0))
    }
}

/// `#[serde(serialize_with = "name::serialize")]` for byte names and paths.
pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&escape(bytes))
}

/// The same for a list of byte names or paths.
pub fn serialize_all<S: serde::Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|b| escape(b)))
}

/// Join a slash-separated relative path and a name (`""` is the root).
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len() + 1 + name.len());
    out.extend_from_slice(dir);
    if !dir.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// A relative path (`""` for the root) as an absolute one for display: `/etc/passwd`.
pub fn absolute(rel: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rel.len() + 1);
    out.push(b'/');
    out.extend_from_slice(rel);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_what_is_not_plain_text() {
        assert_eq!(escape(b"etc/os-release"), "etc/os-release");
        assert_eq!(escape("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(escape(b"a\xffb"), "a\\xffb");
        assert_eq!(escape(b"new\nline\ttab\r"), "new\\nline\\ttab\\r");
        assert_eq!(escape(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape(b"\x01\x7f"), "\\x01\\x7f");
        // U+0085 (a C1 control) is escaped as its two UTF-8 bytes.
        assert_eq!(escape("x\u{85}".as_bytes()), "x\\xc2\\x85");
        // A truncated multi-byte sequence at the end.
        assert_eq!(escape(b"\xe2\x82"), "\\xe2\\x82");
        assert_eq!(unescape("a\\xffb").expect("valid"), b"a\xffb");
        assert!(unescape("a\\q").is_err());
        assert!(unescape("a\\x4").is_err());
        assert!(unescape("a\\").is_err());
        assert!(unescape("\\xzz").is_err());
    }

    proptest! {
        #[test]
        fn unescape_inverts_escape(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = escape(&bytes);
            prop_assert!(!text.chars().any(|c| c.is_control()), "{:?}", text);
            prop_assert_eq!(unescape(&text).expect("escaped text unescapes"), bytes);
        }

        #[test]
        fn escape_is_injective_on_text(s in "\\PC{0,20}") {
            prop_assert_eq!(unescape(&escape(s.as_bytes())).expect("valid"), s.into_bytes());
        }
    }
}
