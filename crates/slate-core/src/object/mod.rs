//! The data model and its canonical encoding: file objects (content plus the
//! metadata an inode carries), trees (a directory's metadata and its sorted
//! entries) and commits. Pure: no I/O. The encoding is written down byte for
//! byte in `docs/format/objects.md`.

mod codec;
mod commit;
mod file;
pub mod name;
mod tree;

pub use codec::DecodeError;
pub use commit::Commit;
pub use file::{FileHeader, FileKind, FileMeta};
pub use tree::{DirMeta, EntryKind, Tree, TreeEntry};

/// Extended attributes: (name, value) pairs, sorted by name, names unique.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The kinds of object a repository holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    File,
    Tree,
    Commit,
}

impl ObjectType {
    /// File-name suffix of this type in `objects/`.
    pub fn suffix(self) -> &'static str {
        match self {
            ObjectType::File => "file",
            ObjectType::Tree => "tree",
            ObjectType::Commit => "commit",
        }
    }
    pub fn from_suffix(s: &str) -> Option<Self> {
        match s {
            "file" => Some(ObjectType::File),
            "tree" => Some(ObjectType::Tree),
            "commit" => Some(ObjectType::Commit),
            _ => None,
        }
    }
}

impl std::fmt::Display for ObjectType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.suffix())
    }
}

/// Whether `name` may be a directory entry: non-empty, at most 255 bytes, no
/// `/` and no NUL, and neither `.` nor `..`.
pub fn valid_entry_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != b"."
        && name != b".."
        && !name.iter().any(|&b| b == b'/' || b == 0)
}

/// Sort xattrs by name; return the first duplicated name, if any.
pub fn normalize_xattrs(x: &mut Xattrs) -> Option<Vec<u8>> {
    x.sort_by(|a, b| a.0.cmp(&b.0));
    x.windows(2)
        .find(|w| w[0].0 == w[1].0)
        .map(|w| w[0].0.clone())
}

#[cfg(test)]
mod golden;
