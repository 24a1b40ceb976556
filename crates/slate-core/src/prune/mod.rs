//! Deleting what no root reaches. Plan first (a plain value that
//! `--dry-run` prints), then apply under the writer lock: commits first,
//! then trees, then files, so that a prune killed at any moment leaves
//! every kept commit complete (a removed parent only shortens history).
//!
//! Roots: every commit in the repository by default (so only objects no
//! commit uses go); with `refs_only` or `depth`, only the refs, each with
//! at most `depth` parents, plus any commit on their history younger than
//! `keep_younger_than`. A pack is deleted when none of its objects is live;
//! live packs are kept whole. Packs without an index (an interrupted
//! writer's) are deleted too.

use std::collections::HashSet;

use serde::Serialize;

use crate::hash::ObjectId;
use crate::object::{EntryKind, ObjectType};
use crate::store::{self, Repo};

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

pub fn plan(repo: &Repo, opts: &PruneOptions) -> Result<PrunePlan, store::Error> {
    let objects = repo.list_objects()?;
    let mut keep_commits: Vec<ObjectId> = Vec::new();
    if opts.refs_only || opts.depth.is_some() {
        let mut seen = HashSet::new();
        for (_, head) in repo.list_refs()? {
            let mut next = Some(head);
            let mut n = 0usize;
            while let Some(c) = next.take() {
                if !seen.insert(c) || !repo.has_object(ObjectType::Commit, &c)? {
                    break;
                }
                let commit = repo.read_commit(&c)?;
                let within = opts.depth.is_none_or(|d| n <= d);
                let young = opts
                    .keep_younger_than
                    .is_some_and(|t| commit.timestamp >= t);
                if within || young {
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

fn mark(repo: &Repo, tree: &ObjectId, live: &mut HashSet<ObjectId>) -> Result<(), store::Error> {
    if !live.insert(*tree) {
        return Ok(());
    }
    for e in repo.read_tree(tree)?.entries {
        match e.kind {
            EntryKind::Dir => mark(repo, &e.id, live)?,
            EntryKind::File => {
                live.insert(e.id);
            }
        }
    }
    Ok(())
}

/// Carry out a plan made under the same lock (see [`prune`]).
fn apply(repo: &Repo, p: &PrunePlan) -> Result<(), store::Error> {
    for (kind, id) in &p.delete {
        let kind = ObjectType::from_suffix(kind).expect("plan holds valid kinds");
        repo.delete_object(kind, id)?;
    }
    for name in &p.delete_packs {
        repo.delete_pack(name)?;
    }
    repo.sync()
}

/// Plan and (unless `dry_run`) apply, holding the writer lock throughout so
/// that no commit runs in between.
pub fn prune(repo: &Repo, opts: &PruneOptions, dry_run: bool) -> Result<PrunePlan, store::Error> {
    let _lock = repo.lock()?;
    let p = plan(repo, opts)?;
    if !dry_run {
        apply(repo, &p)?;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{Commit, DirMeta, FileKind, FileMeta, Tree, TreeEntry};
    use crate::store::{FileContent, RepoMode};
    use proptest::prelude::*;

    fn file(repo: &Repo, n: u8) -> ObjectId {
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
    fn commit(repo: &Repo, picks: &[u8], parent: Option<ObjectId>, ts: i64) -> ObjectId {
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
            for (i, (branch, picks)) in history.iter().enumerate() {
                let c = commit(&repo, picks, heads[*branch], i as i64);
                heads[*branch] = Some(c);
                repo.write_ref(&format!("b{branch}"), &c).expect("ref");
            }
            // Garbage: a commit no ref names.
            let orphan = commit(&repo, &[200], None, 99);
            let opts = PruneOptions { depth, keep_younger_than: None, refs_only };
            prune(&repo, &opts, false).expect("prune");
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
