//! What a repository lacks below some trees: the one walk that pull
//! (local and over HTTP) plans with and that `delta apply` checks a
//! commit with before it sets a ref.
//!
//! Trees are read a level at a time: from the repository where it has
//! them (a tree it holds may still lack objects below it: an interrupted
//! pull, objects moved aside by `fsck --delete-corrupt`), else from the
//! source being pulled from, which is told each level before it is read
//! (a remote fetches those trees ahead, in few requests).

use std::collections::HashSet;

use crate::hash::ObjectId;
use crate::object::{EntryKind, ObjectType};
use crate::store::{self, ObjectRead};

/// The trees and files below some trees that a repository lacks (the
/// trees given included), each once, in the order the walk found them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lacking {
    pub trees: Vec<ObjectId>,
    pub files: Vec<ObjectId>,
}

impl Lacking {
    pub fn is_empty(&self) -> bool {
        self.trees.is_empty() && self.files.is_empty()
    }

    /// How many objects are lacking.
    pub fn len(&self) -> usize {
        self.trees.len() + self.files.len()
    }
}

/// What `repo` lacks below `roots`, from `repo` alone: below a tree it
/// lacks nothing more is known (the tree is listed, not walked).
pub fn missing_below<R: ObjectRead + ?Sized>(
    repo: &R,
    roots: &[ObjectId],
) -> Result<Lacking, store::Error> {
    walk_levels(repo, None, roots, &mut |_| Ok(()))
}

/// What `repo` lacks below `roots`, reading the trees it lacks from `src`
/// (each level of them announced to `ahead` before it is read).
pub fn missing_from<R, E>(
    src: &dyn ObjectRead,
    repo: &R,
    roots: &[ObjectId],
    ahead: &mut dyn FnMut(&[ObjectId]) -> Result<(), E>,
) -> Result<Lacking, E>
where
    R: ObjectRead + ?Sized,
    E: From<store::Error>,
{
    walk_levels(repo, Some(src), roots, ahead)
}

fn walk_levels<R, E>(
    repo: &R,
    src: Option<&dyn ObjectRead>,
    roots: &[ObjectId],
    ahead: &mut dyn FnMut(&[ObjectId]) -> Result<(), E>,
) -> Result<Lacking, E>
where
    R: ObjectRead + ?Sized,
    E: From<store::Error>,
{
    let mut out = Lacking::default();
    let mut seen = HashSet::new();
    let mut level: Vec<ObjectId> = roots.to_vec();
    while !level.is_empty() {
        // Each tree of the level once, with whether the repository has it.
        let mut here = Vec::with_capacity(level.len());
        for id in level {
            if seen.insert(id) {
                here.push((id, repo.has_object(ObjectType::Tree, &id)?));
            }
        }
        let lacking: Vec<ObjectId> = here.iter().filter(|t| !t.1).map(|t| t.0).collect();
        out.trees.extend_from_slice(&lacking);
        if src.is_some() && !lacking.is_empty() {
            ahead(&lacking)?;
        }
        let mut next = Vec::new();
        for (id, has) in here {
            let tree = match (has, src) {
                (true, _) => repo.read_tree(&id)?,
                (false, Some(src)) => src.read_tree(&id)?,
                (false, None) => continue,
            };
            for e in tree.entries {
                match e.kind {
                    EntryKind::Dir => next.push(e.id),
                    EntryKind::File => {
                        if seen.insert(e.id) && !repo.has_object(ObjectType::File, &e.id)? {
                            out.files.push(e.id);
                        }
                    }
                }
            }
        }
        level = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{DirMeta, FileKind, FileMeta, Tree, TreeEntry};
    use crate::store::{FileContent, ObjectWrite, Repo, RepoMode, Transaction};

    fn meta() -> FileMeta {
        FileMeta {
            kind: FileKind::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            rdev: 0,
            xattrs: vec![],
        }
    }

    /// `/a` (a file), `/d/b` (a file), `/d/e/c` (a file) and `/d2`, the
    /// same tree as `/d/e` (a tree named twice is walked once).
    fn write(tx: &Transaction<'_>) -> (ObjectId, [ObjectId; 3], [ObjectId; 2]) {
        let file = |c: &[u8]| {
            tx.write_file(&meta(), c.len() as u64, FileContent::Bytes(c))
                .expect("file")
                .id
        };
        let (a, b, c) = (file(b"a"), file(b"b"), file(b"c"));
        let entry = |name: &str, kind, id| TreeEntry {
            name: name.as_bytes().to_vec(),
            kind,
            id,
        };
        let e = tx
            .write_tree(&Tree {
                meta: DirMeta::default(),
                entries: vec![entry("c", EntryKind::File, c)],
            })
            .expect("tree");
        let d = tx
            .write_tree(&Tree {
                meta: DirMeta::default(),
                entries: vec![
                    entry("b", EntryKind::File, b),
                    entry("e", EntryKind::Dir, e),
                ],
            })
            .expect("tree");
        let root = tx
            .write_tree(&Tree {
                meta: DirMeta::default(),
                entries: vec![
                    entry("a", EntryKind::File, a),
                    entry("d", EntryKind::Dir, d),
                    entry("d2", EntryKind::Dir, e),
                ],
            })
            .expect("tree");
        (root, [a, b, c], [d, e])
    }

    #[test]
    fn lists_what_the_repository_lacks_below_a_tree_each_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        let src = Repo::init(&tmp.path().join("src"), RepoMode::BareUser).expect("init");
        let dest = Repo::init(&tmp.path().join("dest"), RepoMode::BareUser).expect("init");
        let tx = Transaction::begin(&src).expect("tx");
        let (root, [a, b, c], [d, e]) = write(&tx);
        tx.commit().expect("commit");

        // Nothing here: from the repository alone, the root is lacking and
        // nothing below it is known.
        let l = missing_below(&dest, &[root]).expect("walk");
        assert_eq!(l.trees, vec![root]);
        assert!(l.files.is_empty());
        // From the source: every tree and file, each once, and the source
        // is told each level of trees before it is read.
        let mut told = Vec::new();
        let l = missing_from(&src, &dest, &[root, root], &mut |ids| {
            told.push(ids.to_vec());
            Ok::<(), store::Error>(())
        })
        .expect("walk");
        assert_eq!(l.trees, vec![root, d, e]);
        assert_eq!(l.files, vec![a, b, c]);
        assert_eq!(told, vec![vec![root], vec![d, e]]);

        // The repository has the trees and one file: what it lacks below
        // the trees it holds is found from it alone.
        let tx = Transaction::begin(&dest).expect("tx");
        let (r2, _, _) = write(&tx);
        tx.commit().expect("commit");
        assert_eq!(r2, root);
        assert!(missing_below(&dest, &[root]).expect("walk").is_empty());
        let tx = Transaction::begin(&dest).expect("tx");
        tx.delete_object(ObjectType::File, &b).expect("delete");
        tx.commit().expect("commit");
        let l = missing_below(&dest, &[root]).expect("walk");
        assert_eq!((l.trees.len(), l.files.clone()), (0, vec![b]));
        assert_eq!(l.len(), 1);
    }
}
