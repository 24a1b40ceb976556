//! Paths resolved inside a root directory, never outside it.
//!
//! Every lookup goes through `openat2(2)` with `RESOLVE_IN_ROOT`: the kernel
//! resolves `..` and absolute symlinks as if the root were `/`, so a symlink
//! inside the root that points at `/etc/shadow` or climbs with `../..` lands
//! on the root's own file. Nothing outside the root is read, written or
//! removed through a [`Root`].

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};

/// An open root directory and the path it was opened from (for messages).
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Open `path` as the root of every later lookup.
    pub fn new(path: &Path) -> io::Result<Root> {
        let fd = super::open_dir(path)?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The directory this root was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's directory handle.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `path` (absolute inside the root) as a path on this machine, for
    /// messages: `ROOT/etc/passwd`.
    pub fn display(&self, path: &str) -> String {
        let rel = path.trim_start_matches('/');
        if self.path == Path::new("/") {
            format!("/{rel}")
        } else {
            format!(
                "{}/{rel}",
                self.path.display().to_string().trim_end_matches('/')
            )
        }
    }

    /// Open `path` inside the root. Symlinks are followed, confined to the
    /// root; magic links (`/proc/self/fd/N`) are refused.
    pub fn open(&self, path: &str, flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
        let rel = relative(path);
        Ok(rfs::openat2(
            &self.fd,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    /// Open a directory inside the root.
    pub fn open_dir(&self, path: &str) -> io::Result<OwnedFd> {
        self.open(path, OFlags::DIRECTORY | OFlags::RDONLY, 0)
    }

    /// `stat` of `path` inside the root, following symlinks inside it.
    pub fn stat(&self, path: &str) -> io::Result<rfs::Stat> {
        let fd = self.open(path, OFlags::PATH, 0)?;
        Ok(rfs::fstat(&fd)?)
    }

    /// Whether `path` exists inside the root (following symlinks).
    pub fn exists(&self, path: &str) -> bool {
        self.open(path, OFlags::PATH, 0).is_ok()
    }

    /// `lstat` of `path` inside the root: a final symlink is not followed.
    pub fn lstat(&self, path: &str) -> io::Result<rfs::Stat> {
        let rel = relative(path);
        match rel.rsplit_once('/') {
            _ if rel == "." => self.stat("/"),
            Some((dir, name)) if name != ".." => {
                let fd = self.open(dir, OFlags::PATH | OFlags::DIRECTORY, 0)?;
                Ok(rfs::statat(&fd, name, rfs::AtFlags::SYMLINK_NOFOLLOW)?)
            }
            None if rel != ".." => Ok(rfs::statat(&self.fd, rel, rfs::AtFlags::SYMLINK_NOFOLLOW)?),
            _ => self.stat(path),
        }
    }

    /// Whether `path` exists inside the root; a dangling symlink counts.
    pub fn exists_nofollow(&self, path: &str) -> bool {
        self.lstat(path).is_ok()
    }

    /// The whole content of the regular file at `path` inside the root.
    pub fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let fd = self.open(path, OFlags::RDONLY, 0)?;
        read_fd_to_end(&fd)
    }
}

/// Read a file descriptor to its end.
pub fn read_fd_to_end<Fd: AsFd>(fd: Fd) -> io::Result<Vec<u8>> {
    let fd = fd.as_fd();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// `path` made relative, so that `openat2` starts from the root handle;
/// the root itself becomes `.`.
fn relative(path: &str) -> &str {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        "."
    } else {
        rel
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let outer = tempfile::tempdir().expect("tempdir");
        std::fs::write(outer.path().join("secret"), b"outside").expect("write");
        let root_dir = outer.path().join("root");
        std::fs::create_dir_all(root_dir.join("etc")).expect("mkdir");
        std::fs::write(root_dir.join("secret"), b"inside").expect("write");
        symlink("/secret", root_dir.join("etc/abs")).expect("symlink");
        symlink("../../../../secret", root_dir.join("etc/climb")).expect("symlink");
        let root = Root::new(&root_dir).expect("open root");
        assert_eq!(root.read("/etc/abs").expect("abs"), b"inside");
        assert_eq!(root.read("etc/climb").expect("climb"), b"inside");
        assert_eq!(root.read("/../secret").expect("dotdot"), b"inside");
        assert!(root.exists("/etc"));
        assert!(!root.exists("/nope"));
        assert_eq!(
            root.display("/etc/passwd"),
            format!("{}/etc/passwd", root_dir.display())
        );
    }
}
