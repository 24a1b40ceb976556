use std::path::{Path, PathBuf};

use crate::hash::ObjectId;
use crate::object::{DecodeError, ObjectType};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in a repository. Every message names the path, object
/// id or ref it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a Slate repository (no config file)", path.display())]
    NotARepo { path: PathBuf },
    /// A source that fetches objects (an HTTP remote) could not.
    #[error("{0}")]
    Fetch(String),
    #[error("{kind} object {id} not found in the repository")]
    Missing { kind: ObjectType, id: ObjectId },
    #[error("{kind} object {id} is corrupt: {detail}")]
    Corrupt {
        kind: ObjectType,
        id: ObjectId,
        detail: String,
    },
    #[error("{kind} object {id} does not decode: {source}")]
    Decode {
        kind: ObjectType,
        id: ObjectId,
        source: DecodeError,
    },
    #[error("invalid ref name {name:?}: {reason}")]
    BadRefName { name: String, reason: &'static str },
    #[error("unknown revision {rev:?}: no such ref, commit id or id prefix")]
    UnknownRev { rev: String },
    #[error("ambiguous id prefix {prefix:?}: matches {}", candidates.join(", "))]
    Ambiguous {
        prefix: String,
        candidates: Vec<String>,
    },
    #[error("ref {name:?} does not exist")]
    NoSuchRef { name: String },
    #[error(
        "ref {name:?} moved meanwhile: expected {}, found {}",
        show_ref(expected),
        show_ref(found)
    )]
    RefMoved {
        name: String,
        expected: Option<ObjectId>,
        found: Option<ObjectId>,
    },
    /// A `bare` repository keeps real owners: only root can make one.
    #[error("{}: a bare repository keeps real owners and needs root", path.display())]
    BareNeedsRoot { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
}

fn show_ref(id: &Option<ObjectId>) -> String {
    match id {
        Some(id) => id.to_hex(),
        None => "no such ref".into(),
    }
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// This error carried through an `io::Error` (from a `Read`
    /// implementation such as [`FileStream`](super::FileStream)).
    pub fn into_io(self) -> std::io::Error {
        let kind = match &self {
            Error::Io { source, .. } => source.kind(),
            Error::Missing { .. } => std::io::ErrorKind::NotFound,
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, self)
    }

    /// The store error an `io::Error` carries (see [`Error::into_io`]),
    /// else an I/O error at `path`.
    pub fn from_io(path: &Path, e: std::io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            let inner = e.into_inner().expect("checked above");
            return *inner.downcast::<Error>().expect("checked above");
        }
        Error::io(path, e)
    }

    /// Whether `e` carries a store error (a corrupt or missing object
    /// met while reading), as opposed to a failure of the reader's own.
    pub fn carried_by(e: &std::io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<Error>())
    }
}
