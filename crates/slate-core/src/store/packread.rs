//! Reading packed objects: a frame is decompressed whole (and kept, up to
//! 128 MiB of frames, for the objects that follow in it) when it is small; a large
//! frame, which holds one large object, is decompressed as a stream. And
//! checking a pack file whole, for `fsck`.

use std::io::{self, Read};
use std::sync::Arc;

use super::pack::{kind_of_code, LoadedPack, PackEntry, PACK_MAGIC};
use super::{Error, Repo, Result};
use crate::hash::Hasher;
use crate::object::ObjectType;

/// Frames up to this decompressed size are read whole and kept; larger
/// ones are streamed.
const WHOLE_FRAME_MAX: u32 = 16 << 20;

/// A decompressed frame: (pack name, frame offset, bytes).
type CachedFrame = (String, u64, Arc<Vec<u8>>);

/// Decompressed bytes of frames the process keeps. A pack is sorted by
/// extension, a tree walk (export, diff, cat of many files) by path: the
/// files of one folder sit in a frame per extension, so a walk returns to
/// a few dozen frames in turn. Kept in one cache for all threads (a pack's
/// name is its digest: the same name is the same bytes in any repository).
const KEPT_BYTES: usize = 128 << 20;

/// The frames kept, the most recently used last, and their bytes.
struct FrameCache {
    frames: std::collections::VecDeque<CachedFrame>,
    bytes: usize,
}

static FRAMES: std::sync::Mutex<FrameCache> = std::sync::Mutex::new(FrameCache {
    frames: std::collections::VecDeque::new(),
    bytes: 0,
});

fn frames() -> std::sync::MutexGuard<'static, FrameCache> {
    FRAMES.lock().unwrap_or_else(|p| p.into_inner())
}

impl FrameCache {
    fn get(&mut self, pack: &str, off: u64) -> Option<Arc<Vec<u8>>> {
        let i = self
            .frames
            .iter()
            .position(|(n, o, _)| n == pack && *o == off)?;
        let hit = self.frames.remove(i)?;
        let d = hit.2.clone();
        self.frames.push_back(hit);
        Some(d)
    }

    fn put(&mut self, pack: &str, off: u64, d: Arc<Vec<u8>>) {
        if self.get(pack, off).is_some() {
            return;
        }
        self.bytes += d.len();
        self.frames.push_back((pack.to_string(), off, d));
        while self.bytes > KEPT_BYTES && self.frames.len() > 1 {
            if let Some((_, _, old)) = self.frames.pop_front() {
                self.bytes -= old.len();
            }
        }
    }
}

/// A range of a kept frame, read without copying the frame.
struct FrameSlice {
    frame: Arc<Vec<u8>>,
    pos: usize,
    end: usize,
}

impl Read for FrameSlice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.end - self.pos);
        buf[..n].copy_from_slice(&self.frame[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A byte range of a pack file, read with `pread`.
struct PackRegion {
    pack: Arc<LoadedPack>,
    pos: u64,
    end: u64,
}

impl Read for PackRegion {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        let got = rustix::io::pread(&self.pack.file, &mut buf[..n], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

fn corrupt(e: &PackEntry, detail: String) -> Error {
    Error::Corrupt {
        kind: kind_of_code(e.kind).unwrap_or(ObjectType::File),
        id: e.id,
        detail,
    }
}

/// Whether the frame holding `e` is decompressed whole (and kept for the
/// objects that follow in it); a larger frame holds one large object and
/// is decompressed as it is read ([`stream_frame_object`]).
pub fn frame_is_small(e: &PackEntry) -> bool {
    e.frame_raw_len <= WHOLE_FRAME_MAX
}

/// The frame holding `e`, decompressed whole from its compressed bytes
/// (from any source: a pack file, a range of it fetched over HTTP).
/// `pack` names the pack in messages.
pub fn decode_frame(compressed: &[u8], e: &PackEntry, pack: &str) -> Result<Vec<u8>> {
    if compressed.len() != e.frame_len as usize {
        return Err(corrupt(
            e,
            format!(
                "pack {pack} frame at {}: {} of its {} bytes (the pack is truncated)",
                e.frame_off,
                compressed.len(),
                e.frame_len
            ),
        ));
    }
    zstd::bulk::decompress(compressed, e.frame_raw_len as usize).map_err(|err| {
        corrupt(
            e,
            format!("pack {pack} frame at {}: zstd: {err}", e.frame_off),
        )
    })
}

/// A reader of `e`'s canonical bytes in its decompressed frame (not yet
/// checked against the id), read without copying the frame.
pub fn object_in_frame(
    frame: Arc<Vec<u8>>,
    e: &PackEntry,
    pack: &str,
) -> Result<Box<dyn Read + Send>> {
    let (off, len) = (e.off as usize, e.len as usize);
    if off.checked_add(len).is_none_or(|end| end > frame.len()) {
        return Err(corrupt(
            e,
            format!(
                "pack {pack} frame at {} is shorter than its index says",
                e.frame_off
            ),
        ));
    }
    Ok(Box::new(FrameSlice {
        frame,
        pos: off,
        end: off + len,
    }))
}

/// A reader of `e`'s canonical bytes (not yet checked against the id)
/// from its frame's compressed bytes, decompressed as they are read: a
/// large object is never held whole.
pub fn stream_frame_object<'r>(
    compressed: impl Read + Send + 'r,
    e: &PackEntry,
) -> Result<Box<dyn Read + Send + 'r>> {
    let mut dec = zstd::stream::read::Decoder::new(compressed)
        .map_err(|err| corrupt(e, format!("zstd: {err}")))?;
    io::copy(&mut (&mut dec).take(u64::from(e.off)), &mut io::sink())
        .map_err(|err| corrupt(e, format!("zstd: {err}")))?;
    Ok(Box::new(dec.take(u64::from(e.len))))
}

impl Repo {
    /// The decompressed frame that holds `e`, from the frames kept or read
    /// and decompressed whole.
    pub(crate) fn frame(&self, pack: &LoadedPack, e: &PackEntry) -> Result<Arc<Vec<u8>>> {
        if let Some(d) = frames().get(&pack.name, e.frame_off) {
            return Ok(d);
        }
        let mut buf = vec![0u8; e.frame_len as usize];
        let pack_path = self.pack_dir().join(format!("{}.pack", pack.name));
        let n = rustix::io::pread(&pack.file, &mut buf[..], e.frame_off)
            .map_err(|err| Error::io(&pack_path, err.into()))?;
        buf.truncate(n);
        let d = Arc::new(decode_frame(&buf, e, &pack.name)?);
        self.packs
            .frames_decompressed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        frames().put(&pack.name, e.frame_off, d.clone());
        Ok(d)
    }

    /// The canonical bytes of a packed object, whole (trees; not yet
    /// checked against the id).
    pub(crate) fn read_packed(&self, pack: &Arc<LoadedPack>, e: &PackEntry) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.packed_reader(pack, e)?
            .read_to_end(&mut out)
            .map_err(|err| Error::io(&self.pack_dir().join(format!("{}.pack", pack.name)), err))?;
        if out.len() != e.len as usize {
            return Err(corrupt(
                e,
                format!(
                    "pack {} frame at {} is shorter than its index says",
                    pack.name, e.frame_off
                ),
            ));
        }
        Ok(out)
    }

    /// A reader of a packed object's canonical bytes (not yet checked
    /// against the id).
    pub(crate) fn packed_reader(
        &self,
        pack: &Arc<LoadedPack>,
        e: &PackEntry,
    ) -> Result<Box<dyn Read + Send>> {
        if frame_is_small(e) {
            return object_in_frame(self.frame(pack, e)?, e, &pack.name);
        }
        let region = PackRegion {
            pack: pack.clone(),
            pos: e.frame_off,
            end: e.frame_off + e.frame_len as u64,
        };
        stream_frame_object(region, e)
    }

    /// Check a pack file whole: its magic, and that it hashes to its name
    /// (which its index records too).
    pub fn verify_pack(&self, name: &str) -> Result<()> {
        let path = self.pack_dir().join(format!("{name}.pack"));
        let bad = |detail: String| Error::Invalid(format!("pack {name}: {detail}"));
        let mut f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut first = true;
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                break;
            }
            if first && !buf[..n].starts_with(PACK_MAGIC) {
                return Err(bad("bad magic: not a Slate pack".into()));
            }
            first = false;
            h.update(&buf[..n]);
        }
        if first {
            return Err(bad("empty pack file".into()));
        }
        let got = h.finish();
        if got.to_hex() != name {
            return Err(bad(format!("content hashes to {got}")));
        }
        let idx = self.pack_dir().join(format!("{name}.idx"));
        let ib = std::fs::read(&idx).map_err(|e| Error::io(&idx, e))?;
        if super::pack::index_pack_digest(&ib) != Some(got) {
            return Err(bad("its index records another pack digest".into()));
        }
        Ok(())
    }
}
