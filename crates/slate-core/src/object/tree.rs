//! Tree objects: one directory's own metadata and its entries, sorted by
//! name bytes. A subdirectory is a tree id; anything else a file id.

use crate::hash::ObjectId;

use super::codec::{put_bytes, put_u32, put_xattrs, DecodeError, Reader};
use super::{valid_entry_name, Xattrs};

pub(crate) const TREE_MAGIC: &[u8; 8] = b"SLATET1\0";

/// A directory's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DirMeta {
    /// `mode & 0o7777`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub xattrs: Xattrs,
}

impl Default for DirMeta {
    /// `0755 root:root`, no xattrs: what a directory that a tar archive
    /// implies without listing gets.
    fn default() -> Self {
        DirMeta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            xattrs: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Dir,
    File,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    pub name: Vec<u8>,
    pub kind: EntryKind,
    pub id: ObjectId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    pub meta: DirMeta,
    /// Strictly increasing by name.
    pub entries: Vec<TreeEntry>,
}

impl Tree {
    /// Canonical bytes. Entries must already be sorted (see [`Tree::sort`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.entries.len() * 60);
        out.extend_from_slice(TREE_MAGIC);
        put_u32(&mut out, self.meta.mode & 0o7777);
        put_u32(&mut out, self.meta.uid);
        put_u32(&mut out, self.meta.gid);
        put_xattrs(&mut out, &self.meta.xattrs);
        put_u32(
            &mut out,
            u32::try_from(self.entries.len()).expect("fewer than 2^32 entries"),
        );
        for e in &self.entries {
            out.push(match e.kind {
                EntryKind::Dir => b'd',
                EntryKind::File => b'f',
            });
            put_bytes(&mut out, &e.name);
            out.extend_from_slice(&e.id.0);
        }
        out
    }

    /// Sort entries by name bytes.
    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.name.cmp(&b.name));
    }

    pub fn id(&self) -> ObjectId {
        ObjectId::digest(&self.encode())
    }

    /// Binary search an entry by name.
    pub fn get(&self, name: &[u8]) -> Option<&TreeEntry> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }

    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf, "tree object");
        r.magic(TREE_MAGIC)?;
        let mode = r.u32()?;
        if mode & !0o7777 != 0 {
            return Err(r.err(format!("mode {mode:#o} has bits outside 07777")));
        }
        let uid = r.u32()?;
        let gid = r.u32()?;
        let xattrs = r.xattrs()?;
        let n = r.u32()? as usize;
        // Each entry takes at least 1 + 4 + 1 + 32 bytes.
        if n > buf.len() / 38 {
            return Err(r.err(format!("{n} entries cannot fit in {} bytes", buf.len())));
        }
        let mut entries: Vec<TreeEntry> = Vec::with_capacity(n);
        for _ in 0..n {
            let kind = match r.u8()? {
                b'd' => EntryKind::Dir,
                b'f' => EntryKind::File,
                c => return Err(r.err(format!("unknown entry kind {c:#04x}"))),
            };
            let name = r.bytes(255)?;
            if !valid_entry_name(name) {
                return Err(r.err(format!(
                    "invalid entry name {:?}",
                    String::from_utf8_lossy(name)
                )));
            }
            if let Some(prev) = entries.last() {
                if prev.name.as_slice() >= name {
                    return Err(r.err(format!(
                        "entry {:?} out of order or duplicated",
                        String::from_utf8_lossy(name)
                    )));
                }
            }
            let id = r.id()?;
            entries.push(TreeEntry {
                name: name.to_vec(),
                kind,
                id,
            });
        }
        r.finish()?;
        Ok(Tree {
            meta: DirMeta {
                mode,
                uid,
                gid,
                xattrs,
            },
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_order() {
        let mut t = Tree {
            meta: DirMeta::default(),
            entries: vec![
                TreeEntry {
                    name: b"usr".to_vec(),
                    kind: EntryKind::Dir,
                    id: ObjectId::digest(b"1"),
                },
                TreeEntry {
                    name: b"etc".to_vec(),
                    kind: EntryKind::File,
                    id: ObjectId::digest(b"2"),
                },
            ],
        };
        t.sort();
        let enc = t.encode();
        assert_eq!(Tree::decode(&enc).expect("decodes"), t);
        assert_eq!(t.get(b"usr").map(|e| e.kind), Some(EntryKind::Dir));
        assert!(t.get(b"var").is_none());
        // Swap the two entries: must be rejected as out of order.
        let mut bad = t.clone();
        bad.entries.reverse();
        let e = Tree::decode(&bad.encode()).expect_err("unsorted");
        assert!(e.reason.contains("out of order"), "{e}");
    }

    #[test]
    fn rejects_dot_dot() {
        let t = Tree {
            meta: DirMeta::default(),
            entries: vec![TreeEntry {
                name: b"..".to_vec(),
                kind: EntryKind::Dir,
                id: ObjectId::digest(b""),
            }],
        };
        assert!(Tree::decode(&t.encode()).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Tree::decode(&bytes);
        }
    }
}
