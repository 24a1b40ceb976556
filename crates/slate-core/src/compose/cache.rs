//! The compose cache (`--cache-dir`): Debian packages kept by their
//! SHA-256, so a locked build needs no mirror once they are there, and
//! the trees mmdebstrap made, kept by what made them, so an unchanged
//! build skips it (like mkosi's incremental mode).
//!
//! ```text
//! CACHE/debs/SHA256.deb       a package, named by its digest
//! CACHE/debs/SHA256.control   its control paragraph (dpkg-deb -f)
//! CACHE/trees/                a Slate repository: ref base/KEY -> the tree
//! CACHE/work/                 trees being built (removed after)
//! ```
//! Every file is written under a temporary name and renamed: a kill
//! leaves a package whole or absent.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::packages::{self, Package};
use super::Error;
use crate::fsutil::WorkDir;

/// A package in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedDeb {
    pub sha256: String,
    pub package: Package,
}

/// The cache at a folder; opening it removes the work folders of killed
/// composes.
pub struct Cache {
    pub dir: PathBuf,
}

/// SHA-256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut f = std::fs::File::open(path).map_err(Error::io(path))?;
    let mut h = crate::hash::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish().to_hex())
}

/// The control paragraph of a `.deb` (`dpkg-deb -f FILE`).
pub fn deb_control(path: &Path) -> Result<String, Error> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(path)
        .output()
        .map_err(|e| Error::Tool {
            tool: "dpkg-deb".into(),
            message: format!("cannot run it: {e}"),
        })?;
    if !out.status.success() {
        return Err(Error::Input(format!(
            "{}: not a Debian package: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| Error::Input(format!("{}: control file is not UTF-8", path.display())))
}

/// The prefix of compose work folders below `CACHE/work`.
const WORK_PREFIX: &str = "compose-";

impl Cache {
    pub fn open(dir: &Path) -> Result<Cache, Error> {
        for sub in ["debs", "work"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(Error::io(&p))?;
        }
        let c = Cache {
            dir: dir.to_path_buf(),
        };
        c.remove_stale();
        Ok(c)
    }

    pub fn deb_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("debs").join(format!("{sha256}.deb"))
    }

    fn control_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("debs").join(format!("{sha256}.control"))
    }

    /// Whether the package `sha256` is cached whole (its control written
    /// last, so its presence means both are).
    pub fn has(&self, sha256: &str) -> bool {
        self.control_path(sha256).is_file() && self.deb_path(sha256).is_file()
    }

    /// The cached package `sha256`.
    pub fn get(&self, sha256: &str) -> Result<CachedDeb, Error> {
        let p = self.control_path(sha256);
        let text = std::fs::read_to_string(&p).map_err(Error::io(&p))?;
        let para = packages::paragraphs(&text);
        let package = para
            .first()
            .and_then(|p| packages::from_control(p))
            .ok_or_else(|| Error::Input(format!("{}: no package in it", p.display())))?;
        Ok(CachedDeb {
            sha256: sha256.to_string(),
            package,
        })
    }

    /// Put the `.deb` at `file` into the cache (moved when `take`, else
    /// copied); returns what it is.
    pub fn add(&self, file: &Path, take: bool) -> Result<CachedDeb, Error> {
        let sha256 = sha256_file(file)?;
        if self.has(&sha256) {
            if take {
                let _ = std::fs::remove_file(file);
            }
            return self.get(&sha256);
        }
        let control = deb_control(file)?;
        let debs = self.dir.join("debs");
        let dest = self.deb_path(&sha256);
        let tmp = debs.join(crate::fsutil::tmp_name("deb"));
        let moved = take && std::fs::rename(file, &tmp).is_ok();
        if !moved {
            std::fs::copy(file, &tmp).map_err(Error::io(file))?;
        }
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(Error::io(&tmp))?;
        std::fs::rename(&tmp, &dest).map_err(Error::io(&dest))?;
        let dir = crate::fsutil::open_dir(&debs).map_err(Error::io(&debs))?;
        crate::fsutil::atomic_write_at(
            &dir,
            &format!("{sha256}.control"),
            control.as_bytes(),
            0o644,
        )
        .map_err(Error::io(&self.control_path(&sha256)))?;
        self.get(&sha256)
    }

    /// Take every `.deb` of `dir` into the cache.
    pub fn take_all(&self, dir: &Path) -> Result<Vec<CachedDeb>, Error> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Ok(out);
        };
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .collect();
        files.sort();
        // Hashing and reading control files, a package per thread.
        use rayon::prelude::*;
        out = files
            .par_iter()
            .map(|f| self.add(f, true))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(out)
    }

    /// A flat apt repository at `dest` holding exactly the packages
    /// `shas` (hard links into the cache, or copies), with its `Packages`
    /// index: what `deb [trusted=yes] file:DEST ./` reads.
    /// Its `Release` names `suite`, which mmdebstrap looks for when it
    /// picks the essential packages.
    pub fn local_repo(&self, shas: &[String], suite: &str, dest: &Path) -> Result<(), Error> {
        std::fs::create_dir_all(dest).map_err(Error::io(dest))?;
        let mut index = String::new();
        for sha in shas {
            let src = self.deb_path(sha);
            let name = format!("{sha}.deb");
            let to = dest.join(&name);
            if std::fs::hard_link(&src, &to).is_err() {
                std::fs::copy(&src, &to).map_err(Error::io(&src))?;
            }
            let size = std::fs::metadata(&src).map_err(Error::io(&src))?.len();
            let cp = self.control_path(sha);
            let control = std::fs::read_to_string(&cp).map_err(Error::io(&cp))?;
            index.push_str(control.trim_end());
            index.push_str(&format!(
                "\nFilename: ./{name}\nSize: {size}\nSHA256: {sha}\n\n"
            ));
        }
        let p = dest.join("Packages");
        std::fs::write(&p, &index).map_err(Error::io(&p))?;
        let release = format!(
            "Origin: slate-compose-cache\nLabel: slate-compose-cache\nSuite: {suite}\n\
             Codename: {suite}\nDate: Thu, 01 Jan 1970 00:00:00 UTC\nSHA256:\n {} {} Packages\n",
            crate::hash::ObjectId::digest(index.as_bytes()).to_hex(),
            index.len()
        );
        let p = dest.join("Release");
        std::fs::write(&p, release).map_err(Error::io(&p))?;
        Ok(())
    }

    /// The repository of cached trees.
    pub fn trees(&self) -> Result<crate::store::Repo, Error> {
        let p = self.dir.join("trees");
        if p.join("config").exists() {
            Ok(crate::store::Repo::open(&p)?)
        } else {
            Ok(crate::store::Repo::init(&p, crate::store::RepoMode::Bare)?)
        }
    }

    /// A new empty folder below `work/` for a tree being built, removed
    /// when the value is dropped; the folders of killed composes go first
    /// ([`WorkDir`]).
    pub fn work_dir(&self) -> Result<WorkDir, Error> {
        WorkDir::new(&self.dir.join("work"), WORK_PREFIX).map_err(|(p, e)| Error::io(&p)(e))
    }

    /// Remove the work folders of composes that were killed (their lock is
    /// free), detaching what they left mounted first. Returns how many.
    pub fn remove_stale(&self) -> usize {
        crate::fsutil::remove_stale(&self.dir.join("work"), WORK_PREFIX)
    }
}
