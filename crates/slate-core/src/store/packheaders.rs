//! File headers of packed objects, found without decompressing a frame
//! for each one. A frame holds many small files, in the order the pack
//! writer sorted them (by extension), not in the order a tree walk meets
//! them: reading headers in walk order would decompress a frame per file.
//! So the headers of a pack's file objects are kept apart, in
//! `REPO/cache/headers/NAME` (written with the pack, or the first time a
//! header of an older pack is read from a repository one may write to),
//! and loaded whole (a few dozen bytes a file) when one is needed. Where
//! there is no such file and none can be written, the first header read
//! from a frame decodes the headers of every file object in it: a listing
//! or a summary decompresses each frame once. Format:
//! `docs/format/repository.md`.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;
use rustix::fs::{self as rfs, Mode, OFlags};

use super::pack::{LoadedPack, PackEntry};
use super::Repo;
use super::Result;
use crate::fsutil;
use crate::hash::ObjectId;
use crate::object::FileHeader;

/// The first bytes of a headers file.
const MAGIC: &[u8; 8] = b"SLATEH1\0";
/// Where the headers files are, below the repository.
pub(crate) const DIR: &str = "cache/headers";

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

/// A headers file: magic, the pack's digest, a count, then per file
/// object of the pack in id order its id, the length of its header and
/// the header's canonical bytes; last the SHA-256 of all that.
pub(crate) fn encode(pack: &ObjectId, headers: &[(ObjectId, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + headers.iter().map(|h| 36 + h.1.len()).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&pack.0);
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (id, h) in headers {
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&(h.len() as u32).to_be_bytes());
        out.extend_from_slice(h);
    }
    let digest = ObjectId::digest(&out);
    out.extend_from_slice(&digest.0);
    out
}

/// A headers file read back, checked whole: its pack's digest, one
/// header for each file object of the pack's index (`files`, sorted by
/// id) and nothing else, each header decoded exactly, every length
/// within the bytes left. `None` if anything does not check.
fn decode(b: &[u8], pack: &ObjectId, files: &[ObjectId]) -> Option<Vec<(ObjectId, FileHeader)>> {
    let (body, sum) = b.split_at_checked(b.len().checked_sub(32)?)?;
    if ObjectId::digest(body).0 != *sum {
        return None;
    }
    let rest = body.strip_prefix(MAGIC)?;
    let (digest, rest) = rest.split_at_checked(32)?;
    if digest != pack.0 {
        return None;
    }
    let (n, mut rest) = rest.split_at_checked(4)?;
    let n = u32::from_be_bytes(n.try_into().ok()?) as usize;
    // Every record takes 36 bytes at least.
    if n != files.len() || n > rest.len() / 36 {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for want in files {
        let (id, r) = rest.split_at_checked(32)?;
        if id != want.0 {
            return None;
        }
        let (len, r) = r.split_at_checked(4)?;
        let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
        let (h, r) = r.split_at_checked(len)?;
        out.push((*want, FileHeader::decode(h).ok()?));
        rest = r;
    }
    rest.is_empty().then_some(out)
}

impl Repo {
    /// `REPO/cache/headers`, opened without following a symlink; made
    /// first with `create`.
    fn headers_dir(&self, create: bool) -> Option<OwnedFd> {
        if create {
            fsutil::mkdir_p_at(&self.root, DIR, 0o755).ok()?;
        }
        let cache = fsutil::open_dir_at(&self.root, Path::new("cache")).ok()?;
        fsutil::open_dir_at(&cache, Path::new("headers")).ok()
    }

    /// Write the headers file of pack `name` (atomically; a cache: a
    /// failure only costs speed later, and is not reported).
    pub(crate) fn write_headers(&self, name: &str, headers: &mut [(ObjectId, Vec<u8>)]) {
        let Ok(pack) = ObjectId::from_hex(name) else {
            return;
        };
        headers.sort_by_key(|a| a.0);
        if let Some(dir) = self.headers_dir(true) {
            let _ = fsutil::atomic_write_at(&dir, name, &encode(&pack, headers), 0o644);
        }
    }

    /// Remove the headers file of pack `name` (its pack is gone).
    pub(crate) fn remove_headers(&self, name: &str) {
        if let Some(dir) = self.headers_dir(false) {
            let _ = rfs::unlinkat(&dir, name, rfs::AtFlags::empty());
        }
    }

    /// The file ids of `pack`, sorted (its index is).
    fn file_ids(pack: &LoadedPack) -> Vec<ObjectId> {
        pack.entries
            .iter()
            .filter(|e| e.kind == b'f')
            .map(|e| e.id)
            .collect()
    }

    /// Read the headers file of `pack` into the headers kept.
    fn load_headers(&self, pack: &LoadedPack) -> bool {
        let Some(dir) = self.headers_dir(false) else {
            return false;
        };
        let Ok(fd) = rfs::openat(
            &dir,
            pack.name.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        ) else {
            return false;
        };
        let regular = rfs::fstat(&fd)
            .is_ok_and(|st| rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::RegularFile);
        let (Ok(pack_id), true) = (ObjectId::from_hex(&pack.name), regular) else {
            return false;
        };
        let Ok(bytes) = fsutil::read_fd_to_end(&fd) else {
            return false;
        };
        let Some(headers) = decode(&bytes, &pack_id, &Self::file_ids(pack)) else {
            return false;
        };
        lock(&self.packs.headers.headers).extend(headers);
        true
    }

    /// Every file header of `pack`, decoded from its frames (each
    /// decompressed once), kept, and written as its headers file.
    fn harvest_headers(&self, pack: &Arc<LoadedPack>) -> Result<()> {
        let members = pack.frame_members.of(&pack.entries);
        let frames: Vec<&Vec<u32>> = members.values().collect();
        let found: Vec<Vec<(ObjectId, Vec<u8>)>> = frames
            .par_iter()
            .map(|idx| -> Result<Vec<(ObjectId, Vec<u8>)>> {
                let mut out = Vec::new();
                let Some(first) = idx.first().and_then(|&i| pack.entries.get(i as usize)) else {
                    return Ok(out);
                };
                if !super::packread::frame_is_small(first) {
                    // One large object: its header from the start of its stream.
                    for &i in idx.iter() {
                        let e = pack.entries[i as usize];
                        let path = self.pack_dir().join(format!("{}.pack", pack.name));
                        let (h, _) = super::files_read::decode_packed_file(
                            self.packed_reader(pack, &e)?,
                            &e.id,
                            &path,
                        )?;
                        out.push((e.id, h.encode()));
                    }
                    return Ok(out);
                }
                let frame = self.frame(pack, first)?;
                for &i in idx.iter() {
                    let m = pack.entries[i as usize];
                    let (off, len) = (m.off as usize, m.len as usize);
                    let Some(bytes) = off.checked_add(len).and_then(|end| frame.get(off..end))
                    else {
                        continue;
                    };
                    if let Ok((_, used)) = FileHeader::decode_prefix(bytes) {
                        out.push((m.id, bytes[..used].to_vec()));
                    }
                }
                Ok(out)
            })
            .collect::<Result<_>>()?;
        let mut all: Vec<(ObjectId, Vec<u8>)> = found.into_iter().flatten().collect();
        {
            let mut kept = lock(&self.packs.headers.headers);
            for (id, h) in &all {
                if let Ok(h) = FileHeader::decode(h) {
                    kept.insert(*id, h);
                }
            }
        }
        // Written only whole: a header that did not decode (a damaged
        // frame) leaves no file, and its reads name the fault.
        if all.len() == Self::file_ids(pack).len() {
            self.write_headers(&pack.name, &mut all);
        }
        Ok(())
    }

    /// Whether the headers of all of `pack`'s files are kept: from its
    /// headers file, else decoded from the whole pack when a headers file
    /// can be written for next time.
    fn all_headers(&self, pack: &Arc<LoadedPack>) -> bool {
        *pack.all_headers.get_or_init(|| {
            self.load_headers(pack)
                || (self.headers_dir(true).is_some() && self.harvest_headers(pack).is_ok())
        })
    }

    /// The header of the packed file object `e` (in a frame read whole):
    /// from the headers kept (the pack's headers file), else decoded with
    /// every other file header of its frame. `None` if its bytes do not
    /// hold a header (the caller reads it the slow way, which names the
    /// fault).
    pub(crate) fn packed_header(
        &self,
        pack: &Arc<LoadedPack>,
        e: &PackEntry,
    ) -> Result<Option<FileHeader>> {
        let cache = &self.packs.headers;
        if let Some(h) = lock(&cache.headers).get(&e.id) {
            return Ok(Some(h.clone()));
        }
        if self.all_headers(pack) {
            if let Some(h) = lock(&cache.headers).get(&e.id) {
                return Ok(Some(h.clone()));
            }
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
    use super::*;
    use crate::object::{FileKind, FileMeta};

    /// An archive repository with 48 files spread over several frames:
    /// its path and (id, size, uid) of each file.
    /// `seed` makes the pack of each test its own: threads keep the frames
    /// they decompressed by pack name, which is the pack's digest.
    fn packed(seed: u8) -> (tempfile::TempDir, Vec<(ObjectId, u64, u32)>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repo::init(&dir.path().join("repo"), RepoMode::Archive).expect("init");
        let tx = Transaction::begin(&repo).expect("begin");
        let mut ids = Vec::new();
        for i in 0..48u32 {
            let size = 200_000 + u64::from(i);
            // Content that does not compress to nothing, different per file.
            let data: Vec<u8> = (0..size)
                .map(|j| {
                    ((j.wrapping_mul(2654435761).wrapping_add(u64::from(i)) >> 13) as u8) ^ seed
                })
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
        (dir, ids)
    }

    /// Reads every header in an order that jumps between frames (as a
    /// tree walk does, the pack being sorted by extension); returns how
    /// many frames were decompressed, and how many frames there are.
    fn read_all(repo: &Repo, ids: &[(ObjectId, u64, u32)]) -> (u64, usize) {
        let mut frames = std::collections::HashSet::new();
        let mut order = ids.to_vec();
        for (id, _, _) in ids {
            let (_, e) = repo.find_packed(id).expect("find").expect("packed");
            frames.insert(e.frame_off);
        }
        order.sort_by_key(|(id, _, _)| id.0[0]);
        for (id, size, i) in &order {
            let h = repo.file_header(id).expect("header");
            assert_eq!((h.size, h.meta.uid), (*size, *i), "{id}");
        }
        (
            repo.packs.frames_decompressed.load(Ordering::Relaxed),
            frames.len(),
        )
    }

    fn headers_file(dir: &Path) -> std::path::PathBuf {
        let d = dir.join("repo").join(DIR);
        let mut names: Vec<_> = std::fs::read_dir(&d)
            .expect("headers dir")
            .flatten()
            .collect();
        assert_eq!(names.len(), 1);
        names.remove(0).path()
    }

    /// The pack's headers file, written with the pack, answers every
    /// header without decompressing a frame.
    #[test]
    fn headers_come_from_the_headers_file_written_with_the_pack() {
        let (dir, ids) = packed(1);
        let repo = Repo::open(&dir.path().join("repo")).expect("open");
        let (n, frames) = read_all(&repo, &ids);
        assert!(frames >= 3, "{frames} frames: the test needs more");
        assert_eq!(n, 0, "frames decompressed with a headers file");
    }

    /// Without a headers file (an older pack), one is made from the
    /// frames, each decompressed once, and used next time; where none
    /// can be written, each frame is still decompressed once.
    #[test]
    fn without_a_headers_file_each_frame_is_decompressed_once() {
        let (dir, ids) = packed(2);
        let file = headers_file(dir.path());
        let written = std::fs::read(&file).expect("read");
        std::fs::remove_file(&file).expect("rm");
        let repo = Repo::open(&dir.path().join("repo")).expect("open");
        let (n, frames) = read_all(&repo, &ids);
        assert_eq!(n, frames as u64);
        assert_eq!(std::fs::read(&file).expect("made again"), written);
        let repo = Repo::open(&dir.path().join("repo")).expect("open");
        assert_eq!(read_all(&repo, &ids).0, 0);

        // No headers file and none can be made: frame by frame. (Another
        // pack: the process keeps the frames of this one.)
        let (dir, ids) = packed(5);
        let cache = dir.path().join("repo/cache");
        std::fs::remove_dir_all(&cache).expect("rm");
        std::fs::write(&cache, b"in the way").expect("write");
        let repo = Repo::open(&dir.path().join("repo")).expect("open");
        let (n, frames) = read_all(&repo, &ids);
        assert_eq!(n, frames as u64);
    }

    /// A headers file that does not check whole (truncated, a byte
    /// changed, another pack's, a symlink) is not used; it is made again.
    #[test]
    fn a_damaged_headers_file_is_not_used() {
        let (dir, ids) = packed(3);
        let file = headers_file(dir.path());
        let good = std::fs::read(&file).expect("read");
        let mut spoiled: Vec<Vec<u8>> = vec![
            good[..good.len() - 1].to_vec(),
            good[..100].to_vec(),
            Vec::new(),
        ];
        for at in [10, 45, 80, good.len() - 40, good.len() - 1] {
            let mut b = good.clone();
            b[at] ^= 1;
            spoiled.push(b);
        }
        for bad in spoiled {
            std::fs::write(&file, &bad).expect("spoil");
            // Not used (the headers read are right), and made again
            // (a file that was used would stay as it is).
            let repo = Repo::open(&dir.path().join("repo")).expect("open");
            read_all(&repo, &ids);
            assert_eq!(std::fs::read(&file).expect("made again"), good);
        }
        std::fs::remove_file(&file).expect("rm");
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, &file).expect("symlink");
        // A sound file behind the link: followed, it would be used and
        // the link kept.
        std::fs::write(&elsewhere, &good).expect("write");
        let repo = Repo::open(&dir.path().join("repo")).expect("open");
        read_all(&repo, &ids);
        assert!(!file.is_symlink(), "the symlink was followed");
        assert_eq!(std::fs::read(&file).expect("made again"), good);
    }

    /// Contents read in an order that returns to each frame in turn (a
    /// tree walk over a pack sorted by extension) decompress each frame
    /// once: the frames are kept for all threads, not two per thread.
    #[test]
    fn contents_read_across_frames_decompress_each_frame_once() {
        let (dir, ids) = packed(4);
        let repo = Repo::open(&dir.path().join("repo")).expect("open");
        let mut by_frame: std::collections::BTreeMap<u64, Vec<ObjectId>> = Default::default();
        for (id, _, _) in &ids {
            let (_, e) = repo.find_packed(id).expect("find").expect("packed");
            by_frame.entry(e.frame_off).or_default().push(*id);
        }
        assert!(by_frame.len() >= 3, "{} frames", by_frame.len());
        // Round robin: one file of each frame, then the next of each.
        let longest = by_frame.values().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for ids in by_frame.values() {
                if let Some(id) = ids.get(i) {
                    let (h, content) = repo.read_file(id).expect("read");
                    assert_eq!(h.size, content.len() as u64);
                }
            }
        }
        let n = repo.packs.frames_decompressed.load(Ordering::Relaxed);
        assert_eq!(n, by_frame.len() as u64, "frames decompressed");
    }

    #[test]
    fn decode_checks_every_field() {
        let pack = ObjectId::digest(b"pack");
        let h = FileHeader {
            meta: FileMeta {
                kind: FileKind::Regular,
                mode: 0o644,
                uid: 1,
                gid: 2,
                rdev: 0,
                xattrs: Vec::new(),
            },
            size: 9,
        };
        let mut ids = [ObjectId::digest(b"a"), ObjectId::digest(b"b")];
        ids.sort();
        let recs: Vec<(ObjectId, Vec<u8>)> = ids.iter().map(|i| (*i, h.encode())).collect();
        let b = encode(&pack, &recs);
        assert_eq!(decode(&b, &pack, &ids).expect("decodes").len(), 2);
        assert!(decode(&b, &ObjectId::digest(b"other"), &ids).is_none());
        assert!(decode(&b, &pack, &ids[..1]).is_none());
        // A count that claims more records than the bytes hold.
        let mut big = recs.clone();
        big[1].1 = vec![0u8; 3];
        assert!(decode(&encode(&pack, &big), &pack, &ids).is_none());
    }
}
