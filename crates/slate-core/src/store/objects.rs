//! Object naming, presence, and the metadata objects (trees and commits),
//! which are stored as their canonical bytes in every mode.

use std::io;
use std::path::PathBuf;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::looseidx::LooseIndex;
use super::{Error, Repo, Result};
use crate::hash::{is_lower_hex, ObjectId};
use crate::object::{Commit, ObjectType, Tree};

/// `xx/yyyy….suffix`, relative to `objects/`.
pub(crate) fn rel_path(kind: ObjectType, id: &ObjectId) -> RelPath {
    RelPath::new(kind, id)
}

/// An object's name below `objects/`, held on the stack: checkouts and
/// commits name thousands of objects a second from several threads, and
/// a heap allocation for each makes them wait on the allocator's locks.
#[derive(Clone, Copy)]
pub struct RelPath {
    buf: [u8; RelPath::CAP],
    len: usize,
}

impl RelPath {
    /// `xx/` + 62 digits + `.commit`, the longest suffix.
    const CAP: usize = 3 + 62 + 7;

    pub fn new(kind: ObjectType, id: &ObjectId) -> Self {
        let mut buf = [0u8; Self::CAP];
        let mut hex = [0u8; ObjectId::HEX_LEN];
        hex::encode_to_slice(id.0, &mut hex).expect("64 digits for 32 bytes");
        buf[..2].copy_from_slice(&hex[..2]);
        buf[2] = b'/';
        buf[3..65].copy_from_slice(&hex[2..]);
        buf[65] = b'.';
        let suffix = kind.suffix().as_bytes();
        buf[66..66 + suffix.len()].copy_from_slice(suffix);
        RelPath {
            buf,
            len: 66 + suffix.len(),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("hex digits and a suffix are ASCII")
    }
}

impl std::ops::Deref for RelPath {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<std::path::Path> for RelPath {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(self.as_str())
    }
}

impl Repo {
    /// Absolute path of an object (whether or not it exists).
    pub fn object_path(&self, kind: ObjectType, id: &ObjectId) -> PathBuf {
        self.path.join("objects").join(rel_path(kind, id).as_str())
    }

    /// Whether the object is stored, loose or packed (asked of the disk).
    pub(crate) fn has_stored(&self, kind: ObjectType, id: &ObjectId) -> Result<bool> {
        self.has_loose_or_packed(kind, id, None)
    }

    /// [`Repo::has_stored`], where a listing of the fan-out directories
    /// may answer for the loose objects (see `looseidx.rs`).
    pub(crate) fn has_loose_or_packed(
        &self,
        kind: ObjectType,
        id: &ObjectId,
        listing: Option<&LooseIndex>,
    ) -> Result<bool> {
        let listed = match listing {
            Some(l) => l
                .lookup(&self.objects, kind, id)
                .map_err(|e| Error::io(&self.path.join("objects"), e))?,
            None => None,
        };
        let found = match listed {
            Some(true) => return Ok(true),
            Some(false) => Err(Errno::NOENT),
            None => rfs::statat(
                &self.objects,
                rel_path(kind, id).as_str(),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map(drop),
        };
        match found {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) if kind != ObjectType::Commit => Ok(self
                .find_packed(id)?
                .is_some_and(|(_, e)| e.kind == super::pack::kind_code(kind))),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::io(&self.object_path(kind, id), e.into())),
        }
    }

    /// An object's stored bytes (trees and commits: their canonical
    /// encoding), loose or packed.
    fn read_raw(&self, kind: ObjectType, id: &ObjectId) -> Result<Vec<u8>> {
        let rel = rel_path(kind, id);
        let fd = match rfs::openat(
            &self.objects,
            rel.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                return match self.find_packed(id)? {
                    Some((p, e)) if e.kind == super::pack::kind_code(kind) => {
                        self.read_packed(&p, &e)
                    }
                    _ => Err(Error::Missing { kind, id: *id }),
                }
            }
            Err(e) => return Err(Error::io(&self.object_path(kind, id), e.into())),
        };
        let mut f = std::fs::File::from(fd);
        let mut buf = Vec::new();
        io::Read::read_to_end(&mut f, &mut buf)
            .map_err(|e| Error::io(&self.object_path(kind, id), e))?;
        Ok(buf)
    }

    fn read_verified(&self, kind: ObjectType, id: &ObjectId) -> Result<Vec<u8>> {
        let bytes = self.read_raw(kind, id)?;
        let got = ObjectId::digest(&bytes);
        if got != *id {
            return Err(Error::Corrupt {
                kind,
                id: *id,
                detail: format!("content hashes to {got}"),
            });
        }
        Ok(bytes)
    }

    /// Read a tree, checking its content against its id.
    pub(crate) fn load_tree(&self, id: &ObjectId) -> Result<Tree> {
        let bytes = self.read_verified(ObjectType::Tree, id)?;
        Tree::decode(&bytes).map_err(|source| Error::Decode {
            kind: ObjectType::Tree,
            id: *id,
            source,
        })
    }

    /// Read a commit, checking its content against its id.
    pub(crate) fn load_commit(&self, id: &ObjectId) -> Result<Commit> {
        let bytes = self.read_verified(ObjectType::Commit, id)?;
        Commit::decode(&bytes).map_err(|source| Error::Decode {
            kind: ObjectType::Commit,
            id: *id,
            source,
        })
    }

    /// Ids of the objects of `kind` whose hex starts with `prefix` (at least
    /// two hex digits).
    pub fn objects_with_prefix(&self, kind: ObjectType, prefix: &str) -> Result<Vec<ObjectId>> {
        if prefix.len() < 2 || !is_lower_hex(prefix) {
            return Ok(Vec::new());
        }
        let dir = self.path.join("objects").join(&prefix[..2]);
        let rest = &prefix[2..];
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let suffix = format!(".{}", kind.suffix());
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(&dir, e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(&suffix) {
                if stem.starts_with(rest) {
                    if let Ok(id) = ObjectId::from_hex(&format!("{}{stem}", &prefix[..2])) {
                        out.push(id);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every object in the repository, by type (packed ones included).
    pub fn list_objects(&self) -> Result<Vec<(ObjectType, ObjectId)>> {
        let mut out = Vec::new();
        for i in 0..=255u8 {
            let pre = format!("{i:02x}");
            for kind in [ObjectType::File, ObjectType::Tree, ObjectType::Commit] {
                for id in self.objects_with_prefix(kind, &pre)? {
                    out.push((kind, id));
                }
            }
        }
        out.extend(self.packed_ids()?);
        Ok(out)
    }
}

impl Repo {
    /// Move a corrupt loose object to `REPO/corrupt/ID.TYPE`, so that it no
    /// longer counts as present. Returns false for a packed object, which
    /// stays where it is (its pack holds other, sound objects).
    pub(crate) fn move_aside(&self, kind: ObjectType, id: &ObjectId) -> Result<bool> {
        let rel = rel_path(kind, id);
        let dir = self.path.join("corrupt");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let dest = dir.join(format!("{id}.{kind}"));
        match std::fs::rename(self.path.join("objects").join(rel), &dest) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(&dest, e)),
        }
    }
}

impl Repo {
    /// Delete a loose object (absent is fine).
    pub(crate) fn delete_object(&self, kind: ObjectType, id: &ObjectId) -> Result<()> {
        match rfs::unlinkat(&self.objects, rel_path(kind, id).as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io(&self.object_path(kind, id), e.into())),
        }
    }
}

impl super::ObjectRead for Repo {
    fn has_object(&self, kind: ObjectType, id: &ObjectId) -> Result<bool> {
        self.has_stored(kind, id)
    }
    fn read_tree(&self, id: &ObjectId) -> Result<Tree> {
        self.load_tree(id)
    }
    fn read_commit(&self, id: &ObjectId) -> Result<Commit> {
        self.load_commit(id)
    }
    fn file_header(&self, id: &ObjectId) -> Result<crate::object::FileHeader> {
        self.header_of(id)
    }
    fn open_file(&self, id: &ObjectId) -> Result<super::FileStream<'_>> {
        self.stream_file(id)
    }
}
