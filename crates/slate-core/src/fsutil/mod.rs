//! Filesystem helpers used by every layer: directory handles, atomic
//! replacement of small files, extended attributes, fixed timestamps.

mod at;
mod atomic;
mod inroot;
mod workdir;
mod xattr;

pub use at::{at, open_dir_long, set_xattrs_at, xattrs_at};
pub use atomic::{AtomicFile, Output};
pub use inroot::{read_fd_to_end, Root};
pub use workdir::{mounts_below, remove_stale, WorkDir};

pub use xattr::{fd_xattrs, path_xattrs, set_fd_xattrs, set_path_xattrs, RESERVED_XATTR};

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Timespec, Timestamps};

/// A path as text for messages: its bytes with `object::name`'s lossless
/// escape (a name that is not UTF-8 is shown, not altered).
pub fn show(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    crate::object::name::escape(path.as_os_str().as_bytes())
}

/// A byte path below `dir` as a path on this machine, for messages.
pub fn joined(dir: &Path, rel: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    if rel.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(std::ffi::OsStr::from_bytes(rel))
    }
}

/// Open a directory as a handle (`O_DIRECTORY | O_CLOEXEC`).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rfs::open(
        path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Open a directory relative to a handle, not following a final symlink.
pub fn open_dir_at<Fd: AsFd>(dir: Fd, name: &Path) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        dir,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?)
}

/// The timestamps every checked-out inode and stored object gets: the epoch.
pub fn zero_timestamps() -> Timestamps {
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: zero,
        last_modification: zero,
    }
}

/// Set atime and mtime of an open file to the epoch.
pub fn zero_times_fd<Fd: AsFd>(fd: Fd) -> io::Result<()> {
    Ok(rfs::futimens(fd, &zero_timestamps())?)
}

/// Set atime and mtime of `name` (not following symlinks) to the epoch.
pub fn zero_times_at<Fd: AsFd>(dir: Fd, name: &Path) -> io::Result<()> {
    Ok(rfs::utimensat(
        dir,
        name,
        &zero_timestamps(),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name for a temporary file that no other thread or process of this
/// machine picks at the same time.
pub fn tmp_name(prefix: &str) -> String {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}.{}.{n}.{nanos:x}", std::process::id())
}

/// Replace `dir/name` atomically with `data`: a temporary file in the same
/// directory, written and fsynced, renamed over the target, then the
/// directory fsynced. A crash leaves the old content or the new one.
pub fn atomic_write_at<Fd: AsFd>(dir: Fd, name: &str, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = dir.as_fd();
    let tmp = tmp_name(&format!(".{}", name.rsplit('/').next().unwrap_or(name)));
    let tmp_path = match name.rsplit_once('/') {
        Some((parent, _)) => format!("{parent}/{tmp}"),
        None => tmp,
    };
    let fd = rfs::openat(
        dir,
        tmp_path.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    let result = (|| -> io::Result<()> {
        write_all_fd(&fd, data)?;
        rfs::fsync(&fd)?;
        rfs::renameat(dir, tmp_path.as_str(), dir, name)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = rfs::unlinkat(dir, tmp_path.as_str(), AtFlags::empty());
        return Err(e);
    }
    match name.rsplit_once('/') {
        Some((parent, _)) => rfs::fsync(open_dir_at(dir, Path::new(parent))?)?,
        None => rfs::fsync(dir)?,
    }
    Ok(())
}

/// Write all of `data` to `fd`.
pub fn write_all_fd<Fd: AsFd>(fd: Fd, mut data: &[u8]) -> io::Result<()> {
    let fd = fd.as_fd();
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Read exactly `buf.len()` bytes, or fail with `UnexpectedEof`.
pub fn read_exact_fd<Fd: AsFd>(fd: Fd, mut buf: &mut [u8]) -> io::Result<()> {
    let fd = fd.as_fd();
    while !buf.is_empty() {
        match rustix::io::read(fd, &mut *buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shorter than its size",
                ))
            }
            Ok(n) => buf = &mut buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Create `path` and any missing parents below `dir` (like `mkdir -p`).
pub fn mkdir_p_at<Fd: AsFd>(dir: Fd, path: &str, mode: u32) -> io::Result<()> {
    let dir = dir.as_fd();
    let mut cur = String::new();
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        if !cur.is_empty() {
            cur.push('/');
        }
        cur.push_str(comp);
        match rfs::mkdirat(dir, cur.as_str(), Mode::from_raw_mode(mode)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The process umask, read from `/proc/self/status` (reading it with
/// `umask(2)` would change it for every thread for a moment; Slate never
/// changes it). `None` where `/proc` does not say.
pub fn process_umask() -> Option<u32> {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    })
}

/// The permission bits of `mode` that the umask takes from a new inode
/// (all of them when the umask is not known).
pub fn umask_loss(mode: u32) -> u32 {
    mode & 0o777 & process_umask().unwrap_or(0o777)
}

/// Whether the current process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().expect("tempdir");
        let fd = open_dir(d.path()).expect("open");
        atomic_write_at(&fd, "f", b"one", 0o644).expect("write");
        atomic_write_at(&fd, "f", b"two", 0o644).expect("write");
        assert_eq!(std::fs::read(d.path().join("f")).expect("read"), b"two");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(d.path()).expect("ls").count(), 1);
        mkdir_p_at(&fd, "a/b/c", 0o755).expect("mkdir");
        atomic_write_at(&fd, "a/b/c/g", b"x", 0o600).expect("nested");
        assert_eq!(std::fs::read(d.path().join("a/b/c/g")).expect("read"), b"x");
    }
}
