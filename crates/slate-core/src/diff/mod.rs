//! Differences between two trees: added, removed and modified paths, a
//! change of metadata alone (mode, owner, xattrs) marked as such. Subtrees
//! with equal ids are skipped without being read.

use serde::Serialize;

use crate::hash::ObjectId;
use crate::object::{EntryKind, Tree, TreeEntry};
use crate::store::{self, Repo};

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
    pub path: String,
    /// Whether the path is a directory (on the side that has it; the new
    /// side for modifications).
    pub dir: bool,
}

/// Compare two trees; `base` is the path they sit at (for output).
pub fn diff_trees(
    repo: &Repo,
    a: &ObjectId,
    b: &ObjectId,
    base: &str,
) -> Result<Vec<Entry>, store::Error> {
    let mut out = Vec::new();
    if a != b {
        let (ta, tb) = (repo.read_tree(a)?, repo.read_tree(b)?);
        if ta.meta != tb.meta {
            out.push(Entry {
                change: Change::Metadata,
                path: display(base),
                dir: true,
            });
        }
        walk(repo, &ta, &tb, base, &mut out)?;
    }
    Ok(out)
}

fn display(p: &str) -> String {
    if p.is_empty() {
        "/".into()
    } else {
        p.to_owned()
    }
}

/// An entry added or removed whole: the entry, then every path below it.
fn whole(
    repo: &Repo,
    e: &TreeEntry,
    base: &str,
    change: Change,
    out: &mut Vec<Entry>,
) -> Result<(), store::Error> {
    let p = format!("{base}/{}", String::from_utf8_lossy(&e.name));
    out.push(Entry {
        change,
        path: p.clone(),
        dir: e.kind == EntryKind::Dir,
    });
    if e.kind == EntryKind::Dir {
        all_below(repo, &e.id, &p, change, out)?;
    }
    Ok(())
}

/// Every path below a tree, for an added or removed subtree.
fn all_below(
    repo: &Repo,
    id: &ObjectId,
    base: &str,
    change: Change,
    out: &mut Vec<Entry>,
) -> Result<(), store::Error> {
    for e in repo.read_tree(id)?.entries {
        whole(repo, &e, base, change, out)?;
    }
    Ok(())
}

fn walk(
    repo: &Repo,
    a: &Tree,
    b: &Tree,
    base: &str,
    out: &mut Vec<Entry>,
) -> Result<(), store::Error> {
    let (mut i, mut j) = (0, 0);
    while i < a.entries.len() || j < b.entries.len() {
        let ea = a.entries.get(i);
        let eb = b.entries.get(j);
        let order = match (ea, eb) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                whole(
                    repo,
                    ea.expect("a has an entry"),
                    base,
                    Change::Removed,
                    out,
                )?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                whole(repo, eb.expect("b has an entry"), base, Change::Added, out)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (ea.expect("a"), eb.expect("b"));
                let p = format!("{base}/{}", String::from_utf8_lossy(&x.name));
                if x.id != y.id {
                    match (x.kind, y.kind) {
                        (EntryKind::Dir, EntryKind::Dir) => {
                            out.extend(diff_trees(repo, &x.id, &y.id, &p)?)
                        }
                        (EntryKind::File, EntryKind::File) => {
                            let (ha, ca) = repo.file_digest(&x.id)?;
                            let (hb, cb) = repo.file_digest(&y.id)?;
                            let change = if ca == cb && ha.meta.kind == hb.meta.kind {
                                Change::Metadata
                            } else {
                                Change::Modified
                            };
                            out.push(Entry {
                                change,
                                path: p,
                                dir: false,
                            });
                        }
                        (_, ky) => {
                            out.push(Entry {
                                change: Change::Modified,
                                path: p.clone(),
                                dir: ky == EntryKind::Dir,
                            });
                            if ky == EntryKind::Dir {
                                all_below(repo, &y.id, &p, Change::Added, out)?;
                            } else {
                                all_below(repo, &x.id, &p, Change::Removed, out)?;
                            }
                        }
                    }
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}
