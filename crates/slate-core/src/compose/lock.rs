//! The lockfile (`docs/format/manifest.md#the-lockfile`): the exact
//! version and SHA-256 of every package an image holds and the digest of
//! every other input, so the same manifest and lockfile give the same
//! image. TOML, written atomically after a build that committed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::packages::Package;
use super::Error;

pub const VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    pub version: u32,
    /// Digest of what the manifest asks of the package manager (the base,
    /// the packages, the `.deb` files): a change there makes the lock
    /// stale.
    pub request: String,
    /// The apt sources the image got, as its `/etc/apt/sources.list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<String>,
    #[serde(default, rename = "input")]
    pub inputs: Vec<LockedInput>,
    #[serde(default, rename = "package")]
    pub packages: Vec<LockedPackage>,
}

/// An input other than a package: its kind, where it is, its digest (a
/// file's SHA-256, or a folder's Slate tree id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedInput {
    pub kind: String,
    pub path: String,
    pub digest: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub sha256: String,
    /// Installed as a dependency (apt's `Auto-Installed`), not asked for.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto: bool,
}

impl LockedPackage {
    pub fn package(&self) -> Package {
        Package {
            name: self.name.clone(),
            version: self.version.clone(),
            architecture: self.architecture.clone(),
        }
    }
}

impl Lockfile {
    /// Read `path`; `None` when there is no file.
    pub fn read(path: &Path) -> Result<Option<Lockfile>, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path)(e)),
        };
        let lock: Lockfile = toml::from_str(&text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let before = &text[..offset.min(text.len())];
            let line = before.matches('\n').count() + 1;
            Error::Input(format!("{}:{line}: {}", path.display(), e.message()))
        })?;
        if lock.version != VERSION {
            return Err(Error::Input(format!(
                "{}: lockfile version {} (this Slate reads {VERSION})",
                path.display(),
                lock.version
            )));
        }
        Ok(Some(lock))
    }

    /// Write to `path` atomically.
    pub fn write(&self, path: &Path, manifest: &Path) -> Result<(), Error> {
        let mut text = format!(
            "# Written by `slate compose {}`: the exact inputs of the image.\n\
             # Build it again with `--locked`; remove it (or use --update) to take newer packages.\n",
            manifest.file_name().unwrap_or_default().to_string_lossy()
        );
        text.push_str(&toml::to_string(self).map_err(|e| Error::Input(e.to_string()))?);
        let dir: PathBuf = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let name = path
            .file_name()
            .ok_or_else(|| Error::Input(format!("{}: not a file name", path.display())))?;
        let fd = crate::fsutil::open_dir(&dir).map_err(Error::io(&dir))?;
        crate::fsutil::atomic_write_at(&fd, &name.to_string_lossy(), text.as_bytes(), 0o644)
            .map_err(Error::io(path))
    }

    /// How `built` differs from this lock, one line per difference
    /// (empty: the same).
    pub fn differences(&self, built: &Lockfile) -> Vec<String> {
        let mut out = Vec::new();
        if self.request != built.request {
            out.push(
                "the manifest's base, packages or .deb files changed since the lockfile was written"
                    .into(),
            );
        }
        let key = |v: &[LockedInput]| -> BTreeMap<(String, String), String> {
            v.iter()
                .map(|i| ((i.kind.clone(), i.path.clone()), i.digest.clone()))
                .collect()
        };
        let (a, b) = (key(&self.inputs), key(&built.inputs));
        for (k, d) in &b {
            match a.get(k) {
                None => out.push(format!("input {} {}: not in the lockfile", k.0, k.1)),
                Some(x) if x != d => {
                    out.push(format!("input {} {}: locked {x}, now {d}", k.0, k.1))
                }
                Some(_) => {}
            }
        }
        for k in a.keys().filter(|k| !b.contains_key(*k)) {
            out.push(format!(
                "input {} {}: locked, no longer in the manifest",
                k.0, k.1
            ));
        }
        let pk = |v: &[LockedPackage]| -> BTreeMap<String, LockedPackage> {
            v.iter().map(|p| (p.name.clone(), p.clone())).collect()
        };
        let (a, b) = (pk(&self.packages), pk(&built.packages));
        for (n, p) in &b {
            match a.get(n) {
                None => out.push(format!("package {n} {}: not in the lockfile", p.version)),
                Some(q) if q != p => out.push(format!(
                    "package {n}: locked {} {} ({}), built {} {} ({})",
                    q.version,
                    q.architecture,
                    &q.sha256[..q.sha256.len().min(12)],
                    p.version,
                    p.architecture,
                    &p.sha256[..p.sha256.len().min(12)]
                )),
                Some(_) => {}
            }
        }
        for (n, q) in &a {
            if !b.contains_key(n) {
                out.push(format!("package {n} {}: locked, not built", q.version));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lockfile {
        Lockfile {
            version: VERSION,
            request: "ab".repeat(32),
            sources: Some("deb http://example.invalid/debian bookworm main\n".into()),
            inputs: vec![LockedInput {
                kind: "files".into(),
                path: "/etc/motd".into(),
                digest: "cd".repeat(32),
            }],
            packages: vec![LockedPackage {
                name: "apt".into(),
                version: "2.6.1".into(),
                architecture: "amd64".into(),
                sha256: "ef".repeat(32),
                auto: false,
            }],
        }
    }

    #[test]
    fn round_trip_and_differences() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("image.lock");
        assert_eq!(Lockfile::read(&p).expect("absent"), None);
        let l = sample();
        l.write(&p, Path::new("image.toml")).expect("write");
        let back = Lockfile::read(&p).expect("read").expect("present");
        assert_eq!(back, l);
        assert!(l.differences(&back).is_empty());

        let mut other = l.clone();
        other.packages[0].version = "2.6.2".into();
        other.inputs[0].digest = "00".repeat(32);
        let d = l.differences(&other);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().any(|x| x.contains("package apt: locked 2.6.1")));
        assert!(d.iter().any(|x| x.contains("input files /etc/motd")));
    }

    #[test]
    fn bad_lockfile_names_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("bad.lock");
        std::fs::write(&p, "version = 1\nrequest = \"x\"\nbogus = 3\n").expect("write");
        let e = Lockfile::read(&p).expect_err("unknown key").to_string();
        assert!(e.contains("bad.lock:3"), "{e}");
    }
}
