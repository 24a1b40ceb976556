//! An archive repository over HTTP, read as an [`ObjectRead`]: objects are
//! found through the packs' indexes and read from their zstd frames, which
//! are fetched by byte range; what no pack holds is fetched loose. Frames
//! are fetched ahead in few large requests ([`HttpStore::prefetch`]:
//! neighbouring frames are fetched together), kept on disk in the remote's
//! cache (so an interrupted pull resumes), and every object is checked
//! against its id as it is read. The bytes are decoded by the store's
//! decoders (pack indexes, frames, loose objects), as for a repository on
//! disk; a large object is decompressed as it is read, never held whole.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use sha2::{Digest, Sha256};
use slate_core::hash::ObjectId;
use slate_core::object::{Commit, FileHeader, ObjectType, Tree};
use slate_core::progress::Progress;
use slate_core::store::{self, decode_pack_index, FileStream, ObjectRead, PackEntry};
use slate_core::summary::{PackInfo, Summary, SUMMARY};

use crate::client::Client;
use crate::Error;

/// Frames closer than this are fetched in one request (the gap is wasted).
const MAX_GAP: u64 = 256 << 10;
/// A request covers at most this many bytes (a unit of resuming).
const MAX_SPAN: u64 = 32 << 20;
/// The largest loose object fetched, by kind: a commit (a few hundred
/// bytes; always loose in an archive repository) and a tree (packed by a
/// publisher of this version) into memory; a file (its compressed bytes,
/// and its content once decompressed) into the cache, read as a stream.
fn loose_limit(kind: ObjectType) -> u64 {
    match kind {
        ObjectType::Commit => 1 << 20,
        ObjectType::Tree => 64 << 20,
        ObjectType::File => 1 << 30,
    }
}
/// The largest pack index fetched (into memory) when the summary, written
/// by an older version, does not give its size: 2^20 objects and more.
const UNSIZED_INDEX_LIMIT: u64 = 64 << 20;

/// Where a loose object is on the remote.
fn loose_path(kind: ObjectType, id: &ObjectId) -> String {
    let hex = id.to_hex();
    format!("objects/{}/{}.{}", &hex[..2], &hex[2..], kind.suffix())
}

/// A frame: its pack and offset.
type FrameKey = (usize, u64);

struct Pack {
    name: String,
    entries: Vec<PackEntry>,
}

/// A downloaded byte range of a pack, on disk.
#[derive(Clone, Debug)]
struct Span {
    pack: usize,
    start: u64,
    end: u64,
    path: PathBuf,
}

pub struct HttpStore<'c> {
    client: &'c Client,
    cache: PathBuf,
    packs: Vec<Pack>,
    by_id: HashMap<ObjectId, (usize, PackEntry)>,
    spans: Mutex<Vec<Span>>,
    frames: Mutex<Vec<(FrameKey, Arc<Vec<u8>>)>>,
    /// Bytes fetched, for a progress line.
    progress: Option<&'c Progress>,
}

/// SHA-256 and length of a file, read in pieces.
fn sha256_file(path: &Path) -> Result<(u64, String), Error> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    Ok((n, hex::encode(h.finalize())))
}

/// The bytes of pack `id`'s index, checked against the summary's digest
/// (and size), from the cache or else fetched into it. With the size in
/// the summary, no more than that is fetched, straight to disk, and
/// checked before it is read; without it (a summary of an older version)
/// at most [`UNSIZED_INDEX_LIMIT`] bytes are fetched into memory.
fn index(client: &Client, cache: &Path, p: &PackInfo, id: &ObjectId) -> Result<Vec<u8>, Error> {
    let name = id.to_hex();
    let remote = format!("objects/pack/{name}.idx");
    let local = cache.join(format!("{name}.idx"));
    let limit = p.idx_size.unwrap_or(UNSIZED_INDEX_LIMIT);
    let sound = |b: &[u8]| {
        hex::encode(Sha256::digest(b)) == p.idx_sha256
            && p.idx_size.is_none_or(|n| n == b.len() as u64)
    };
    // The index names its pack's digest in its last 32 bytes.
    let its_pack = |b: Vec<u8>| -> Result<Vec<u8>, Error> {
        if store::index_pack_digest(&b) != Some(*id) {
            return Err(Error::Corrupt(format!(
                "{remote} is not the index of pack {name}"
            )));
        }
        Ok(b)
    };
    if std::fs::metadata(&local).is_ok_and(|m| m.len() <= limit) {
        if let Some(b) = std::fs::read(&local).ok().filter(|b| sound(b)) {
            return its_pack(b);
        }
    }
    let mismatch = || Error::Corrupt(format!("{remote} does not match the summary's digest"));
    let bytes = match p.idx_size {
        Some(size) => {
            let part = cache.join(format!(".{name}.idx.part"));
            // A part left by an interrupted pull is resumed; if the whole
            // does not check, it is fetched once more from its start.
            let resumed = part.exists();
            for fresh in [false, true] {
                if fresh && !resumed {
                    return Err(mismatch());
                }
                client.download(&remote, 0, size, &part, &|_| {})?;
                let (len, digest) = sha256_file(&part)?;
                if len == size && digest == p.idx_sha256 {
                    break;
                }
                let _ = std::fs::remove_file(&part);
                if fresh {
                    return Err(mismatch());
                }
            }
            std::fs::File::open(&part)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&part, e))?;
            std::fs::rename(&part, &local).map_err(|e| Error::io(&local, e))?;
            std::fs::read(&local).map_err(|e| Error::io(&local, e))?
        }
        None => {
            let b = client.get(&remote, limit)?;
            if !sound(&b) {
                return Err(mismatch());
            }
            let mut f = slate_core::fsutil::AtomicFile::create(&local, 0o644)
                .map_err(|e| Error::io(&local, e))?;
            std::io::Write::write_all(&mut f, &b)
                .and_then(|()| f.commit())
                .map_err(|e| Error::io(&local, e))?;
            b
        }
    };
    its_pack(bytes)
}

fn fetch_err(e: Error) -> store::Error {
    store::Error::Fetch(e.to_string())
}

fn corrupt(kind: ObjectType, id: &ObjectId, detail: String) -> store::Error {
    store::Error::Corrupt {
        kind,
        id: *id,
        detail,
    }
}

impl<'c> HttpStore<'c> {
    /// The remote's packs as its (checked) summary lists them; indexes are
    /// fetched once and kept in `cache`, checked against the summary's
    /// digests.
    pub fn open(
        client: &'c Client,
        cache: &Path,
        summary: &Summary,
    ) -> Result<HttpStore<'c>, Error> {
        std::fs::create_dir_all(cache).map_err(|e| Error::io(cache, e))?;
        let mut packs = Vec::new();
        for p in &summary.packs {
            // Only the hex digits of a checked id reach a path.
            let id = p
                .id()
                .map_err(|e| Error::Corrupt(format!("{SUMMARY}: a pack's name: {e}")))?;
            let name = id.to_hex();
            let bytes = index(client, cache, p, &id)?;
            let entries = decode_pack_index(&bytes)
                .map_err(|e| Error::Corrupt(format!("objects/pack/{name}.idx: {e}")))?;
            packs.push(Pack { name, entries });
        }
        let mut by_id = HashMap::new();
        for (i, p) in packs.iter().enumerate() {
            for e in &p.entries {
                by_id.entry(e.id).or_insert((i, *e));
            }
        }
        // Spans downloaded by an earlier, interrupted pull.
        let mut spans = Vec::new();
        if let Ok(rd) = std::fs::read_dir(cache) {
            for f in rd.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                let Some((pack, range)) = name.split_once('@') else {
                    continue;
                };
                let Some((a, b)) = range.split_once('-') else {
                    continue;
                };
                let (Ok(start), Ok(end)) = (a.parse::<u64>(), b.parse::<u64>()) else {
                    continue;
                };
                if let Some(i) = packs.iter().position(|p| p.name == pack) {
                    spans.push(Span {
                        pack: i,
                        start,
                        end,
                        path: f.path(),
                    });
                }
            }
        }
        Ok(HttpStore {
            client,
            cache: cache.to_path_buf(),
            packs,
            by_id,
            spans: Mutex::new(spans),
            frames: Mutex::new(Vec::new()),
            progress: None,
        })
    }

    pub fn with_progress(mut self, p: &'c Progress) -> Self {
        self.progress = Some(p);
        self
    }

    /// Fetch the frames that hold `ids` (those not fetched yet), in few
    /// requests, several at a time.
    pub fn prefetch(&self, ids: &[ObjectId]) -> Result<(), Error> {
        let mut want: Vec<(usize, u64, u64)> = ids
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .map(|(p, e)| (*p, e.frame_off, e.frame_off + e.frame_len as u64))
            .filter(|&(p, s, e)| self.span_for(p, s, e).is_none())
            .collect();
        want.sort_unstable();
        want.dedup();
        let mut runs: Vec<(usize, u64, u64)> = Vec::new();
        for (p, s, e) in want {
            match runs.last_mut() {
                Some(r) if r.0 == p && s <= r.2 + MAX_GAP && e - r.1 <= MAX_SPAN => {
                    r.2 = r.2.max(e)
                }
                _ => runs.push((p, s, e)),
            }
        }
        if let Some(p) = self.progress {
            p.add_fetch_total(runs.iter().map(|r| r.2 - r.1).sum());
        }
        // Whether the server honours ranges, asked once (one byte).
        let Some(&(first, _, _)) = runs.first() else {
            return Ok(());
        };
        let name = &self.packs[first].name;
        if !self
            .client
            .probe_ranges(&format!("objects/pack/{name}.pack"))?
        {
            // Each pack once, from its start to the last byte wanted.
            let mut whole: Vec<(usize, u64, u64)> = Vec::new();
            for (p, _, e) in runs {
                match whole.iter_mut().find(|w| w.0 == p) {
                    Some(w) => w.2 = w.2.max(e),
                    None => whole.push((p, 0, e)),
                }
            }
            runs = whole;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .map_err(|e| Error::Fetch(e.to_string()))?;
        pool.install(|| {
            runs.par_iter()
                .try_for_each(|&(p, s, e)| self.fetch_span(p, s, e).map(drop))
        })
    }

    fn span_for(&self, pack: usize, start: u64, end: u64) -> Option<Span> {
        self.spans
            .lock()
            .expect("no panic while held")
            .iter()
            .find(|sp| sp.pack == pack && sp.start <= start && end <= sp.end)
            .cloned()
    }

    /// Download bytes `start..end` of a pack into the cache.
    fn fetch_span(&self, pack: usize, start: u64, end: u64) -> Result<Span, Error> {
        let name = &self.packs[pack].name;
        let fin = self.cache.join(format!("{name}@{start}-{end}"));
        let part = self.cache.join(format!(".{name}@{start}-{end}.part"));
        let progress = self.progress;
        self.client.download(
            &format!("objects/pack/{name}.pack"),
            start,
            end,
            &part,
            &move |n| {
                if let Some(p) = progress {
                    p.add_fetched(n);
                }
            },
        )?;
        std::fs::rename(&part, &fin).map_err(|e| Error::io(&fin, e))?;
        let sp = Span {
            pack,
            start,
            end,
            path: fin,
        };
        self.spans
            .lock()
            .expect("no panic while held")
            .push(sp.clone());
        Ok(sp)
    }

    /// The span file holding the frame of `e`, fetched if need be.
    fn span_of(&self, pack: usize, e: &PackEntry) -> store::Result<Span> {
        let end = e.frame_off + e.frame_len as u64;
        match self.span_for(pack, e.frame_off, end) {
            Some(sp) => Ok(sp),
            None => self.fetch_span(pack, e.frame_off, end).map_err(fetch_err),
        }
    }

    /// The decompressed frame holding `e` (a small one), kept for the
    /// objects that follow in it.
    fn frame(&self, pack: usize, e: &PackEntry) -> store::Result<Arc<Vec<u8>>> {
        let key = (pack, e.frame_off);
        if let Some((_, f)) = self
            .frames
            .lock()
            .expect("no panic while held")
            .iter()
            .find(|(k, _)| *k == key)
        {
            return Ok(f.clone());
        }
        let sp = self.span_of(pack, e)?;
        let f = std::fs::File::open(&sp.path)
            .map_err(|err| store::Error::Fetch(format!("{}: {err}", sp.path.display())))?;
        let mut raw = vec![0u8; e.frame_len as usize];
        f.read_exact_at(&mut raw, e.frame_off - sp.start)
            .map_err(|err| store::Error::Fetch(format!("{}: {err}", sp.path.display())))?;
        let frame = Arc::new(store::decode_frame(&raw, e, &self.packs[pack].name)?);
        let mut frames = self.frames.lock().expect("no panic while held");
        if frames.len() >= 16 {
            frames.remove(0);
        }
        frames.push((key, frame.clone()));
        Ok(frame)
    }

    /// A reader of a packed object's canonical bytes (not yet checked
    /// against its id): from its frame decompressed whole, or, for a
    /// large frame, decompressed from the span file as it is read.
    fn packed_reader(&self, pack: usize, e: &PackEntry) -> store::Result<Box<dyn Read + Send>> {
        if store::frame_is_small(e) {
            return store::object_in_frame(self.frame(pack, e)?, e, &self.packs[pack].name);
        }
        let sp = self.span_of(pack, e)?;
        let mut f = std::fs::File::open(&sp.path)
            .map_err(|err| store::Error::Fetch(format!("{}: {err}", sp.path.display())))?;
        f.seek(SeekFrom::Start(e.frame_off - sp.start))
            .map_err(|err| store::Error::Fetch(format!("{}: {err}", sp.path.display())))?;
        store::stream_frame_object(f.take(u64::from(e.frame_len)), e)
    }

    /// A tree's or commit's canonical bytes, checked against its id.
    fn canonical(&self, kind: ObjectType, id: &ObjectId) -> store::Result<Vec<u8>> {
        let bytes = match self.by_id.get(id) {
            Some((p, e)) => {
                let mut out = Vec::new();
                self.packed_reader(*p, e)?
                    .read_to_end(&mut out)
                    .map_err(|err| corrupt(kind, id, err.to_string()))?;
                if out.len() != e.len as usize {
                    return Err(corrupt(
                        kind,
                        id,
                        "the frame is shorter than the index says".into(),
                    ));
                }
                out
            }
            None => self.loose(kind, id)?,
        };
        if ObjectId::digest(&bytes) != *id {
            return Err(corrupt(
                kind,
                id,
                "the remote's bytes do not hash to its id".into(),
            ));
        }
        Ok(bytes)
    }

    /// A loose tree or commit: its canonical bytes, fetched whole.
    fn loose(&self, kind: ObjectType, id: &ObjectId) -> store::Result<Vec<u8>> {
        let path = loose_path(kind, id);
        let raw = match self.client.get(&path, loose_limit(kind)) {
            Ok(b) => b,
            Err(Error::NotFound(..)) => return Err(store::Error::Missing { kind, id: *id }),
            Err(e) => return Err(fetch_err(e)),
        };
        if let Some(p) = self.progress {
            p.add_fetched(raw.len() as u64);
        }
        Ok(raw)
    }

    /// A loose file object (its header, then its content in one zstd
    /// frame): fetched into the cache, no more than a file may be, and
    /// decompressed as it is read, so that a large file is never held
    /// whole. The cached copy is unlinked once open.
    fn loose_file(&self, id: &ObjectId) -> store::Result<(FileHeader, Box<dyn Read + Send>)> {
        let kind = ObjectType::File;
        let path = loose_path(kind, id);
        let limit = loose_limit(kind);
        // Only the hex digits of the id reach a path.
        let local = self.cache.join(format!(".{}.file.part", id.to_hex()));
        let progress = self.progress;
        let got = self.client.get_to_file(&path, limit, &local, &move |n| {
            if let Some(p) = progress {
                p.add_fetched(n);
            }
        });
        let opened =
            got.and_then(|_| std::fs::File::open(&local).map_err(|err| Error::io(&local, err)));
        let _ = std::fs::remove_file(&local);
        let f = match opened {
            Ok(f) => f,
            Err(Error::NotFound(..)) => return Err(store::Error::Missing { kind, id: *id }),
            Err(e) => return Err(fetch_err(e)),
        };
        let (h, content) = store::decode_loose_file(Box::new(f), id, Path::new(&path))?;
        if h.size > limit {
            return Err(corrupt(
                kind,
                id,
                format!(
                    "{path}: {} bytes of content, more than the {limit} a file may have",
                    h.size
                ),
            ));
        }
        Ok((h, content))
    }

    /// Where an object lies (pack, frame): reading in this order
    /// decompresses each frame once.
    pub fn storage_key(&self, id: &ObjectId) -> (usize, u64) {
        self.by_id
            .get(id)
            .map(|(p, e)| (*p, e.frame_off))
            .unwrap_or((usize::MAX, 0))
    }

    /// Whether the remote's packs index this object.
    pub fn packed(&self, id: &ObjectId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Remove the downloaded spans (after a pull that finished).
    pub fn clear_spans(&self) {
        for sp in self.spans.lock().expect("no panic while held").drain(..) {
            let _ = std::fs::remove_file(sp.path);
        }
    }
}

impl ObjectRead for HttpStore<'_> {
    fn has_object(&self, _kind: ObjectType, id: &ObjectId) -> store::Result<bool> {
        Ok(self.by_id.contains_key(id))
    }
    fn read_tree(&self, id: &ObjectId) -> store::Result<Tree> {
        let b = self.canonical(ObjectType::Tree, id)?;
        Tree::decode(&b).map_err(|source| store::Error::Decode {
            kind: ObjectType::Tree,
            id: *id,
            source,
        })
    }
    fn read_commit(&self, id: &ObjectId) -> store::Result<Commit> {
        let b = self.canonical(ObjectType::Commit, id)?;
        Commit::decode(&b).map_err(|source| store::Error::Decode {
            kind: ObjectType::Commit,
            id: *id,
            source,
        })
    }
    fn file_header(&self, id: &ObjectId) -> store::Result<FileHeader> {
        Ok(self.open_file(id)?.header().clone())
    }
    fn open_file(&self, id: &ObjectId) -> store::Result<FileStream<'_>> {
        let (h, content) = match self.by_id.get(id) {
            Some((p, e)) => store::decode_packed_file(
                self.packed_reader(*p, e)?,
                id,
                Path::new(&format!("objects/pack/{}.pack", self.packs[*p].name)),
            )?,
            None => self.loose_file(id)?,
        };
        FileStream::new(*id, h, content, Path::new("remote"))
    }
}
