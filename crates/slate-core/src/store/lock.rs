//! The writer lock: an exclusive `flock` on `REPO/lock`. Writers (commit,
//! ref updates, prune) hold it; readers never need it, because objects and
//! refs only ever appear by rename.

use std::os::fd::OwnedFd;

use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};

use super::{Error, Repo, Result};

/// Held while writing; released on drop.
pub struct WriteLock {
    _fd: OwnedFd,
}

impl Repo {
    /// Wait for and take the writer lock, then clear temporary files that an
    /// interrupted writer may have left.
    pub fn lock(&self) -> Result<WriteLock> {
        let path = self.path.join("lock");
        let fd = rfs::openat(
            &self.root,
            "lock",
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| Error::io(&path, e.into()))?;
        rfs::flock(&fd, FlockOperation::LockExclusive).map_err(|e| Error::io(&path, e.into()))?;
        self.clean_tmp()?;
        Ok(WriteLock { _fd: fd })
    }

    fn clean_tmp(&self) -> Result<()> {
        let tmp = self.path.join("tmp");
        let rd = std::fs::read_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(&tmp, e))?;
            let p = ent.path();
            let r = if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            r.map_err(|e| Error::io(&p, e))?;
        }
        Ok(())
    }
}
