//! Opening a source tree's files and directories for a commit: never
//! following a symlink, never blocking on a fifo, without touching access
//! times where the kernel allows it.

use std::ffi::OsStr;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{self as rfs, Mode, OFlags};

use super::Error;

pub(super) fn src_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Source {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn errno(path: &Path) -> impl Fn(rustix::io::Errno) -> Error + '_ {
    move |e| Error::Source {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Open flags for a source file: never follow a symlink, never block on a
/// fifo swapped in, never become a controlling terminal.
pub(super) fn file_flags() -> OFlags {
    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK
}

/// Open flags for a source directory.
pub(super) fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Whether `O_NOATIME` is still worth asking for. Reading a source must not
/// dirty its inodes (a freshly built tree would otherwise have every
/// inode's access time written back); the kernel allows the flag to the
/// files' owner and to root, and after its first refusal it is not asked
/// for again.
static NOATIME: AtomicBool = AtomicBool::new(true);

/// Open `name` below `dir` for reading with `flags`, adding `O_NOATIME`
/// where the kernel allows it.
pub(super) fn open_source(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: OFlags,
) -> rustix::io::Result<OwnedFd> {
    if NOATIME.load(Ordering::Relaxed) {
        match rfs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
            Err(rustix::io::Errno::PERM) => NOATIME.store(false, Ordering::Relaxed),
            r => return r,
        }
    }
    rfs::openat(dir, name, flags, Mode::empty())
}
