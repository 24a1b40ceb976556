//! Extended attributes through `rustix`: list and read them all, set them all.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs as rfs;
use rustix::fs::XattrFlags;
use rustix::io::Errno;

use crate::object::Xattrs;

/// The xattr that `bare-user` repositories use for metadata; never taken
/// from a source tree.
pub const RESERVED_XATTR: &[u8] = b"user.slate.meta";

fn split_names(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == 0).filter(|n| !n.is_empty())
}

fn collect<L, G>(list: L, get: G) -> io::Result<Xattrs>
where
    L: Fn(&mut [u8]) -> Result<usize, Errno>,
    G: Fn(&[u8], &mut [u8]) -> Result<usize, Errno>,
{
    let mut names = vec![0u8; 256];
    let n = loop {
        match list(&mut names) {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let want = list(&mut [])?;
                names.resize(want.max(names.len() * 2), 0);
            }
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    names.truncate(n);
    let mut out = Xattrs::new();
    let mut val = vec![0u8; 256];
    for name in split_names(&names) {
        if name == RESERVED_XATTR {
            continue;
        }
        let len = loop {
            match get(name, &mut val) {
                Ok(len) => break len,
                Err(Errno::RANGE) => {
                    let want = get(name, &mut [])?;
                    val.resize(want.max(val.len() * 2), 0);
                }
                Err(e) => return Err(e.into()),
            }
        };
        out.push((name.to_vec(), val[..len].to_vec()));
    }
    out.sort();
    Ok(out)
}

/// All xattrs of an open file or directory, sorted, without the reserved one.
pub fn fd_xattrs<Fd: AsFd>(fd: Fd) -> io::Result<Xattrs> {
    let fd = fd.as_fd();
    collect(|b| rfs::flistxattr(fd, b), |n, b| rfs::fgetxattr(fd, n, b))
}

/// All xattrs of `path`, not following a final symlink.
pub fn path_xattrs(path: &Path) -> io::Result<Xattrs> {
    collect(
        |b| rfs::llistxattr(path, b),
        |n, b| rfs::lgetxattr(path, n, b),
    )
}

/// All xattrs of what `path` resolves to, following symlinks (for
/// `/proc/self/fd/N` of an `O_PATH` handle, the handle's own inode).
pub(super) fn followed_xattrs(path: &Path) -> io::Result<Xattrs> {
    collect(
        |b| rfs::listxattr(path, b),
        |n, b| rfs::getxattr(path, n, b),
    )
}

pub fn set_fd_xattrs<Fd: AsFd>(fd: Fd, x: &Xattrs) -> io::Result<()> {
    let fd = fd.as_fd();
    for (k, v) in x {
        rfs::fsetxattr(fd, k.as_slice(), v, XattrFlags::empty())?;
    }
    Ok(())
}

/// Set xattrs on `path`, not following a final symlink.
pub fn set_path_xattrs(path: &Path, x: &Xattrs) -> io::Result<()> {
    for (k, v) in x {
        rfs::lsetxattr(path, k.as_slice(), v, XattrFlags::empty())?;
    }
    Ok(())
}
