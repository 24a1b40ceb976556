//! Reading file objects in the three modes: headers, whole objects
//! (checked against their ids), and what a checkout needs to hard-link.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::{Error, Repo, RepoMode, Result};
use crate::fsutil::{self, RESERVED_XATTR};
use crate::hash::ObjectId;
use crate::object::{FileHeader, FileKind, FileMeta, ObjectType};

impl Repo {
    /// Header and content of an archive-mode object, loose or packed (not
    /// yet checked against the id).
    fn archive_object(&self, id: &ObjectId) -> Result<(FileHeader, Vec<u8>)> {
        let dec = |source| Error::Decode {
            kind: ObjectType::File,
            id: *id,
            source,
        };
        if let Some((pack, e)) = self.find_packed(id)? {
            let raw = self.read_packed(&pack, &e)?;
            let (h, n) = FileHeader::decode_prefix(&raw).map_err(dec)?;
            return Ok((h, raw[n..].to_vec()));
        }
        let raw = self.read_raw(ObjectType::File, id)?;
        let (h, n) = FileHeader::decode_prefix(&raw).map_err(dec)?;
        let content =
            zstd::bulk::decompress(&raw[n..], h.size as usize).map_err(|e| Error::Corrupt {
                kind: ObjectType::File,
                id: *id,
                detail: format!("zstd: {e}"),
            })?;
        Ok((h, content))
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
    pub fn file_header(&self, id: &ObjectId) -> Result<FileHeader> {
        let path = self.object_path(ObjectType::File, id);
        match self.mode {
            RepoMode::Archive => self.archive_object(id).map(|(h, _)| h),
            RepoMode::BareUser => {
                let fd = self.open_object(id)?;
                self.bare_user_header(id, &fd, &path)
            }
            RepoMode::Bare => {
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
        }
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

    /// Read a file object whole: header and content (a symlink's target),
    /// checked against the id.
    pub fn read_file(&self, id: &ObjectId) -> Result<(FileHeader, Vec<u8>)> {
        let path = self.object_path(ObjectType::File, id);
        let (header, content) = match self.mode {
            RepoMode::Archive => self.archive_object(id)?,
            RepoMode::BareUser => {
                let fd = self.open_object(id)?;
                let h = self.bare_user_header(id, &fd, &path)?;
                let mut c = vec![0u8; h.size as usize];
                fsutil::read_exact_fd(&fd, &mut c).map_err(|e| Error::io(&path, e))?;
                (h, c)
            }
            RepoMode::Bare => {
                let h = self.file_header(id)?;
                let c = match h.meta.kind {
                    FileKind::Regular => std::fs::read(&path).map_err(|e| Error::io(&path, e))?,
                    FileKind::Symlink => {
                        let rel = super::objects::rel_path(ObjectType::File, id);
                        rfs::readlinkat(self.objects_fd(), rel.as_str(), Vec::new())
                            .map_err(|e| Error::io(&path, e.into()))?
                            .into_bytes()
                    }
                    _ => Vec::new(),
                };
                (h, c)
            }
        };
        if content.len() as u64 != header.size {
            return Err(Error::Corrupt {
                kind: ObjectType::File,
                id: *id,
                detail: format!(
                    "content is {} bytes, header says {}",
                    content.len(),
                    header.size
                ),
            });
        }
        let got = header.id_of(&content);
        if got != *id {
            return Err(Error::Corrupt {
                kind: ObjectType::File,
                id: *id,
                detail: format!("content and metadata hash to {got}"),
            });
        }
        Ok((header, content))
    }

    /// Whether a hard link to the stored object gives a checkout every
    /// attribute of the committed file.
    pub fn object_linkable(&self, id: &ObjectId) -> Result<bool> {
        match self.mode {
            RepoMode::Archive => Ok(false),
            RepoMode::Bare => Ok(true),
            RepoMode::BareUser => {
                let path = self.object_path(ObjectType::File, id);
                match rfs::lgetxattr_query(&path, RESERVED_XATTR) {
                    Ok(_) => Ok(false),
                    Err(Errno::NODATA) => Ok(true),
                    Err(Errno::NOENT) => Err(Error::Missing {
                        kind: ObjectType::File,
                        id: *id,
                    }),
                    Err(e) => Err(Error::io(&path, e.into())),
                }
            }
        }
    }

    /// Relative path of a file object below the objects directory, and the
    /// directory's handle, for `linkat`.
    pub fn object_link_source(&self, id: &ObjectId) -> (BorrowedFd<'_>, String) {
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
