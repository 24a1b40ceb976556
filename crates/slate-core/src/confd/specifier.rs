//! `%` specifiers in configuration lines, as systemd expands them.
//!
//! `%%` is a literal `%`; a letter or digit the table does not know is an
//! error ("Invalid slot"); any other character after `%` is kept with its
//! `%`; a lookup that gives an empty value expands to nothing.

use std::fmt;

use super::Host;
use crate::fsutil::Root;

/// Why a specifier could not be expanded. The texts are the `strerror`
/// strings systemd prints for the same cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// `%X` with a letter or digit no table entry has.
    Unknown(char),
    /// The result would be longer than allowed.
    TooLong,
    /// `os-release` or `machine-id` is missing in the root.
    NotAttached,
    /// A per-user directory whose `$XDG_…` variable is not set (`ENXIO`).
    Unset,
    /// The text around the specifiers is invalid (`EINVAL`).
    Invalid,
    /// Another lookup failure, as an OS error text.
    Other(String),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Unknown(_) => f.write_str("Invalid slot"),
            SpecError::TooLong => f.write_str("File name too long"),
            SpecError::NotAttached => f.write_str("Protocol driver not attached"),
            SpecError::Unset => f.write_str("No such device or address"),
            SpecError::Invalid => f.write_str("Invalid argument"),
            SpecError::Other(s) => f.write_str(s),
        }
    }
}

/// The value of one specifier: `None` when the table has no entry for it.
pub type Lookup<'a> = dyn FnMut(u8) -> Option<Result<String, SpecError>> + 'a;

/// Expand `%` specifiers in `text`; the result may be at most `max_len` bytes.
pub fn expand(text: &[u8], max_len: usize, lookup: &mut Lookup<'_>) -> Result<Vec<u8>, SpecError> {
    let mut out = Vec::with_capacity(text.len());
    let mut percent = false;
    for &c in text {
        if percent {
            percent = false;
            if c == b'%' {
                out.push(b'%');
            } else {
                match lookup(c) {
                    Some(v) => out.extend_from_slice(v?.as_bytes()),
                    None if c.is_ascii_alphanumeric() => return Err(SpecError::Unknown(c as char)),
                    None => out.extend_from_slice(&[b'%', c]),
                }
            }
        } else if c == b'%' {
            percent = true;
        } else {
            out.push(c);
        }
        if out.len() > max_len {
            return Err(SpecError::TooLong);
        }
    }
    if percent {
        out.push(b'%');
        if out.len() > max_len {
            return Err(SpecError::TooLong);
        }
    }
    Ok(out)
}

/// The specifiers every systemd tool knows (`%a %A %b %B %H %l %q %m %M
/// %o %v %w %W`) and the temporary directories (`%T %V`), answered for a
/// root: os-release and machine-id come from inside it; the host name,
/// boot id and kernel from the [`Host`] the caller describes.
pub struct SystemSpecifiers<'r> {
    root: &'r Root,
    host: &'r Host,
    /// Whether `--root` was given: then `%T`/`%V` ignore `$TMPDIR`.
    explicit_root: bool,
    os_release: Option<Option<Vec<(String, String)>>>,
}

impl<'r> SystemSpecifiers<'r> {
    pub fn new(root: &'r Root, explicit_root: bool, host: &'r Host) -> Self {
        SystemSpecifiers {
            root,
            host,
            explicit_root,
            os_release: None,
        }
    }

    /// The value for `c`, or `None` when `c` is not one of these specifiers.
    pub fn lookup(&mut self, c: u8) -> Option<Result<String, SpecError>> {
        Some(match c {
            b'a' => Ok(self.host.architecture.clone()),
            b'A' => self.os_field("IMAGE_VERSION"),
            b'b' => self
                .host
                .boot_id
                .clone()
                .ok_or_else(|| SpecError::Other("No such file or directory".into())),
            b'B' => self.os_field("BUILD_ID"),
            b'H' => Ok(self.host.hostname.clone()),
            b'l' => Ok(self.short_hostname()),
            b'q' => Ok(self
                .host
                .pretty_hostname
                .clone()
                .unwrap_or_else(|| self.short_hostname())),
            b'm' => self.machine_id(),
            b'M' => self.os_field("IMAGE_ID"),
            b'o' => self.os_field("ID"),
            b'v' => Ok(self.host.kernel_release.clone()),
            b'w' => self.os_field("VERSION_ID"),
            b'W' => self.os_field("VARIANT_ID"),
            b'T' => Ok(self.tmp_dir("/tmp")),
            b'V' => Ok(self.tmp_dir("/var/tmp")),
            _ => return None,
        })
    }

    fn tmp_dir(&self, default: &str) -> String {
        match &self.host.tmpdir {
            Some(t) if !self.explicit_root => t.clone(),
            _ => default.to_string(),
        }
    }

    fn short_hostname(&self) -> String {
        self.host
            .hostname
            .split('.')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    fn machine_id(&self) -> Result<String, SpecError> {
        match self.root.read("/etc/machine-id") {
            Ok(data) => {
                let s = String::from_utf8_lossy(&data).trim().to_string();
                if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(s.to_ascii_lowercase())
                } else {
                    Err(SpecError::Other("No medium found".into()))
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SpecError::NotAttached),
            Err(e) => Err(SpecError::Other(e.to_string())),
        }
    }

    fn os_field(&mut self, key: &str) -> Result<String, SpecError> {
        if self.os_release.is_none() {
            let data = self
                .root
                .read("/etc/os-release")
                .or_else(|_| self.root.read("/usr/lib/os-release"));
            self.os_release = Some(
                data.ok()
                    .map(|d| parse_env_file(&String::from_utf8_lossy(&d))),
            );
        }
        match self.os_release.as_ref().and_then(|o| o.as_ref()) {
            None => Err(SpecError::NotAttached),
            Some(vars) => Ok(vars
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()),
        }
    }
}

/// `KEY=VALUE` lines with shell-like quoting, as in os-release(5).
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let mut value = String::new();
        let mut chars = v.chars().peekable();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (Some('\''), c) => value.push(c),
                (_, '\\') => {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                }
                (_, c) => value.push(c),
            }
        }
        out.push((k.trim().to_string(), value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_rules() {
        let mut table = |c: u8| match c {
            b'x' => Some(Ok("X".to_string())),
            b'e' => Some(Ok(String::new())),
            _ => None,
        };
        assert_eq!(
            expand(b"a%x%%b%e%-%", 100, &mut table),
            Ok(b"aX%b%-%".to_vec())
        );
        assert_eq!(expand(b"%z", 100, &mut table), Err(SpecError::Unknown('z')));
        assert_eq!(expand(b"%x%x%x", 2, &mut table), Err(SpecError::TooLong));
    }

    #[test]
    fn os_release_values() {
        let vars =
            parse_env_file("ID=debian\nVERSION_ID=\"12\"\n# c\nNAME='Deb ian'\nX=\"a\\\"b\"\n");
        assert_eq!(
            vars,
            vec![
                ("ID".into(), "debian".into()),
                ("VERSION_ID".into(), "12".into()),
                ("NAME".into(), "Deb ian".into()),
                ("X".into(), "a\"b".into())
            ]
        );
    }
}
