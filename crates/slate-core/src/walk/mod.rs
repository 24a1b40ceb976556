//! The one tree walk. Every command that visits the paths of a commit
//! (checkout, export, diff, fsck, prune, pull, `ls`) goes through here.
//! Paths are bytes, `/`-separated and relative (`""` is the walk's start):
//! a name is carried from the tree object to the file system and to every
//! output unchanged (`object::name` escapes it where it becomes text).
//!
//! The walk keeps its own stack, so a tree of any depth is walked in
//! bounded native stack.

mod list;
mod missing;

pub use list::{list, Listed};
pub use missing::{missing_below, missing_from, Lacking};

use crate::hash::ObjectId;
use crate::object::{name, EntryKind, Tree, TreeEntry};
use crate::store::{self, ObjectRead};

/// Whether to read and walk into a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visit {
    Descend,
    Skip,
}

/// What a walk calls, in tree order: for each tree `enter`, then (unless
/// skipped) `tree` with its content, its entries, and `leave`; for each
/// non-directory entry `file`.
pub trait Visitor {
    type Error: From<store::Error>;

    /// A tree about to be read; [`Visit::Skip`] leaves it unread.
    fn enter(&mut self, _path: &[u8], _id: &ObjectId) -> Result<Visit, Self::Error> {
        Ok(Visit::Descend)
    }
    /// A tree read, before its entries.
    fn tree(&mut self, _path: &[u8], _id: &ObjectId, _tree: &Tree) -> Result<(), Self::Error> {
        Ok(())
    }
    /// A non-directory entry.
    fn file(&mut self, _path: &[u8], _entry: &TreeEntry) -> Result<(), Self::Error> {
        Ok(())
    }
    /// After every entry of the tree at `path`.
    fn leave(&mut self, _path: &[u8], _id: &ObjectId) -> Result<(), Self::Error> {
        Ok(())
    }
    /// A tree that cannot be read (missing, corrupt). By default the walk
    /// ends with the error; a visitor that collects damage goes on.
    fn unreadable(
        &mut self,
        _path: &[u8],
        _id: &ObjectId,
        err: store::Error,
    ) -> Result<(), Self::Error> {
        Err(err.into())
    }
}

struct Frame {
    id: ObjectId,
    entries: Vec<TreeEntry>,
    next: usize,
    /// Length of this tree's path in the shared path buffer.
    path_len: usize,
}

/// Walk the tree `root`, whose path is `base`.
pub fn walk<S, V>(store: &S, root: &ObjectId, base: &[u8], v: &mut V) -> Result<(), V::Error>
where
    S: ObjectRead + ?Sized,
    V: Visitor,
{
    let mut path = base.to_vec();
    let mut stack: Vec<Frame> = Vec::new();
    open(store, root, &path, &mut stack, v)?;
    while let Some(top) = stack.last_mut() {
        if top.next == top.entries.len() {
            let f = stack.pop().expect("the stack has a top");
            path.truncate(f.path_len);
            v.leave(&path, &f.id)?;
            continue;
        }
        let dir_len = top.path_len;
        let e = std::mem::replace(
            &mut top.entries[top.next],
            TreeEntry {
                name: Vec::new(),
                kind: EntryKind::File,
                id: ObjectId([0; 32]),
            },
        );
        top.next += 1;
        path.truncate(dir_len);
        if dir_len > 0 {
            path.push(b'/');
        }
        path.extend_from_slice(&e.name);
        match e.kind {
            EntryKind::File => v.file(&path, &e)?,
            EntryKind::Dir => open(store, &e.id, &path, &mut stack, v)?,
        }
    }
    Ok(())
}

/// Enter, read and announce the tree `id` at `path`; push it to walk.
fn open<S, V>(
    store: &S,
    id: &ObjectId,
    path: &[u8],
    stack: &mut Vec<Frame>,
    v: &mut V,
) -> Result<(), V::Error>
where
    S: ObjectRead + ?Sized,
    V: Visitor,
{
    if v.enter(path, id)? == Visit::Skip {
        return Ok(());
    }
    let tree = match store.read_tree(id) {
        Ok(t) => t,
        Err(e) => return v.unreadable(path, id, e),
    };
    v.tree(path, id, &tree)?;
    stack.push(Frame {
        id: *id,
        entries: tree.entries,
        next: 0,
        path_len: path.len(),
    });
    Ok(())
}

/// The entry at `path` below the tree `root` (slash-separated; empty, `/`
/// and `.` components are ignored), or `None` if there is no such path.
/// The root itself is `(Dir, root)`.
pub fn lookup<S: ObjectRead + ?Sized>(
    store: &S,
    root: &ObjectId,
    path: &[u8],
) -> Result<Option<(EntryKind, ObjectId)>, store::Error> {
    let mut cur = (EntryKind::Dir, *root);
    for comp in components(path) {
        if cur.0 != EntryKind::Dir {
            return Ok(None);
        }
        match store.read_tree(&cur.1)?.get(comp) {
            Some(e) => cur = (e.kind, e.id),
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

/// A path as a user gave it (a command-line argument): its bytes, or else
/// the bytes it stands for in the escaped form listings print. Returns the
/// path found (normalized), its kind and id.
pub fn lookup_arg<S: ObjectRead + ?Sized>(
    store: &S,
    root: &ObjectId,
    arg: &[u8],
) -> Result<Option<(Vec<u8>, EntryKind, ObjectId)>, store::Error> {
    let raw = normalize(arg);
    if let Some((k, id)) = lookup(store, root, &raw)? {
        return Ok(Some((raw, k, id)));
    }
    if !arg.contains(&b'\\') {
        return Ok(None);
    }
    let Some(unescaped) = std::str::from_utf8(arg)
        .ok()
        .and_then(|t| name::unescape(t).ok())
    else {
        return Ok(None);
    };
    let p = normalize(&unescaped);
    Ok(lookup(store, root, &p)?.map(|(k, id)| (p, k, id)))
}

/// The components of a slash-separated path, without empty and `.` ones.
pub fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// `path` normalized to its components joined by `/` (no leading slash).
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for c in components(path) {
        out = name::join(&out, c);
    }
    out
}

/// Two sorted entry lists side by side: each name once, with the index of
/// the entry of either side that has it.
pub fn zip<'a>(
    a: &'a [TreeEntry],
    b: &'a [TreeEntry],
) -> impl Iterator<Item = (Option<usize>, Option<usize>)> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let order = match (a.get(i), b.get(j)) {
            (None, None) => return None,
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
        };
        Some(match order {
            std::cmp::Ordering::Less => {
                i += 1;
                (Some(i - 1), None)
            }
            std::cmp::Ordering::Greater => {
                j += 1;
                (None, Some(j - 1))
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
                (Some(i - 1), Some(j - 1))
            }
        })
    })
}

#[cfg(test)]
mod tests;
