//! A file with several hard links is never changed in place: before its
//! content, owner, mode, xattrs, ACLs or attributes change, it is replaced
//! at its path by a copy of its own (content, owner, mode, xattrs and
//! times kept), and the change goes to the copy. Every other link — a
//! repository object behind a hard-linked checkout, most of all — keeps
//! what it had. (systemd-tmpfiles changes the shared inode; Slate's
//! checkouts hard-link their files to the repository.)

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use super::fs::{self, file_type};
use super::perms::errno_text;
use super::{Failed, Kind, Runner};

fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Whether changing this inode in place would change other links too.
pub(super) fn shared(st: &Stat) -> bool {
    file_type(st) != FileType::Directory && st.st_nlink > 1
}

/// Make `tmp` in `dir` a copy of `name` (whose `stat` is `st`): content,
/// owner, mode, xattrs (ACLs among them), times.
fn copy_inode(dir: BorrowedFd<'_>, name: &str, st: &Stat, tmp: &str) -> Result<(), Errno> {
    let uid = Some(rfs::Uid::from_raw(st.st_uid));
    let gid = Some(rfs::Gid::from_raw(st.st_gid));
    let perm = Mode::from_raw_mode(st.st_mode & 0o7777);
    let io = |e: std::io::Error| Errno::from_io_error(&e).unwrap_or(Errno::IO);
    match file_type(st) {
        FileType::RegularFile => {
            let src = rfs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let dst = rfs::openat(
                dir,
                tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            super::copy::copy_data(&src, &dst)?;
            rfs::fchown(&dst, uid, gid)?;
            let x = crate::fsutil::fd_xattrs(&src).map_err(io)?;
            crate::fsutil::set_fd_xattrs(&dst, &x).map_err(io)?;
            // After the owner, which clears setuid and setgid.
            rfs::fchmod(&dst, perm)?;
            rfs::futimens(&dst, &times(st))?;
        }
        FileType::Symlink => {
            let target = rfs::readlinkat(dir, name, Vec::new())?;
            rfs::symlinkat(target.as_c_str(), dir, tmp)?;
            rfs::chownat(dir, tmp, uid, gid, AtFlags::SYMLINK_NOFOLLOW)?;
            let x = crate::fsutil::xattrs_at(dir, name.as_bytes()).map_err(io)?;
            crate::fsutil::set_xattrs_at(dir, tmp.as_bytes(), &x).map_err(io)?;
            rfs::utimensat(dir, tmp, &times(st), AtFlags::SYMLINK_NOFOLLOW)?;
        }
        ft => {
            let dev = if ft == FileType::Fifo { 0 } else { st.st_rdev };
            rfs::mknodat(dir, tmp, ft, Mode::from_raw_mode(0o600), dev)?;
            rfs::chownat(dir, tmp, uid, gid, AtFlags::SYMLINK_NOFOLLOW)?;
            rfs::chmodat(dir, tmp, perm, AtFlags::empty())?;
            let x = crate::fsutil::xattrs_at(dir, name.as_bytes()).map_err(io)?;
            crate::fsutil::set_xattrs_at(dir, tmp.as_bytes(), &x).map_err(io)?;
            rfs::utimensat(dir, tmp, &times(st), AtFlags::SYMLINK_NOFOLLOW)?;
        }
    }
    Ok(())
}

impl Runner<'_> {
    /// The path inside the root of the inode behind `fd` (which may have
    /// been reached through symlinks), from the kernel's name for it.
    fn real_path(&self, fd: BorrowedFd<'_>) -> Option<String> {
        let at = |f: BorrowedFd<'_>| {
            rfs::readlink(fs::proc_path(f), Vec::new())
                .ok()
                .and_then(|p| p.into_string().ok())
        };
        let root = at(self.root.fd())?;
        let full = at(fd)?;
        let rest = if root == "/" {
            full.as_str()
        } else {
            full.strip_prefix(&root)?
        };
        match rest {
            "" => Some("/".into()),
            r if r.starts_with('/') => Some(r.to_string()),
            _ => None,
        }
    }

    /// Replace the shared inode behind `fd` (whose `stat` is `st`; `path`
    /// names it in messages) by a copy of its own at the same place, and
    /// return an `O_PATH` handle on the copy.
    pub(super) fn unshare(
        &mut self,
        fd: BorrowedFd<'_>,
        path: &str,
        st: &Stat,
    ) -> Result<OwnedFd, Failed> {
        let fail = |this: &mut Self, e: Errno| {
            let m = format!(
                "Failed to replace {}, which has {} hard links, by a copy of its own: {}",
                this.show(path),
                st.st_nlink,
                errno_text(e)
            );
            this.error(m)
        };
        let Some(real) = self.real_path(fd) else {
            return Err(fail(self, Errno::XDEV));
        };
        let Some(name) = fs::file_name(&real).map(str::to_owned) else {
            return Err(fail(self, Errno::ISDIR));
        };
        let dir = self.open_parent(&real, false)?;
        // The name must still be the inode that was looked at.
        match fs::lstat_at(dir.as_fd(), &name) {
            Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => {}
            Ok(_) => return Err(fail(self, Errno::STALE)),
            Err(e) => return Err(fail(self, e)),
        }
        let tmp = crate::fsutil::tmp_name(".#tmpfiles-unshare");
        let made = copy_inode(dir.as_fd(), &name, st, &tmp)
            .and_then(|()| rfs::renameat(dir.as_fd(), tmp.as_str(), dir.as_fd(), name.as_str()));
        if let Err(e) = made {
            let _ = rfs::unlinkat(dir.as_fd(), tmp.as_str(), AtFlags::empty());
            return Err(fail(self, e));
        }
        let text = format!(
            "Replaced {}, which had {} hard links, by a copy of its own before changing it.",
            self.show(&real),
            st.st_nlink
        );
        self.log.done(Kind::Replaced, &real, text);
        rfs::openat(
            dir.as_fd(),
            name.as_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(self, e))
    }

    /// `fd` itself when its inode has one link, else a handle on a copy of
    /// its own put in its place (see [`Runner::unshare`]), with its `stat`.
    pub(super) fn own_inode(
        &mut self,
        fd: BorrowedFd<'_>,
        path: &str,
        st: Stat,
    ) -> Result<(Option<OwnedFd>, Stat), Failed> {
        if !shared(&st) {
            return Ok((None, st));
        }
        let new = self.unshare(fd, path, &st)?;
        let st = self.fstat_logged(&new, path)?;
        Ok((Some(new), st))
    }

    /// Reopen a copy made by [`Runner::own_inode`] for writing.
    pub(super) fn reopen_for_write(
        &mut self,
        fd: &OwnedFd,
        path: &str,
        flags: OFlags,
    ) -> Result<OwnedFd, Failed> {
        // Through /proc/self/fd: a magic link, which O_NOFOLLOW would refuse.
        fs::reopen(fd.as_fd(), flags & !OFlags::NOFOLLOW).map_err(|e| {
            let m = format!(
                "Failed to open file \"{}\": {}",
                self.show(path),
                errno_text(e)
            );
            self.error(m)
        })
    }
}
