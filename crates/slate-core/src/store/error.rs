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
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
