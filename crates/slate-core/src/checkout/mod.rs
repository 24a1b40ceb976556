//! Checking a commit out into a directory. Plan first (every directory and
//! every file object with the paths it appears at), then apply: directories
//! top down, file objects in parallel, directory metadata bottom up.
//!
//! From `bare` and `bare-user` repositories a file is a hard link to its
//! object when DEST is on the same filesystem and the object's inode carries
//! every attribute of the committed file; otherwise it is copied. Files
//! below the private paths (`/etc` and `/var` unless told otherwise), which
//! a machine writes to, are always copies: nothing written there reaches
//! the repository. From `archive` every file is decompressed. Paths sharing
//! one object are hard links of each other (private paths among
//! themselves). Every inode's atime and mtime is the epoch.

mod apply;
mod plan;

pub use plan::{plan, Plan, PlannedDir};

use std::path::{Path, PathBuf};

use crate::fsutil::show;
use crate::hash::ObjectId;
use crate::progress::Progress;
use crate::store::{self, ObjectRead, Repo};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{}: {source}", show(path))]
    Dest {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The destination exists and the options do not say to check out
    /// over it (`CheckoutOptions::union`).
    #[error("{}: already exists", show(.0))]
    Exists(PathBuf),
    #[error("commit {commit}: no path \"{path}\"")]
    NoSuchPath { commit: ObjectId, path: String },
    #[error("{}: cannot check out {kind} as a non-root user", show(path))]
    NeedsRoot { path: PathBuf, kind: &'static str },
    #[error("{}: cannot give it the owner {uid}:{gid}: {source}", show(path))]
    Owner {
        path: PathBuf,
        uid: u32,
        gid: u32,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub struct CheckoutOptions {
    /// Check out over an existing directory: keep directories, replace files.
    pub union: bool,
    /// Only this path of the commit (a directory or a file).
    pub subpath: Option<Vec<u8>>,
    /// Ignore owners (and xattrs outside `user.*`): for non-root users.
    pub user_mode: bool,
    /// Paths of the tree (relative, e.g. `etc`) whose files are always
    /// copied, never hard links of repository objects.
    pub private: Vec<Vec<u8>>,
    /// Copy every file: a tree that may be changed in place.
    pub copy: bool,
    /// Directories (relative to DEST) made with their own metadata but
    /// none of their entries (a deployment's `/var`, whose content is the
    /// OS's state).
    pub empty: Vec<Vec<u8>>,
}

/// The paths a machine writes to: `/etc` and `/var`.
pub fn default_private() -> Vec<Vec<u8>> {
    vec![b"etc".to_vec(), b"var".to_vec()]
}

impl Default for CheckoutOptions {
    fn default() -> Self {
        CheckoutOptions {
            union: false,
            subpath: None,
            user_mode: false,
            private: default_private(),
            copy: false,
            empty: Vec::new(),
        }
    }
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
    let p = plan(repo, commit, &c.tree, opts.subpath.as_deref(), &opts.empty)?;
    progress.set_total(p.paths());
    apply::apply(repo, &p, dest, opts, progress)
}
