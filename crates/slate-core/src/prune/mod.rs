//! Deleting what no root reaches. Plan first (a plain value that
//! `--dry-run` prints, made without the writer lock), then apply in a
//! transaction, planned again under its lock: commits first, then trees,
//! then files, so that a prune killed at any moment leaves every kept
//! commit complete (a removed parent only shortens history).
//!
//! Roots: every commit in the repository by default (so only objects no
//! commit uses go); with `refs_only` or `depth`, only the refs, each with
//! at most `depth` parents, plus any commit on their history younger than
//! `keep_younger_than`. A ref whose head is not a commit of the repository
//! (missing, moved aside as corrupt, or an object of another kind) stops
//! the prune: it would delete everything the ref protects. A pack is
//! deleted when none of its objects is live; live packs are kept whole.
//! Packs without an index (an interrupted writer's) are deleted too.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::hash::ObjectId;
use crate::object::{ObjectType, TreeEntry};
use crate::progress::Progress;
use crate::store::{self, ObjectRead, Repo, Transaction};
use crate::walk::{self, Visit, Visitor};

#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    pub depth: Option<usize>,
    /// Unix time: commits at or after it are kept.
    pub keep_younger_than: Option<i64>,
    pub refs_only: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct PrunePlan {
    pub commits_kept: usize,
    /// Loose objects to delete, commits first.
    pub delete: Vec<(String, ObjectId)>,
    /// Packs none of whose objects is live.
    pub delete_packs: Vec<String>,
    /// Bytes the deletions free.
    pub freed_bytes: u64,
    /// Unreachable objects that stay because their pack holds live ones.
    pub kept_in_packs: usize,
}

/// Why a prune cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(
        "ref {name} names {id}, which is not a commit in this repository ({why}); \
         a prune would delete everything the ref protects"
    )]
    BrokenRef {
        name: String,
        id: ObjectId,
        why: String,
    },
}

/// What a ref's head is, when it is not a commit here.
fn why_not_a_commit(repo: &Repo, id: &ObjectId) -> Result<Option<String>, store::Error> {
    if repo.has_object(ObjectType::Commit, id)? {
        return Ok(None);
    }
    for kind in [ObjectType::Tree, ObjectType::File] {
        if repo.has_object(kind, id)? {
            return Ok(Some(format!("it is a {kind} object")));
        }
    }
    Ok(Some("it is missing".into()))
}

pub fn plan(repo: &Repo, opts: &PruneOptions) -> Result<PrunePlan, Error> {
    let objects = repo.list_objects()?;
    let mut keep_commits: Vec<ObjectId> = Vec::new();
    if opts.refs_only || opts.depth.is_some() {
        // The least depth at which each commit was reached: a commit past
        // one ref's depth may be another ref's head.
        let mut reached: HashMap<ObjectId, usize> = HashMap::new();
        let mut kept: HashSet<ObjectId> = HashSet::new();
        for (name, head) in repo.list_refs()? {
            if let Some(why) = why_not_a_commit(repo, &head)? {
                return Err(Error::BrokenRef {
                    name,
                    id: head,
                    why,
                });
            }
            let mut next = Some(head);
            let mut n = 0usize;
            while let Some(c) = next.take() {
                if reached.get(&c).is_some_and(|&m| m <= n)
                    || !repo.has_object(ObjectType::Commit, &c)?
                {
                    break;
                }
                reached.insert(c, n);
                let commit = repo.read_commit(&c)?;
                let within = opts.depth.is_none_or(|d| n <= d);
                let young = opts
                    .keep_younger_than
                    .is_some_and(|t| commit.timestamp >= t);
                if (within || young) && kept.insert(c) {
                    keep_commits.push(c);
                }
                next = commit.parent;
                n += 1;
            }
        }
    } else {
        keep_commits = objects
            .iter()
            .filter(|(k, _)| *k == ObjectType::Commit)
            .map(|(_, id)| *id)
            .collect();
    }
    let mut live: HashSet<ObjectId> = keep_commits.iter().copied().collect();
    for c in &keep_commits {
        mark(repo, &repo.read_commit(c)?.tree, &mut live)?;
    }
    let mut p = PrunePlan {
        commits_kept: keep_commits.len(),
        ..PrunePlan::default()
    };
    let packed: HashSet<ObjectId> = repo
        .packed_objects()?
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    for kind in [ObjectType::Commit, ObjectType::Tree, ObjectType::File] {
        for (_, id) in objects
            .iter()
            .filter(|(k, id)| *k == kind && !live.contains(id))
        {
            if packed.contains(id) {
                continue;
            }
            p.freed_bytes += std::fs::symlink_metadata(repo.object_path(kind, id))
                .map(|m| m.len())
                .unwrap_or(0);
            p.delete.push((kind.to_string(), *id));
        }
    }
    for (name, bytes) in repo.orphan_packs()? {
        p.delete_packs.push(name);
        p.freed_bytes += bytes;
    }
    for (name, ids, bytes) in repo.pack_contents()? {
        let dead = ids.iter().filter(|id| !live.contains(id)).count();
        if dead == ids.len() {
            p.delete_packs.push(name);
            p.freed_bytes += bytes;
        } else {
            p.kept_in_packs += dead;
        }
    }
    Ok(p)
}

/// Marks every object of the trees it walks as live.
struct Marker<'a> {
    live: &'a mut HashSet<ObjectId>,
}

impl Visitor for Marker<'_> {
    type Error = store::Error;
    fn enter(&mut self, _path: &[u8], id: &ObjectId) -> Result<Visit, store::Error> {
        Ok(if self.live.insert(*id) {
            Visit::Descend
        } else {
            Visit::Skip
        })
    }
    fn file(&mut self, _path: &[u8], e: &TreeEntry) -> Result<(), store::Error> {
        self.live.insert(e.id);
        Ok(())
    }
}

fn mark(repo: &Repo, tree: &ObjectId, live: &mut HashSet<ObjectId>) -> Result<(), store::Error> {
    walk::walk(repo, tree, b"", &mut Marker { live })
}

/// Carry out a plan made under the transaction's lock (see [`prune`]).
fn apply(tx: &Transaction<'_>, p: &PrunePlan, progress: &Progress) -> Result<(), store::Error> {
    progress.set_total((p.delete.len() + p.delete_packs.len()) as u64);
    for (kind, id) in &p.delete {
        let kind = ObjectType::from_suffix(kind).expect("plan holds valid kinds");
        tx.delete_object(kind, id)?;
        progress.add(1, 0);
    }
    for name in &p.delete_packs {
        tx.delete_pack(name)?;
        progress.add(1, 0);
    }
    Ok(())
}

/// Plan, and unless `dry_run` apply. A dry run takes no lock; a prune plans
/// again inside a transaction, so that no commit runs in between.
pub fn prune(
    repo: &Repo,
    opts: &PruneOptions,
    dry_run: bool,
    progress: &Progress,
) -> Result<PrunePlan, Error> {
    if dry_run {
        return plan(repo, opts);
    }
    let tx = Transaction::begin(repo)?;
    let p = plan(repo, opts)?;
    apply(&tx, &p, progress)?;
    tx.commit()?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{Commit, DirMeta, EntryKind, FileKind, FileMeta, Tree, TreeEntry};
    use crate::store::{FileContent, ObjectWrite, RepoMode};
    use proptest::prelude::*;

    fn file(repo: &Transaction<'_>, n: u8) -> ObjectId {
        let meta = FileMeta {
            kind: FileKind::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            rdev: 0,
            xattrs: vec![],
        };
        let content = vec![n; n as usize % 7 + 1];
        repo.write_file(&meta, content.len() as u64, FileContent::Bytes(&content))
            .expect("file")
            .id
    }

    /// A commit whose tree holds files `picks` (a small pool, so versions share objects).
    fn commit(repo: &Transaction<'_>, picks: &[u8], parent: Option<ObjectId>, ts: i64) -> ObjectId {
        let mut sub = Tree {
            meta: DirMeta::default(),
            entries: vec![],
        };
        for &p in picks {
            sub.entries.push(TreeEntry {
                name: format!("f{p}").into_bytes(),
                kind: EntryKind::File,
                id: file(repo, p),
            });
        }
        sub.sort();
        sub.entries.dedup_by(|a, b| a.name == b.name);
        let sub_id = repo.write_tree(&sub).expect("tree");
        let root = Tree {
            meta: DirMeta::default(),
            entries: vec![TreeEntry {
                name: b"d".to_vec(),
                kind: EntryKind::Dir,
                id: sub_id,
            }],
        };
        let tree = repo.write_tree(&root).expect("tree");
        let c = Commit {
            parent,
            tree,
            timestamp: ts,
            subject: String::new(),
            body: String::new(),
            metadata: Default::default(),
        };
        repo.write_commit(&c).expect("commit")
    }

    fn complete(repo: &Repo, c: &ObjectId) -> bool {
        fn tree_ok(repo: &Repo, id: &ObjectId) -> bool {
            let Ok(t) = repo.read_tree(id) else {
                return false;
            };
            t.entries.iter().all(|e| match e.kind {
                EntryKind::Dir => tree_ok(repo, &e.id),
                EntryKind::File => repo.read_file(&e.id).is_ok(),
            })
        }
        repo.read_commit(c)
            .map(|c| tree_ok(repo, &c.tree))
            .unwrap_or(false)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        /// Over random histories on random branches, prune never breaks a
        /// ref: each ref's kept commits stay complete, and loose garbage goes.
        #[test]
        fn prune_never_breaks_a_ref(
            history in proptest::collection::vec((0usize..3, proptest::collection::vec(0u8..12, 0..5)), 1..14),
            depth in proptest::option::of(0usize..4),
            refs_only: bool,
            archive: bool,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let mode = if archive { RepoMode::Archive } else { RepoMode::BareUser };
            let repo = Repo::init(&dir.path().join("r"), mode).expect("init");
            let mut heads: [Option<ObjectId>; 3] = [None; 3];
            let mut tx = Transaction::begin(&repo).expect("begin");
            for (i, (branch, picks)) in history.iter().enumerate() {
                heads[*branch] = Some(commit(&tx, picks, heads[*branch], i as i64));
            }
            for (b, head) in heads.iter().enumerate() {
                if let Some(h) = head {
                    tx.create_ref(&format!("b{b}"), *h).expect("ref");
                }
            }
            // Garbage: a commit no ref names.
            let orphan = commit(&tx, &[200], None, 99);
            tx.commit().expect("commit");
            let opts = PruneOptions { depth, keep_younger_than: None, refs_only };
            prune(&repo, &opts, false, &Progress::default()).expect("prune");
            for (_, head) in repo.list_refs().expect("refs") {
                let mut next = Some(head);
                let mut n = 0;
                while let Some(c) = next {
                    if depth.is_some_and(|d| n > d) { break; }
                    prop_assert!(complete(&repo, &c), "commit {} of a ref is incomplete", c);
                    next = repo.read_commit(&c).expect("commit").parent;
                    n += 1;
                }
            }
            let orphan_kept = repo.has_object(ObjectType::Commit, &orphan).expect("has");
            prop_assert_eq!(orphan_kept, !(refs_only || depth.is_some()));
            // A second prune finds nothing more to do.
            let again = plan(&repo, &opts).expect("plan");
            prop_assert!(again.delete.is_empty(), "{:?}", again.delete);
        }
    }
}
