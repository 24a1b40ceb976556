//! Walking every ref's history for `fsck`: each commit's trees and files
//! must be present and sound. A subtree found whole once is not walked
//! again; a damaged one is, for every commit that uses it, so that every
//! use is listed.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Key, Problem, Report, MAX_USES};
use crate::hash::ObjectId;
use crate::object::{name, ObjectType, TreeEntry};
use crate::store::{self, ObjectRead, Repo};
use crate::walk::{self, Visit, Visitor};

/// Uses of bad objects: (where listed, how many more).
type Uses = BTreeMap<Key, (Vec<String>, usize)>;

struct Checker<'a> {
    repo: &'a Repo,
    corrupt: &'a HashMap<Key, String>,
    uses: &'a mut Uses,
    /// Trees whose whole content was found present and sound.
    clean: &'a mut HashSet<ObjectId>,
    /// Files found present and sound.
    files_ok: &'a mut HashSet<ObjectId>,
    /// `COMMIT:` of the commit being walked.
    label: String,
    /// Uses noted so far, and at each open tree's start.
    noted: usize,
    marks: Vec<usize>,
}

fn note(uses: &mut Uses, key: Key, at: String) {
    let e = uses.entry(key).or_insert((Vec::new(), 0));
    if e.0.len() < MAX_USES {
        e.0.push(at);
    } else {
        e.1 += 1;
    }
}

impl Checker<'_> {
    fn at(&self, path: &[u8]) -> String {
        format!("{}{}", self.label, name::escape(&name::absolute(path)))
    }

    fn bad(&mut self, key: Key, path: &[u8]) -> Result<bool, store::Error> {
        let present = self.repo.has_object(key.0, &key.1)?;
        if present && !self.corrupt.contains_key(&key) {
            return Ok(false);
        }
        let at = self.at(path);
        note(self.uses, key, at);
        self.noted += 1;
        Ok(true)
    }
}

impl Visitor for Checker<'_> {
    type Error = store::Error;

    fn enter(&mut self, path: &[u8], id: &ObjectId) -> Result<Visit, store::Error> {
        if self.clean.contains(id) || self.bad((ObjectType::Tree, *id), path)? {
            return Ok(Visit::Skip);
        }
        self.marks.push(self.noted);
        Ok(Visit::Descend)
    }

    fn file(&mut self, path: &[u8], e: &TreeEntry) -> Result<(), store::Error> {
        if !self.files_ok.contains(&e.id) && !self.bad((ObjectType::File, e.id), path)? {
            self.files_ok.insert(e.id);
        }
        Ok(())
    }

    fn leave(&mut self, _path: &[u8], id: &ObjectId) -> Result<(), store::Error> {
        if self.marks.pop() == Some(self.noted) {
            self.clean.insert(*id);
        }
        Ok(())
    }

    fn unreadable(
        &mut self,
        path: &[u8],
        id: &ObjectId,
        _err: store::Error,
    ) -> Result<(), store::Error> {
        // Present but unreadable: damage the rehash has the detail of.
        self.marks.pop();
        let at = self.at(path);
        note(self.uses, (ObjectType::Tree, *id), at);
        self.noted += 1;
        Ok(())
    }
}

/// The kind of object `id` is, when it is here but not a commit.
fn other_kind(repo: &Repo, id: &ObjectId) -> Result<Option<ObjectType>, store::Error> {
    for kind in [ObjectType::Tree, ObjectType::File] {
        if repo.has_object(kind, id)? {
            return Ok(Some(kind));
        }
    }
    Ok(None)
}

/// Walk every ref's history; the problems found (with their uses), the
/// histories that end early, and the commits walked.
pub(super) fn check_refs(
    repo: &Repo,
    corrupt: &HashMap<Key, String>,
) -> Result<Report, store::Error> {
    let mut report = Report::default();
    let mut uses = Uses::new();
    let mut not_commits: HashMap<ObjectId, ObjectType> = HashMap::new();
    let mut clean = HashSet::new();
    let mut files_ok = HashSet::new();
    let mut seen_commits = HashSet::new();
    for (ref_name, head) in repo.list_refs()? {
        let mut next = Some(head);
        let mut last_present: Option<ObjectId> = None;
        while let Some(c) = next.take() {
            if !repo.has_object(ObjectType::Commit, &c)? {
                match last_present {
                    // The ref itself names no commit: damage.
                    None => {
                        if let Some(k) = other_kind(repo, &c)? {
                            not_commits.insert(c, k);
                        }
                        note(
                            &mut uses,
                            (ObjectType::Commit, c),
                            format!("ref {ref_name}"),
                        );
                    }
                    Some(l) => report
                        .truncated_histories
                        .push((ref_name.clone(), l.to_hex())),
                }
                break;
            }
            if !seen_commits.insert(c) {
                break;
            }
            last_present = Some(c);
            let commit = match repo.read_commit(&c) {
                Ok(commit) => commit,
                Err(_) => {
                    note(
                        &mut uses,
                        (ObjectType::Commit, c),
                        format!("ref {ref_name}"),
                    );
                    break;
                }
            };
            report.commits_walked += 1;
            let mut checker = Checker {
                repo,
                corrupt,
                uses: &mut uses,
                clean: &mut clean,
                files_ok: &mut files_ok,
                label: format!("{}:", c.short(12)),
                noted: 0,
                marks: Vec::new(),
            };
            walk::walk(repo, &commit.tree, b"", &mut checker)?;
            next = commit.parent;
        }
    }
    for ((kind, id), (used_by, more)) in uses {
        let (state, detail) = match corrupt.get(&(kind, id)) {
            Some(d) => ("corrupt", d.clone()),
            None if kind == ObjectType::Commit && not_commits.contains_key(&id) => (
                "missing",
                format!(
                    "commit object {id} is not in the repository: a ref names it, and it is a {}",
                    not_commits[&id]
                ),
            ),
            None if !repo.has_object(kind, &id)? => (
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
    Ok(report)
}
