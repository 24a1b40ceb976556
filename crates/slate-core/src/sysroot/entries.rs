//! Boot Loader Specification type 1 entries, with systemd-boot's boot
//! counting in their file names (`NAME+LEFT[-DONE].conf`) and its order.

use std::cmp::Ordering;

use rustix::fs::FileType;
use serde::Serialize;

use super::dirs::Dir;
use super::Result;
pub use crate::version::strverscmp;

/// One entry file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BootEntry {
    /// The file name, counter included.
    pub file: String,
    /// The name without `.conf` and without the counter.
    pub id: String,
    /// Tries left and tries done, when the entry is counted.
    pub tries: Option<(u32, u32)>,
    pub title: String,
    pub version: String,
    pub sort_key: String,
    pub linux: String,
    pub initrd: Vec<String>,
    pub options: String,
}

/// What boot counting says of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryState {
    /// Not counted (never, or blessed by systemd-bless-boot).
    Good,
    /// Counted, with tries left: not yet booted to success.
    Pending,
    /// No tries left: the boot loader puts it last.
    Bad,
}

/// Split `NAME+LEFT[-DONE].conf` into `NAME` and the counters.
pub fn parse_name(file: &str) -> Option<(String, Option<(u32, u32)>)> {
    let stem = file.strip_suffix(".conf")?;
    if let Some((id, counter)) = stem.rsplit_once('+') {
        let (left, done) = match counter.split_once('-') {
            Some((l, d)) => (l, d),
            None => (counter, "0"),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if digits(left) && digits(done) {
            if let (Ok(l), Ok(d)) = (left.parse(), done.parse()) {
                return Some((id.to_string(), Some((l, d))));
            }
        }
    }
    Some((stem.to_string(), None))
}

/// The file name of an entry `id` with `tries` (none: not counted).
pub fn file_name(id: &str, tries: Option<(u32, u32)>) -> String {
    match tries {
        None => format!("{id}.conf"),
        Some((left, 0)) => format!("{id}+{left}.conf"),
        Some((left, done)) => format!("{id}+{left}-{done}.conf"),
    }
}

impl BootEntry {
    pub fn state(&self) -> EntryState {
        match self.tries {
            None => EntryState::Good,
            Some((0, _)) => EntryState::Bad,
            Some(_) => EntryState::Pending,
        }
    }

    pub fn tries_left(&self) -> Option<u32> {
        self.tries.map(|t| t.0)
    }

    /// Parse an entry file's text.
    pub fn parse(file: &str, text: &str) -> Option<BootEntry> {
        let (id, tries) = parse_name(file)?;
        let mut e = BootEntry {
            file: file.to_string(),
            id,
            tries,
            title: String::new(),
            version: String::new(),
            sort_key: String::new(),
            linux: String::new(),
            initrd: Vec::new(),
            options: String::new(),
        };
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let v = v.trim().to_string();
            match k {
                "title" => e.title = v,
                "version" => e.version = v,
                "sort-key" => e.sort_key = v,
                "linux" => e.linux = v,
                "initrd" => e.initrd.push(v),
                "options" if e.options.is_empty() => e.options = v,
                "options" => {
                    e.options.push(' ');
                    e.options.push_str(&v);
                }
                _ => {}
            }
        }
        Some(e)
    }

    pub fn render(&self) -> String {
        let mut s = format!(
            "title {}\nversion {}\nsort-key {}\nlinux {}\n",
            self.title, self.version, self.sort_key, self.linux
        );
        for i in &self.initrd {
            s.push_str(&format!("initrd {i}\n"));
        }
        s.push_str(&format!("options {}\n", self.options));
        s
    }

    /// The value of `key=` in the options, if any.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }
}

/// Every entry of `dir` (files ending in `.conf`; others, temporary
/// files and symlinks are not entries).
pub(crate) fn list(dir: &Dir) -> Result<Vec<BootEntry>> {
    let mut out = Vec::new();
    for (name, ft) in dir.entries()? {
        let Some(name) = name.to_str().map(String::from) else {
            continue;
        };
        if name.starts_with('.') || !name.ends_with(".conf") || ft != FileType::RegularFile {
            continue;
        }
        // Bounded: an entry is a few lines.
        let text = match dir.read(&name) {
            Ok(Some(t)) if t.len() <= 64 << 10 => String::from_utf8_lossy(&t).into_owned(),
            Ok(_) => continue,
            Err(e) => return Err(e),
        };
        if let Some(e) = BootEntry::parse(&name, &text) {
            out.push(e);
        }
    }
    out.sort_by(boot_order);
    Ok(out)
}

/// Write an entry atomically (temporary name, fsync, rename, directory
/// fsync).
pub(crate) fn write(dir: &Dir, e: &BootEntry) -> Result<()> {
    dir.write(&e.file, e.render().as_bytes(), 0o644)
}

/// Remove an entry file and sync the directory (absent is fine).
pub(crate) fn remove(dir: &Dir, file: &str) -> Result<()> {
    if dir.remove_file(file)? {
        dir.sync()?;
    }
    Ok(())
}

/// systemd-boot 252's order of entries: those with no tries left last;
/// entries with a sort key before those without; then by sort key,
/// version (newest first), id (newest first), tries left (more first),
/// tries done (fewer first). The first is the default.
pub fn boot_order(a: &BootEntry, b: &BootEntry) -> Ordering {
    let exhausted = |e: &BootEntry| e.tries_left() == Some(0);
    exhausted(a)
        .cmp(&exhausted(b))
        .then_with(|| a.sort_key.is_empty().cmp(&b.sort_key.is_empty()))
        .then_with(|| {
            if a.sort_key.is_empty() || b.sort_key.is_empty() {
                return Ordering::Equal;
            }
            a.sort_key
                .cmp(&b.sort_key)
                .then_with(|| strverscmp(&b.version, &a.version))
        })
        .then_with(|| strverscmp(&b.id, &a.id))
        .then_with(|| match (a.tries, b.tries) {
            (Some((la, da)), Some((lb, db))) => lb.cmp(&la).then(da.cmp(&db)),
            _ => Ordering::Equal,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(file: &str, version: &str) -> BootEntry {
        let mut e = BootEntry::parse(file, "").expect("a .conf name");
        e.version = version.into();
        e.sort_key = "slate".into();
        e
    }

    #[test]
    fn names_and_counters() {
        assert_eq!(parse_name("a+3.conf"), Some(("a".into(), Some((3, 0)))));
        assert_eq!(parse_name("a+2-1.conf"), Some(("a".into(), Some((2, 1)))));
        assert_eq!(parse_name("a+0-3.conf"), Some(("a".into(), Some((0, 3)))));
        assert_eq!(parse_name("a.conf"), Some(("a".into(), None)));
        assert_eq!(parse_name("c+x.conf"), Some(("c+x".into(), None)));
        assert_eq!(parse_name("a.txt"), None);
        assert_eq!(file_name("a", Some((2, 1))), "a+2-1.conf");
        assert_eq!(file_name("a", Some((3, 0))), "a+3.conf");
        assert_eq!(file_name("a", None), "a.conf");
    }

    #[test]
    fn order_is_systemd_boots() {
        let mut v = [
            entry("old.conf", "9"),
            entry("new+3.conf", "10"),
            entry("bad+0-3.conf", "11"),
        ];
        v.sort_by(boot_order);
        let ids: Vec<&str> = v.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["new", "old", "bad"]);
        assert_eq!(strverscmp("10", "9"), Ordering::Greater);
        assert_eq!(strverscmp("1.10", "1.9"), Ordering::Greater);
        assert_eq!(strverscmp("6.1.0-13", "6.1.0-9"), Ordering::Greater);
        assert_eq!(strverscmp("a", "a"), Ordering::Equal);
    }

    #[test]
    fn render_and_parse_round_trip() {
        let mut e = entry("slate-os-x.1+3.conf", "4");
        e.title = "Debian (os x.1)".into();
        e.linux = "/slate/os/6.1-ab/linux".into();
        e.initrd = vec!["/slate/os/6.1-ab/initrd".into()];
        e.options = "root=/dev/vda2 slate=/slate/deploy/os/x.1".into();
        let back = BootEntry::parse(&e.file, &e.render()).expect("parse");
        assert_eq!(back, e);
        assert_eq!(back.option("slate"), Some("/slate/deploy/os/x.1"));
        assert_eq!(back.state(), EntryState::Pending);
    }
}
