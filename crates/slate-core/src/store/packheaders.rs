//! File headers of packed objects, found without decompressing a frame
//! for each one. A frame holds many small files, in the order the pack
//! writer sorted them (by extension), not in the order a tree walk meets
//! them: reading headers in walk order would decompress a frame per file.
//! So the first header read from a frame decodes the headers of every file
//! object in it and keeps them (a few dozen bytes each) for the life of
//! the [`Repo`]: a listing or a summary decompresses each frame once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::pack::{LoadedPack, PackEntry};
use super::Repo;
use super::Result;
use crate::hash::ObjectId;
use crate::object::FileHeader;

/// Headers decoded from frames already read, by object id.
#[derive(Default)]
pub(crate) struct HeaderCache {
    headers: Mutex<HashMap<ObjectId, FileHeader>>,
}

/// The file objects of one pack, by the offset of their frame (indexes
/// into the pack's entries), built on first use.
#[derive(Default)]
pub(crate) struct FrameMembers(OnceLock<HashMap<u64, Vec<u32>>>);

impl FrameMembers {
    fn of(&self, entries: &[PackEntry]) -> &HashMap<u64, Vec<u32>> {
        self.0.get_or_init(|| {
            let mut m: HashMap<u64, Vec<u32>> = HashMap::new();
            for (i, e) in entries.iter().enumerate() {
                if e.kind == b'f' {
                    if let Ok(i) = u32::try_from(i) {
                        m.entry(e.frame_off).or_default().push(i);
                    }
                }
            }
            m
        })
    }
}

impl Repo {
    /// The header of the packed file object `e` (in a frame read whole):
    /// from the headers kept, else decoded with every other file header
    /// of its frame. `None` if its bytes do not hold a header (the caller
    /// reads it the slow way, which names the fault).
    pub(crate) fn packed_header(
        &self,
        pack: &Arc<LoadedPack>,
        e: &PackEntry,
    ) -> Result<Option<FileHeader>> {
        let cache = &self.packs.headers;
        if let Some(h) = lock(&cache.headers).get(&e.id) {
            return Ok(Some(h.clone()));
        }
        let frame = self.frame(pack, e)?;
        let mut found = Vec::new();
        if let Some(members) = pack.frame_members.of(&pack.entries).get(&e.frame_off) {
            for &i in members {
                let Some(m) = pack.entries.get(i as usize) else {
                    continue;
                };
                let (off, len) = (m.off as usize, m.len as usize);
                let Some(bytes) = off.checked_add(len).and_then(|end| frame.get(off..end)) else {
                    continue;
                };
                if let Ok((h, _)) = FileHeader::decode_prefix(bytes) {
                    found.push((m.id, h));
                }
            }
        }
        let mut kept = lock(&cache.headers);
        let mut mine = None;
        for (id, h) in found {
            if id == e.id {
                mine = Some(h.clone());
            }
            kept.insert(id, h);
        }
        Ok(mine)
    }

    /// Forget the headers kept (their pack was deleted or moved aside).
    pub(crate) fn forget_headers(&self) {
        lock(&self.packs.headers.headers).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::{FileContent, ObjectRead, ObjectWrite, Repo, RepoMode, Transaction};
    use crate::hash::ObjectId;
    use crate::object::{FileKind, FileMeta};

    /// Headers read in an order that jumps between frames (as a tree walk
    /// does, the pack being sorted by extension) decompress each frame
    /// once, and are the headers stored.
    #[test]
    fn headers_read_across_frames_decompress_each_frame_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repo::init(&dir.path().join("repo"), RepoMode::Archive).expect("init");
        let tx = Transaction::begin(&repo).expect("begin");
        let mut ids: Vec<(ObjectId, u64, u32)> = Vec::new();
        for i in 0..48u32 {
            let size = 200_000 + u64::from(i);
            // Content that does not compress to nothing, different per file.
            let data: Vec<u8> = (0..size)
                .map(|j| (j.wrapping_mul(2654435761).wrapping_add(u64::from(i)) >> 13) as u8)
                .collect();
            let meta = FileMeta {
                kind: FileKind::Regular,
                mode: 0o600 | (i % 8) << 6,
                uid: i,
                gid: 7,
                rdev: 0,
                xattrs: Vec::new(),
            };
            let id = tx
                .write_file(&meta, size, FileContent::Bytes(&data))
                .expect("store")
                .id;
            ids.push((id, size, i));
        }
        tx.commit().expect("commit");
        let repo = Repo::open(&dir.path().join("repo")).expect("reopen");
        let mut frames = std::collections::HashSet::new();
        for (id, _, _) in &ids {
            let (_, e) = repo.find_packed(id).expect("find").expect("packed");
            frames.insert(e.frame_off);
        }
        assert!(
            frames.len() >= 3,
            "{} frames: the test needs more",
            frames.len()
        );
        // Round robin over the frames, which defeats a cache of the last frames.
        let mut order = ids.clone();
        order.sort_by_key(|(id, _, _)| {
            let (_, e) = repo.find_packed(id).expect("find").expect("packed");
            (id.0[0] as u64, e.frame_off)
        });
        for (id, size, i) in &order {
            let h = repo.file_header(id).expect("header");
            assert_eq!((h.size, h.meta.uid), (*size, *i), "{id}");
        }
        let n = repo.packs.frames_decompressed.load(Ordering::Relaxed);
        assert_eq!(
            n,
            frames.len() as u64,
            "frames decompressed for {} headers",
            ids.len()
        );
    }
}
