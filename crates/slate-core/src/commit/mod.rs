//! Committing a tree: from a directory (scanned in parallel), from a tar
//! archive (streamed) or from a container image's layers (`oci`), into
//! file and tree objects, then a commit object, one `syncfs`, and an
//! atomic move of the branch.

mod batch;
mod dir;
mod memtree;
pub mod oci;
mod probe;
#[cfg(test)]
mod scan_tests;
mod source;
mod tar;

pub use self::tar::{commit_tar_tree, sanitize_member_path};
pub use dir::commit_dir_tree;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::fsutil::show;
use crate::hash::ObjectId;
use crate::object::{name, Commit, ObjectType};
use crate::progress::Progress;
use crate::store::{self, ObjectRead, ObjectWrite, Repo, Transaction};

/// What can go wrong while committing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{}: {source}", show(path))]
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
    /// A container image that is not well formed, or whose blobs do not
    /// match their digests.
    #[error("image {image}: {reason}")]
    Image { image: String, reason: String },
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
    /// When the branch's commit has the same tree, subject, body and
    /// metadata, make no new commit: the outcome is that commit,
    /// `unchanged`.
    pub skip_if_unchanged: bool,
}

/// Counters filled while scanning a source (by many threads).
#[derive(Default, Debug)]
pub(crate) struct Stats {
    files: AtomicU64,
    dirs: AtomicU64,
    symlinks: AtomicU64,
    specials: AtomicU64,
    content_bytes: AtomicU64,
    objects_written: AtomicU64,
    batched: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ScanStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ScanStats {
            files: get(&self.files),
            dirs: get(&self.dirs),
            symlinks: get(&self.symlinks),
            specials: get(&self.specials),
            content_bytes: get(&self.content_bytes),
            new_file_objects: get(&self.objects_written),
            batched: get(&self.batched),
        }
    }
}

/// What a scan found and stored.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, Serialize)]
pub struct ScanStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub specials: u64,
    pub content_bytes: u64,
    /// File objects (regular files, symlinks, devices, fifos) that were
    /// not yet stored; trees are not counted.
    pub new_file_objects: u64,
    /// Regular files read in batches (see `commit/batch.rs`).
    #[serde(skip)]
    pub batched: u64,
}

/// The result of scanning a source into objects.
#[derive(Debug)]
pub struct TreeScan {
    pub root: ObjectId,
    pub stats: ScanStats,
    /// Sockets found in the source and left out (paths relative to it).
    pub skipped_sockets: Vec<Vec<u8>>,
}

impl TreeScan {
    /// The skipped sockets' paths as text (escaped).
    pub fn skipped_shown(&self) -> Vec<String> {
        self.skipped_sockets
            .iter()
            .map(|p| name::escape(p))
            .collect()
    }
}

#[derive(Debug)]
pub struct CommitOutcome {
    pub id: ObjectId,
    pub parent: Option<ObjectId>,
    pub scan: TreeScan,
    /// No commit was made (`skip_if_unchanged`): `id` is the branch's.
    pub unchanged: bool,
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
    /// A container image's layers, applied in order (see [`oci`]).
    Oci(&'a oci::Image),
}

/// Store `source` into `store` and return its root tree. `progress` counts
/// the files stored and their bytes, and the new objects.
pub fn scan_source<W: ObjectWrite + ?Sized>(
    store: &W,
    source: Source<'_>,
    progress: &Progress,
) -> Result<TreeScan> {
    match source {
        Source::Dir(path) => commit_dir_tree(store, path, progress),
        Source::Tar { reader, name } => commit_tar_tree(store, reader, &name, progress),
        Source::Oci(image) => oci::scan_image(store, image, progress),
    }
}

/// Commit `source` onto `opts.branch` in one transaction. `progress`
/// counts what the scan has stored so far (another thread may read it).
pub fn commit(
    repo: &Repo,
    source: Source<'_>,
    opts: &CommitOptions,
    progress: &Progress,
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
    let mut tx = Transaction::begin(repo)?;
    let current = tx.read_ref(&opts.branch)?;
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
        let r = scan_source(&tx, source, progress);
        drop(done);
        r
    })?;
    let parent = match &opts.parent {
        ParentSpec::Auto => current,
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
    if let (true, Some(cur)) = (opts.skip_if_unchanged, current) {
        let old = repo.read_commit(&cur)?;
        if old.tree == c.tree
            && old.subject == c.subject
            && old.body == c.body
            && old.metadata == c.metadata
        {
            // Nothing new was stored (the tree is there): the
            // transaction ends without moving the ref.
            drop(tx);
            return Ok(CommitOutcome {
                id: cur,
                parent: old.parent,
                scan,
                unchanged: true,
            });
        }
    }
    let id = tx.write_commit(&c)?;
    tx.set_ref(&opts.branch, current, id)?;
    tx.commit()?;
    Ok(CommitOutcome {
        id,
        parent,
        scan,
        unchanged: false,
    })
}
