//! Files read and written inside the machine's root (a `Root`: every
//! symlink resolved as if the root were `/`, never leaving it). A kept
//! path may be a link (`/etc/ssh/ssh_host_*` → `/var/lib/slate/ssh/…`,
//! made by tmpfiles): it is followed, inside the root, to the file it
//! names, and that file is replaced atomically (a temporary file beside
//! it, owner and mode set, fsynced, renamed over it, the directory
//! fsynced): complete or absent, never half written.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use slate_core::fsutil::{self, Root};

/// A kept file as found on the machine.
pub struct Local {
    pub content: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The regular file at `path` (links followed inside the root), no more
/// than `max` bytes; None when absent (a dangling link counts).
pub fn read(root: &Root, path: &str, max: u64) -> io::Result<Option<Local>> {
    let fd = match root.open(path, OFlags::RDONLY | OFlags::NONBLOCK, 0) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = rfs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    if st.st_size as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} bytes, more than the server keeps ({max})", st.st_size),
        ));
    }
    let content = fsutil::read_fd_to_end(&fd)?;
    Ok(Some(Local {
        content,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
    }))
}

/// The names in directory `dir` of the root (none if it is missing).
pub fn list(root: &Root, dir: &str) -> io::Result<Vec<String>> {
    let fd = match root.open_dir(dir) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(&fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if let Ok(n) = std::str::from_utf8(name) {
            names.push(n.to_string());
        }
    }
    names.sort();
    Ok(names)
}

fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => ("/", path),
    }
}

/// `mkdir -p` inside the root: each component made below its parent,
/// opened inside the root.
fn mkdir_in_root(root: &Root, dir: &str) -> io::Result<OwnedFd> {
    let mut cur = String::new();
    for comp in dir.split('/').filter(|c| !c.is_empty()) {
        let parent = root.open_dir(if cur.is_empty() { "/" } else { &cur })?;
        match rfs::mkdirat(&parent, comp, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        cur.push('/');
        cur.push_str(comp);
    }
    root.open_dir(dir)
}

/// The directory and name a write of `path` lands on: its links followed
/// inside the root (at most 16), missing directories made.
fn target(root: &Root, path: &str) -> io::Result<(OwnedFd, String, String)> {
    let mut cur = path.to_string();
    for _ in 0..16 {
        let (dir, name) = split(&cur);
        if name.is_empty() || name == "." || name == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{cur}: a link to a directory"),
            ));
        }
        let dfd = match root.open_dir(dir) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => mkdir_in_root(root, dir)?,
            Err(e) => return Err(e),
        };
        match rfs::statat(&dfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                let link = rfs::readlinkat(&dfd, name, Vec::new())?;
                let link = link.to_str().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "a link that is not UTF-8")
                })?;
                cur = if link.starts_with('/') {
                    link.to_string()
                } else {
                    format!("{}/{link}", dir.trim_end_matches('/'))
                };
            }
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                return Ok((dfd, name.to_string(), cur));
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{cur}: not a regular file"),
                ))
            }
            Err(rustix::io::Errno::NOENT) => return Ok((dfd, name.to_string(), cur)),
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{path}: more than 16 links"),
    ))
}

/// Write `path` (its links followed inside the root) atomically, with
/// its owner and mode. Where it landed, inside the root.
pub fn write(root: &Root, path: &str, f: &Local) -> io::Result<String> {
    let (dir, name, landed) = target(root, path)?;
    let tmp = fsutil::tmp_name(&format!(".{name}"));
    let fd = rfs::openat(
        &dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )?;
    let result = (|| -> io::Result<()> {
        fsutil::write_all_fd(&fd, &f.content)?;
        let st = rfs::fstat(&fd)?;
        if st.st_uid != f.uid || st.st_gid != f.gid {
            rfs::fchown(
                &fd,
                Some(rfs::Uid::from_raw(f.uid)),
                Some(rfs::Gid::from_raw(f.gid)),
            )?;
        }
        rfs::fchmod(&fd, Mode::from_raw_mode(f.mode))?;
        rfs::fsync(&fd)?;
        rfs::renameat(&dir, tmp.as_str(), &dir, name.as_str())?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = rfs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        return Err(e);
    }
    rfs::fsync(dir.as_fd())?;
    Ok(landed)
}
