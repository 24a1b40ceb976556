//! Writing file objects in the three repository modes (reading: `files_read.rs`).
//!
//! - `bare`: the object is a real inode (regular file, symlink, device node
//!   or fifo) with the real owner, mode and xattrs.
//! - `bare-user`: the object is a regular file owned by the writer. When the
//!   inode can carry the metadata itself (a regular file with the writer's
//!   uid and gid, no xattrs) it does; otherwise the canonical header is
//!   kept in the `user.slate.meta` xattr and the inode gets a safe mode.
//! - `archive`: header bytes followed by one zstd frame of the content.
//!
//! Every stored object's mtime is the epoch, so hard-linked checkouts carry
//! the documented fixed timestamp.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, XattrFlags};
use rustix::io::Errno;

use super::readbuf;
use super::tmpobj::TmpObject;
use super::{Error, FileContent, Repo, RepoMode, Result, StoredFile, Transaction};
use crate::fsutil::{self, RESERVED_XATTR};
use crate::hash::ObjectId;
use crate::object::{FileHeader, FileKind, FileMeta, ObjectType};

use readbuf::SMALL_FILE;
const CHUNK: usize = 1 << 20;

struct FdReader<'a>(BorrowedFd<'a>);

impl Read for FdReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match rustix::io::read(self.0, &mut *buf) {
                Err(Errno::INTR) => continue,
                r => return r.map_err(Into::into),
            }
        }
    }
}

thread_local! {
    static ZSTD: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

/// The effective user and group, asked once per process (they are
/// compared for every file committed).
fn euid_egid() -> (u32, u32) {
    static IDS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )
    })
}

/// Whether a `bare-user` object can carry `meta` in its own inode.
fn bare_user_natural(meta: &FileMeta) -> bool {
    let (uid, gid) = euid_egid();
    meta.kind == FileKind::Regular
        && meta.xattrs.is_empty()
        && meta.uid == uid
        && meta.gid == gid
        && (uid == 0 || meta.mode & 0o400 != 0)
}

fn mode(m: u32) -> Mode {
    Mode::from_raw_mode(m)
}

impl Repo {
    /// zstd at `level`, with a compressor kept per thread.
    pub(crate) fn compress_level(&self, content: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
        ZSTD.with(|z| {
            let mut z = z.borrow_mut();
            if z.as_ref().is_none_or(|(l, _)| *l != level) {
                *z = Some((level, zstd::bulk::Compressor::new(level)?));
            }
            z.as_mut().expect("set above").1.compress(content)
        })
    }

    pub(crate) fn compress(&self, content: &[u8]) -> std::io::Result<Vec<u8>> {
        self.compress_level(content, self.compression_level)
    }
}

impl Transaction<'_> {
    /// Store a file object with metadata `meta` and `size` bytes of content.
    pub(crate) fn store_file(
        &self,
        meta: &FileMeta,
        size: u64,
        content: FileContent<'_>,
    ) -> Result<StoredFile> {
        let header = FileHeader {
            meta: meta.clone(),
            size,
        };
        if let (FileContent::Fd { fd, path }, Some(pw)) = (&content, self.pack()) {
            if size <= super::packwrite::PACKED_MAX {
                return self.defer_file(pw, &header, *fd, path);
            }
        }
        match content {
            FileContent::Bytes(b) => {
                if b.len() as u64 != size {
                    return Err(Error::Invalid(format!(
                        "content of {} bytes given for a size of {size}",
                        b.len()
                    )));
                }
                self.write_file_bytes(&header, b, b"")
            }
            // One byte more than expected, to see a file that grew.
            FileContent::Fd { fd, path } if size <= SMALL_FILE => {
                readbuf::with_buf(size as usize + 1, |buf| {
                    let n = readbuf::read_regular(fd, buf).map_err(|e| Error::io(path, e))?;
                    if n != size as usize {
                        return Err(Error::Invalid(format!(
                            "{}: file changed size while it was read ({size} bytes expected)",
                            path.display()
                        )));
                    }
                    self.write_file_bytes(&header, buf, name_of(path))
                })
            }
            FileContent::Reader { reader, path } if size <= SMALL_FILE => {
                readbuf::with_buf(size as usize, |buf| {
                    buf.resize(size as usize, 0);
                    reader
                        .read_exact(buf)
                        .map_err(|e| Error::from_io(path, e))?;
                    self.write_file_bytes(&header, buf, name_of(path))
                })
            }
            FileContent::Fd { fd, path } => {
                let st = self.write_file_stream(&header, &mut FdReader(fd), path)?;
                check_eof(fd, path)?;
                Ok(st)
            }
            FileContent::Reader { reader, path } => self.write_file_stream(&header, reader, path),
        }
    }

    /// Hash a regular file and leave it to the active pack to read again.
    fn defer_file(
        &self,
        pw: &super::packwrite::PackWriter,
        header: &FileHeader,
        fd: BorrowedFd<'_>,
        path: &Path,
    ) -> Result<StoredFile> {
        let size = header.size;
        let mut hasher = header.hasher();
        readbuf::with_buf(
            (size as usize).min(readbuf::KEPT_PER_THREAD - 1) + 1,
            |buf| -> Result<()> {
                let mut total = 0u64;
                loop {
                    buf.clear();
                    let n = readbuf::read_regular(fd, buf).map_err(|e| Error::io(path, e))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(buf);
                    total += n as u64;
                    if total > size {
                        break;
                    }
                }
                if total != size {
                    return Err(Error::Invalid(format!(
                        "{}: file changed size while it was read ({size} bytes expected)",
                        path.display()
                    )));
                }
                Ok(())
            },
        )?;
        let id = hasher.finish();
        if self.has_object(ObjectType::File, &id)? {
            return Ok(StoredFile { id, written: false });
        }
        let written = pw.defer(id, header.encode(), size, path.to_path_buf());
        Ok(StoredFile { id, written })
    }

    /// Store an object whose content is in memory. `name` (the file's name,
    /// or empty) picks the pack bucket in archive mode.
    fn write_file_bytes(
        &self,
        header: &FileHeader,
        content: &[u8],
        name: &[u8],
    ) -> Result<StoredFile> {
        let id = header.id_of(content);
        if self.has_object(ObjectType::File, &id)? {
            return Ok(StoredFile { id, written: false });
        }
        if let Some(pw) = self.pack() {
            let written = pw
                .add(
                    self.repo,
                    ObjectType::File,
                    id,
                    &header.encode(),
                    content,
                    super::packwrite::bucket_of(name),
                )
                .map_err(|e| Error::io(&self.repo.path.join("tmp"), e))?;
            return Ok(StoredFile { id, written });
        }
        let tmp = self.materialize(header, |fd| match self.repo.mode {
            RepoMode::Archive => {
                let mut out = header.encode();
                out.extend_from_slice(&self.repo.compress(content)?);
                fsutil::write_all_fd(fd, &out)
            }
            _ => fsutil::write_all_fd(fd, content),
        });
        let written = self.finish_tmp(tmp, &id)?;
        Ok(StoredFile { id, written })
    }

    fn write_file_stream(
        &self,
        header: &FileHeader,
        src: &mut dyn Read,
        path: &Path,
    ) -> Result<StoredFile> {
        let mut hasher = header.hasher();
        let mut src_err = None;
        let tmp = self.materialize(header, |fd| {
            let mut file = std::fs::File::from(fd.try_clone_to_owned()?);
            let mut enc = match self.repo.mode {
                RepoMode::Archive => {
                    file.write_all(&header.encode())?;
                    let mut e =
                        zstd::stream::Encoder::new(file.try_clone()?, self.repo.compression_level)?;
                    e.set_pledged_src_size(Some(header.size))?;
                    Some(e)
                }
                _ => None,
            };
            let mut chunk = vec![0u8; CHUNK];
            let mut left = header.size;
            while left > 0 {
                let n = (left as usize).min(CHUNK);
                if let Err(e) = src.read_exact(&mut chunk[..n]) {
                    let kind = e.kind();
                    src_err = Some(e);
                    return Err(std::io::Error::new(kind, "reading the source failed"));
                }
                hasher.update(&chunk[..n]);
                match enc.as_mut() {
                    Some(e) => e.write_all(&chunk[..n])?,
                    None => file.write_all(&chunk[..n])?,
                }
                left -= n as u64;
            }
            if let Some(e) = enc {
                e.finish()?;
            }
            Ok(())
        });
        if let Some(e) = src_err {
            return Err(Error::from_io(path, e));
        }
        let id = hasher.finish();
        if let Ok(t) = tmp {
            if self.has_object(ObjectType::File, &id)? {
                self.repo.drop_tmp(t);
                return Ok(StoredFile { id, written: false });
            }
            return self
                .finish_tmp(Ok(t), &id)
                .map(|written| StoredFile { id, written });
        }
        let written = self.finish_tmp(tmp, &id)?;
        Ok(StoredFile { id, written })
    }

    /// Link a finished object into place; `false` if it was there already.
    fn finish_tmp(&self, tmp: std::io::Result<TmpObject>, id: &ObjectId) -> Result<bool> {
        match tmp {
            Ok(t) => self.link(t, ObjectType::File, id),
            Err(e) => Err(Error::io(&self.repo.object_path(ObjectType::File, id), e)),
        }
    }

    /// Rename a finished special inode (bare mode) from `tmp/` into place.
    fn publish_special(&self, name: &str, res: std::io::Result<()>, id: &ObjectId) -> Result<()> {
        if let Err(e) = res {
            let _ = rfs::unlinkat(&self.repo.tmp, name, AtFlags::empty());
            return Err(Error::io(&self.repo.path.join("tmp").join(name), e));
        }
        self.publish(name, ObjectType::File, id)
    }

    /// Create a temporary regular file for the object, let `fill` write its
    /// bytes, then give it the mode's metadata. On error nothing is left.
    fn materialize<F>(&self, header: &FileHeader, fill: F) -> std::io::Result<TmpObject>
    where
        F: FnOnce(BorrowedFd<'_>) -> std::io::Result<()>,
    {
        let want = self.stored_mode(&header.meta);
        let (tmp, exact) = self.repo.create_tmp_mode(want)?;
        match self.fill_tmp(&tmp, header, fill, if exact { None } else { Some(want) }) {
            Ok(()) => Ok(tmp),
            Err(e) => {
                self.repo.drop_tmp(tmp);
                Err(e)
            }
        }
    }

    /// The permission bits of the inode that stores an object.
    fn stored_mode(&self, meta: &FileMeta) -> u32 {
        match self.repo.mode {
            RepoMode::Bare => meta.mode,
            RepoMode::BareUser if bare_user_natural(meta) => meta.mode,
            RepoMode::BareUser if meta.kind == FileKind::Regular => (meta.mode & 0o777) | 0o400,
            RepoMode::BareUser | RepoMode::Archive => 0o644,
        }
    }

    /// Write the content, then owner, xattrs, mode (`chmod` only when the
    /// inode was not created with it) and the fixed timestamps.
    fn fill_tmp<F>(
        &self,
        tmp: &TmpObject,
        header: &FileHeader,
        fill: F,
        chmod: Option<u32>,
    ) -> std::io::Result<()>
    where
        F: FnOnce(BorrowedFd<'_>) -> std::io::Result<()>,
    {
        let meta = &header.meta;
        let fd = tmp.fd();
        fill(fd)?;
        match self.repo.mode {
            RepoMode::Bare => {
                rfs::fchown(fd, Some(uid(meta.uid)), Some(gid(meta.gid)))?;
                fsutil::set_fd_xattrs(fd, &meta.xattrs)?;
            }
            RepoMode::BareUser if !bare_user_natural(meta) => {
                rfs::fsetxattr(fd, RESERVED_XATTR, &header.encode(), XattrFlags::empty())?;
            }
            _ => {}
        }
        // After fchown, which clears setuid and setgid.
        if let Some(m) = chmod {
            rfs::fchmod(fd, mode(m))?;
        }
        fsutil::zero_times_fd(fd)
    }

    fn materialize_bare_special(&self, name: &str, header: &FileHeader) -> std::io::Result<()> {
        let meta = &header.meta;
        let path = self.repo.path.join("tmp").join(name);
        match meta.kind {
            FileKind::Symlink => {
                return Err(std::io::Error::other(
                    "symlink objects are written by write_symlink",
                ));
            }
            FileKind::CharDevice | FileKind::BlockDevice => {
                let ft = if meta.kind == FileKind::CharDevice {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                rfs::mknodat(&self.repo.tmp, name, ft, mode(0o600), meta.rdev)?;
            }
            FileKind::Fifo => rfs::mkfifoat(&self.repo.tmp, name, mode(0o600))?,
            FileKind::Regular => unreachable!("regular files are handled by materialize"),
        }
        self.finish_special(&path, name, meta)
    }

    fn finish_special(&self, path: &Path, name: &str, meta: &FileMeta) -> std::io::Result<()> {
        rfs::chownat(
            &self.repo.tmp,
            name,
            Some(uid(meta.uid)),
            Some(gid(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        if meta.kind != FileKind::Symlink {
            rfs::chmodat(&self.repo.tmp, name, mode(meta.mode), AtFlags::empty())?;
        }
        fsutil::set_path_xattrs(path, &meta.xattrs)?;
        fsutil::zero_times_at(&self.repo.tmp, Path::new(name))
    }

    /// Store a symlink object whose target is `target`.
    pub(crate) fn store_symlink(&self, meta: &FileMeta, target: &[u8]) -> Result<StoredFile> {
        debug_assert_eq!(meta.kind, FileKind::Symlink);
        if self.repo.mode != RepoMode::Bare {
            return self.store_file(meta, target.len() as u64, FileContent::Bytes(target));
        }
        let header = FileHeader {
            meta: meta.clone(),
            size: target.len() as u64,
        };
        let id = header.id_of(target);
        if self.has_object(ObjectType::File, &id)? {
            return Ok(StoredFile { id, written: false });
        }
        let name = fsutil::tmp_name("link");
        let path = self.repo.path.join("tmp").join(&name);
        let res = (|| {
            rfs::symlinkat(target, &self.repo.tmp, name.as_str())?;
            self.finish_special(&path, &name, meta)
        })();
        self.publish_special(&name, res, &id)?;
        Ok(StoredFile { id, written: true })
    }

    /// Store a device node or fifo object.
    pub(crate) fn store_special(&self, meta: &FileMeta) -> Result<StoredFile> {
        if self.repo.mode != RepoMode::Bare {
            return self.store_file(meta, 0, FileContent::Bytes(&[]));
        }
        let header = FileHeader {
            meta: meta.clone(),
            size: 0,
        };
        let id = header.id_of(&[]);
        if self.has_object(ObjectType::File, &id)? {
            return Ok(StoredFile { id, written: false });
        }
        let name = fsutil::tmp_name("special");
        let res = self.materialize_bare_special(&name, &header);
        self.publish_special(&name, res, &id)?;
        Ok(StoredFile { id, written: true })
    }
}

/// The file-name part of a path, as bytes.
fn name_of(path: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    path.file_name().map(|n| n.as_bytes()).unwrap_or(b"")
}

fn check_eof(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let mut one = [0u8; 1];
    match rustix::io::read(fd, &mut one) {
        Ok(0) => Ok(()),
        Ok(_) => Err(Error::Invalid(format!(
            "{}: file grew while it was read",
            path.display()
        ))),
        Err(e) => Err(Error::io(path, e.into())),
    }
}

fn uid(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}
fn gid(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}
