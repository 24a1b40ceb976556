//! `C` lines: copy a tree inside the root the way systemd's
//! `copy_tree_at()` does with `COPY_MERGE_EMPTY | COPY_HARDLINKS`: owners
//! (or the line's), modes, access and modification times, `user.*` xattrs
//! and hard links are kept; an existing empty directory is filled, an
//! existing non-empty one is left alone.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use super::fs::{dir_name, file_name, file_type};
use crate::fsutil::Root;

struct Copier {
    uid: Option<u32>,
    gid: Option<u32>,
    /// First copy of each multiply-linked source inode: its directory and name.
    links: HashMap<(u64, u64), (OwnedFd, String)>,
}

/// Copy `src` (a path inside the root) to `to` in the directory `dt`.
pub fn copy_tree(
    root: &Root,
    src: &str,
    dt: BorrowedFd<'_>,
    to: &str,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(), Errno> {
    let io = |e: std::io::Error| Errno::from_io_error(&e).unwrap_or(Errno::IO);
    let parent = root
        .open(&dir_name(src), OFlags::PATH | OFlags::DIRECTORY, 0)
        .map_err(io)?;
    let name = file_name(src).unwrap_or(".");
    let st = rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let mut c = Copier {
        uid,
        gid,
        links: HashMap::new(),
    };
    c.copy(parent.as_fd(), name, &st, dt, to, 256)
}

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

fn copy_user_xattrs(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    let Ok(x) = crate::fsutil::fd_xattrs(from) else {
        return;
    };
    for (name, value) in &x {
        if name.starts_with(b"user.") {
            let _ = rfs::fsetxattr(to, name.as_slice(), value, rfs::XattrFlags::empty());
        }
    }
}

impl Copier {
    fn owner(&self, st: &Stat) -> (Option<rfs::Uid>, Option<rfs::Gid>) {
        (
            Some(rfs::Uid::from_raw(self.uid.unwrap_or(st.st_uid))),
            Some(rfs::Gid::from_raw(self.gid.unwrap_or(st.st_gid))),
        )
    }

    fn copy(
        &mut self,
        df: BorrowedFd<'_>,
        from: &str,
        st: &Stat,
        dt: BorrowedFd<'_>,
        to: &str,
        depth: u32,
    ) -> Result<(), Errno> {
        if depth == 0 {
            return Err(Errno::NAMETOOLONG);
        }
        let ft = file_type(st);
        if ft == FileType::Directory {
            return self.copy_dir(df, from, st, dt, to, depth);
        }
        let key = (st.st_dev, st.st_ino);
        if st.st_nlink > 1 {
            if let Some((d, n)) = self.links.get(&key) {
                return rfs::linkat(d, n.as_str(), dt, to, AtFlags::empty());
            }
        }
        let (uid, gid) = self.owner(st);
        let perm = Mode::from_raw_mode(st.st_mode & 0o7777);
        match ft {
            FileType::RegularFile => {
                let src = rfs::openat(
                    df,
                    from,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let dst = rfs::openat(
                    dt,
                    to,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                    perm,
                )?;
                let mut r = copy_data(&src, &dst);
                if let Err(e) = rfs::fchown(&dst, uid, gid) {
                    r = Err(e);
                }
                if let Err(e) = rfs::fchmod(&dst, perm) {
                    r = Err(e);
                }
                let _ = rfs::futimens(&dst, &times(st));
                copy_user_xattrs(src.as_fd(), dst.as_fd());
                r?;
            }
            FileType::Symlink => {
                let target = rfs::readlinkat(df, from, Vec::new())?;
                rfs::symlinkat(target.as_c_str(), dt, to)?;
                rfs::chownat(dt, to, uid, gid, AtFlags::SYMLINK_NOFOLLOW)?;
                let _ = rfs::utimensat(dt, to, &times(st), AtFlags::SYMLINK_NOFOLLOW);
            }
            _ => {
                let dev = if ft == FileType::Fifo { 0 } else { st.st_rdev };
                rfs::mknodat(dt, to, ft, perm, dev)?;
                rfs::chownat(dt, to, uid, gid, AtFlags::SYMLINK_NOFOLLOW)?;
                rfs::chmodat(dt, to, perm, AtFlags::empty())?;
                let _ = rfs::utimensat(dt, to, &times(st), AtFlags::SYMLINK_NOFOLLOW);
            }
        }
        if st.st_nlink > 1 {
            let d = rfs::openat(dt, ".", OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
            self.links.insert(key, (d, to.to_string()));
        }
        Ok(())
    }

    fn copy_dir(
        &mut self,
        df: BorrowedFd<'_>,
        from: &str,
        st: &Stat,
        dt: BorrowedFd<'_>,
        to: &str,
        depth: u32,
    ) -> Result<(), Errno> {
        let src = rfs::openat(
            df,
            from,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let exists = match rfs::openat(
            dt,
            to,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(d) => is_empty(&d)?,
            Err(Errno::NOENT) => false,
            Err(e) => return Err(e),
        };
        let created = if exists {
            false
        } else {
            rfs::mkdirat(dt, to, Mode::from_raw_mode(st.st_mode & 0o7777))?;
            true
        };
        let dst = rfs::openat(
            dt,
            to,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        let d = rfs::Dir::read_from(&src)?;
        for e in d {
            let n = e?.file_name().to_bytes().to_vec();
            if n != b"." && n != b".." {
                names.push(String::from_utf8_lossy(&n).into_owned());
            }
        }
        let mut r = Ok(());
        for n in names {
            let sub = match rfs::statat(&src, n.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(s) => s,
                Err(e) => {
                    r = Err(e);
                    continue;
                }
            };
            if let Err(e) = self.copy(src.as_fd(), &n, &sub, dst.as_fd(), &n, depth - 1) {
                r = Err(e);
            }
        }
        if created {
            let (uid, gid) = self.owner(st);
            if let Err(e) = rfs::fchown(&dst, uid, gid) {
                r = Err(e);
            }
            if let Err(e) = rfs::fchmod(&dst, Mode::from_raw_mode(st.st_mode & 0o7777)) {
                r = Err(e);
            }
            copy_user_xattrs(src.as_fd(), dst.as_fd());
            let _ = rfs::futimens(&dst, &times(st));
        }
        r
    }
}

fn is_empty(d: &OwnedFd) -> Result<bool, Errno> {
    let dir = rfs::Dir::read_from(d)?;
    for e in dir {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(super) fn copy_data(src: &OwnedFd, dst: &OwnedFd) -> Result<(), Errno> {
    loop {
        match rfs::copy_file_range(src, None, dst, None, 1 << 30) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL) => break,
            Err(e) => return Err(e),
        }
    }
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = rustix::io::read(src, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        crate::fsutil::write_all_fd(dst, &buf[..n])
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
    }
}
