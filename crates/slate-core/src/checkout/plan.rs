//! The checkout plan: a plain value computed from the trees alone.

use std::collections::HashMap;

use crate::hash::ObjectId;
use crate::object::{DirMeta, EntryKind, Tree, TreeEntry};
use crate::store::{self, Repo, RepoMode};
use crate::walk::{self, Visitor};

use super::{Error, Result};

#[derive(Clone, Debug)]
pub struct PlannedDir {
    /// Relative to DEST (bytes, `/`-separated); empty for DEST itself.
    pub rel: Vec<u8>,
    pub meta: DirMeta,
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Where in the commit's tree DEST is (empty: the root).
    pub base: Vec<u8>,
    /// Parents before children. Empty when the plan is a single file.
    pub dirs: Vec<PlannedDir>,
    /// Each file object with the paths (relative to DEST) it appears at;
    /// a single-file plan has one object with the path "".
    pub files: Vec<(ObjectId, Vec<Vec<u8>>)>,
}

impl Plan {
    /// How many paths the plan places.
    pub fn paths(&self) -> u64 {
        self.files.iter().map(|f| f.1.len() as u64).sum()
    }
}

struct Planner<'a> {
    plan: Plan,
    index: HashMap<ObjectId, usize>,
    /// Directories (relative to DEST) made without their entries.
    empty: &'a [Vec<u8>],
}

impl Planner<'_> {
    /// Whether `path` lies below one of the directories made empty.
    fn inside_empty(&self, path: &[u8]) -> bool {
        self.empty.iter().any(|e| {
            path.strip_prefix(e.as_slice())
                .is_some_and(|rest| rest.first() == Some(&b'/'))
        })
    }
}

impl Visitor for Planner<'_> {
    type Error = store::Error;

    fn enter(&mut self, path: &[u8], _id: &ObjectId) -> store::Result<walk::Visit> {
        Ok(if self.inside_empty(path) {
            walk::Visit::Skip
        } else {
            walk::Visit::Descend
        })
    }

    fn tree(&mut self, path: &[u8], _id: &ObjectId, tree: &Tree) -> store::Result<()> {
        self.plan.dirs.push(PlannedDir {
            rel: path.to_vec(),
            meta: tree.meta.clone(),
        });
        Ok(())
    }

    fn file(&mut self, path: &[u8], e: &TreeEntry) -> store::Result<()> {
        if self.inside_empty(path) {
            return Ok(());
        }
        match self.index.get(&e.id) {
            Some(&i) => self.plan.files[i].1.push(path.to_vec()),
            None => {
                self.index.insert(e.id, self.plan.files.len());
                self.plan.files.push((e.id, vec![path.to_vec()]));
            }
        }
        Ok(())
    }
}

/// Plan the checkout of `root` (the commit's tree), or of `subpath` in it.
pub fn plan(
    repo: &Repo,
    commit: &ObjectId,
    root: &ObjectId,
    subpath: Option<&[u8]>,
    empty: &[Vec<u8>],
) -> Result<Plan> {
    let base = walk::normalize(subpath.unwrap_or(b""));
    let (kind, id) = walk::lookup(repo, root, &base)?.ok_or_else(|| Error::NoSuchPath {
        commit: *commit,
        path: crate::object::name::escape(&crate::object::name::absolute(&base)),
    })?;
    if kind == EntryKind::File {
        return Ok(Plan {
            base,
            dirs: Vec::new(),
            files: vec![(id, vec![Vec::new()])],
        });
    }
    let mut p = Planner {
        plan: Plan {
            base,
            ..Plan::default()
        },
        index: HashMap::new(),
        empty,
    };
    walk::walk(repo, &id, b"", &mut p)?;
    let mut plan = p.plan;
    if repo.mode() == RepoMode::Archive {
        // Read objects in storage order: each pack frame is decompressed
        // once by the thread that reads its run of objects.
        let mut keyed = plan
            .files
            .into_iter()
            .map(|f| Ok((repo.storage_order_key(&f.0)?, f)))
            .collect::<Result<Vec<_>>>()?;
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        plan.files = keyed.into_iter().map(|(_, f)| f).collect();
    }
    Ok(plan)
}
