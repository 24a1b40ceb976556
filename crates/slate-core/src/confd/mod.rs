//! systemd-style configuration, shared by `tmpfiles` and `sysusers`:
//! drop-in directories (`/etc/X.d`, `/run/X.d`, `/usr/local/lib/X.d`,
//! `/usr/lib/X.d`, `/lib/X.d`) looked up inside a root, with overriding by
//! file name and masking; the one configuration loader (`load.rs`:
//! arguments, `--replace=`, standard input, the `X.extra` credential); line
//! reading; word splitting; specifiers; what the engines know of their
//! host (`host.rs`) and the events they report (`event.rs`).
//! A leaf: it knows nothing of the store.

mod event;
mod host;
mod load;
pub mod specifier;
pub mod words;

pub use event::{Event, Kind, Level, Log};
pub use host::{architecture_name, Credentials, Host, UserEnv};
pub use load::{load, LineOutcome, Source};

use std::collections::HashSet;
use std::io;

use rustix::fs::{FileType, OFlags};

use crate::fsutil::Root;

/// The text of an OS error without Rust's " (os error N)" suffix.
pub fn os_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(p) => s[..p].to_string(),
        None => s,
    }
}

/// The directories of `KIND.d`, highest priority first. `/lib` comes
/// last: Debian's systemd 252 is built for a split `/usr` and reads it too
/// (on a merged `/usr` it is `/usr/lib` again, and read once).
pub fn dirs(kind: &str) -> Vec<String> {
    ["/etc", "/run", "/usr/local/lib", "/usr/lib", "/lib"]
        .iter()
        .map(|d| format!("{d}/{kind}"))
        .collect()
}

/// One configuration file found in the drop-in directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfFile {
    /// Its path inside the root.
    pub path: String,
    /// A mask (symlink to `/dev/null`, a character device or an empty file):
    /// it hides same-named files of later directories and reads as empty.
    pub masked: bool,
}

impl ConfFile {
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Every `*.conf` of `dirs` inside `root`, sorted by file name; a name found
/// in an earlier directory hides the same name in later ones. Hidden files
/// (a leading `.`) are skipped. Directories that are missing are skipped;
/// two directory names that resolve to one directory are read once.
pub fn list(root: &Root, dirs: &[String], suffix: &str) -> Vec<ConfFile> {
    let mut seen_dirs = HashSet::new();
    let mut by_name: Vec<ConfFile> = Vec::new();
    let mut names = HashSet::new();
    for dir in dirs {
        let Ok(fd) = root.open_dir(dir) else {
            continue;
        };
        let Ok(st) = rustix::fs::fstat(&fd) else {
            continue;
        };
        if !seen_dirs.insert((st.st_dev, st.st_ino)) {
            continue;
        }
        let Ok(mut entries) = rustix::fs::Dir::read_from(&fd) else {
            continue;
        };
        let mut found: Vec<String> = Vec::new();
        while let Some(Ok(e)) = entries.next() {
            if let Ok(n) = e.file_name().to_str() {
                if n.ends_with(suffix) && !n.starts_with('.') {
                    found.push(n.to_string());
                }
            }
        }
        found.sort();
        for name in found {
            if names.contains(&name) {
                continue;
            }
            let path = format!("{dir}/{name}");
            let masked = is_mask(root, &path);
            names.insert(name);
            by_name.push(ConfFile { path, masked });
        }
    }
    by_name.sort_by(|a, b| a.name().cmp(b.name()));
    by_name
}

/// A symlink to `/dev/null`, a character device, or an empty regular file.
fn is_mask(root: &Root, path: &str) -> bool {
    if let Ok(fd) = root.open(path, OFlags::PATH | OFlags::NOFOLLOW, 0) {
        if let Ok(st) = rustix::fs::fstat(&fd) {
            if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                if let Ok(target) = rustix::fs::readlinkat(&fd, "", Vec::new()) {
                    if target.as_bytes() == b"/dev/null" {
                        return true;
                    }
                }
            }
        }
    }
    match root.stat(path) {
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::CharacterDevice => true,
            FileType::RegularFile => st.st_size == 0,
            _ => false,
        },
        Err(_) => false,
    }
}

/// Insert the `--replace=` path into a sorted list the way systemd does.
/// Returns whether the replacement takes part: when a same-named file of
/// an earlier (or the same) directory exists, the replacement is not used.
pub fn insert_replacement(files: &mut Vec<ConfFile>, dirs: &[String], replacement: &str) -> bool {
    let base = replacement.rsplit('/').next().unwrap_or(replacement);
    let in_dir = |p: &str, d: &str| p.strip_prefix(d).is_some_and(|rest| rest.starts_with('/'));
    let mut pos = files.len();
    for (i, f) in files.iter_mut().enumerate() {
        match f.name().cmp(base) {
            std::cmp::Ordering::Equal => {
                for d in dirs {
                    if in_dir(&f.path, d) {
                        return false;
                    }
                    if in_dir(replacement, d) {
                        *f = ConfFile {
                            path: replacement.to_string(),
                            masked: false,
                        };
                        return true;
                    }
                }
            }
            std::cmp::Ordering::Greater => {
                pos = i;
                break;
            }
            std::cmp::Ordering::Less => {}
        }
    }
    files.insert(
        pos,
        ConfFile {
            path: replacement.to_string(),
            masked: false,
        },
    );
    true
}

/// Find a file named `name` (no `/`) in `dirs` inside the root: the first
/// directory that has it wins. Returns its path inside the root and content.
pub fn search(root: &Root, dirs: &[String], name: &str) -> io::Result<(String, Vec<u8>)> {
    for d in dirs {
        let path = format!("{d}/{name}");
        if is_mask(root, &path) {
            return Ok((path, Vec::new()));
        }
        match root.read(&path) {
            Ok(data) => return Ok((path, data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Err(rustix::io::Errno::NOENT.into())
}

/// Read a listed configuration file (masks read as empty).
pub fn read(root: &Root, file: &ConfFile) -> io::Result<Vec<u8>> {
    if file.masked {
        return Ok(Vec::new());
    }
    root.read(&file.path)
}

/// Split file content into lines as systemd's `read_line()` does: `\n`,
/// `\r`, `\r\n` and NUL all end a line.
pub fn lines(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\n' | 0 => {
                out.push(&data[start..i]);
                start = i + 1;
            }
            b'\r' => {
                out.push(&data[start..i]);
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < data.len() {
        out.push(&data[start..]);
    }
    out
}

/// Strip leading and trailing whitespace (`strstrip()`).
pub fn strip(line: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let start = line.iter().position(|c| !ws(c)).unwrap_or(line.len());
    let end = line.iter().rposition(|c| !ws(c)).map_or(start, |e| e + 1);
    &line[start..end]
}

/// `--cat-config`: each file preceded by `# PATH` (the path on this machine),
/// files separated by an empty line, lines re-terminated with `\n`.
pub fn cat(root: &Root, files: &[ConfFile], out: &mut impl io::Write) -> io::Result<()> {
    for (i, f) in files.iter().enumerate() {
        let data = read(root, f)?;
        if i > 0 {
            out.write_all(b"\n")?;
        }
        writeln!(out, "# {}", root.display(&f.path))?;
        for line in lines(&data) {
            out.write_all(line)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn lookup_overrides_masks_and_replaces() {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        for d in ["etc/x.d", "run/x.d", "usr/lib/x.d"] {
            std::fs::create_dir_all(r.join(d)).expect("mkdir");
        }
        std::fs::write(r.join("usr/lib/x.d/a.conf"), "lib a").expect("w");
        std::fs::write(r.join("etc/x.d/a.conf"), "etc a").expect("w");
        std::fs::write(r.join("usr/lib/x.d/b.conf"), "lib b").expect("w");
        symlink("/dev/null", r.join("run/x.d/b.conf")).expect("ln");
        std::fs::write(r.join("usr/lib/x.d/c.conf"), "lib c").expect("w");
        std::fs::write(r.join("usr/lib/x.d/.hidden.conf"), "h").expect("w");
        std::fs::write(r.join("usr/lib/x.d/d.txt"), "d").expect("w");
        let root = Root::new(r).expect("root");
        let dirs = dirs("x.d");
        let files = list(&root, &dirs, ".conf");
        let paths: Vec<_> = files.iter().map(|f| (f.path.as_str(), f.masked)).collect();
        assert_eq!(
            paths,
            vec![
                ("/etc/x.d/a.conf", false),
                ("/run/x.d/b.conf", true),
                ("/usr/lib/x.d/c.conf", false)
            ]
        );
        assert_eq!(read(&root, &files[1]).expect("read"), b"");
        let mut with = files.clone();
        assert!(insert_replacement(&mut with, &dirs, "/usr/lib/x.d/bb.conf"));
        assert_eq!(with[2].path, "/usr/lib/x.d/bb.conf");
        let mut with = files.clone();
        assert!(!insert_replacement(&mut with, &dirs, "/usr/lib/x.d/a.conf"));
        let mut with = files;
        assert!(insert_replacement(&mut with, &dirs, "/etc/x.d/c.conf"));
        assert_eq!(with[2].path, "/etc/x.d/c.conf");
        assert_eq!(search(&root, &dirs, "c.conf").expect("search").1, b"lib c");
    }

    #[test]
    fn line_endings() {
        assert_eq!(
            lines(b"a\nb\r\nc\rd\0e"),
            vec![&b"a"[..], b"b", b"c", b"d", b"e"]
        );
        assert_eq!(strip(b" \t x y \r"), b"x y");
    }
}
