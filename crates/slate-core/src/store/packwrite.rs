//! Writing a pack during a commit into an archive repository.
//!
//! Regular files read from a directory are *deferred*: the scan only hashes
//! them, and `finish` sorts the new ones by extension and name, reads them
//! again in that order, checks each against its id, and compresses runs of
//! similar files together in frames of about 4 MiB, frames in parallel.
//! Objects whose content is only in memory (tar members, symlink targets,
//! trees) go into buckets by extension instead, compressed when full.
//! The pack is an unnamed file until `finish` links it, then its index,
//! into `objects/pack/`.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Mutex;

use rayon::prelude::*;

use super::pack::{encode_index, kind_code, PackEntry, PACK_MAGIC};
use super::tmpobj::TmpObject;
use super::{Error, Repo, Result};
use crate::fsutil;
use crate::hash::{Hasher, ObjectId};
use crate::object::ObjectType;

/// Uncompressed size at which a run of objects becomes a frame.
pub(crate) const FRAME_TARGET: usize = 4 << 20;
/// Files up to this size are deferred into the pack; larger ones are
/// stored as loose objects.
pub(crate) const PACKED_MAX: u64 = 64 << 20;
const BUCKETS: usize = 17;
/// The bucket of tree objects.
pub(crate) const TREE_BUCKET: usize = BUCKETS - 1;

#[derive(Default)]
struct Bucket {
    buf: Vec<u8>,
    items: Vec<(ObjectId, u8, u32, u32)>,
}

struct State {
    offset: u64,
    hasher: Hasher,
    entries: Vec<PackEntry>,
    /// The canonical header of each file object, for the pack's headers
    /// file (`packheaders.rs`).
    headers: Vec<(ObjectId, Vec<u8>)>,
}

/// A file to read again at `finish`.
struct Deferred {
    id: ObjectId,
    header: Vec<u8>,
    size: u64,
    path: PathBuf,
}

impl Deferred {
    fn sort_key(&self) -> (&[u8], &[u8]) {
        let name = self.path.file_name().map(|n| n.as_bytes()).unwrap_or(b"");
        (extension(name), name)
    }
}

pub(crate) struct PackWriter {
    tmp: TmpObject,
    state: Mutex<State>,
    buckets: Vec<Mutex<Bucket>>,
    deferred: Mutex<Vec<Deferred>>,
    pending: Mutex<HashSet<ObjectId>>,
    level: i32,
}

fn extension(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&b| b == b'.') {
        Some(i) if i > 0 => &name[i..],
        _ => b"",
    }
}

/// The bucket of a file name (by extension) for in-memory objects.
pub(crate) fn bucket_of(name: &[u8]) -> usize {
    // FNV-1a: a stable spread of extensions over the buckets.
    let h = extension(name).iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    (h % (BUCKETS as u64 - 1)) as usize
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PackWriter {
    fn new(repo: &Repo) -> std::io::Result<Self> {
        let tmp = repo.create_tmp()?;
        fsutil::write_all_fd(tmp.fd(), PACK_MAGIC)?;
        let mut hasher = Hasher::new();
        hasher.update(PACK_MAGIC);
        Ok(PackWriter {
            tmp,
            state: Mutex::new(State {
                offset: PACK_MAGIC.len() as u64,
                hasher,
                entries: Vec::new(),
                headers: Vec::new(),
            }),
            buckets: (0..BUCKETS)
                .map(|_| Mutex::new(Bucket::default()))
                .collect(),
            deferred: Mutex::new(Vec::new()),
            pending: Mutex::new(HashSet::new()),
            level: repo.compression_level,
        })
    }

    /// Whether this pack already holds or will hold `id`; claims it if not.
    pub fn claim(&self, id: ObjectId) -> bool {
        lock(&self.pending).insert(id)
    }

    /// Queue an object whose canonical bytes are `header` + `content`, in
    /// `bucket`. Returns false if this pack already holds it.
    pub fn add(
        &self,
        repo: &Repo,
        kind: ObjectType,
        id: ObjectId,
        header: &[u8],
        content: &[u8],
        bucket: usize,
    ) -> std::io::Result<bool> {
        if !self.claim(id) {
            return Ok(false);
        }
        let full = {
            let mut b = lock(&self.buckets[bucket]);
            let off = b.buf.len() as u32;
            b.buf.extend_from_slice(header);
            b.buf.extend_from_slice(content);
            let len = b.buf.len() as u32 - off;
            b.items.push((id, kind_code(kind), off, len));
            (b.buf.len() >= FRAME_TARGET).then(|| std::mem::take(&mut *b))
        };
        if let Some(b) = full {
            self.write_frame(repo, b)?;
        }
        Ok(true)
    }

    /// Record a regular file (already hashed to `id`) to be read again from
    /// `path` and packed at `finish`. Returns false if already claimed.
    pub fn defer(&self, id: ObjectId, header: Vec<u8>, size: u64, path: PathBuf) -> bool {
        if !self.claim(id) {
            return false;
        }
        lock(&self.deferred).push(Deferred {
            id,
            header,
            size,
            path,
        });
        true
    }

    fn write_frame(&self, repo: &Repo, b: Bucket) -> std::io::Result<()> {
        if b.items.is_empty() {
            return Ok(());
        }
        let comp = repo.compress_level(&b.buf, self.level)?;
        let headers: Vec<(ObjectId, Vec<u8>)> = b
            .items
            .iter()
            .filter(|(_, kind, _, _)| *kind == b'f')
            .filter_map(|&(id, _, off, _)| {
                let from = b.buf.get(off as usize..)?;
                let (_, used) = crate::object::FileHeader::decode_prefix(from).ok()?;
                Some((id, from[..used].to_vec()))
            })
            .collect();
        let mut st = lock(&self.state);
        let frame_off = st.offset;
        let mut written = 0;
        while written < comp.len() {
            written +=
                rustix::io::pwrite(self.tmp.fd(), &comp[written..], frame_off + written as u64)?;
        }
        st.hasher.update(&comp);
        st.offset += comp.len() as u64;
        st.headers.extend(headers);
        let raw = b.buf.len() as u32;
        for (id, kind, off, len) in b.items {
            st.entries.push(PackEntry {
                id,
                kind,
                frame_off,
                frame_len: comp.len() as u32,
                frame_raw_len: raw,
                off,
                len,
            });
        }
        Ok(())
    }

    /// Read a run of deferred files into one frame, checking each file
    /// still hashes to its id.
    fn deferred_frame(&self, repo: &Repo, run: &[Deferred]) -> Result<()> {
        let mut b = Bucket {
            buf: Vec::with_capacity(run.iter().map(|d| d.header.len() + d.size as usize).sum()),
            items: Vec::with_capacity(run.len()),
        };
        for d in run {
            let off = b.buf.len();
            b.buf.extend_from_slice(&d.header);
            let content = std::fs::read(&d.path).map_err(|e| Error::io(&d.path, e))?;
            let mut h = Hasher::new();
            h.update(&d.header);
            h.update(&content);
            if h.finish() != d.id {
                return Err(Error::Invalid(format!(
                    "{}: file changed while it was committed",
                    d.path.display()
                )));
            }
            b.buf.extend_from_slice(&content);
            b.items
                .push((d.id, b'f', off as u32, (b.buf.len() - off) as u32));
        }
        self.write_frame(repo, b)
            .map_err(|e| Error::io(&repo.path.join("tmp"), e))
    }

    /// Pack the deferred files and the remaining buckets, then link the pack
    /// and its index into place. Returns the pack's name, or `None` if it
    /// holds nothing.
    pub(crate) fn finish(self, repo: &Repo) -> Result<Option<String>> {
        let io = |e| Error::io(&repo.path.join("objects/pack"), e);
        let mut deferred = std::mem::take(&mut *lock(&self.deferred));
        deferred.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        let mut runs: Vec<&[Deferred]> = Vec::new();
        let (mut start, mut size) = (0, 0usize);
        for (i, d) in deferred.iter().enumerate() {
            if size > 0 && size + d.size as usize > FRAME_TARGET {
                runs.push(&deferred[start..i]);
                (start, size) = (i, 0);
            }
            size += d.header.len() + d.size as usize;
        }
        if start < deferred.len() {
            runs.push(&deferred[start..]);
        }
        runs.into_par_iter()
            .with_max_len(1)
            .try_for_each(|run| self.deferred_frame(repo, run))?;
        let buckets: Vec<Bucket> = self
            .buckets
            .iter()
            .map(|b| std::mem::take(&mut *lock(b)))
            .collect();
        buckets
            .into_par_iter()
            .try_for_each(|b| self.write_frame(repo, b))
            .map_err(io)?;
        let st = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        if st.entries.is_empty() {
            repo.drop_tmp(self.tmp);
            return Ok(None);
        }
        let digest = st.hasher.finish();
        let mut entries = st.entries;
        entries.sort_by_key(|a| a.id);
        let name = digest.to_hex();
        rustix::fs::fchmod(self.tmp.fd(), rustix::fs::Mode::from_raw_mode(0o644))
            .map_err(|e| io(e.into()))?;
        repo.link_tmp_at(self.tmp, &format!("pack/{name}.pack"))?;
        let idx = repo.create_tmp().map_err(io)?;
        fsutil::write_all_fd(idx.fd(), &encode_index(&entries, &digest)).map_err(io)?;
        rustix::fs::fchmod(idx.fd(), rustix::fs::Mode::from_raw_mode(0o644))
            .map_err(|e| io(e.into()))?;
        repo.link_tmp_at(idx, &format!("pack/{name}.idx"))?;
        let mut headers = st.headers;
        repo.write_headers(&name, &mut headers);
        Ok(Some(name))
    }
}

impl PackWriter {
    /// Start collecting new objects into a pack. The caller holds the
    /// writer lock.
    pub(crate) fn begin(repo: &Repo) -> Result<Self> {
        fsutil::mkdir_p_at(&repo.objects, "pack", 0o755)
            .map_err(|e| Error::io(&repo.path.join("objects/pack"), e))?;
        PackWriter::new(repo).map_err(|e| Error::io(&repo.path.join("tmp"), e))
    }

    /// Drop an unfinished pack: its objects never become visible.
    pub(crate) fn abort(self, repo: &Repo) {
        repo.drop_tmp(self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_by_extension() {
        assert_eq!(bucket_of(b"a.so"), bucket_of(b"libc.so"));
        assert_eq!(bucket_of(b"bash"), bucket_of(b"ls"));
        assert_eq!(bucket_of(b".profile"), bucket_of(b"ls"));
        assert!(bucket_of(b"x.py") < TREE_BUCKET);
    }
}
