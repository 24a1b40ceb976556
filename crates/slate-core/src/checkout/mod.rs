//! Checking a commit out into a directory. Plan first (every directory and
//! every file object with the paths it appears at), then apply: directories
//! top down, file objects in parallel, directory metadata bottom up.
//!
//! From `bare` and `bare-user` repositories a file is a hard link to its
//! object when DEST is on the same filesystem and the object's inode carries
//! every attribute of the committed file; otherwise it is copied. From
//! `archive` every file is decompressed. Paths sharing one object are hard
//! links of each other. Every inode's atime and mtime is the epoch.

mod apply;
mod plan;

pub use plan::{plan, Plan, PlannedDir};

use std::path::{Path, PathBuf};

use crate::hash::ObjectId;
use crate::progress::Progress;
use crate::store::{self, Repo};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{}: {source}", path.display())]
    Dest {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: already exists (use --union to check out over it)", .0.display())]
    Exists(PathBuf),
    #[error("commit {commit}: no path {path:?}")]
    NoSuchPath { commit: ObjectId, path: String },
    #[error("{}: cannot check out {kind} as a non-root user", path.display())]
    NeedsRoot { path: PathBuf, kind: &'static str },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Debug, Default)]
pub struct CheckoutOptions {
    /// Check out over an existing directory: keep directories, replace files.
    pub union: bool,
    /// Only this path of the commit (a directory or a file).
    pub subpath: Option<String>,
    /// Ignore owners (and xattrs outside `user.*`): for non-root users.
    pub user_mode: bool,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckoutStats {
    pub dirs: u64,
    pub hardlinked: u64,
    pub copied: u64,
    pub skipped_devices: u64,
}

/// Check out `commit` at `dest`. `progress` counts the paths placed, of
/// all there are, and the bytes of those copied.
pub fn checkout(
    repo: &Repo,
    commit: &ObjectId,
    dest: &Path,
    opts: &CheckoutOptions,
    progress: &Progress,
) -> Result<CheckoutStats> {
    let c = repo.read_commit(commit)?;
    let p = plan(repo, commit, &c.tree, opts.subpath.as_deref())?;
    progress.set_total(p.files.iter().map(|f| f.1.len() as u64).sum());
    apply::apply(repo, &p, dest, opts, progress)
}
