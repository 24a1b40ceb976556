//! What a remote is and whom it trusts: the remotes of a repository
//! (their configuration files; no network), the typed origin of a
//! deployment, the trust rule, and the [`Fetch`] seam the network crate
//! implements.
//!
//! The trust rule: a commit reached through a remote that requires
//! signatures (`REMOTE:REF`, or the tracking ref `remotes/REMOTE/...`)
//! is used only with a signature by one of the remote's keys. The
//! sysroot applies it to every deploy, whoever calls.

pub mod config;
mod fetch;
pub mod image;
mod origin;

pub use config::{RemoteConfig, RemoteState};
pub use fetch::{Fetch, FetchError, Fetched, MinRate, NoFetch, Redirect, RefCheck};
pub use origin::{Origin, ParseError};

use std::path::{Path, PathBuf};

use crate::fsutil::show;
use crate::hash::ObjectId;
use crate::store::Repo;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", show(path))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A remote's configuration is wrong or incomplete.
    #[error("{0}")]
    Config(String),
    #[error("no remote {name} in {}", repo.display())]
    NoSuchRemote { name: String, repo: PathBuf },
    /// The commit lacks a signature the remote requires.
    #[error(
        "commit {commit} has no valid signature by a key remote {remote} trusts: not deployed"
    )]
    Untrusted { commit: ObjectId, remote: String },
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The trust rule for `commit` reached through `origin`: when the origin
/// names a remote of `repo` that requires signatures, the commit must
/// carry a valid signature by one of its keys (the key's id is returned).
/// A local ref `remotes/NAME/...` of a remote no longer configured, a
/// plain ref and a commit id have no rule (`Ok(None)`).
pub fn require_trusted(
    repo: &Repo,
    origin: &Origin,
    commit: &ObjectId,
) -> Result<Option<String>, Error> {
    let Some(remote) = origin.remote() else {
        return Ok(None);
    };
    let cfg = match config::get(repo, remote) {
        Ok(c) => c,
        // A tracking ref outlives its remote: nothing to check it with.
        Err(Error::NoSuchRemote { .. }) if matches!(origin, Origin::Ref(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !cfg.verifies() {
        return Ok(None);
    }
    let keys = cfg.public_keys()?;
    match repo.verified_signer(commit, &keys) {
        Some(k) => Ok(Some(k)),
        None => Err(Error::Untrusted {
            commit: *commit,
            remote: remote.to_string(),
        }),
    }
}
