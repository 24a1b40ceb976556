//! Copying commits into a repository from any source that reads objects
//! (another local repository today; an HTTP remote implements the same
//! [`ObjectRead`]). Every object is read through its source's checks
//! (re-hashed as it streams) and its id is computed again when written;
//! the destination's refs move only after its objects are durable, and
//! only from the value they had when the pull was planned. Plan first
//! (which commits, trees and files are missing), then copy (files in
//! parallel, streamed).

use std::collections::HashSet;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use crate::hash::ObjectId;
use crate::object::{FileKind, ObjectType};
use crate::progress::Progress;
use crate::store::{self, FileContent, ObjectRead, ObjectWrite, Repo, Transaction};
use crate::walk;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{kind} object {id} was written as {got}: the source is damaged")]
    Mismatch {
        kind: ObjectType,
        id: ObjectId,
        got: ObjectId,
    },
    /// A ref would name a commit (or a commit whose tree) the repository
    /// does not have: it is not moved.
    #[error("ref {name} is not moved to commit {commit}: the repository does not have {what}")]
    Incomplete {
        name: String,
        commit: ObjectId,
        what: String,
    },
}

/// A commit to pull, and the ref to set to it in the destination (a ref of
/// the source pulled by name), if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub commit: ObjectId,
    pub set_ref: Option<String>,
}

/// A ref the pull moves: from what the destination had when it was
/// planned to the commit pulled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefMove {
    pub name: String,
    pub old: Option<ObjectId>,
    pub new: ObjectId,
}

/// What a pull will copy.
#[derive(Debug, Default, Serialize)]
pub struct PullPlan {
    pub refs: Vec<RefMove>,
    pub commits: Vec<ObjectId>,
    pub trees: Vec<ObjectId>,
    pub files: Vec<ObjectId>,
}

#[derive(Debug, Default, Serialize)]
pub struct PullStats {
    pub commits: usize,
    pub trees: usize,
    pub files: usize,
    pub content_bytes: u64,
}

/// Resolve revisions of a local source repository: a ref name is pulled
/// and set in the destination; any other revision (an id, `main^`) only
/// pulled.
pub fn local_heads(src: &Repo, revs: &[String]) -> Result<Vec<Head>, Error> {
    revs.iter()
        .map(|rev| {
            let commit = src.rev_parse(rev)?;
            let by_name = store::validate_ref_name(rev).is_ok() && src.read_ref(rev)?.is_some();
            Ok(Head {
                commit,
                set_ref: by_name.then(|| rev.clone()),
            })
        })
        .collect()
}

/// Plan copying `heads` with all the history the source holds (or `depth`
/// parents at most).
pub fn plan<S: ObjectRead>(
    src: &S,
    dest: &Repo,
    heads: &[Head],
    depth: Option<usize>,
) -> Result<PullPlan, Error> {
    let mut p = PullPlan::default();
    for h in heads {
        if let Some(name) = &h.set_ref {
            p.refs.push(RefMove {
                name: name.clone(),
                old: dest.read_ref(name)?,
                new: h.commit,
            });
        }
    }
    let mut seen_commits = HashSet::new();
    let mut commits = Vec::new();
    for h in heads {
        let mut next = Some(h.commit);
        let mut n = 0usize;
        while let Some(c) = next.take() {
            if depth.is_some_and(|d| n > d) || !seen_commits.insert(c) {
                break;
            }
            if !src.has_object(ObjectType::Commit, &c)? {
                break; // the source's own history ends here
            }
            let commit = src.read_commit(&c)?;
            if !dest.has_object(ObjectType::Commit, &c)? {
                p.commits.push(c);
            }
            commits.push(commit.tree);
            next = commit.parent;
            n += 1;
        }
    }
    // Walked even below the trees the destination has: objects below them
    // may have been moved aside by `fsck --delete-corrupt`, and a pull
    // repairs.
    let lacking = walk::missing_from(src, dest, &commits, &mut |_| Ok::<(), Error>(()))?;
    p.trees = lacking.trees;
    p.files = lacking.files;
    Ok(p)
}

fn check(kind: ObjectType, id: &ObjectId, got: ObjectId) -> Result<(), Error> {
    if got != *id {
        return Err(Error::Mismatch { kind, id: *id, got });
    }
    Ok(())
}

/// Copy one file object, streamed.
fn copy_file<S: ObjectRead + ?Sized>(
    src: &S,
    tx: &Transaction<'_>,
    id: &ObjectId,
) -> Result<u64, Error> {
    let mut s = src.open_file(id)?;
    let h = s.header().clone();
    let label = format!("file object {id}");
    let stored = match h.meta.kind {
        FileKind::Symlink => tx.write_symlink(&h.meta, &s.read_all()?)?,
        FileKind::Regular => tx.write_file(
            &h.meta,
            h.size,
            FileContent::Reader {
                reader: &mut s,
                path: Path::new(&label),
            },
        )?,
        _ => tx.write_special(&h.meta)?,
    };
    check(ObjectType::File, id, stored.id)?;
    Ok(h.size)
}

/// Carry out a plan in one transaction of the destination. `progress`
/// counts the objects copied, of all there are, and the file bytes.
pub fn apply<S: ObjectRead + ?Sized>(
    src: &S,
    dest: &Repo,
    p: &PullPlan,
    progress: &Progress,
) -> Result<PullStats, Error> {
    progress.set_total((p.files.len() + p.trees.len() + p.commits.len()) as u64);
    let mut tx = Transaction::begin(dest)?;
    let bytes = p
        .files
        .par_iter()
        .map(|id| {
            let n = copy_file(src, &tx, id)?;
            progress.add(1, n);
            progress.add_new(1);
            Ok::<u64, Error>(n)
        })
        .try_reduce(|| 0, |a, b| Ok(a + b))?;
    for id in &p.trees {
        check(ObjectType::Tree, id, tx.write_tree(&src.read_tree(id)?)?)?;
        progress.add(1, 0);
    }
    for id in &p.commits {
        check(
            ObjectType::Commit,
            id,
            tx.write_commit(&src.read_commit(id)?)?,
        )?;
        progress.add(1, 0);
    }
    // Whatever the plan says, a ref moves only to a commit that is here
    // (written now, or before), with its tree. (What this transaction
    // wrote may not be visible to lookups until it commits: an archive
    // repository's new pack.)
    let new_commits: HashSet<&ObjectId> = p.commits.iter().collect();
    let new_trees: HashSet<&ObjectId> = p.trees.iter().collect();
    for r in &p.refs {
        let incomplete = |what: String| Error::Incomplete {
            name: r.name.clone(),
            commit: r.new,
            what,
        };
        let commit = if new_commits.contains(&r.new) {
            src.read_commit(&r.new)?
        } else if tx.has_object(ObjectType::Commit, &r.new)? {
            tx.read_commit(&r.new)?
        } else {
            return Err(incomplete("it".into()));
        };
        if !new_trees.contains(&commit.tree) && !tx.has_object(ObjectType::Tree, &commit.tree)? {
            return Err(incomplete(format!("its tree {}", commit.tree)));
        }
        tx.set_ref(&r.name, r.old, r.new)?;
    }
    tx.commit()?;
    Ok(PullStats {
        commits: p.commits.len(),
        trees: p.trees.len(),
        files: p.files.len(),
        content_bytes: bytes,
    })
}

/// Pull from a local repository: plan, then copy in source storage order
/// (pack frames are read once).
pub fn pull_local(
    src: &Repo,
    dest: &Repo,
    p: &mut PullPlan,
    progress: &Progress,
) -> Result<PullStats, Error> {
    let mut keyed = p
        .files
        .iter()
        .map(|id| Ok((src.storage_order_key(id)?, *id)))
        .collect::<Result<Vec<_>, store::Error>>()?;
    keyed.sort();
    p.files = keyed.into_iter().map(|(_, id)| id).collect();
    apply(src, dest, p, progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RepoMode;

    #[test]
    fn a_ref_never_moves_to_a_commit_the_repository_lacks() {
        let tmp = tempfile::tempdir().expect("tmp");
        let repo = Repo::init(&tmp.path().join("r"), RepoMode::BareUser).expect("init");
        let nowhere = ObjectId::digest(b"a commit nobody has");
        let plan = PullPlan {
            refs: vec![RefMove {
                name: "os/main".into(),
                old: None,
                new: nowhere,
            }],
            ..Default::default()
        };
        let e = apply(&repo, &repo, &plan, &Progress::default()).expect_err("refused");
        assert!(matches!(e, Error::Incomplete { .. }), "{e}");
        assert_eq!(repo.read_ref("os/main").expect("read"), None);
    }
}
