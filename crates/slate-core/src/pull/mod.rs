//! Copying commits between local repositories of any modes. Every object is
//! read through its source's checks (re-hashed) and its id is computed again
//! when written; the destination's refs move only after its objects are
//! durable. Plan first (which commits, trees and files are missing), then
//! copy (files in parallel).

use std::collections::HashSet;

use rayon::prelude::*;
use serde::Serialize;

use crate::hash::ObjectId;
use crate::object::{EntryKind, FileKind, ObjectType};
use crate::progress::Progress;
use crate::store::{self, FileContent, Repo};

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
}

/// What a pull will copy.
#[derive(Debug, Default, Serialize)]
pub struct PullPlan {
    /// (ref to set in the destination, commit), for refs named by name.
    pub refs: Vec<(String, String)>,
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

/// Plan copying `revs` (ref names or revisions) with all the history the
/// source holds (or `depth` parents at most).
pub fn plan(
    src: &Repo,
    dest: &Repo,
    revs: &[String],
    depth: Option<usize>,
) -> Result<PullPlan, Error> {
    let mut p = PullPlan::default();
    let mut seen_trees = HashSet::new();
    let mut seen_files = HashSet::new();
    let mut seen_commits = HashSet::new();
    for rev in revs {
        let head = src.rev_parse(rev)?;
        if store::validate_ref_name(rev).is_ok() && src.read_ref(rev)?.is_some() {
            p.refs.push((rev.clone(), head.to_hex()));
        }
        let mut next = Some(head);
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
            walk_tree(
                src,
                dest,
                &commit.tree,
                &mut seen_trees,
                &mut seen_files,
                &mut p,
            )?;
            next = commit.parent;
            n += 1;
        }
    }
    Ok(p)
}

fn walk_tree(
    src: &Repo,
    dest: &Repo,
    id: &ObjectId,
    trees: &mut HashSet<ObjectId>,
    files: &mut HashSet<ObjectId>,
    p: &mut PullPlan,
) -> Result<(), Error> {
    if !trees.insert(*id) {
        return Ok(());
    }
    // Walked even when the destination has the tree: objects below it may
    // have been moved aside by `fsck --delete-corrupt`, and a pull repairs.
    if !dest.has_object(ObjectType::Tree, id)? {
        p.trees.push(*id);
    }
    for e in src.read_tree(id)?.entries {
        match e.kind {
            EntryKind::Dir => walk_tree(src, dest, &e.id, trees, files, p)?,
            EntryKind::File => {
                if files.insert(e.id) && !dest.has_object(ObjectType::File, &e.id)? {
                    p.files.push(e.id);
                }
            }
        }
    }
    Ok(())
}

fn check(kind: ObjectType, id: &ObjectId, got: ObjectId) -> Result<(), Error> {
    if got != *id {
        return Err(Error::Mismatch { kind, id: *id, got });
    }
    Ok(())
}

/// Carry out a plan. Takes the destination's writer lock. `progress`
/// counts the objects copied, of all there are, and the file bytes.
pub fn apply(
    src: &Repo,
    dest: &Repo,
    p: &PullPlan,
    progress: &Progress,
) -> Result<PullStats, Error> {
    progress.set_total((p.files.len() + p.trees.len() + p.commits.len()) as u64);
    let _lock = dest.lock()?;
    dest.begin_pack()?;
    let copied = (|| -> Result<u64, Error> {
        // Files in the source's storage order: pack frames are read once.
        let mut files = p
            .files
            .iter()
            .map(|id| Ok((src.storage_order_key(id)?, *id)))
            .collect::<Result<Vec<_>, store::Error>>()?;
        files.sort();
        let bytes = files
            .par_iter()
            .map(|(_, id)| -> Result<u64, Error> {
                let (h, content) = src.read_file(id)?;
                let stored = match h.meta.kind {
                    FileKind::Symlink => dest.write_symlink(&h.meta, &content)?,
                    FileKind::Regular => {
                        dest.write_file(&h.meta, h.size, FileContent::Bytes(&content))?
                    }
                    _ => dest.write_special(&h.meta)?,
                };
                check(ObjectType::File, id, stored.id)?;
                progress.add(1, h.size);
                Ok(h.size)
            })
            .try_reduce(|| 0, |a, b| Ok(a + b))?;
        for id in &p.trees {
            check(ObjectType::Tree, id, dest.write_tree(&src.read_tree(id)?)?)?;
            progress.add(1, 0);
        }
        for id in &p.commits {
            check(
                ObjectType::Commit,
                id,
                dest.write_commit(&src.read_commit(id)?)?,
            )?;
            progress.add(1, 0);
        }
        Ok(bytes)
    })();
    let bytes = match copied {
        Ok(b) => b,
        Err(e) => {
            dest.abort_pack();
            return Err(e);
        }
    };
    dest.finish_pack()?;
    dest.sync()?;
    for (name, id) in &p.refs {
        let id: ObjectId = id
            .parse()
            .map_err(|e: crate::hash::ParseIdError| store::Error::Invalid(e.to_string()))?;
        dest.write_ref(name, &id)?;
    }
    Ok(PullStats {
        commits: p.commits.len(),
        trees: p.trees.len(),
        files: p.files.len(),
        content_bytes: bytes,
    })
}
