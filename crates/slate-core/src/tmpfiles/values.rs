//! The values inside tmpfiles.d lines: modes, ages, device numbers, ids,
//! file attribute letters, xattr assignments, C escapes and paths, parsed
//! the way systemd 252 parses them.

use super::{Level, Log};

pub const AGE_BY_ATIME: u8 = 1;
pub const AGE_BY_BTIME: u8 = 2;
pub const AGE_BY_CTIME: u8 = 4;
pub const AGE_BY_MTIME: u8 = 8;
pub const AGE_BY_DEFAULT_FILE: u8 = 15;
pub const AGE_BY_DEFAULT_DIR: u8 = AGE_BY_ATIME | AGE_BY_BTIME | AGE_BY_MTIME;
use crate::confd::specifier::SpecError;
use crate::confd::words::{self, Flags};
use crate::confd::UserEnv;

/// Whether `path` lies below `prefix`, compared by components.
pub fn path_startswith(path: &str, prefix: &str) -> bool {
    let mut p = path.split('/').filter(|c| !c.is_empty());
    for c in prefix.split('/').filter(|c| !c.is_empty()) {
        if p.next() != Some(c) {
            return false;
        }
    }
    true
}

/// `path_simplify()`: no empty or `.` components, no trailing slash.
pub fn simplify(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let joined = parts.join("/");
    if path.starts_with('/') {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".into()
    } else {
        joined
    }
}

/// `parse_mode()`: octal, at most 07777.
pub fn parse_mode(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

pub const UNITS: &[(&str, f64)] = &[
    ("seconds", 1e6),
    ("second", 1e6),
    ("sec", 1e6),
    ("s", 1e6),
    ("minutes", 60e6),
    ("minute", 60e6),
    ("min", 60e6),
    ("months", 2_629_800e6),
    ("month", 2_629_800e6),
    ("M", 2_629_800e6),
    ("msec", 1e3),
    ("ms", 1e3),
    ("m", 60e6),
    ("hours", 3600e6),
    ("hour", 3600e6),
    ("hr", 3600e6),
    ("h", 3600e6),
    ("days", 86_400e6),
    ("day", 86_400e6),
    ("d", 86_400e6),
    ("weeks", 604_800e6),
    ("week", 604_800e6),
    ("w", 604_800e6),
    ("years", 31_557_600e6),
    ("year", 31_557_600e6),
    ("y", 31_557_600e6),
    ("usec", 1.0),
    ("us", 1.0),
    ("μs", 1.0),
];

/// `parse_sec()`: a time span such as `10d`, `1h 30min`, `2.5w`; a bare
/// number is seconds. In microseconds.
pub fn parse_sec(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "infinity" {
        return Some(u64::MAX);
    }
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let mut rest = s;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut num_len = int_len;
        if rest[num_len..].starts_with('.') {
            num_len += 1 + rest[num_len + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
        }
        if num_len == 0 || (int_len == 0 && num_len == 1) {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = rest[num_len..].trim_start();
        let (mult, used) = UNITS
            .iter()
            .find(|(u, _)| rest.starts_with(u))
            .map_or((1e6, 0), |(u, m)| (*m, u.len()));
        total += value * mult;
        rest = rest[used..].trim_start();
    }
    Some(total as u64)
}

/// `parse_devnum()`: `MAJOR:MINOR`.
pub fn parse_devnum(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once(':')?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    let (ma, mi): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
    (ma >> 12 == 0 && mi >> 20 == 0).then_some((ma, mi))
}

/// `parse_uid()`: a number that is not one of the invalid ids.
pub fn parse_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>()
        .ok()
        .filter(|u| *u != u32::MAX && *u != 0xFFFF)
}

/// File attribute letters of chattr(1).
pub const ATTRIBUTES: &[(u8, u32)] = &[
    (b'A', 0x80),
    (b'S', 0x8),
    (b'D', 0x10000),
    (b'a', 0x20),
    (b'c', 0x4),
    (b'd', 0x40),
    (b'e', 0x80000),
    (b'i', 0x10),
    (b'j', 0x4000),
    (b's', 0x1),
    (b'u', 0x2),
    (b't', 0x8000),
    (b'T', 0x20000),
    (b'C', 0x800000),
    (b'P', 0x2000_0000),
];
pub const CHATTR_ALL_FL: u32 = 0x80
    | 0x8
    | 0x10000
    | 0x20
    | 0x4
    | 0x40
    | 0x80000
    | 0x10
    | 0x4000
    | 0x1
    | 0x2
    | 0x8000
    | 0x20000
    | 0x800000
    | 0x2000_0000;
pub const FS_DIRSYNC_FL: u32 = 0x10000;

pub fn parse_attribute(arg: &str, path: &str) -> Result<(u32, u32), String> {
    let (set, add, rest) = match arg.as_bytes().first() {
        Some(b'+') => (false, true, &arg[1..]),
        Some(b'-') => (false, false, &arg[1..]),
        Some(b'=') => (true, true, &arg[1..]),
        _ => (false, true, arg),
    };
    if rest.is_empty() && !set {
        return Err(format!(
            "Setting file attribute on '{path}' needs an attribute specification."
        ));
    }
    let (mut value, mut mask) = (0u32, 0u32);
    for c in rest.bytes() {
        let Some((_, v)) = ATTRIBUTES.iter().find(|(a, _)| *a == c) else {
            return Err(format!(
                "Unknown file attribute '{}' on '{path}'.",
                c as char
            ));
        };
        if add {
            value |= v;
        } else {
            value &= !v;
        }
        mask |= v;
    }
    if set {
        mask |= CHATTR_ALL_FL;
    }
    Ok((value, mask))
}

/// `cunescape()` of a whole argument: C escapes decoded; `None` for an
/// escape systemd does not know, or a lone backslash at the end (the line
/// is then invalid).
pub fn cunescape(a: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(a.len());
    let mut i = 0;
    while i < a.len() {
        if a[i] == b'\\' {
            let (bytes, used) = words::cunescape_one(a.get(i + 1..).unwrap_or_default())?;
            out.extend_from_slice(&bytes);
            i += 1 + used;
            continue;
        }
        out.push(a[i]);
        i += 1;
    }
    Some(out)
}

pub fn parse_age_by(s: &str) -> Option<(u8, u8)> {
    if s.is_empty() {
        return None;
    }
    let (mut f, mut d) = (0u8, 0u8);
    for c in s.chars() {
        if c.is_whitespace() {
            continue;
        }
        let flag = match c.to_ascii_lowercase() {
            'a' => AGE_BY_ATIME,
            'b' => AGE_BY_BTIME,
            'c' => AGE_BY_CTIME,
            'm' => AGE_BY_MTIME,
            _ => return None,
        };
        if c.is_ascii_lowercase() {
            f |= flag;
        } else {
            d |= flag;
        }
    }
    if f == 0 && d == 0 {
        return None;
    }
    Some((
        if f > 0 { f } else { AGE_BY_DEFAULT_FILE },
        if d > 0 { d } else { AGE_BY_DEFAULT_DIR },
    ))
}

/// `t`/`T` arguments: `NAME=VALUE` words, quoted and C-escaped.
pub fn parse_xattrs(arg: &[u8], log: &mut Log) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = Some(arg);
    let flags = Flags {
        unquote: true,
        cunescape: true,
    };
    loop {
        let word = match words::extract_first(&mut rest, flags) {
            Ok(Some(w)) => w,
            Ok(None) => break,
            Err(e) => {
                let shown = String::from_utf8_lossy(rest.unwrap_or_default());
                log.push(
                    Level::Warning,
                    format!("Failed to parse extended attribute '{shown}', ignoring: {e}"),
                );
                break;
            }
        };
        let shown = String::from_utf8_lossy(&word).into_owned();
        let Some(eq) = word.iter().position(|c| *c == b'=') else {
            log.push(
                Level::Warning,
                format!("Failed to parse extended attribute, ignoring: {shown}"),
            );
            continue;
        };
        let (name, value) = (&word[..eq], &word[eq + 1..]);
        if name.is_empty() || value.is_empty() {
            log.push(
                Level::Warning,
                format!("Malformed extended attribute found, ignoring: {shown}"),
            );
            continue;
        }
        out.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
    }
    out
}

/// `%h`: `$HOME` when it is a simple absolute path; else `/root` for
/// root, `/` for nobody, and the user database's home for anyone else.
pub fn home_dir(home: Option<&str>, user: &UserEnv) -> Result<String, SpecError> {
    match home {
        Some(h) if h.starts_with('/') && simplify(h) == h => Ok(h.to_string()),
        _ if user.uid == 0 => Ok("/root".into()),
        _ if user.uid == 65534 => Ok("/".into()),
        _ => match &user.db_home {
            Some(h) if h.starts_with('/') => Ok(simplify(h)),
            Some(_) => Err(SpecError::Invalid),
            None => Err(SpecError::Other("No such process".into())),
        },
    }
}

/// Whether a specifier error means "this information is not available"
/// (the line is skipped, not an error).
pub fn is_noinfo(e: &SpecError) -> bool {
    match e {
        SpecError::NotAttached | SpecError::Unset => true,
        SpecError::Other(s) => s == "No medium found",
        _ => false,
    }
}

/// `Failed to ...: %m` texts of specifier errors, and whether they make
/// the configuration invalid (EINVAL, EBADSLT).
pub fn spec_error(e: &SpecError) -> (String, bool) {
    (
        e.to_string(),
        matches!(e, SpecError::Unknown(_) | SpecError::Invalid),
    )
}

pub fn item_text(a: &[u8]) -> String {
    String::from_utf8_lossy(a).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_systemd_parses_them() {
        assert_eq!(parse_sec("10d"), Some(864_000_000_000));
        assert_eq!(parse_sec("1h 30min"), Some(5_400_000_000));
        assert_eq!(parse_sec("1.5s"), Some(1_500_000));
        assert_eq!(parse_sec("2ms"), Some(2_000));
        assert_eq!(parse_sec("5"), Some(5_000_000));
        assert_eq!(parse_sec("infinity"), Some(u64::MAX));
        assert_eq!(parse_sec("10x"), None);
        assert_eq!(parse_sec("-1"), None);
        assert_eq!(parse_sec(""), None);
        assert_eq!(parse_mode("0755"), Some(0o755));
        assert_eq!(parse_mode("17777"), None);
        assert_eq!(parse_mode("0999"), None);
        assert_eq!(parse_devnum("1:3"), Some((1, 3)));
        assert_eq!(parse_devnum("4096:0"), None);
        assert_eq!(parse_devnum("1"), None);
        assert_eq!(parse_id("4294967295"), None);
        assert_eq!(parse_id("65535"), None);
        assert_eq!(parse_id("33"), Some(33));
        assert_eq!(parse_age_by("aM"), Some((AGE_BY_ATIME, AGE_BY_MTIME)));
        assert_eq!(parse_age_by("q"), None);
        assert_eq!(parse_attribute("=", "/p"), Ok((0, CHATTR_ALL_FL)));
        assert_eq!(parse_attribute("-d", "/p"), Ok((0, 0x40)));
        assert!(parse_attribute("+q", "/p").is_err());
        assert_eq!(cunescape(b"a\\tb\\x41").as_deref(), Some(&b"a\tbA"[..]));
        assert_eq!(cunescape(b"a\\q"), None);
        assert_eq!(cunescape(b"end\\"), None);
        assert_eq!(simplify("//a/./b//c/"), "/a/b/c");
        assert!(path_startswith("/srv/a/b", "/srv/a/"));
        assert!(!path_startswith("/srv/ab", "/srv/a"));
        let mut log = Log::default();
        let x = parse_xattrs(b"user.a=1 \"user.b=x y\" bad =v", &mut log);
        assert_eq!(
            x,
            vec![
                ("user.a".to_string(), b"1".to_vec()),
                ("user.b".to_string(), b"x y".to_vec())
            ]
        );
        assert_eq!(log.events.len(), 2);
    }
}
