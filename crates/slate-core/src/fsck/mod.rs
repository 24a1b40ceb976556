//! Checking a repository: every object re-hashed and decoded (in parallel,
//! contents streamed), every pack file checked whole, every commit
//! reachable from a ref walked to make sure its trees and files are
//! present, and each bad object reported with the commits and paths that
//! use it. A ref must name a commit. A parent commit that is absent ends
//! that history (as after `prune --depth`) and is reported as such, not as
//! damage.
//!
//! Objects are identified by kind and id. A writer working meanwhile
//! (a prune deleting, a commit adding) is not damage: an object that
//! vanishes between the listing and its check is not reported, and what
//! looks damaged is checked again under the writer lock before it is
//! reported.

mod walk;

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::hash::ObjectId;
use crate::object::ObjectType;
use crate::progress::Progress;
use crate::store::{self, ObjectRead, Repo, Transaction};

/// What is wrong with one object.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Problem {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `corrupt` (present, but its bytes do not match its id or do not
    /// decode) or `missing`.
    pub state: &'static str,
    pub detail: String,
    /// `COMMIT:/path` of every use found (at most 20 listed; paths escaped).
    pub used_by: Vec<String>,
    /// Uses beyond those listed.
    pub more_uses: usize,
}

/// A pack file that is damaged as a whole.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PackProblem {
    pub pack: String,
    pub detail: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub objects_checked: usize,
    pub commits_walked: usize,
    pub problems: Vec<Problem>,
    /// Packs whose index or pack file is damaged.
    pub pack_problems: Vec<PackProblem>,
    /// Refs whose history ends at an absent parent: (ref, last commit present).
    pub truncated_histories: Vec<(String, String)>,
    /// Corrupt objects moved aside (with `delete_corrupt`).
    pub moved_aside: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.pack_problems.is_empty()
    }
}

const MAX_USES: usize = 20;

type Key = (ObjectType, ObjectId);

/// The rehash of every listed object: which are corrupt.
fn rehash(
    repo: &Repo,
    objects: &[Key],
    progress: &Progress,
) -> Result<HashMap<Key, String>, store::Error> {
    Ok(objects
        .par_iter()
        .filter_map(|&(kind, id)| {
            let r = match kind {
                ObjectType::File => repo.open_file(&id).and_then(|mut s| s.each_chunk(|_| ())),
                ObjectType::Tree => repo.read_tree(&id).map(drop),
                ObjectType::Commit => repo.read_commit(&id).map(drop),
            };
            progress.add(1, 0);
            match r {
                Ok(()) => None,
                // Listed, then gone: a prune or a repair meanwhile.
                Err(store::Error::Missing { .. }) => None,
                Err(e) => Some(((kind, id), e.to_string())),
            }
        })
        .collect())
}

/// Check `repo`. With `delete_corrupt`, corrupt loose objects are moved to
/// `REPO/corrupt/` (and a pack holding corrupt objects is emptied into
/// loose objects and moved there), so that a later pull fetches them again.
/// `progress` counts the objects checked, of all there are.
pub fn fsck(
    repo: &Repo,
    delete_corrupt: bool,
    progress: &Progress,
) -> Result<Report, store::Error> {
    let mut objects = repo.list_objects()?;
    // Storage order: each pack frame is then decompressed once.
    let mut keyed = objects
        .drain(..)
        .map(|o| Ok((repo.storage_order_key(&o.1)?, o)))
        .collect::<Result<Vec<_>, store::Error>>()?;
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let objects: Vec<Key> = keyed.into_iter().map(|(_, o)| o).collect();
    progress.set_total(objects.len() as u64);
    let mut corrupt = rehash(repo, &objects, progress)?;
    let mut pack_problems = check_packs(repo)?;
    let mut report = walk::check_refs(repo, &corrupt)?;
    report.objects_checked = objects.len();
    if !report.problems.is_empty() || !corrupt.is_empty() || !pack_problems.is_empty() {
        // Confirm under the writer lock, with no writer at work: an object
        // a concurrent prune deleted, or a ref it moved, is not damage.
        if let Ok(_tx) = Transaction::begin(repo) {
            corrupt.retain(|&(kind, id), _| {
                !matches!(
                    recheck(repo, kind, &id),
                    Ok(true) | Err(store::Error::Missing { .. })
                )
            });
            pack_problems = check_packs(repo)?;
            let again = walk::check_refs(repo, &corrupt)?;
            report.problems = again.problems;
            report.truncated_histories = again.truncated_histories;
            report.commits_walked = again.commits_walked;
        }
    }
    // Corrupt objects no commit uses are still damage.
    for ((kind, id), detail) in &corrupt {
        if !report.problems.iter().any(|p| p.id == id.to_hex()) {
            report.problems.push(Problem {
                id: id.to_hex(),
                kind: kind.to_string(),
                state: "corrupt",
                detail: detail.clone(),
                used_by: Vec::new(),
                more_uses: 0,
            });
        }
    }
    report.problems.sort_by(|a, b| a.id.cmp(&b.id));
    report.pack_problems = pack_problems;
    if delete_corrupt && !corrupt.is_empty() {
        report.moved_aside = move_aside(repo, &corrupt)?;
    }
    Ok(report)
}

/// Whether an object reads back sound now.
fn recheck(repo: &Repo, kind: ObjectType, id: &ObjectId) -> Result<bool, store::Error> {
    match kind {
        ObjectType::File => repo.open_file(id)?.each_chunk(|_| ())?,
        ObjectType::Tree => drop(repo.read_tree(id)?),
        ObjectType::Commit => drop(repo.read_commit(id)?),
    }
    Ok(true)
}

/// Every pack whose index cannot be used, or whose pack file does not
/// hash to its name.
fn check_packs(repo: &Repo) -> Result<Vec<PackProblem>, store::Error> {
    let mut out: Vec<PackProblem> = repo
        .damaged_packs()?
        .into_iter()
        .map(|d| PackProblem {
            pack: d.name,
            detail: d.reason,
        })
        .collect();
    for (name, _, _) in repo.pack_contents()? {
        if let Err(e) = repo.verify_pack(&name) {
            out.push(PackProblem {
                pack: name,
                detail: e.to_string(),
            });
        }
    }
    out.sort_by(|a, b| a.pack.cmp(&b.pack));
    Ok(out)
}

fn move_aside(repo: &Repo, corrupt: &HashMap<Key, String>) -> Result<Vec<String>, store::Error> {
    let tx = Transaction::begin(repo)?;
    let bad: HashSet<ObjectId> = corrupt.keys().map(|k| k.1).collect();
    let mut moved = Vec::new();
    let mut packs = BTreeMap::new();
    for (kind, id) in corrupt.keys() {
        if tx.move_aside(*kind, id)? {
            moved.push(id.to_hex());
        } else if let Some(pack) = repo.pack_of(id)? {
            packs.insert(pack, ());
            moved.push(id.to_hex());
        }
    }
    // A packed object cannot be moved alone: the pack's sound objects
    // become loose ones, then the pack goes aside.
    for pack in packs.keys() {
        tx.evacuate_pack(pack, &bad)?;
    }
    tx.commit()?;
    moved.sort();
    Ok(moved)
}
