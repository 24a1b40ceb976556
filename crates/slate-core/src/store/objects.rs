//! Object naming, presence, and the metadata objects (trees and commits),
//! which are stored as their canonical bytes in every mode.

use std::io;
use std::path::PathBuf;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::{Error, Repo, Result};
use crate::fsutil;
use crate::hash::{is_lower_hex, ObjectId};
use crate::object::{Commit, ObjectType, Tree};

/// `xx/yyyy….suffix`, relative to `objects/`.
pub(crate) fn rel_path(kind: ObjectType, id: &ObjectId) -> String {
    let hex = id.to_hex();
    format!("{}/{}.{}", &hex[..2], &hex[2..], kind.suffix())
}

impl Repo {
    /// Absolute path of an object (whether or not it exists).
    pub fn object_path(&self, kind: ObjectType, id: &ObjectId) -> PathBuf {
        self.path.join("objects").join(rel_path(kind, id))
    }

    pub fn has_object(&self, kind: ObjectType, id: &ObjectId) -> Result<bool> {
        let listed = match self.listing() {
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

    /// Read an object's stored bytes.
    pub(crate) fn read_raw(&self, kind: ObjectType, id: &ObjectId) -> Result<Vec<u8>> {
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

    /// Move a finished temporary file (in `tmp/`) to its final name.
    pub(crate) fn publish(&self, tmp_name: &str, kind: ObjectType, id: &ObjectId) -> Result<()> {
        rfs::renameat(
            &self.tmp,
            tmp_name,
            &self.objects,
            rel_path(kind, id).as_str(),
        )
        .map_err(|e| Error::io(&self.object_path(kind, id), e.into()))?;
        self.note_linked(kind, id);
        Ok(())
    }

    /// Tell the listing (if any) that an object is now in place.
    pub(crate) fn note_linked(&self, kind: ObjectType, id: &ObjectId) {
        if let Some(l) = self.listing() {
            l.insert(kind, id);
        }
    }

    /// Store canonical bytes of a tree or commit under `id`, unless present.
    fn write_meta_object(&self, kind: ObjectType, id: &ObjectId, bytes: &[u8]) -> Result<bool> {
        if self.has_object(kind, id)? {
            return Ok(false);
        }
        if kind == ObjectType::Tree {
            if let Some(pw) = self.active_pack() {
                pw.add(self, kind, *id, bytes, &[], super::packwrite::TREE_BUCKET)
                    .map_err(|e| Error::io(&self.path.join("tmp"), e))?;
                return Ok(true);
            }
        }
        self.write_loose_bytes(kind, id, bytes)?;
        Ok(true)
    }

    /// Store `bytes` as the loose object `id`, whether or not a pack holds it.
    pub(crate) fn write_loose_bytes(
        &self,
        kind: ObjectType,
        id: &ObjectId,
        bytes: &[u8],
    ) -> Result<()> {
        let tmp = self
            .create_tmp()
            .map_err(|e| Error::io(&self.object_path(kind, id), e))?;
        if let Err(e) = fsutil::write_all_fd(tmp.fd(), bytes)
            .and_then(|()| Ok(rfs::fchmod(tmp.fd(), Mode::from_raw_mode(0o644))?))
        {
            self.drop_tmp(tmp);
            return Err(Error::io(&self.object_path(kind, id), e));
        }
        self.link_tmp(tmp, kind, id).map(|_| ())
    }

    /// Store a tree as a loose object, whether or not a pack holds it.
    pub(crate) fn write_loose_tree(&self, tree: &Tree) -> Result<()> {
        let bytes = tree.encode();
        self.write_loose_bytes(ObjectType::Tree, &ObjectId::digest(&bytes), &bytes)
    }

    /// Store an archive-mode file object as a loose object.
    pub(crate) fn write_loose_file(
        &self,
        header: &crate::object::FileHeader,
        content: &[u8],
    ) -> Result<()> {
        let id = header.id_of(content);
        let mut bytes = header.encode();
        bytes.extend_from_slice(
            &self
                .compress_level(content, self.compression_level)
                .map_err(|e| Error::io(&self.object_path(ObjectType::File, &id), e))?,
        );
        self.write_loose_bytes(ObjectType::File, &id, &bytes)
    }

    pub fn write_tree(&self, tree: &Tree) -> Result<ObjectId> {
        if let Some(id) = self.dry_write_tree(tree) {
            return Ok(id);
        }
        let bytes = tree.encode();
        let id = ObjectId::digest(&bytes);
        self.write_meta_object(ObjectType::Tree, &id, &bytes)?;
        Ok(id)
    }

    pub fn write_commit(&self, commit: &Commit) -> Result<ObjectId> {
        let bytes = commit.encode();
        let id = ObjectId::digest(&bytes);
        self.write_meta_object(ObjectType::Commit, &id, &bytes)?;
        Ok(id)
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
    pub fn read_tree(&self, id: &ObjectId) -> Result<Tree> {
        if let Some(t) = self.dry_tree(id) {
            return Ok(t);
        }
        let bytes = self.read_verified(ObjectType::Tree, id)?;
        Tree::decode(&bytes).map_err(|source| Error::Decode {
            kind: ObjectType::Tree,
            id: *id,
            source,
        })
    }

    /// Read a commit, checking its content against its id.
    pub fn read_commit(&self, id: &ObjectId) -> Result<Commit> {
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
    /// The entry at `path` (slash-separated, relative to `root`; empty or
    /// `/` for the root itself), or `None` if there is no such path.
    pub fn lookup_path(
        &self,
        root: &ObjectId,
        path: &str,
    ) -> Result<Option<(crate::object::EntryKind, ObjectId)>> {
        use crate::object::EntryKind;
        let mut cur = (EntryKind::Dir, *root);
        for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if cur.0 != EntryKind::Dir {
                return Ok(None);
            }
            let tree = self.read_tree(&cur.1)?;
            match tree.get(comp.as_bytes()) {
                Some(e) => cur = (e.kind, e.id),
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }
}

impl Repo {
    /// Move a corrupt loose object to `REPO/corrupt/ID.TYPE`, so that it no
    /// longer counts as present. Returns false for a packed object, which
    /// stays where it is (its pack holds other, sound objects).
    pub fn move_aside(&self, kind: ObjectType, id: &ObjectId) -> Result<bool> {
        let rel = rel_path(kind, id);
        let dir = self.path.join("corrupt");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let dest = dir.join(format!("{id}.{kind}"));
        match std::fs::rename(self.path.join("objects").join(&rel), &dest) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(&dest, e)),
        }
    }
}

impl Repo {
    /// Delete a loose object (absent is fine).
    pub fn delete_object(&self, kind: ObjectType, id: &ObjectId) -> Result<()> {
        match rfs::unlinkat(&self.objects, rel_path(kind, id).as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io(&self.object_path(kind, id), e.into())),
        }
    }
}
