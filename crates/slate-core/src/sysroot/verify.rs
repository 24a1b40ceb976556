//! Before a deployment hard-links a commit's objects, their content is
//! checked: a hard link would carry a corrupt object onto the machine
//! unread. Objects of a tree already deployed were checked when it was,
//! and are skipped (its trees are walked, its files are not re-read).

use std::collections::HashSet;

use rayon::prelude::*;

use super::{Error, Result};
use crate::hash::ObjectId;
use crate::object::{name, TreeEntry};
use crate::store::{self, ObjectRead, Repo};
use crate::walk::{self, Visit, Visitor};

/// The file objects of a tree, with one path each (for messages).
#[derive(Default)]
struct Files {
    skip_trees: HashSet<ObjectId>,
    seen_trees: HashSet<ObjectId>,
    files: Vec<(ObjectId, Vec<u8>)>,
    seen: HashSet<ObjectId>,
}

impl Visitor for Files {
    type Error = store::Error;
    fn enter(&mut self, _path: &[u8], id: &ObjectId) -> store::Result<Visit> {
        if self.skip_trees.contains(id) || !self.seen_trees.insert(*id) {
            return Ok(Visit::Skip);
        }
        Ok(Visit::Descend)
    }
    fn file(&mut self, path: &[u8], e: &TreeEntry) -> store::Result<()> {
        if self.seen.insert(e.id) {
            self.files.push((e.id, path.to_vec()));
        }
        Ok(())
    }
}

/// Every tree id below `root` (trees are small and verified as read).
struct Trees(HashSet<ObjectId>);

impl Visitor for Trees {
    type Error = store::Error;
    fn enter(&mut self, _path: &[u8], id: &ObjectId) -> store::Result<Visit> {
        Ok(if self.0.insert(*id) {
            Visit::Descend
        } else {
            Visit::Skip
        })
    }
}

/// Re-read every file object of `root` that the trees in `known` do not
/// hold; the first corrupt or missing one is an error naming it and its
/// path.
pub fn check(repo: &Repo, root: &ObjectId, known: &[ObjectId]) -> Result<usize> {
    let mut skip = Trees(HashSet::new());
    for k in known {
        // A known tree that cannot be read protects nothing.
        let _ = walk::walk(repo, k, b"", &mut skip);
    }
    let mut files = Files {
        skip_trees: skip.0,
        ..Files::default()
    };
    walk::walk(repo, root, b"", &mut files)?;
    let n = files.files.len();
    files
        .files
        .par_iter()
        .try_for_each(|(id, path)| -> Result<()> {
            repo.open_file(id)
                .and_then(|mut s| s.each_chunk(|_| ()))
                .map_err(|e| {
                    Error::Refused(format!(
                        "{}: {e}; nothing was deployed (run `slate fsck --delete-corrupt` on \
                         the sysroot's repository, then pull the commit again)",
                        name::escape(&name::absolute(path))
                    ))
                })
        })?;
    Ok(n)
}
