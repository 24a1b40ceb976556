//! Work folders a kill does not leave behind for long: each holds a lock
//! (`flock` on its `.lock`) while its process lives, so the next run that
//! makes one in the same place can tell the folders of killed runs (their
//! lock free) and remove them. Removal first detaches what a killed tool
//! left mounted below (mmdebstrap mounts `/proc`, `/sys`, `/dev` and file
//! mirrors into its tree), so it never reaches into the host's files.

use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

/// A new empty folder `PARENT/PREFIXxxxxxx`, locked while it lives and
/// removed when dropped.
pub struct WorkDir {
    path: PathBuf,
    _lock: std::fs::File,
}

impl WorkDir {
    /// Make one in `parent` (the folders of killed runs with the same
    /// prefix are removed first). The error names the path.
    pub fn new(parent: &Path, prefix: &str) -> Result<WorkDir, (PathBuf, io::Error)> {
        remove_stale(parent, prefix);
        let d = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(|e| (parent.to_path_buf(), e))?
            .keep();
        let lock_path = d.join(".lock");
        let lock = std::fs::File::create(&lock_path).map_err(|e| (lock_path.clone(), e))?;
        rustix::fs::flock(&lock, FlockOperation::LockExclusive)
            .map_err(|e| (lock_path, e.into()))?;
        Ok(WorkDir {
            path: d,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        remove(&self.path);
    }
}

/// Remove the folders `PARENT/PREFIX*` of runs that were killed: those
/// with a `.lock` no one holds (a folder without one is not judged).
/// Returns how many went.
pub fn remove_stale(parent: &Path, prefix: &str) -> usize {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        if !e
            .file_name()
            .as_encoded_bytes()
            .starts_with(prefix.as_bytes())
        {
            continue;
        }
        let p = e.path();
        let Ok(lock) = std::fs::File::open(p.join(".lock")) else {
            continue;
        };
        let free = rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).is_ok();
        if free && remove(&p) {
            n += 1;
        }
    }
    n
}

/// Detach the mounts below `dir`, then remove it; false if a mount would
/// not go (then nothing is removed).
fn remove(dir: &Path) -> bool {
    for m in mounts_below(dir) {
        let _ = rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH);
    }
    if !mounts_below(dir).is_empty() {
        return false;
    }
    std::fs::remove_dir_all(dir).is_ok()
}

/// Mount points at or below `dir`, deepest first (from
/// `/proc/self/mountinfo`, octal escapes decoded).
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| {
            let mut bytes = Vec::new();
            let b = m.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'\\' && i + 3 < b.len() {
                    if let Ok(v) = u8::from_str_radix(&m[i + 1..i + 4], 8) {
                        bytes.push(v);
                        i += 4;
                        continue;
                    }
                }
                bytes.push(b[i]);
                i += 1;
            }
            PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes))
        })
        .filter(|p| p.starts_with(&dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out
}
