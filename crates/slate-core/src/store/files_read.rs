//! Reading file objects in the three modes: headers, content as a
//! checked stream, and what a checkout needs to hard-link.

use std::io::{Cursor, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::{Error, FileStream, Repo, RepoMode, Result};
use crate::fsutil::{self, RESERVED_XATTR};
use crate::hash::ObjectId;
use crate::object::{FileHeader, FileKind, FileMeta, ObjectType};

/// What joins a repository's path and an object's name.
const OBJECTS: &[u8] = b"/objects/";

/// The largest header a file object may have (its xattrs included).
const MAX_HEADER: usize = 16 << 20;

/// Read a file object's header from the start of `r`; returns it and the
/// bytes read past it.
fn read_header(r: &mut dyn Read, id: &ObjectId, path: &Path) -> Result<(FileHeader, Vec<u8>)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = 4096usize;
    loop {
        let start = buf.len();
        buf.resize(start + chunk, 0);
        let n = loop {
            match r.read(&mut buf[start..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r.map_err(|e| Error::from_io(path, e))?,
            }
        };
        buf.truncate(start + n);
        match FileHeader::decode_prefix(&buf) {
            Ok((h, used)) => return Ok((h, buf.split_off(used))),
            Err(e) if e.is_truncated() && n > 0 && buf.len() < MAX_HEADER => {
                chunk = (chunk * 2).min(1 << 20);
            }
            Err(source) => {
                return Err(Error::Decode {
                    kind: ObjectType::File,
                    id: *id,
                    source,
                })
            }
        }
    }
}

/// A packed file object from a reader of its canonical bytes (from any
/// source: a pack on disk, a pack's range fetched over HTTP): its header,
/// and a reader of its content. Nothing is checked against the id yet:
/// a [`FileStream`] checks the content as it is read.
pub fn decode_packed_file<'r>(
    mut canonical: Box<dyn Read + Send + 'r>,
    id: &ObjectId,
    path: &Path,
) -> Result<(FileHeader, Box<dyn Read + Send + 'r>)> {
    let (h, rest) = read_header(&mut canonical, id, path)?;
    Ok((h, Box::new(Cursor::new(rest).chain(canonical))))
}

/// A loose file object of an archive repository (its header, then its
/// content in one zstd frame) from any byte source (a file of the
/// repository, a file fetched over HTTP): its header, and a reader of its
/// content, decompressed as it is read. Nothing is checked against the id
/// yet: a [`FileStream`] reads no more than the header's size and checks
/// the content as it is read.
pub fn decode_loose_file<'r>(
    mut stored: Box<dyn Read + Send + 'r>,
    id: &ObjectId,
    path: &Path,
) -> Result<(FileHeader, Box<dyn Read + Send + 'r>)> {
    let (h, rest) = read_header(&mut stored, id, path)?;
    let dec = zstd::stream::read::Decoder::new(Cursor::new(rest).chain(stored)).map_err(|e| {
        Error::Corrupt {
            kind: ObjectType::File,
            id: *id,
            detail: format!("zstd: {e}"),
        }
    })?;
    Ok((h, Box::new(dec)))
}

impl Repo {
    /// Header and a reader of the content of an archive-mode object, loose
    /// (header, then one zstd frame) or packed (header and content in a
    /// frame of the pack); not yet checked against the id.
    fn archive_parts(&self, id: &ObjectId) -> Result<(FileHeader, Box<dyn Read + Send>, PathBuf)> {
        if let Some((pack, e)) = self.find_packed(id)? {
            let path = self.pack_dir().join(format!("{}.pack", pack.name));
            let (h, r) = decode_packed_file(self.packed_reader(&pack, &e)?, id, &path)?;
            return Ok((h, r, path));
        }
        let path = self.object_path(ObjectType::File, id);
        let f = std::fs::File::from(self.open_object(id)?);
        let (h, r) = decode_loose_file(Box::new(f), id, &path)?;
        Ok((h, r, path))
    }

    fn open_object(&self, id: &ObjectId) -> Result<OwnedFd> {
        let rel = super::objects::rel_path(ObjectType::File, id);
        match rfs::openat(
            self.objects_fd(),
            rel.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(fd),
            Err(Errno::NOENT) => Err(Error::Missing {
                kind: ObjectType::File,
                id: *id,
            }),
            Err(e) => Err(Error::io(&self.object_path(ObjectType::File, id), e.into())),
        }
    }

    fn stat_object(&self, id: &ObjectId) -> Result<rfs::Stat> {
        let rel = super::objects::rel_path(ObjectType::File, id);
        match rfs::statat(self.objects_fd(), rel.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(st),
            Err(Errno::NOENT) => Err(Error::Missing {
                kind: ObjectType::File,
                id: *id,
            }),
            Err(e) => Err(Error::io(&self.object_path(ObjectType::File, id), e.into())),
        }
    }

    /// A file object's header (metadata and size), without reading or
    /// checking its content.
    pub(crate) fn header_of(&self, id: &ObjectId) -> Result<FileHeader> {
        match self.mode {
            RepoMode::Archive => {
                if let Some((pack, e)) = self.find_packed(id)? {
                    if super::packread::frame_is_small(&e) {
                        if let Some(h) = self.packed_header(&pack, &e)? {
                            return Ok(h);
                        }
                    }
                }
                self.archive_parts(id).map(|(h, _, _)| h)
            }
            RepoMode::BareUser => {
                let fd = self.open_object(id)?;
                self.bare_user_header(id, &fd, &self.object_path(ObjectType::File, id))
            }
            RepoMode::Bare => self.bare_header(id),
        }
    }

    fn bare_header(&self, id: &ObjectId) -> Result<FileHeader> {
        let path = self.object_path(ObjectType::File, id);
        let st = self.stat_object(id)?;
        let kind = FileKind::from_st_mode(st.st_mode).ok_or_else(|| Error::Corrupt {
            kind: ObjectType::File,
            id: *id,
            detail: format!("unexpected inode type {:o}", st.st_mode),
        })?;
        let xattrs = fsutil::path_xattrs(&path).map_err(|e| Error::io(&path, e))?;
        let rdev = if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) {
            st.st_rdev
        } else {
            0
        };
        let size = if matches!(kind, FileKind::Regular | FileKind::Symlink) {
            st.st_size as u64
        } else {
            0
        };
        Ok(FileHeader {
            meta: FileMeta {
                kind,
                mode: st.st_mode & 0o7777,
                uid: st.st_uid,
                gid: st.st_gid,
                rdev,
                xattrs,
            },
            size,
        })
    }

    fn bare_user_header(&self, id: &ObjectId, fd: &OwnedFd, path: &Path) -> Result<FileHeader> {
        let mut buf = vec![0u8; 512];
        let got = match rfs::fgetxattr(fd, RESERVED_XATTR, &mut buf) {
            Ok(n) => Some(n),
            Err(Errno::RANGE) => {
                let n = rfs::fgetxattr_query(fd, RESERVED_XATTR)
                    .map_err(|e| Error::io(path, e.into()))?;
                buf.resize(n, 0);
                Some(
                    rfs::fgetxattr(fd, RESERVED_XATTR, &mut buf)
                        .map_err(|e| Error::io(path, e.into()))?,
                )
            }
            Err(Errno::NODATA) => None,
            Err(e) => return Err(Error::io(path, e.into())),
        };
        let st = rfs::fstat(fd).map_err(|e| Error::io(path, e.into()))?;
        match got {
            Some(n) => {
                let h = FileHeader::decode(&buf[..n]).map_err(|source| Error::Decode {
                    kind: ObjectType::File,
                    id: *id,
                    source,
                })?;
                if h.size != st.st_size as u64 {
                    return Err(Error::Corrupt {
                        kind: ObjectType::File,
                        id: *id,
                        detail: format!("stored {} bytes, header says {}", st.st_size, h.size),
                    });
                }
                Ok(h)
            }
            None => Ok(FileHeader {
                meta: FileMeta {
                    kind: FileKind::Regular,
                    mode: st.st_mode & 0o7777,
                    uid: st.st_uid,
                    gid: st.st_gid,
                    rdev: 0,
                    xattrs: Vec::new(),
                },
                size: st.st_size as u64,
            }),
        }
    }

    /// A file object's content as a stream checked against its id.
    pub(crate) fn stream_file(&self, id: &ObjectId) -> Result<FileStream<'_>> {
        let path = self.object_path(ObjectType::File, id);
        let (header, inner, path): (FileHeader, Box<dyn Read + Send>, PathBuf) = match self.mode {
            RepoMode::Archive => self.archive_parts(id)?,
            RepoMode::BareUser => {
                let fd = self.open_object(id)?;
                let h = self.bare_user_header(id, &fd, &path)?;
                (h, Box::new(std::fs::File::from(fd)), path)
            }
            RepoMode::Bare => {
                let h = self.bare_header(id)?;
                let inner: Box<dyn Read + Send> = match h.meta.kind {
                    FileKind::Regular => Box::new(std::fs::File::from(self.open_object(id)?)),
                    FileKind::Symlink => {
                        let rel = super::objects::rel_path(ObjectType::File, id);
                        let target = rfs::readlinkat(self.objects_fd(), rel.as_str(), Vec::new())
                            .map_err(|e| Error::io(&path, e.into()))?;
                        Box::new(Cursor::new(target.into_bytes()))
                    }
                    _ => Box::new(std::io::empty()),
                };
                (h, inner, path)
            }
        };
        FileStream::new(*id, header, inner, &path)
    }

    /// Whether a hard link to the stored object gives a checkout every
    /// attribute of the committed file.
    pub fn object_linkable(&self, id: &ObjectId) -> Result<bool> {
        match self.mode {
            RepoMode::Archive => Ok(false),
            RepoMode::Bare => Ok(true),
            RepoMode::BareUser => {
                // The path is built on the stack when it is short: a
                // checkout asks this of every file, from several threads.
                let rel = super::objects::rel_path(ObjectType::File, id);
                let base = self.path.as_os_str().as_bytes();
                let mut buf = [0u8; 240];
                let len = base.len() + OBJECTS.len() + rel.len();
                let asked = if len <= buf.len() {
                    buf[..base.len()].copy_from_slice(base);
                    buf[base.len()..base.len() + OBJECTS.len()].copy_from_slice(OBJECTS);
                    buf[base.len() + OBJECTS.len()..len].copy_from_slice(rel.as_bytes());
                    rfs::lgetxattr_query(&buf[..len], RESERVED_XATTR)
                } else {
                    rfs::lgetxattr_query(self.object_path(ObjectType::File, id), RESERVED_XATTR)
                };
                match asked {
                    Ok(_) => Ok(false),
                    Err(Errno::NODATA) => Ok(true),
                    Err(Errno::NOENT) => Err(Error::Missing {
                        kind: ObjectType::File,
                        id: *id,
                    }),
                    Err(e) => Err(Error::io(&self.object_path(ObjectType::File, id), e.into())),
                }
            }
        }
    }

    /// Relative path of a file object below the objects directory, and the
    /// directory's handle, for `linkat`.
    pub fn object_link_source(&self, id: &ObjectId) -> (BorrowedFd<'_>, super::objects::RelPath) {
        (
            self.objects_fd().as_fd(),
            super::objects::rel_path(ObjectType::File, id),
        )
    }

    /// Device number of the filesystem holding the objects.
    pub fn objects_dev(&self) -> Result<u64> {
        rfs::fstat(self.objects_fd())
            .map(|s| s.st_dev)
            .map_err(|e| Error::io(&self.path, e.into()))
    }

    pub fn object_file_path(&self, id: &ObjectId) -> PathBuf {
        self.object_path(ObjectType::File, id)
    }
}
