//! Working below a directory handle on paths of any length, and on
//! extended attributes of inodes that cannot be opened for reading
//! (symlinks, device nodes, fifos).
//!
//! A relative path given to `*at()` calls must be shorter than `PATH_MAX`.
//! A tree may be deeper than that: [`at`] hands longer paths over as a
//! handle on the parent directory, opened a piece at a time without
//! following symlinks, and the last name.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags, XattrFlags};

use crate::object::Xattrs;

/// Paths shorter than this are given to `*at()` calls whole.
const SHORT: usize = 3800;

/// Open the directory `rel` below `dir` (any length), refusing symlinks
/// on the way.
pub fn open_dir_long(dir: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
    let mut cur: Option<OwnedFd> = None;
    let mut rest = rel;
    loop {
        let (piece, tail) = split_piece(rest);
        let base = cur.as_ref().map_or(dir, |f| f.as_fd());
        let piece: &[u8] = if piece.is_empty() { b"." } else { piece };
        let fd = rfs::openat2(
            base,
            piece,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )?;
        cur = Some(fd);
        if tail.is_empty() {
            return Ok(cur.expect("set above"));
        }
        rest = tail;
    }
}

/// The longest leading piece of `rel` shorter than [`SHORT`] that ends at
/// a `/`, and the rest.
fn split_piece(rel: &[u8]) -> (&[u8], &[u8]) {
    if rel.len() < SHORT {
        return (rel, &[]);
    }
    match rel[..SHORT].iter().rposition(|&b| b == b'/') {
        Some(i) if i > 0 => (&rel[..i], &rel[i + 1..]),
        // One name cannot be longer than 255 bytes, so there is a slash.
        _ => (rel, &[]),
    }
}

/// Call `f` with a directory handle and a path below it that together name
/// `rel` below `dir`: `(dir, rel)` itself when `rel` is short, else a
/// handle on its parent and its last name.
pub fn at<R>(
    dir: BorrowedFd<'_>,
    rel: &[u8],
    f: impl FnOnce(BorrowedFd<'_>, &[u8]) -> io::Result<R>,
) -> io::Result<R> {
    if rel.len() < SHORT {
        let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
        return f(dir, rel);
    }
    let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[][..], rel),
    };
    let pfd = open_dir_long(dir, parent)?;
    f(pfd.as_fd(), name)
}

/// `/proc/self/fd/N` of a handle, through which the `*xattr()` calls reach
/// the inode of an `O_PATH` handle (a symlink's own, not its target's).
fn proc_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// An `O_PATH` handle on `name` below `dir`, not following a final symlink.
fn open_path(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The xattrs of `name` below `dir`, not following a final symlink.
pub fn xattrs_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Xattrs> {
    let fd = open_path(dir, name)?;
    super::xattr::followed_xattrs(std::path::Path::new(&proc_path(fd.as_fd())))
}

/// Set `xattrs` on `name` below `dir`, not following a final symlink.
pub fn set_xattrs_at(dir: BorrowedFd<'_>, name: &[u8], xattrs: &Xattrs) -> io::Result<()> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let fd = open_path(dir, name)?;
    let p = proc_path(fd.as_fd());
    for (k, v) in xattrs {
        rfs::setxattr(p.as_str(), k.as_slice(), v, XattrFlags::empty())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_reached_a_piece_at_a_time() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = super::super::open_dir(t.path()).expect("open");
        // 40 levels of 200-byte names: 8 KiB, twice PATH_MAX.
        let name = vec![b'd'; 200];
        let mut rel: Vec<u8> = Vec::new();
        for _ in 0..40 {
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&name);
            at(root.as_fd(), &rel, |d, n| {
                Ok(rfs::mkdirat(d, n, Mode::from_raw_mode(0o755))?)
            })
            .expect("mkdir below a long path");
        }
        let mut file = rel.clone();
        file.extend_from_slice(b"/f");
        at(root.as_fd(), &file, |d, n| {
            rfs::symlinkat("target", d, n)?;
            Ok(())
        })
        .expect("symlink");
        assert!(rfs::mkdirat(&root, file.as_slice(), Mode::from_raw_mode(0o755)).is_err());
        let dir = open_dir_long(root.as_fd(), &rel).expect("open the deepest");
        assert_eq!(
            rfs::readlinkat(&dir, "f", Vec::new())
                .expect("readlink")
                .as_bytes(),
            b"target"
        );
        // A symlink on the way is refused.
        std::os::unix::fs::symlink(t.path(), t.path().join("up")).expect("symlink");
        let mut through = b"up/".to_vec();
        through.extend_from_slice(&rel);
        assert!(open_dir_long(root.as_fd(), &through).is_err());
    }
}
