//! Differences between two trees: added, removed and modified paths, a
//! change of metadata alone (mode, owner, xattrs) marked as such. Subtrees
//! with equal ids are skipped without being read. A directory is compared
//! by scanning it into a hash-only store laid over the repository: nothing
//! is written.

use std::path::Path;

use serde::Serialize;

use crate::commit;
use crate::hash::ObjectId;
use crate::object::{name, EntryKind, Tree, TreeEntry};
use crate::progress::Progress;
use crate::store::{self, HashSink, ObjectRead};
use crate::walk::{self, Visitor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    /// Content changed (or the type: file to directory and back).
    Modified,
    /// Only mode, owner or xattrs changed.
    Metadata,
}

impl Change {
    /// One letter, as `slate diff` prints it.
    pub fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Removed => 'D',
            Change::Modified => 'M',
            Change::Metadata => 'm',
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub change: Change,
    /// Absolute inside the tree (`/etc/passwd`; `/` for the root).
    #[serde(serialize_with = "name::serialize")]
    pub path: Vec<u8>,
    /// Whether the path is a directory (on the side that has it; the new
    /// side for modifications).
    pub dir: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("scanning {}: {source}", crate::fsutil::show(path))]
    Scan {
        path: std::path::PathBuf,
        source: commit::Error,
    },
    #[error("{side}: \"{path}\" is not a directory")]
    NotADirectory { side: String, path: String },
    #[error("{side}: no path \"{path}\"")]
    NoSuchPath { side: String, path: String },
}

/// Counts of each kind of change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stat {
    pub added: usize,
    pub removed: usize,
    pub modified: usize,
    pub metadata: usize,
}

pub fn stat(entries: &[Entry]) -> Stat {
    let count = |c: Change| entries.iter().filter(|e| e.change == c).count();
    Stat {
        added: count(Change::Added),
        removed: count(Change::Removed),
        modified: count(Change::Modified),
        metadata: count(Change::Metadata),
    }
}

fn shown(rel: &[u8]) -> Vec<u8> {
    name::absolute(rel)
}

/// Every path below a tree, added or removed whole.
struct Whole<'o> {
    change: Change,
    base: Vec<u8>,
    out: &'o mut Vec<Entry>,
}

impl Visitor for Whole<'_> {
    type Error = store::Error;
    fn tree(&mut self, path: &[u8], _id: &ObjectId, _t: &Tree) -> store::Result<()> {
        if !path.is_empty() {
            self.out.push(Entry {
                change: self.change,
                path: shown(&name::join(&self.base, path)),
                dir: true,
            });
        }
        Ok(())
    }
    fn file(&mut self, path: &[u8], _e: &TreeEntry) -> store::Result<()> {
        self.out.push(Entry {
            change: self.change,
            path: shown(&name::join(&self.base, path)),
            dir: false,
        });
        Ok(())
    }
}

fn all_below<S: ObjectRead + ?Sized>(
    store: &S,
    id: &ObjectId,
    at: &[u8],
    change: Change,
    out: &mut Vec<Entry>,
) -> store::Result<()> {
    let mut w = Whole {
        change,
        base: at.to_vec(),
        out,
    };
    walk::walk(store, id, b"", &mut w)
}

/// An entry added or removed: the entry, then every path below it.
fn whole<S: ObjectRead + ?Sized>(
    store: &S,
    e: &TreeEntry,
    at: &[u8],
    change: Change,
    out: &mut Vec<Entry>,
) -> store::Result<()> {
    out.push(Entry {
        change,
        path: shown(at),
        dir: e.kind == EntryKind::Dir,
    });
    if e.kind == EntryKind::Dir {
        all_below(store, &e.id, at, change, out)?;
    }
    Ok(())
}

/// Compare the trees `a` and `b`; `base` is the path they sit at
/// (relative, `""` for the root).
pub fn diff_trees<S: ObjectRead + ?Sized>(
    store: &S,
    a: &ObjectId,
    b: &ObjectId,
    base: &[u8],
) -> store::Result<Vec<Entry>> {
    let mut out = Vec::new();
    if a == b {
        return Ok(out);
    }
    // Explicit stack of tree pairs being compared: any depth.
    struct Frame {
        a: Vec<TreeEntry>,
        b: Vec<TreeEntry>,
        pairs: Vec<(Option<usize>, Option<usize>)>,
        next: usize,
        path: Vec<u8>,
    }
    let open = |a: &ObjectId, b: &ObjectId, path: Vec<u8>, out: &mut Vec<Entry>| {
        let (ta, tb) = (store.read_tree(a)?, store.read_tree(b)?);
        if ta.meta != tb.meta {
            out.push(Entry {
                change: Change::Metadata,
                path: shown(&path),
                dir: true,
            });
        }
        let pairs = walk::zip(&ta.entries, &tb.entries).collect();
        store::Result::Ok(Frame {
            a: ta.entries,
            b: tb.entries,
            pairs,
            next: 0,
            path,
        })
    };
    let mut stack = vec![open(a, b, base.to_vec(), &mut out)?];
    while let Some(top) = stack.last_mut() {
        let Some(&(ia, ib)) = top.pairs.get(top.next) else {
            stack.pop();
            continue;
        };
        top.next += 1;
        let (x, y) = (ia.map(|i| &top.a[i]), ib.map(|i| &top.b[i]));
        let entry_name = x.or(y).map(|e| e.name.as_slice()).unwrap_or(b"");
        let p = name::join(&top.path, entry_name);
        match (x, y) {
            (Some(x), None) => whole(store, x, &p, Change::Removed, &mut out)?,
            (None, Some(y)) => whole(store, y, &p, Change::Added, &mut out)?,
            (Some(x), Some(y)) if x.id == y.id => {}
            (Some(x), Some(y)) => match (x.kind, y.kind) {
                (EntryKind::Dir, EntryKind::Dir) => {
                    let (xa, yb) = (x.id, y.id);
                    let f = open(&xa, &yb, p, &mut out)?;
                    stack.push(f);
                }
                (EntryKind::File, EntryKind::File) => {
                    let (ha, ca) = store.content_digest(&x.id)?;
                    let (hb, cb) = store.content_digest(&y.id)?;
                    let change = if ca == cb && ha.meta.kind == hb.meta.kind {
                        Change::Metadata
                    } else {
                        Change::Modified
                    };
                    out.push(Entry {
                        change,
                        path: shown(&p),
                        dir: false,
                    });
                }
                (_, ky) => {
                    out.push(Entry {
                        change: Change::Modified,
                        path: shown(&p),
                        dir: ky == EntryKind::Dir,
                    });
                    if ky == EntryKind::Dir {
                        all_below(store, &y.id, &p, Change::Added, &mut out)?;
                    } else {
                        all_below(store, &x.id, &p, Change::Removed, &mut out)?;
                    }
                }
            },
            (None, None) => {}
        }
    }
    Ok(out)
}

/// The subtree at `path` (relative) below `root`.
fn subtree<S: ObjectRead + ?Sized>(
    store: &S,
    root: &ObjectId,
    path: &[u8],
    side: &str,
) -> Result<ObjectId, Error> {
    let shown = || name::escape(&name::absolute(path));
    match walk::lookup(store, root, path)? {
        Some((EntryKind::Dir, id)) => Ok(id),
        Some((EntryKind::File, _)) => Err(Error::NotADirectory {
            side: side.to_owned(),
            path: shown(),
        }),
        None => Err(Error::NoSuchPath {
            side: side.to_owned(),
            path: shown(),
        }),
    }
}

/// Compare the trees `a` and `b`, or their subtrees at `path`; `sides`
/// names them in errors.
pub fn diff<S: ObjectRead + ?Sized>(
    store: &S,
    a: &ObjectId,
    b: &ObjectId,
    path: Option<&[u8]>,
    sides: (&str, &str),
) -> Result<Vec<Entry>, Error> {
    let base = walk::normalize(path.unwrap_or(b""));
    let ta = subtree(store, a, &base, sides.0)?;
    let tb = subtree(store, b, &base, sides.1)?;
    Ok(diff_trees(store, &ta, &tb, &base)?)
}

/// Compare the tree `a` of `repo` with the directory `dir` (or their
/// subtrees at `path`): `dir` is scanned into a hash-only store, nothing
/// is written. `progress` counts the files scanned.
pub fn diff_dir<S: ObjectRead>(
    repo: &S,
    a: &ObjectId,
    dir: &Path,
    path: Option<&[u8]>,
    progress: &Progress,
) -> Result<Vec<Entry>, Error> {
    let sink = HashSink::over(repo);
    let scan = commit::commit_dir_tree(&sink, dir, progress).map_err(|source| Error::Scan {
        path: dir.to_path_buf(),
        source,
    })?;
    diff(
        &sink,
        a,
        &scan.root,
        path,
        ("commit", &crate::fsutil::show(dir)),
    )
}
