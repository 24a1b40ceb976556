//! Checking a repository: every object re-hashed and decoded (in parallel),
//! every commit reachable from a ref walked to make sure its trees and files
//! are present, and each bad object reported with the commits and paths
//! that use it. A parent commit that is absent ends that history (as after
//! `prune --depth`) and is reported as such, not as damage.

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::hash::ObjectId;
use crate::object::{EntryKind, ObjectType, Tree};
use crate::progress::Progress;
use crate::store::{self, Repo};

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
    /// `COMMIT:/path` of every use found (at most 20 listed).
    pub used_by: Vec<String>,
    /// Uses beyond those listed.
    pub more_uses: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub objects_checked: usize,
    pub commits_walked: usize,
    pub problems: Vec<Problem>,
    /// Refs whose history ends at an absent parent: (ref, last commit present).
    pub truncated_histories: Vec<(String, String)>,
    /// Corrupt objects moved aside (with `delete_corrupt`).
    pub moved_aside: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

const MAX_USES: usize = 20;

/// Check `repo`. With `delete_corrupt`, corrupt loose objects are moved to
/// `REPO/corrupt/` (under the writer lock) so that a later pull fetches
/// them again. `progress` counts the objects checked, of all there are.
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
    let objects: Vec<(ObjectType, ObjectId)> = keyed.into_iter().map(|(_, o)| o).collect();
    progress.set_total(objects.len() as u64);
    let corrupt: HashMap<ObjectId, (ObjectType, String)> = objects
        .par_iter()
        .filter_map(|(kind, id)| {
            let r = match kind {
                ObjectType::File => repo.read_file(id).map(drop),
                ObjectType::Tree => repo.read_tree(id).map(drop),
                ObjectType::Commit => repo.read_commit(id).map(drop),
            };
            progress.add(1, 0);
            r.err().map(|e| (*id, (*kind, e.to_string())))
        })
        .collect();
    let present: HashSet<ObjectId> = objects.iter().map(|(_, id)| *id).collect();
    let mut report = Report {
        objects_checked: objects.len(),
        ..Report::default()
    };

    // Walk every commit reachable from a ref.
    let mut uses: BTreeMap<ObjectId, (ObjectType, Vec<String>, usize)> = BTreeMap::new();
    let mut note = |id: ObjectId, kind: ObjectType, at: String| {
        let e = uses.entry(id).or_insert((kind, Vec::new(), 0));
        if e.1.len() < MAX_USES {
            e.1.push(at);
        } else {
            e.2 += 1;
        }
    };
    let mut trees: HashMap<ObjectId, Option<Tree>> = HashMap::new();
    let mut seen_commits = HashSet::new();
    for (name, head) in repo.list_refs()? {
        let mut next = Some(head);
        let mut last_present = None;
        while let Some(c) = next.take() {
            if !present.contains(&c) {
                match last_present {
                    // The ref itself names an absent commit: damage.
                    None => note(c, ObjectType::Commit, format!("ref {name}")),
                    Some(l) => report
                        .truncated_histories
                        .push((name.clone(), ObjectId::to_hex(&l))),
                }
                break;
            }
            if !seen_commits.insert(c) {
                break;
            }
            last_present = Some(c);
            let Ok(commit) = repo.read_commit(&c) else {
                note(c, ObjectType::Commit, format!("ref {name}"));
                break;
            };
            report.commits_walked += 1;
            let label = c.short(12);
            walk(
                repo,
                &commit.tree,
                &format!("{label}:"),
                &present,
                &corrupt,
                &mut trees,
                &mut note,
            );
            next = commit.parent;
        }
    }
    for (id, (kind, used_by, more)) in uses {
        let (state, detail) = match corrupt.get(&id) {
            Some((_, d)) => ("corrupt", d.clone()),
            None if !present.contains(&id) => (
                "missing",
                format!("{kind} object {id} is not in the repository"),
            ),
            None => continue,
        };
        report.problems.push(Problem {
            id: id.to_hex(),
            kind: kind.to_string(),
            state,
            detail,
            used_by,
            more_uses: more,
        });
    }
    // Corrupt objects no commit uses are still damage.
    for (id, (kind, detail)) in &corrupt {
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
    if delete_corrupt && !corrupt.is_empty() {
        let _lock = repo.lock()?;
        let bad: HashSet<ObjectId> = corrupt.keys().copied().collect();
        for (id, (kind, _)) in &corrupt {
            if repo.move_aside(*kind, id)? {
                report.moved_aside.push(id.to_hex());
            } else if let Some(pack) = repo.pack_of(id)? {
                // A packed object cannot be moved alone: the pack's sound
                // objects become loose ones, then the pack goes aside.
                repo.evacuate_pack(&pack, &bad)?;
                report.moved_aside.push(id.to_hex());
            }
        }
        report.moved_aside.sort();
    }
    Ok(report)
}

/// Walk a tree, noting every use of a missing or corrupt object.
fn walk(
    repo: &Repo,
    id: &ObjectId,
    at: &str,
    present: &HashSet<ObjectId>,
    corrupt: &HashMap<ObjectId, (ObjectType, String)>,
    trees: &mut HashMap<ObjectId, Option<Tree>>,
    note: &mut impl FnMut(ObjectId, ObjectType, String),
) {
    let path = if at.ends_with(':') {
        format!("{at}/")
    } else {
        at.to_owned()
    };
    if !present.contains(id) || corrupt.contains_key(id) {
        note(*id, ObjectType::Tree, path);
        return;
    }
    let tree = trees
        .entry(*id)
        .or_insert_with(|| repo.read_tree(id).ok())
        .clone();
    let Some(tree) = tree else { return };
    for e in &tree.entries {
        let name = String::from_utf8_lossy(&e.name);
        let child = format!("{at}/{name}");
        match e.kind {
            EntryKind::Dir => walk(repo, &e.id, &child, present, corrupt, trees, note),
            EntryKind::File => {
                if !present.contains(&e.id) || corrupt.contains_key(&e.id) {
                    note(e.id, ObjectType::File, child);
                }
            }
        }
    }
}
