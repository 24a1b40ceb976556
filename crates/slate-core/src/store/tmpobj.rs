//! New objects are written as unnamed inodes (`O_TMPFILE` in `tmp/`) and
//! linked under their final name only when complete, so an interrupted
//! writer leaves nothing behind. Where the filesystem lacks `O_TMPFILE`, a
//! named temporary file in `tmp/` is renamed instead (the writer lock
//! clears leftovers).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::objects::rel_path;
use super::{Error, Repo, Result};
use crate::fsutil;
use crate::hash::ObjectId;
use crate::object::ObjectType;

pub(crate) enum TmpObject {
    Unnamed(OwnedFd),
    Named(OwnedFd, String),
}

impl TmpObject {
    pub fn fd(&self) -> BorrowedFd<'_> {
        match self {
            TmpObject::Unnamed(fd) | TmpObject::Named(fd, _) => fd.as_fd(),
        }
    }
}

impl Repo {
    /// A new, empty, writable regular file that is not yet an object.
    pub(crate) fn create_tmp(&self) -> std::io::Result<TmpObject> {
        self.create_tmp_mode(0o600).map(|(t, _)| t)
    }

    /// Like [`Repo::create_tmp`], asking for permission bits `want`; says
    /// whether the inode got exactly them (else the caller must `fchmod`).
    pub(crate) fn create_tmp_mode(&self, want: u32) -> std::io::Result<(TmpObject, bool)> {
        let exact =
            want & 0o7000 == 0 && crate::fsutil::process_umask().is_some_and(|u| want & u == 0);
        let m = Mode::from_raw_mode(if exact { want } else { 0o600 });
        Ok((self.create_tmp_raw(m)?, exact))
    }

    fn create_tmp_raw(&self, m: Mode) -> std::io::Result<TmpObject> {
        match rfs::openat(
            &self.tmp,
            ".",
            OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
            m,
        ) {
            Ok(fd) => return Ok(TmpObject::Unnamed(fd)),
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let name = fsutil::tmp_name("obj");
        let fd = rfs::openat(
            &self.tmp,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            m,
        )?;
        Ok(TmpObject::Named(fd, name))
    }

    /// Give a finished temporary file its final name. If the object
    /// appeared meanwhile (same id, same content), the new copy is dropped
    /// and `false` returned. (A [`Transaction`](super::Transaction) links
    /// through this and notes what it linked.)
    pub(crate) fn link_tmp(&self, tmp: TmpObject, kind: ObjectType, id: &ObjectId) -> Result<bool> {
        let rel = rel_path(kind, id);
        let err = |e: Errno| Error::io(&self.object_path(kind, id), e.into());
        if self.mode == super::RepoMode::Archive {
            // Archive repositories create fan-out directories on demand:
            // most of their objects live in packs.
            match rfs::mkdirat(&self.objects, &rel[..2], Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(err(e)),
            }
        }
        match self.link_tmp_at(tmp, &rel) {
            // The same object, linked meanwhile: same id, same content.
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok(false)
            }
            r => r.map(|()| true),
        }
    }

    /// Give a finished temporary file the name `rel` below `objects/`.
    pub(crate) fn link_tmp_at(&self, tmp: TmpObject, rel: &str) -> Result<()> {
        let path = self.path.join("objects").join(rel);
        let err = |e: Errno| Error::io(&path, e.into());
        match tmp {
            TmpObject::Named(fd, name) => {
                drop(fd);
                rfs::renameat(&self.tmp, name.as_str(), &self.objects, rel).map_err(err)
            }
            TmpObject::Unnamed(fd) => {
                match rfs::linkat(&fd, "", &self.objects, rel, AtFlags::EMPTY_PATH) {
                    // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc does not.
                    Err(Errno::NOENT | Errno::PERM) => {
                        let proc =
                            format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
                        rfs::linkat(
                            rfs::CWD,
                            proc.as_str(),
                            &self.objects,
                            rel,
                            AtFlags::SYMLINK_FOLLOW,
                        )
                        .map_err(err)
                    }
                    r => r.map_err(err),
                }
            }
        }
    }

    /// Abandon a temporary file.
    pub(crate) fn drop_tmp(&self, tmp: TmpObject) {
        if let TmpObject::Named(fd, name) = tmp {
            drop(fd);
            let _ = rfs::unlinkat(&self.tmp, name.as_str(), AtFlags::empty());
        }
    }
}
