//! Slate's repositories over HTTP: a remote is an `archive` repository
//! published as static files (any web server, CDN or object store), with a
//! signed summary. Pulling fetches a delta from a commit the repository
//! has, else the frames of the remote's packs that hold the missing
//! objects, in few large, resumable requests, else loose objects; every
//! object is checked against its id before it is stored, and the ref
//! moves only once the whole commit is there. `serve` is a small built-in
//! server for the same folder. See `docs/format/remote.md`.
//!
//! Network code lives in this crate alone: what runs in an initrd does
//! not link it.

pub mod client;
pub mod config;
pub mod fetch;
mod http_fetch;
pub mod pull;
pub mod serve;

pub use http_fetch::HttpFetch;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] slate_core::store::Error),
    #[error(transparent)]
    Pull(#[from] slate_core::pull::Error),
    /// A remote's configuration (missing, unreadable, wrong).
    #[error(transparent)]
    Remotes(#[from] slate_core::remotes::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    /// Every mirror answered that it does not have this path.
    #[error("{0}: not on the remote ({1})")]
    NotFound(String, String),
    #[error("{0}")]
    Fetch(String),
    /// What the remote sent does not check (a digest, a signature).
    #[error("{0}")]
    Corrupt(String),
    /// A pull that would accept something older or unsigned.
    #[error("{0}")]
    Refused(String),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
