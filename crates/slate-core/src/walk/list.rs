//! What `slate ls` shows: the entries below a path of a tree, with their
//! metadata, one level or recursively.

use serde::Serialize;

use super::{lookup, walk, Visitor};
use crate::hash::ObjectId;
use crate::object::{name, EntryKind, FileKind, Tree, TreeEntry, Xattrs};
use crate::store::{self, ObjectRead};

/// One listed path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// Absolute inside the tree: `/etc/passwd`.
    #[serde(serialize_with = "name::serialize")]
    pub path: Vec<u8>,
    /// `dir`, or a file kind's name (`file`, `symlink`, ...).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `mode & 07777` in octal, four digits.
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
    /// Content bytes (0 for directories).
    pub size: u64,
    pub id: ObjectId,
    /// A symlink's target.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_target"
    )]
    pub target: Option<Vec<u8>>,
    /// Names of the extended attributes.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "name::serialize_all"
    )]
    pub xattrs: Vec<Vec<u8>>,
}

fn serialize_target<S: serde::Serializer>(t: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => name::serialize(t, s),
        None => s.serialize_none(),
    }
}

impl Listed {
    /// One letter for the type, as `ls -l` prints it.
    pub fn type_char(&self) -> char {
        match self.kind {
            "dir" => 'd',
            "symlink" => 'l',
            "char-device" => 'c',
            "block-device" => 'b',
            "fifo" => 'p',
            _ => '-',
        }
    }
}

fn names(x: &Xattrs) -> Vec<Vec<u8>> {
    x.iter().map(|(k, _)| k.clone()).collect()
}

/// Lists every path below the directory a walk starts at.
struct Lister<'s, S: ?Sized> {
    store: &'s S,
    /// The listed directory, absolute; the walk's paths are relative to it.
    top: Vec<u8>,
    out: Vec<Listed>,
}

impl<S: ObjectRead + ?Sized> Lister<'_, S> {
    fn shown(&self, rel: &[u8]) -> Vec<u8> {
        // The walk starts at the listed directory with the path "".
        let mut p = self.top.clone();
        if !rel.is_empty() {
            if p.last() != Some(&b'/') {
                p.push(b'/');
            }
            p.extend_from_slice(rel);
        }
        p
    }

    fn file_entry(&self, path: Vec<u8>, id: &ObjectId) -> Result<Listed, store::Error> {
        let h = self.store.file_header(id)?;
        let target = if h.meta.kind == FileKind::Symlink {
            Some(self.store.read_file(id)?.1)
        } else {
            None
        };
        Ok(Listed {
            path,
            kind: h.meta.kind.name(),
            mode: format!("{:04o}", h.meta.mode),
            uid: h.meta.uid,
            gid: h.meta.gid,
            size: h.size,
            id: *id,
            target,
            xattrs: names(&h.meta.xattrs),
        })
    }
}

impl<S: ObjectRead + ?Sized> Visitor for Lister<'_, S> {
    type Error = store::Error;

    fn tree(&mut self, path: &[u8], id: &ObjectId, tree: &Tree) -> Result<(), store::Error> {
        if !path.is_empty() {
            self.out.push(dir_entry(self.shown(path), id, tree));
        }
        Ok(())
    }

    fn file(&mut self, path: &[u8], entry: &TreeEntry) -> Result<(), store::Error> {
        let e = self.file_entry(self.shown(path), &entry.id)?;
        self.out.push(e);
        Ok(())
    }
}

fn dir_entry(path: Vec<u8>, id: &ObjectId, tree: &Tree) -> Listed {
    Listed {
        path,
        kind: "dir",
        mode: format!("{:04o}", tree.meta.mode),
        uid: tree.meta.uid,
        gid: tree.meta.gid,
        size: 0,
        id: *id,
        target: None,
        xattrs: names(&tree.meta.xattrs),
    }
}

/// The entries below `path` (absolute inside the tree `root`), in tree
/// order; every path below it with `recursive`. A file's path lists that
/// file alone. `Ok(None)` when there is no such path.
pub fn list<S: ObjectRead + ?Sized>(
    store: &S,
    root: &ObjectId,
    path: &[u8],
    recursive: bool,
) -> Result<Option<Vec<Listed>>, store::Error> {
    let rel = super::normalize(path);
    let top = name::absolute(&rel);
    let Some((kind, id)) = lookup(store, root, &rel)? else {
        return Ok(None);
    };
    let mut l = Lister {
        store,
        top,
        out: Vec::new(),
    };
    match kind {
        EntryKind::File => {
            let e = l.file_entry(l.top.clone(), &id)?;
            l.out.push(e);
        }
        EntryKind::Dir if recursive => walk(store, &id, b"", &mut l)?,
        EntryKind::Dir => {
            // One level: subdirectories are listed from their own trees.
            let tree = store.read_tree(&id)?;
            for e in &tree.entries {
                let shown = l.shown(&e.name);
                let item = match e.kind {
                    EntryKind::Dir => dir_entry(shown, &e.id, &store.read_tree(&e.id)?),
                    EntryKind::File => l.file_entry(shown, &e.id)?,
                };
                l.out.push(item);
            }
        }
    }
    Ok(Some(l.out))
}
