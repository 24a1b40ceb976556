//! The in-memory tree an archive is read into: directories by name, files
//! as the ids of their stored objects. A tar archive fills one; a container
//! image fills one per layer (with its whiteouts) and merges each onto the
//! tree of the layers below ([`merge_layer`]), as the OCI image spec's
//! changesets say.

use std::collections::BTreeMap;

use crate::hash::ObjectId;
use crate::object::{name, DirMeta, EntryKind, Tree, TreeEntry};
use crate::store::ObjectWrite;

pub(crate) enum Node {
    Dir {
        /// `None`: implied by a path below it, never listed itself (a
        /// layer then keeps the lower layer's metadata; a tree written
        /// gets [`DirMeta::default`]).
        meta: Option<DirMeta>,
        /// A layer's opaque directory (`.wh..wh..opq`): what the lower
        /// layers held here is hidden.
        opaque: bool,
        children: BTreeMap<Vec<u8>, Node>,
    },
    File(ObjectId),
    /// A layer's whiteout (`.wh.NAME`): the lower layers' NAME is removed.
    Whiteout,
}

impl Node {
    pub(crate) fn empty_dir() -> Node {
        Node::Dir {
            meta: None,
            opaque: false,
            children: BTreeMap::new(),
        }
    }
}

fn shown(comps: &[Vec<u8>]) -> String {
    name::escape(&comps.join(&b'/'))
}

pub(crate) fn lookup<'n>(mut node: &'n Node, comps: &[Vec<u8>]) -> Option<&'n Node> {
    for c in comps {
        match node {
            Node::Dir { children, .. } => node = children.get(c)?,
            Node::File(_) | Node::Whiteout => return None,
        }
    }
    Some(node)
}

/// The directory at `comps`, created (implied, no metadata) if missing. A
/// whiteout of the same layer in the way becomes an opaque directory: the
/// lower layers' entry is gone, this layer's directory takes its place.
pub(crate) fn dir_at<'n>(root: &'n mut Node, comps: &[Vec<u8>]) -> Result<&'n mut Node, String> {
    let mut node = root;
    for (i, c) in comps.iter().enumerate() {
        let Node::Dir { children, .. } = node else {
            unreachable!("only directories are descended into")
        };
        let child = children.entry(c.clone()).or_insert_with(Node::empty_dir);
        match child {
            Node::File(_) => {
                return Err(format!(
                    "parent \"{}\" is not a directory",
                    shown(&comps[..=i])
                ))
            }
            Node::Whiteout => {
                *child = Node::Dir {
                    meta: None,
                    opaque: true,
                    children: BTreeMap::new(),
                }
            }
            Node::Dir { .. } => {}
        }
        node = child;
    }
    Ok(node)
}

/// A directory member: its metadata set, a file of the same name replaced.
pub(crate) fn set_dir(root: &mut Node, comps: &[Vec<u8>], meta: DirMeta) -> Result<(), String> {
    if let Some((last, parent)) = comps.split_last() {
        let Node::Dir { children, .. } = dir_at(root, parent)? else {
            unreachable!("dir_at returns directories")
        };
        if let Some(Node::File(_)) = children.get(last) {
            children.remove(last);
        }
    }
    match dir_at(root, comps)? {
        Node::Dir { meta: m, .. } => *m = Some(meta),
        _ => unreachable!("dir_at returns directories"),
    }
    Ok(())
}

/// A member that is not a directory, at `comps`.
pub(crate) fn insert(root: &mut Node, comps: &[Vec<u8>], node: Node) -> Result<(), String> {
    let Some((last, parent)) = comps.split_last() else {
        return Err("the archive's root must be a directory".into());
    };
    let Node::Dir { children, .. } = dir_at(root, parent)? else {
        unreachable!("dir_at returns directories")
    };
    if let Some(Node::Dir { children: c, .. }) = children.get(last) {
        if !c.is_empty() {
            return Err("replaces a non-empty directory".into());
        }
    }
    children.insert(last.clone(), node);
    Ok(())
}

/// A layer's whiteout of `comps`. Whiteouts hide only the lower layers:
/// the layer's own directory of that name becomes opaque, its own file of
/// that name stays.
pub(crate) fn whiteout(root: &mut Node, comps: &[Vec<u8>]) -> Result<(), String> {
    let Some((last, parent)) = comps.split_last() else {
        return Err("a whiteout of the root".into());
    };
    let Node::Dir { children, .. } = dir_at(root, parent)? else {
        unreachable!("dir_at returns directories")
    };
    match children.get_mut(last) {
        None => {
            children.insert(last.clone(), Node::Whiteout);
        }
        Some(Node::Dir { opaque, .. }) => *opaque = true,
        Some(_) => {}
    }
    Ok(())
}

/// A layer's opaque-directory marker in the directory `comps`.
pub(crate) fn opaque(root: &mut Node, comps: &[Vec<u8>]) -> Result<(), String> {
    match dir_at(root, comps)? {
        Node::Dir { opaque, .. } => *opaque = true,
        _ => unreachable!("dir_at returns directories"),
    }
    Ok(())
}

/// Apply one layer's tree onto the tree of the layers below it: opaque
/// directories first emptied, whiteouts removing, files replacing, and
/// directories merged (their metadata replaced where the layer lists
/// them). A layer putting entries below a lower layer's file or symlink,
/// without replacing it by a directory, is refused: it would write through
/// that symlink.
pub(crate) fn merge_layer(base: &mut Node, layer: Node) -> Result<(), String> {
    merge_at(base, layer, &mut Vec::new())
}

fn merge_at(base: &mut Node, layer: Node, path: &mut Vec<Vec<u8>>) -> Result<(), String> {
    let Node::Dir {
        meta,
        opaque,
        children: lch,
    } = layer
    else {
        unreachable!("merge_at is given directories")
    };
    let Node::Dir {
        meta: bmeta,
        children: bch,
        ..
    } = base
    else {
        unreachable!("merge_at is given directories")
    };
    if opaque {
        bch.clear();
    }
    if meta.is_some() {
        *bmeta = meta;
    }
    for (n, child) in lch {
        match child {
            Node::Whiteout => {
                bch.remove(&n);
            }
            Node::File(id) => {
                bch.insert(n, Node::File(id));
            }
            dir @ Node::Dir { .. } => {
                let listed = matches!(&dir, Node::Dir { meta: Some(_), .. });
                let slot = bch.entry(n.clone()).or_insert_with(Node::empty_dir);
                if matches!(slot, Node::File(_) | Node::Whiteout) {
                    if !listed {
                        path.push(n);
                        return Err(format!(
                            "\"{}\": the layer has entries below it, but a lower layer made it \
                             a file or symlink, and this layer does not replace it by a directory",
                            shown(path)
                        ));
                    }
                    *slot = Node::empty_dir();
                }
                path.push(n);
                merge_at(slot, dir, path)?;
                path.pop();
            }
        }
    }
    Ok(())
}

/// Store the tree's directories, deepest first; the root's id.
pub(crate) fn write_node<W: ObjectWrite + ?Sized>(
    store: &W,
    node: &Node,
) -> crate::store::Result<ObjectId> {
    match node {
        Node::File(id) => Ok(*id),
        Node::Whiteout => unreachable!("whiteouts are merged away before a tree is written"),
        Node::Dir { meta, children, .. } => {
            let mut entries = Vec::with_capacity(children.len());
            for (name, child) in children {
                let kind = match child {
                    Node::Dir { .. } => EntryKind::Dir,
                    Node::File(_) => EntryKind::File,
                    Node::Whiteout => continue,
                };
                entries.push(TreeEntry {
                    name: name.clone(),
                    kind,
                    id: write_node(store, child)?,
                });
            }
            // BTreeMap order is byte order: already sorted.
            store.write_tree(&Tree {
                meta: meta.clone().unwrap_or_default(),
                entries,
            })
        }
    }
}
