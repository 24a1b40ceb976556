//! The checkout plan: a plain value computed from the trees alone.

use std::collections::HashMap;

use crate::hash::ObjectId;
use crate::object::{DirMeta, EntryKind, Tree};
use crate::store::Repo;

use super::{Error, Result};

#[derive(Clone, Debug)]
pub struct PlannedDir {
    /// Relative to DEST; empty for DEST itself.
    pub rel: String,
    pub meta: DirMeta,
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Parents before children. Empty when the plan is a single file.
    pub dirs: Vec<PlannedDir>,
    /// Each file object with the paths (relative to DEST) it appears at;
    /// a single-file plan has one object with the path "".
    pub files: Vec<(ObjectId, Vec<String>)>,
}

fn join(a: &str, b: &[u8]) -> String {
    let b = String::from_utf8_lossy(b);
    if a.is_empty() {
        b.into_owned()
    } else {
        format!("{a}/{b}")
    }
}

/// Plan the checkout of `root` (the commit's tree), or of `subpath` in it.
pub fn plan(
    repo: &Repo,
    commit: &ObjectId,
    root: &ObjectId,
    subpath: Option<&str>,
) -> Result<Plan> {
    let mut tree = repo.read_tree(root)?;
    if let Some(sub) = subpath {
        let comps: Vec<&str> = sub
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        for (i, comp) in comps.iter().enumerate() {
            let missing = || Error::NoSuchPath {
                commit: *commit,
                path: sub.to_owned(),
            };
            let e = tree.get(comp.as_bytes()).ok_or_else(missing)?.clone();
            match e.kind {
                EntryKind::Dir => tree = repo.read_tree(&e.id)?,
                EntryKind::File if i + 1 == comps.len() => {
                    return Ok(Plan {
                        dirs: Vec::new(),
                        files: vec![(e.id, vec![String::new()])],
                    });
                }
                EntryKind::File => return Err(missing()),
            }
        }
    }
    let mut p = Plan::default();
    let mut index: HashMap<ObjectId, usize> = HashMap::new();
    walk(repo, tree, String::new(), &mut p, &mut index)?;
    if repo.mode() == crate::store::RepoMode::Archive {
        // Read objects in storage order: each pack frame is decompressed
        // once by the thread that reads its run of objects.
        let mut keyed = p
            .files
            .into_iter()
            .map(|f| Ok((repo.storage_order_key(&f.0)?, f)))
            .collect::<Result<Vec<_>>>()?;
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        p.files = keyed.into_iter().map(|(_, f)| f).collect();
    }
    Ok(p)
}

fn walk(
    repo: &Repo,
    tree: Tree,
    rel: String,
    p: &mut Plan,
    index: &mut HashMap<ObjectId, usize>,
) -> Result<()> {
    p.dirs.push(PlannedDir {
        rel: rel.clone(),
        meta: tree.meta,
    });
    for e in tree.entries {
        let path = join(&rel, &e.name);
        match e.kind {
            EntryKind::Dir => walk(repo, repo.read_tree(&e.id)?, path, p, index)?,
            EntryKind::File => match index.get(&e.id) {
                Some(&i) => p.files[i].1.push(path),
                None => {
                    index.insert(e.id, p.files.len());
                    p.files.push((e.id, vec![path]));
                }
            },
        }
    }
    Ok(())
}
