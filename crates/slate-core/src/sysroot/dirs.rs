//! The sysroot's directories as handles. Every write of `sysroot` goes
//! below a [`Dir`], opened from the sysroot's handle (or the boot
//! directory's) without following a symlink anywhere on the way: a disk
//! given with `--sysroot` may hold a symlink where a directory belongs
//! (`slate/state/OS/var -> /home`), and that is refused, never followed.
//! Removal, renames and record writes are `*at()` calls on the handle;
//! inside a tree being removed, no symlink is followed either.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags};
use rustix::io::Errno;

use super::{Error, Result};
use crate::fsutil::{self, show};

/// An open directory of the sysroot, and its path (for messages, and for
/// the library calls that take a path below a directory checked here).
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// The error of a symlink (or a file) where a directory is expected.
pub(crate) fn not_a_dir(path: &Path) -> Error {
    Error::Refused(format!(
        "{}: not a directory (a symlink or another file where the sysroot has a \
         directory): refused, nothing is written through it",
        show(path)
    ))
}

fn map_err(path: &Path, e: Errno) -> Error {
    match e {
        Errno::LOOP | Errno::NOTDIR | Errno::XDEV => not_a_dir(path),
        e => Error::Io {
            path: path.to_path_buf(),
            source: e.into(),
        },
    }
}

/// Whether an error is "no such file or directory".
pub(crate) fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

impl Dir {
    /// Open `base_path` itself (a directory the caller named, symlinks in
    /// its path followed: it is the caller's choice).
    pub(crate) fn open_named(path: &Path) -> Result<Dir> {
        let fd = fsutil::open_dir(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// A handle opened elsewhere, with its path.
    pub(crate) fn from_fd(fd: OwnedFd, path: PathBuf) -> Dir {
        Dir { fd, path }
    }

    /// A handle on the same directory.
    pub(crate) fn try_clone(&self) -> Result<Dir> {
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| super::io_err(&self.path)(e))?;
        Ok(Dir {
            fd,
            path: self.path.clone(),
        })
    }

    /// `rel` below this directory, no symlink followed and no `..`
    /// climbing out.
    pub(crate) fn open_rel(&self, rel: &Path) -> Result<Dir> {
        let path = self.path.join(rel);
        if rel.as_os_str().is_empty() {
            return self.try_clone();
        }
        let fd = rfs::openat2(
            &self.fd,
            rel,
            DIR_FLAGS,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| map_err(&path, e))?;
        Ok(Dir { fd, path })
    }

    /// `rel` below this directory, the missing directories made (mode
    /// 0755), none of them a symlink.
    pub(crate) fn create_rel(&self, rel: &Path) -> Result<Dir> {
        let mut cur = self.try_clone()?;
        for c in rel.components() {
            let std::path::Component::Normal(name) = c else {
                return Err(Error::Refused(format!(
                    "{}: not a plain path below {}",
                    show(rel),
                    show(&self.path)
                )));
            };
            cur = cur.sub_create(name)?;
        }
        Ok(cur)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The path of `name` in this directory.
    pub(crate) fn join(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    /// The directory `name` in this one (not a symlink).
    pub(crate) fn sub(&self, name: impl AsRef<OsStr>) -> Result<Dir> {
        let name = name.as_ref();
        let path = self.join(name);
        let fd =
            rfs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()).map_err(|e| map_err(&path, e))?;
        Ok(Dir { fd, path })
    }

    /// The directory `name` in this one, made if missing.
    pub(crate) fn sub_create(&self, name: impl AsRef<OsStr>) -> Result<Dir> {
        let name = name.as_ref();
        match rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(map_err(&self.join(name), e)),
        }
        self.sub(name)
    }

    /// What `name` is (a symlink is not followed); `None` when absent.
    pub(crate) fn kind(&self, name: impl AsRef<OsStr>) -> Result<Option<FileType>> {
        let name = name.as_ref();
        match rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(map_err(&self.join(name), e)),
        }
    }

    /// The content of the regular file `name` (not through a symlink);
    /// `None` when absent.
    pub(crate) fn read(&self, name: impl AsRef<OsStr>) -> Result<Option<Vec<u8>>> {
        let name = name.as_ref();
        let path = self.join(name);
        let fd = match rfs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => {
                return Err(Error::Refused(format!(
                    "{}: a symlink where a file is expected: refused",
                    show(&path)
                )))
            }
            Err(e) => return Err(map_err(&path, e)),
        };
        let st = rfs::fstat(&fd).map_err(|e| map_err(&path, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(Error::Refused(format!(
                "{}: not a regular file: refused",
                show(&path)
            )));
        }
        fsutil::read_fd_to_end(&fd)
            .map(Some)
            .map_err(super::io_err(&path))
    }

    /// Replace `name` with `data`, atomically (temporary file, fsync,
    /// rename, directory fsync).
    pub(crate) fn write(&self, name: &str, data: &[u8], mode: u32) -> Result<()> {
        fsutil::atomic_write_at(&self.fd, name, data, mode).map_err(super::io_err(&self.join(name)))
    }

    /// Remove the file (or symlink) `name`; absent is fine. Returns
    /// whether it was there.
    pub(crate) fn remove_file(&self, name: impl AsRef<OsStr>) -> Result<bool> {
        let name = name.as_ref();
        match rfs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(map_err(&self.join(name), e)),
        }
    }

    /// Remove `name` whatever it is, a directory with all it holds; a
    /// symlink is removed, never followed. Absent is fine.
    pub(crate) fn remove_tree(&self, name: impl AsRef<OsStr>) -> Result<()> {
        let name = name.as_ref();
        remove_at(self.fd(), name).map_err(|e| map_err(&self.join(name), e))
    }

    /// Remove everything in this directory.
    pub(crate) fn empty(&self) -> Result<()> {
        empty_dir(self.fd()).map_err(|e| map_err(&self.path, e))
    }

    /// Rename `from` to `to`, both in this directory.
    pub(crate) fn rename(&self, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) -> Result<()> {
        rfs::renameat(&self.fd, from.as_ref(), &self.fd, to.as_ref())
            .map_err(|e| map_err(&self.join(to.as_ref()), e))
    }

    /// Exchange `a` and `b` (both in this directory) in one step.
    pub(crate) fn exchange(&self, a: impl AsRef<OsStr>, b: impl AsRef<OsStr>) -> Result<()> {
        rfs::renameat_with(
            &self.fd,
            a.as_ref(),
            &self.fd,
            b.as_ref(),
            RenameFlags::EXCHANGE,
        )
        .map_err(|e| map_err(&self.join(b.as_ref()), e))
    }

    /// Exchange `a` of this directory with `b` of `other` in one step
    /// (both on one file system).
    pub(crate) fn exchange_with(
        &self,
        a: impl AsRef<OsStr>,
        other: &Dir,
        b: impl AsRef<OsStr>,
    ) -> Result<()> {
        rfs::renameat_with(
            &self.fd,
            a.as_ref(),
            &other.fd,
            b.as_ref(),
            RenameFlags::EXCHANGE,
        )
        .map_err(|e| map_err(&other.join(b.as_ref()), e))
    }

    /// Move `a` of this directory to `b` of `other` (no file there).
    pub(crate) fn rename_to(
        &self,
        a: impl AsRef<OsStr>,
        other: &Dir,
        b: impl AsRef<OsStr>,
    ) -> Result<()> {
        rfs::renameat_with(
            &self.fd,
            a.as_ref(),
            &other.fd,
            b.as_ref(),
            RenameFlags::NOREPLACE,
        )
        .map_err(|e| map_err(&other.join(b.as_ref()), e))
    }

    /// The names in this directory with their types (a symlink is one).
    pub(crate) fn entries(&self) -> Result<Vec<(OsString, FileType)>> {
        list(self.fd()).map_err(|e| map_err(&self.path, e))
    }

    pub(crate) fn sync(&self) -> Result<()> {
        rfs::fsync(&self.fd).map_err(|e| map_err(&self.path, e))
    }
}

/// The entries of a directory (without `.` and `..`), with their types
/// (asked of the file system where `readdir` does not say).
fn list(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<(OsString, FileType)>> {
    let mut out = Vec::new();
    for ent in rfs::Dir::read_from(dir)? {
        let ent = ent?;
        let name = ent.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsStr::from_bytes(name).to_os_string();
        let ft = match ent.file_type() {
            FileType::Unknown => match rfs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileType::from_raw_mode(st.st_mode),
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e),
            },
            t => t,
        };
        out.push((name, ft));
    }
    Ok(out)
}

fn empty_dir(dir: BorrowedFd<'_>) -> rustix::io::Result<()> {
    for (name, _) in list(dir)? {
        remove_at(dir, &name)?;
    }
    Ok(())
}

fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        // A directory (Linux says EISDIR; POSIX allows EPERM).
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e),
    }
    let sub = match rfs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    empty_dir(sub.as_fd())?;
    drop(sub);
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_are_refused_and_never_followed() {
        let t = tempfile::tempdir().expect("tempdir");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(outside.join("keep")).expect("mkdir");
        std::fs::write(outside.join("keep/f"), b"x").expect("write");
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        symlink(&outside, root.join("a/link")).expect("symlink");
        symlink(&outside, root.join("a/b/inner")).expect("symlink");
        std::fs::write(root.join("a/b/file"), b"y").expect("write");
        let d = Dir::open_named(&root).expect("open");
        assert!(matches!(
            d.open_rel(Path::new("a/link")),
            Err(Error::Refused(_))
        ));
        assert!(matches!(
            d.open_rel(Path::new("a/link/keep")),
            Err(Error::Refused(_))
        ));
        assert!(matches!(
            d.open_rel(Path::new("a/../../outside")),
            Err(Error::Refused(_))
        ));
        assert!(matches!(
            d.create_rel(Path::new("a/link/new")),
            Err(Error::Refused(_))
        ));
        let a = d.open_rel(Path::new("a")).expect("a");
        assert!(matches!(a.sub("link"), Err(Error::Refused(_))));
        // Removing a tree removes the symlinks in it, not what they name.
        a.remove_tree("b").expect("remove b");
        a.remove_tree("link").expect("remove link");
        assert!(!root.join("a/b").exists());
        assert!(std::fs::symlink_metadata(root.join("a/link")).is_err());
        assert_eq!(std::fs::read(outside.join("keep/f")).expect("kept"), b"x");
        a.remove_tree("absent").expect("absent is fine");
        assert_eq!(d.kind("a").expect("kind"), Some(FileType::Directory));
        assert!(d.kind("none").expect("kind").is_none());
    }
}
