//! Committing a tree: from a directory (scanned in parallel) or from a tar
//! archive (streamed), into file and tree objects, then a commit object,
//! one `syncfs`, and an atomic move of the branch.

mod batch;
mod dir;
#[cfg(test)]
mod scan_tests;
mod tar;

pub use self::tar::{commit_tar_tree, sanitize_member_path};
pub use dir::commit_dir_tree;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::hash::ObjectId;
use crate::object::{Commit, ObjectType};
use crate::store::{self, Repo};

/// What can go wrong while committing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{}: {source}", path.display())]
    Source {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{archive}: member {member:?}: {reason}")]
    Tar {
        archive: String,
        member: String,
        reason: String,
    },
    #[error("{archive}: {source}")]
    TarRead {
        archive: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which commit becomes the new commit's parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParentSpec {
    /// The branch's current commit, if the branch exists.
    Auto,
    None,
    Id(ObjectId),
}

#[derive(Clone, Debug)]
pub struct CommitOptions {
    pub branch: String,
    pub subject: String,
    pub body: String,
    /// Seconds since the epoch.
    pub timestamp: i64,
    pub metadata: BTreeMap<String, String>,
    pub parent: ParentSpec,
}

/// Counters filled while scanning a source.
#[derive(Default, Debug)]
pub struct Stats {
    pub files: AtomicU64,
    pub dirs: AtomicU64,
    pub symlinks: AtomicU64,
    pub specials: AtomicU64,
    pub content_bytes: AtomicU64,
    /// File objects (regular files, symlinks, devices, fifos) that were
    /// not yet in the repository; trees are not counted.
    pub objects_written: AtomicU64,
    /// Regular files read in batches (see `commit/batch.rs`).
    pub batched: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The result of scanning a source into objects.
#[derive(Debug)]
pub struct TreeScan {
    pub root: ObjectId,
    pub stats: Arc<Stats>,
    /// Sockets found in the source and left out (paths relative to it).
    pub skipped_sockets: Vec<String>,
}

#[derive(Debug)]
pub struct CommitOutcome {
    pub id: ObjectId,
    pub parent: Option<ObjectId>,
    pub scan: TreeScan,
}

/// Where a commit's tree comes from.
pub enum Source<'a> {
    Dir(&'a std::path::Path),
    /// A tar stream (plain, gzip or zstd; detected by magic bytes); the
    /// name is used in messages.
    Tar {
        reader: Box<dyn std::io::Read + 'a>,
        name: String,
    },
}

/// Ends the repository's listing of its objects when a commit ends, however
/// it ends (before the writer lock is released).
struct EndListing<'a>(&'a Repo);

impl Drop for EndListing<'_> {
    fn drop(&mut self) {
        self.0.end_listing();
    }
}

/// Commit `source` onto `opts.branch`, holding the writer lock throughout.
/// The scan counts what it has stored so far into `stats`, which another
/// thread may read meanwhile (for progress).
pub fn commit(
    repo: &Repo,
    source: Source<'_>,
    opts: &CommitOptions,
    stats: Arc<Stats>,
) -> Result<CommitOutcome> {
    store::validate_ref_name(&opts.branch)?;
    if let ParentSpec::Id(p) = &opts.parent {
        if !repo.has_object(ObjectType::Commit, p)? {
            return Err(store::Error::Missing {
                kind: ObjectType::Commit,
                id: *p,
            }
            .into());
        }
    }
    let _lock = repo.lock()?;
    repo.begin_listing();
    let _listing = EndListing(repo);
    repo.begin_pack()?;
    // Writeback overlaps the scan: a helper thread flushes what has been
    // written so far, so the final `syncfs` before the ref moves has little
    // left to do. (Durability still rests on that final call alone.)
    // The helper stops as soon as the scan ends (its channel closes).
    let (done, stop) = std::sync::mpsc::channel::<()>();
    let scan = std::thread::scope(|s| {
        s.spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stop.recv_timeout(std::time::Duration::from_millis(50))
            {
                let _ = repo.sync();
            }
        });
        let r = match source {
            Source::Dir(path) => commit_dir_tree(repo, path, stats),
            Source::Tar { reader, name } => commit_tar_tree(repo, reader, &name, stats),
        };
        drop(done);
        r
    });
    let scan = match scan {
        Ok(s) => s,
        Err(e) => {
            repo.abort_pack();
            return Err(e);
        }
    };
    repo.finish_pack()?;
    let parent = match &opts.parent {
        ParentSpec::Auto => repo.read_ref(&opts.branch)?,
        ParentSpec::None => None,
        ParentSpec::Id(p) => Some(*p),
    };
    let c = Commit {
        parent,
        tree: scan.root,
        timestamp: opts.timestamp,
        subject: opts.subject.clone(),
        body: opts.body.clone(),
        metadata: opts.metadata.clone(),
    };
    let id = repo.write_commit(&c)?;
    repo.sync()?;
    repo.write_ref(&opts.branch, &id)?;
    Ok(CommitOutcome { id, parent, scan })
}
