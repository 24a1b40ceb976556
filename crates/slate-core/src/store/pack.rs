//! Packs (archive repositories): many small file objects compressed together
//! in zstd frames of a few MiB, grouped by file type, so that similar files
//! share one compression window. `objects/pack/NAME.pack` holds the frames;
//! `NAME.idx` maps each object id to its frame and place in it. NAME is the
//! SHA-256 of the pack file. An index is written only after its pack is
//! complete, so readers only ever see whole packs. Format:
//! `docs/format/repository.md`.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustix::fs::{self as rfs, Mode, OFlags};

use super::{Error, Repo, Result};
use crate::hash::ObjectId;
use crate::object::ObjectType;

pub const PACK_MAGIC: &[u8; 8] = b"SLATEP1\0";
pub(crate) const INDEX_MAGIC: &[u8; 8] = b"SLATEI1\0";
pub(crate) const ENTRY_LEN: usize = 57;

/// Where one object lives in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub id: ObjectId,
    /// `f` file object, `t` tree.
    pub kind: u8,
    /// Offset and length of the zstd frame in the pack file.
    pub frame_off: u64,
    pub frame_len: u32,
    /// Decompressed size of the frame.
    pub frame_raw_len: u32,
    /// The object's canonical bytes inside the decompressed frame.
    pub off: u32,
    pub len: u32,
}

impl PackEntry {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.0);
        out.push(self.kind);
        out.extend_from_slice(&self.frame_off.to_be_bytes());
        out.extend_from_slice(&self.frame_len.to_be_bytes());
        out.extend_from_slice(&self.frame_raw_len.to_be_bytes());
        out.extend_from_slice(&self.off.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        PackEntry {
            id: ObjectId(b[..32].try_into().expect("32 bytes")),
            kind: b[32],
            frame_off: u64::from_be_bytes(b[33..41].try_into().expect("8 bytes")),
            frame_len: u32_at(41),
            frame_raw_len: u32_at(45),
            off: u32_at(49),
            len: u32_at(53),
        }
    }
}

/// Encode an index: magic, count, entries sorted by id, the pack's digest.
pub(crate) fn encode_index(entries: &[PackEntry], pack_digest: &ObjectId) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + entries.len() * ENTRY_LEN);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        e.encode(&mut out);
    }
    out.extend_from_slice(&pack_digest.0);
    out
}

/// Decode an index, checking its shape and order.
pub fn decode_index(b: &[u8]) -> Result<Vec<PackEntry>, String> {
    if b.len() < 44 || &b[..8] != INDEX_MAGIC {
        return Err("not a Slate pack index (bad magic or too short)".into());
    }
    let n = u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")) as usize;
    if b.len() != 12 + n * ENTRY_LEN + 32 {
        return Err(format!(
            "{n} entries do not match the index size of {} bytes",
            b.len()
        ));
    }
    let entries: Vec<PackEntry> = b[12..12 + n * ENTRY_LEN]
        .chunks_exact(ENTRY_LEN)
        .map(PackEntry::decode)
        .collect();
    if entries.windows(2).any(|w| w[0].id >= w[1].id) {
        return Err("entries are not sorted by id".into());
    }
    if let Some(e) = entries.iter().find(|e| kind_of_code(e.kind).is_none()) {
        return Err(format!("entry {} has unknown kind {:#04x}", e.id, e.kind));
    }
    // Readers allocate a frame's sizes: they must be sizes a writer makes.
    if let Some(e) = entries.iter().find(|e| !plausible_frame(e)) {
        return Err(format!(
            "entry {} has a frame of {} bytes ({} decompressed) holding {} bytes at {}: \
             not a frame the pack writer makes (at most {MAX_FRAME_RAW} bytes)",
            e.id, e.frame_len, e.frame_raw_len, e.len, e.off
        ));
    }
    Ok(entries)
}

/// Largest decompressed frame a reader accepts: a writer's frame is a run
/// of small objects up to `FRAME_TARGET` plus the object that crossed it
/// (a file of at most `PACKED_MAX`, or a tree).
pub(crate) const MAX_FRAME_RAW: u32 = 256 << 20;

/// Whether an entry's frame has sizes a writer makes: the frame within
/// [`MAX_FRAME_RAW`] once decompressed and within zstd's bound of that
/// compressed, the object inside it.
fn plausible_frame(e: &PackEntry) -> bool {
    let raw = u64::from(e.frame_raw_len);
    // zstd's compress bound: size + size/256 + a margin for small inputs.
    let bound = raw + (raw >> 8) + (128 << 10);
    e.frame_raw_len <= MAX_FRAME_RAW
        && u64::from(e.frame_len) <= bound
        && u64::from(e.off) + u64::from(e.len) <= raw
}

/// The digest of the pack an index belongs to, which it records in its
/// last 32 bytes (`None` for fewer bytes than that).
pub fn index_pack_digest(b: &[u8]) -> Option<ObjectId> {
    b.get(b.len().checked_sub(32)?..)
        .and_then(|t| <[u8; 32]>::try_from(t).ok())
        .map(ObjectId)
}

/// The one-byte kind code of a packed object.
pub(crate) fn kind_code(kind: ObjectType) -> u8 {
    match kind {
        ObjectType::File => b'f',
        ObjectType::Tree => b't',
        ObjectType::Commit => b'c',
    }
}

pub fn kind_of_code(c: u8) -> Option<ObjectType> {
    match c {
        b'f' => Some(ObjectType::File),
        b't' => Some(ObjectType::Tree),
        b'c' => Some(ObjectType::Commit),
        _ => None,
    }
}

pub(crate) struct LoadedPack {
    pub name: String,
    pub file: OwnedFd,
    pub entries: Vec<PackEntry>,
    /// Its file objects by frame, for [`Repo::packed_header`].
    pub frame_members: super::packheaders::FrameMembers,
    /// Whether the headers of all its file objects are kept.
    pub all_headers: std::sync::OnceLock<bool>,
}

/// The packs of a repository, loaded on first use and reloaded when a
/// lookup misses and new packs have appeared.
#[derive(Default)]
pub(crate) struct PackSet {
    packs: RwLock<Vec<Arc<LoadedPack>>>,
    /// Packs whose index cannot be used: left out of every lookup (their
    /// objects read as missing), reported by `fsck`.
    damaged: RwLock<Vec<DamagedPack>>,
    /// File headers decoded from the frames read so far.
    pub(crate) headers: super::packheaders::HeaderCache,
    /// Frames decompressed whole so far (what the header cache saves).
    pub(crate) frames_decompressed: std::sync::atomic::AtomicU64,
}

/// A pack that cannot be read: its index is damaged, or it has an index
/// and no pack file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DamagedPack {
    pub name: String,
    pub reason: String,
}

impl Repo {
    pub(crate) fn pack_dir(&self) -> PathBuf {
        self.path.join("objects/pack")
    }

    /// Load the indexes not yet loaded. Returns whether any was new.
    fn refresh_packs(&self) -> Result<bool> {
        let dir = self.pack_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let known: HashSet<String> = self
            .packs
            .packs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|p| p.name.clone())
            .collect();
        let mut fresh = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(&dir, e))?;
            let fname = ent.file_name().to_string_lossy().into_owned();
            let Some(name) = fname.strip_suffix(".idx") else {
                continue;
            };
            if known.contains(name) {
                continue;
            }
            if self.damaged_pack(name).is_some() {
                continue;
            }
            match self.load_pack(&dir, name) {
                Ok(p) => fresh.push(Arc::new(p)),
                Err(reason) => self
                    .packs
                    .damaged
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(DamagedPack {
                        name: name.to_owned(),
                        reason,
                    }),
            }
        }
        if fresh.is_empty() {
            return Ok(false);
        }
        let mut packs = self.packs.packs.write().unwrap_or_else(|p| p.into_inner());
        packs.extend(fresh);
        packs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(true)
    }

    /// Read one pack's index and open its pack file; the reason it cannot
    /// be used, else.
    fn load_pack(&self, dir: &std::path::Path, name: &str) -> Result<LoadedPack, String> {
        let idx_path = dir.join(format!("{name}.idx"));
        let bytes = std::fs::read(&idx_path).map_err(|e| format!("{}: {e}", idx_path.display()))?;
        let entries = decode_index(&bytes).map_err(|m| format!("{}: {m}", idx_path.display()))?;
        let pack_path = dir.join(format!("{name}.pack"));
        let file = rfs::open(&pack_path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| format!("{}: {e}", pack_path.display()))?;
        Ok(LoadedPack {
            name: name.to_owned(),
            file,
            entries,
            frame_members: Default::default(),
            all_headers: Default::default(),
        })
    }

    fn damaged_pack(&self, name: &str) -> Option<DamagedPack> {
        self.packs
            .damaged
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|d| d.name == name)
            .cloned()
    }

    /// Packs whose index cannot be used (their objects read as missing).
    pub fn damaged_packs(&self) -> Result<Vec<DamagedPack>> {
        if self.mode != super::RepoMode::Archive {
            return Ok(Vec::new());
        }
        self.refresh_packs()?;
        let mut out = self
            .packs
            .damaged
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn find_in_loaded(&self, id: &ObjectId) -> Option<(Arc<LoadedPack>, PackEntry)> {
        let packs = self.packs.packs.read().unwrap_or_else(|p| p.into_inner());
        packs.iter().find_map(|p| {
            p.entries
                .binary_search_by(|e| e.id.cmp(id))
                .ok()
                .map(|i| (p.clone(), p.entries[i]))
        })
    }

    /// Where a packed object is, if it is packed.
    pub(crate) fn find_packed(
        &self,
        id: &ObjectId,
    ) -> Result<Option<(Arc<LoadedPack>, PackEntry)>> {
        if self.mode != super::RepoMode::Archive {
            return Ok(None);
        }
        if self.packs_loaded.get().is_none() {
            self.refresh_packs()?;
            let _ = self.packs_loaded.set(());
        }
        if let Some(hit) = self.find_in_loaded(id) {
            return Ok(Some(hit));
        }
        if self.refresh_packs()? {
            return Ok(self.find_in_loaded(id));
        }
        Ok(None)
    }

    /// All packed objects.
    pub(crate) fn packed_ids(&self) -> Result<Vec<(ObjectType, ObjectId)>> {
        if self.mode != super::RepoMode::Archive {
            return Ok(Vec::new());
        }
        self.refresh_packs()?;
        let packs = self.packs.packs.read().unwrap_or_else(|p| p.into_inner());
        Ok(packs
            .iter()
            .flat_map(|p| {
                p.entries
                    .iter()
                    .map(|e| (kind_of_code(e.kind).unwrap_or(ObjectType::File), e.id))
            })
            .collect())
    }

    /// A key that orders objects by where they are stored, so that reading
    /// in this order decompresses each pack frame once.
    pub fn storage_order_key(&self, id: &ObjectId) -> Result<(u8, String, u64)> {
        Ok(match self.find_packed(id)? {
            Some((p, e)) => (0, p.name.clone(), e.frame_off),
            None => (1, String::new(), 0),
        })
    }
}

impl Repo {
    /// All packed objects, with their kinds.
    pub fn packed_objects(&self) -> Result<Vec<(ObjectType, ObjectId)>> {
        self.packed_ids()
    }

    /// Each pack: name, the ids it holds, and its size in bytes (pack and index).
    pub fn pack_contents(&self) -> Result<Vec<(String, Vec<ObjectId>, u64)>> {
        if self.mode != super::RepoMode::Archive {
            return Ok(Vec::new());
        }
        self.refresh_packs()?;
        let dir = self.pack_dir();
        let packs = self.packs.packs.read().unwrap_or_else(|p| p.into_inner());
        Ok(packs
            .iter()
            .map(|p| {
                let size = ["pack", "idx"]
                    .iter()
                    .map(|x| {
                        std::fs::metadata(dir.join(format!("{}.{x}", p.name)))
                            .map(|m| m.len())
                            .unwrap_or(0)
                    })
                    .sum();
                (
                    p.name.clone(),
                    p.entries.iter().map(|e| e.id).collect(),
                    size,
                )
            })
            .collect())
    }

    /// Delete a pack: its index first, which makes it invisible, then the pack.
    pub(crate) fn delete_pack(&self, name: &str) -> Result<()> {
        let dir = self.pack_dir();
        for ext in ["idx", "pack"] {
            let p = dir.join(format!("{name}.{ext}"));
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&p, e)),
            }
        }
        self.remove_headers(name);
        self.packs
            .packs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|p| p.name != name);
        self.forget_headers();
        Ok(())
    }
}

impl Repo {
    /// Move a pack and its index to `REPO/corrupt/` (the caller holds the
    /// writer lock and has saved the pack's sound objects).
    pub(crate) fn move_pack_aside(&self, name: &str) -> Result<()> {
        let dir = self.path.join("corrupt");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        for ext in ["idx", "pack"] {
            let from = self.pack_dir().join(format!("{name}.{ext}"));
            let to = dir.join(format!("pack-{name}.{ext}"));
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&from, e)),
            }
        }
        self.remove_headers(name);
        self.packs
            .packs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|p| p.name != name);
        self.forget_headers();
        self.packs
            .damaged
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|p| p.name != name);
        self.sync()
    }

    /// The name of the pack holding `id`, if it is packed.
    pub fn pack_of(&self, id: &ObjectId) -> Result<Option<String>> {
        Ok(self.find_packed(id)?.map(|(p, _)| p.name.clone()))
    }
}

impl Repo {
    /// Packs without an index (left by a writer killed between linking the
    /// pack and its index, or by a prune killed between deleting them):
    /// invisible to readers, safe to delete under the writer lock.
    pub fn orphan_packs(&self) -> Result<Vec<(String, u64)>> {
        let dir = self.pack_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(&dir, e))?;
            let fname = ent.file_name().to_string_lossy().into_owned();
            if let Some(name) = fname.strip_suffix(".pack") {
                if !dir.join(format!("{name}.idx")).exists() {
                    out.push((
                        name.to_owned(),
                        ent.metadata().map(|m| m.len()).unwrap_or(0),
                    ));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trip_and_checks() {
        let mut entries: Vec<PackEntry> = (0..5u8)
            .map(|i| PackEntry {
                id: ObjectId::digest(&[i]),
                kind: b'f',
                frame_off: 8 + i as u64,
                frame_len: 10,
                frame_raw_len: 20,
                off: i as u32,
                len: 3,
            })
            .collect();
        entries.sort_by_key(|a| a.id);
        let b = encode_index(&entries, &ObjectId::digest(b"pack"));
        assert_eq!(decode_index(&b).expect("decodes"), entries);
        assert_eq!(index_pack_digest(&b), Some(ObjectId::digest(b"pack")));
        assert_eq!(index_pack_digest(&b[..31]), None);
        assert!(decode_index(&b[..b.len() - 1]).is_err());
        let mut swapped = entries.clone();
        swapped.swap(0, 1);
        assert!(
            decode_index(&encode_index(&swapped, &ObjectId::digest(b"")))
                .expect_err("unsorted")
                .contains("sorted")
        );
    }

    /// Sizes no writer makes are refused when the index is read, before
    /// a reader allocates a frame of that size.
    #[test]
    fn index_with_impossible_frame_sizes_is_refused() {
        let good = PackEntry {
            id: ObjectId::digest(b"x"),
            kind: b'f',
            frame_off: 8,
            frame_len: 100,
            frame_raw_len: 200,
            off: 0,
            len: 200,
        };
        let digest = ObjectId::digest(b"pack");
        assert!(decode_index(&encode_index(&[good], &digest)).is_ok());
        for bad in [
            PackEntry {
                frame_len: u32::MAX,
                frame_raw_len: u32::MAX,
                ..good
            },
            PackEntry {
                frame_len: u32::MAX,
                ..good
            },
            PackEntry { off: 150, ..good },
            PackEntry {
                off: u32::MAX,
                len: u32::MAX,
                ..good
            },
        ] {
            let e = decode_index(&encode_index(&[bad], &digest)).expect_err("refused");
            assert!(e.contains("not a frame the pack writer makes"), "{e}");
        }
    }
}
