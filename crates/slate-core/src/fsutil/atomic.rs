//! Writing a file of any size atomically: into a temporary file beside
//! it, synced, then renamed over it, then the directory synced. A crash or
//! an error at any point leaves the old file or the new one, never a mix.
//!
//! [`Output`] decides how to write to a path a user named: a regular file
//! (or a new one) is replaced atomically, through a symlink if one is
//! given; a device node or fifo (`/dev/null`, a pipe) is written to as it
//! is, never replaced.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

/// A file being written under a temporary name, renamed over its target
/// by [`AtomicFile::commit`]; dropped before that, it leaves nothing.
pub struct AtomicFile {
    dir: OwnedFd,
    tmp: OsString,
    name: OsString,
    file: Option<std::fs::File>,
    target: PathBuf,
}

impl AtomicFile {
    /// Start writing `path`, whose new content gets `mode`.
    pub fn create(path: &Path, mode: u32) -> io::Result<AtomicFile> {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?
            .to_os_string();
        let dir = super::open_dir(parent)?;
        let mut tmp = b".".to_vec();
        tmp.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()));
        tmp.extend_from_slice(super::tmp_name(".tmp").as_bytes());
        let tmp = OsString::from_vec(tmp);
        let fd = rfs::openat(
            &dir,
            tmp.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        // The umask must not narrow the mode asked for.
        rfs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        Ok(AtomicFile {
            dir,
            tmp,
            name,
            file: Some(std::fs::File::from(fd)),
            target: path.to_path_buf(),
        })
    }

    /// The path that [`AtomicFile::commit`] replaces.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Sync the new content, rename it over the target, sync the directory.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take().expect("taken only here");
        file.sync_all()?;
        drop(file);
        rfs::renameat(
            &self.dir,
            self.tmp.as_os_str(),
            &self.dir,
            self.name.as_os_str(),
        )?;
        self.tmp.clear();
        rfs::fsync(&self.dir)?;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("present until commit").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("present until commit").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp.is_empty() {
            let _ = rfs::unlinkat(&self.dir, self.tmp.as_os_str(), AtFlags::empty());
        }
    }
}

/// Where a command's output goes when the user names a path (`-o PATH`).
pub enum Output {
    /// A regular file, new or replaced atomically when done.
    Replace(AtomicFile),
    /// A device node or fifo, written to as it is.
    Stream(std::fs::File),
}

impl Output {
    /// Open `path` for output: a regular file or a new path is replaced
    /// atomically (a symlink's target, when the path is a symlink); a
    /// character or block device or a fifo is written to directly. A
    /// directory, a socket, or a symlink to nothing is refused.
    pub fn open(path: &Path, mode: u32) -> io::Result<Output> {
        let refuse = |what: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} {what}", super::show(path)),
            ))
        };
        let st = match rfs::lstat(path) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => {
                return Ok(Output::Replace(AtomicFile::create(path, mode)?))
            }
            Err(e) => return Err(e.into()),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Ok(Output::Replace(AtomicFile::create(path, mode)?)),
            FileType::Symlink => match std::fs::canonicalize(path) {
                Ok(target) => Output::open(&target, mode),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    refuse("is a symlink to nothing: name its target's path instead")
                }
                Err(e) => Err(e),
            },
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                let fd = rfs::open(
                    path,
                    OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
                    Mode::empty(),
                )?;
                Ok(Output::Stream(std::fs::File::from(fd)))
            }
            FileType::Directory => refuse("is a directory"),
            _ => refuse("is a socket or another file that cannot be written to"),
        }
    }

    /// Finish: an atomic replacement is committed; a stream is flushed.
    pub fn finish(self) -> io::Result<()> {
        match self {
            Output::Replace(f) => f.commit(),
            Output::Stream(mut f) => f.flush(),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Replace(f) => f.write(buf),
            Output::Stream(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Replace(f) => f.flush(),
            Output::Stream(f) => f.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    #[test]
    fn replaces_files_and_writes_into_devices_and_fifos() {
        let t = tempfile::tempdir().expect("tempdir");
        let f = t.path().join("out");
        std::fs::write(&f, b"old").expect("write");
        let mut o = Output::open(&f, 0o644).expect("open");
        o.write_all(b"new").expect("write");
        // Nothing changes before it is finished.
        assert_eq!(std::fs::read(&f).expect("read"), b"old");
        o.finish().expect("finish");
        assert_eq!(std::fs::read(&f).expect("read"), b"new");
        assert_eq!(std::fs::read_dir(t.path()).expect("ls").count(), 1);
        // Dropped unfinished: the old file stays, no temporary is left.
        let mut o = Output::open(&f, 0o644).expect("open");
        o.write_all(b"half").expect("write");
        drop(o);
        assert_eq!(std::fs::read(&f).expect("read"), b"new");
        assert_eq!(std::fs::read_dir(t.path()).expect("ls").count(), 1);
        // Through a symlink: the target is replaced, the link stays.
        let l = t.path().join("link");
        std::os::unix::fs::symlink(&f, &l).expect("symlink");
        let mut o = Output::open(&l, 0o600).expect("open");
        o.write_all(b"via link").expect("write");
        o.finish().expect("finish");
        assert!(std::fs::symlink_metadata(&l).expect("lstat").is_symlink());
        assert_eq!(std::fs::read(&f).expect("read"), b"via link");
        assert_eq!(
            std::fs::metadata(&f).expect("stat").permissions().mode() & 0o777,
            0o600
        );
        // A fifo stays a fifo.
        let p = t.path().join("fifo");
        rfs::mkfifoat(rfs::CWD, &p, Mode::from_raw_mode(0o600)).expect("mkfifo");
        let reader = std::thread::spawn({
            let p = p.clone();
            move || std::fs::read(p).expect("read fifo")
        });
        let mut o = Output::open(&p, 0o644).expect("open fifo");
        o.write_all(b"piped").expect("write");
        o.finish().expect("finish");
        assert_eq!(reader.join().expect("reader"), b"piped");
        assert!(std::fs::symlink_metadata(&p)
            .expect("lstat")
            .file_type()
            .is_fifo());
        // /dev/null stays a device.
        let mut o = Output::open(Path::new("/dev/null"), 0o644).expect("open /dev/null");
        o.write_all(b"gone").expect("write");
        o.finish().expect("finish");
        assert!(std::fs::metadata("/dev/null")
            .expect("stat")
            .file_type()
            .is_char_device());
        // Refused: a directory, a dangling symlink.
        assert!(Output::open(t.path(), 0o644).is_err());
        let d = t.path().join("dangling");
        std::os::unix::fs::symlink(t.path().join("nothing"), &d).expect("symlink");
        let e = Output::open(&d, 0o644).err().expect("refused");
        assert!(e.to_string().contains("symlink to nothing"), "{e}");
    }
}
