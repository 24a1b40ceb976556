//! Making a delta: the objects of `to` that `from` lacks, a changed file
//! patched against the file that had its path (or, failing that, its name
//! alone) in `from`, new files in blocks, compressed in parallel.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};

use rayon::prelude::*;
use serde::Serialize;
use zstd::stream::raw::CParameter;

use super::{rel_path, Error, MAGIC, MAX_WINDOW_LOG};
use crate::fsutil::AtomicFile;
use crate::hash::ObjectId;
use crate::object::{EntryKind, FileHeader, FileKind, TreeEntry};
use crate::progress::Progress;
use crate::store::{self, ObjectRead, Repo};
use crate::walk::{self, Visit, Visitor};

/// How hard to compress. The defaults were measured on two Debian trees
/// (`bench/README.md`).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// zstd level of patches against old files.
    pub patch_level: i32,
    /// zstd level of blocks of new files.
    pub block_level: i32,
    /// Bytes of new files compressed together in one block.
    pub block_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            patch_level: 10,
            block_level: 18,
            block_size: 12 << 20,
        }
    }
}

/// Files larger than this are sent in chunks of this size ('L' records),
/// never held whole in memory.
pub(crate) const CHUNK: usize = 8 << 20;

/// In a tree's references, the mark of a tree (else a file).
pub(crate) const TREE_REF: u32 = 1 << 31;

/// What a delta holds.
#[derive(Clone, Debug, Serialize)]
pub struct Generated {
    pub from: Option<ObjectId>,
    pub to: ObjectId,
    /// Relative to the repository.
    pub path: String,
    /// Bytes of the delta file.
    pub size: u64,
    pub trees: u64,
    /// Files sent whole (compressed).
    pub files: u64,
    /// Files sent as patches against an older version.
    pub patched: u64,
    /// Content bytes of all files it carries, before compression.
    pub content_bytes: u64,
    /// Bytes of the patches, and of the files sent whole (compressed).
    pub patch_bytes: u64,
    pub whole_bytes: u64,
    pub tree_bytes: u64,
}

/// Objects of `from`, and where its files were.
#[derive(Default)]
struct Old {
    seen: HashSet<ObjectId>,
    by_path: HashMap<Vec<u8>, ObjectId>,
    /// By file name alone; `None` where several files share the name.
    by_name: HashMap<Vec<u8>, Option<ObjectId>>,
    trees_by_path: HashMap<Vec<u8>, ObjectId>,
}

impl Visitor for Old {
    type Error = store::Error;
    fn enter(&mut self, p: &[u8], id: &ObjectId) -> store::Result<Visit> {
        // Every path is visited (a shared subtree once per place), so that
        // a file moved next to a copy of its old folder still finds a base.
        self.seen.insert(*id);
        self.trees_by_path.insert(p.to_vec(), *id);
        Ok(Visit::Descend)
    }
    fn file(&mut self, p: &[u8], e: &TreeEntry) -> store::Result<()> {
        self.seen.insert(e.id);
        self.by_path.insert(p.to_vec(), e.id);
        self.by_name
            .entry(e.name.clone())
            .and_modify(|v| {
                if *v != Some(e.id) {
                    *v = None
                }
            })
            .or_insert(Some(e.id));
        Ok(())
    }
}

/// Objects of `to` that `from` lacks, with the path of each new file.
struct New<'a> {
    old: &'a Old,
    taken: HashSet<ObjectId>,
    /// New trees, with the old tree at their path if any.
    trees: Vec<(ObjectId, Option<ObjectId>)>,
    files: Vec<(ObjectId, Vec<u8>)>,
}

impl Visitor for New<'_> {
    type Error = store::Error;
    fn enter(&mut self, p: &[u8], id: &ObjectId) -> store::Result<Visit> {
        if self.old.seen.contains(id) || !self.taken.insert(*id) {
            return Ok(Visit::Skip);
        }
        self.trees
            .push((*id, self.old.trees_by_path.get(p).copied()));
        Ok(Visit::Descend)
    }
    fn file(&mut self, p: &[u8], e: &TreeEntry) -> store::Result<()> {
        if !self.old.seen.contains(&e.id) && self.taken.insert(e.id) {
            self.files.push((e.id, p.to_vec()));
        }
        Ok(())
    }
}

fn file_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// New files in an order that puts like next to like, which helps a
/// block's compression: shared libraries (`.so`, `.so.N...`) together,
/// then files by suffix (none: executables, mostly), then by name.
fn block_order(path: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let name = file_name(path);
    let is = |w: &[u8]| name.windows(w.len()).any(|x| x == w);
    let ext = if name.ends_with(b".so") || is(b".so.") {
        b"so".to_vec()
    } else {
        match name.iter().rposition(|&b| b == b'.') {
            Some(i) if i > 0 && !name[i + 1..].iter().all(u8::is_ascii_digit) => {
                name[i + 1..].to_vec()
            }
            _ => Vec::new(),
        }
    };
    (ext, name.to_vec(), path.to_vec())
}

/// Sort `items` by where the object each names is stored.
fn sort_stored<T>(
    repo: &Repo,
    items: &mut Vec<T>,
    id: impl Fn(&T) -> &ObjectId,
) -> store::Result<()> {
    let mut keyed = std::mem::take(items)
        .into_iter()
        .map(|t| Ok((repo.storage_order_key(id(&t))?, t)))
        .collect::<store::Result<Vec<_>>>()?;
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    items.extend(keyed.into_iter().map(|(_, t)| t));
    Ok(())
}

fn window_log(len: usize) -> u32 {
    let bits = usize::BITS - len.max(1).leading_zeros();
    bits.clamp(10, MAX_WINDOW_LOG)
}

fn zerr(e: std::io::Error) -> Error {
    Error::Invalid(format!("zstd: {e}"))
}

/// `content` compressed at `level`, with `prefix` (the old version) as the
/// reference the decoder will have as well.
fn compress(content: &[u8], prefix: Option<&[u8]>, level: i32) -> Result<Vec<u8>, Error> {
    let reach = content.len() + prefix.map_or(0, <[u8]>::len);
    let mut enc = match prefix {
        Some(p) => zstd::stream::raw::Encoder::with_ref_prefix(level, p),
        None => zstd::stream::raw::Encoder::new(level),
    }
    .map_err(zerr)?;
    enc.set_parameter(CParameter::WindowLog(window_log(reach)))
        .map_err(zerr)?;
    enc.set_parameter(CParameter::ChecksumFlag(false))
        .map_err(zerr)?;
    enc.set_pledged_src_size(Some(content.len() as u64))
        .map_err(zerr)?;
    let mut w =
        zstd::stream::write::Encoder::with_encoder(Vec::with_capacity(content.len() / 3 + 64), enc);
    w.write_all(content).map_err(zerr)?;
    w.finish().map_err(zerr)
}

fn put_u32(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&(u32::try_from(v).expect("under 4 GiB")).to_be_bytes());
}

enum Piece {
    /// Whole files compressed together.
    Block(Vec<ObjectId>),
    /// One file sent in chunks.
    Large(ObjectId),
}

/// A changed file, the old file it is patched against, and its header.
type Patch = (ObjectId, ObjectId, FileHeader);
/// A file sent whole, its path in `to`, and its header.
type Whole = (ObjectId, Vec<u8>, FileHeader);

/// Make the delta from `from` (none: from nothing) to `to` in
/// `REPO/deltas/TO/FROM.delta`, replacing one that is there.
/// `progress` counts the files encoded and their bytes.
pub fn generate(
    repo: &Repo,
    from: Option<ObjectId>,
    to: ObjectId,
    opts: &Options,
    progress: &Progress,
) -> Result<Generated, Error> {
    let to_commit = repo.read_commit(&to)?;
    let mut old = Old::default();
    if let Some(f) = &from {
        let c = repo.read_commit(f)?;
        walk::walk(repo, &c.tree, b"", &mut old)?;
    }
    let mut new = New {
        old: &old,
        taken: HashSet::new(),
        trees: Vec::new(),
        files: Vec::new(),
    };
    walk::walk(repo, &to_commit.tree, b"", &mut new)?;
    let New { trees, files, .. } = new;
    progress.set_total(files.len() as u64);

    // Changed files with a base; the rest whole.
    let (mut patches, mut whole) = split_by_base(repo, files, &old)?;

    let rel = rel_path(from.as_ref(), &to);
    let path = repo.path().join(&rel);
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(path.parent().expect("under deltas/")).map_err(io)?;
    let mut out =
        std::io::BufWriter::with_capacity(1 << 20, AtomicFile::create(&path, 0o644).map_err(io)?);
    let mut stats = Generated {
        from,
        to,
        path: rel.clone(),
        size: 0,
        trees: trees.len() as u64,
        files: 0,
        patched: 0,
        content_bytes: 0,
        patch_bytes: 0,
        whole_bytes: 0,
        tree_bytes: 0,
    };

    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&from.map_or([0; 32], |f| f.0)).map_err(io)?;
    out.write_all(&to.0).map_err(io)?;

    // Patches, in records of about a block each, encoded in parallel, in
    // the order the files are stored (each pack frame decompressed once).
    sort_stored(repo, &mut patches, |p| &p.0)?;
    // New files: blocks of like files, large ones alone in chunks.
    whole.sort_by_cached_key(|(_, p, _)| block_order(p));
    let pieces = into_pieces(&whole, opts.block_size);
    stats.files = whole.len() as u64;
    stats.content_bytes += whole.iter().map(|w| w.2.size).sum::<u64>();
    let file_index = number_files(&patches, &pieces);

    // The trees and the patches, and the first blocks alongside (so that
    // both cores stay busy when there are few blocks); then the other
    // blocks a few at a time: in parallel, written in order, memory
    // bounded.
    let batch = rayon::current_num_threads().max(1) * 2;
    let mut groups = pieces.chunks(batch);
    let first = groups.next().unwrap_or(&[]);
    let ((tree_rec, encoded), first_blocks) = rayon::join(
        || {
            rayon::join(
                || tree_record(repo, &trees, &file_index, opts.block_level),
                || encode_patches(repo, &patches, opts, progress),
            )
        },
        || encode_blocks(repo, first, opts, progress),
    );
    let tree_rec = tree_rec?;
    stats.tree_bytes = tree_rec.len() as u64;
    stats.patched = patches.len() as u64;
    stats.content_bytes += patches.iter().map(|p| p.2.size).sum::<u64>();
    stats.patch_bytes = write_patch_records(&mut out, encoded?, opts.block_size).map_err(io)?;

    let mut write_group = |group: &[Piece], blocks: Vec<Option<Vec<u8>>>| -> Result<(), Error> {
        for (p, z) in group.iter().zip(blocks) {
            match (p, z) {
                (_, Some(z)) => {
                    stats.whole_bytes += z.len() as u64;
                    write_record(&mut out, b'F', &z).map_err(io)?
                }
                (Piece::Large(id), None) => write_large(repo, &mut out, id, opts, progress, &path)?,
                (Piece::Block(_), None) => unreachable!("blocks are compressed"),
            }
        }
        Ok(())
    };
    write_group(first, first_blocks?)?;
    for group in groups {
        write_group(group, encode_blocks(repo, group, opts, progress)?)?;
    }
    write_record(&mut out, b'T', &tree_rec).map_err(io)?;
    write_end(&mut out, &to_commit.encode(), &stats).map_err(io)?;
    let f = out.into_inner().map_err(|e| io(e.into_error()))?;
    f.commit().map_err(io)?;
    stats.size = std::fs::metadata(&path).map_err(io)?.len();
    Ok(stats)
}

/// The new files split: a changed regular file with a base in `old` (at
/// its path, or else its name alone) becomes a patch when the zstd window
/// reaches over both; the others are sent whole. Headers are read in the
/// order objects are stored, so that each pack frame is decompressed
/// about once.
fn split_by_base(
    repo: &Repo,
    mut files: Vec<(ObjectId, Vec<u8>)>,
    old: &Old,
) -> Result<(Vec<Patch>, Vec<Whole>), Error> {
    sort_stored(repo, &mut files, |f| &f.0)?;
    let headers: Vec<FileHeader> = files
        .par_iter()
        .map(|(id, _)| repo.file_header(id))
        .collect::<store::Result<_>>()?;
    let base_of = |path: &[u8]| {
        old.by_path
            .get(path)
            .copied()
            .or_else(|| old.by_name.get(file_name(path)).copied().flatten())
    };
    let mut bases: Vec<ObjectId> = files
        .iter()
        .zip(&headers)
        .filter(|(_, h)| h.meta.kind == FileKind::Regular && h.size > 0)
        .filter_map(|((_, path), _)| base_of(path))
        .collect();
    bases.sort_unstable();
    bases.dedup();
    sort_stored(repo, &mut bases, |b| b)?;
    let base_headers: HashMap<ObjectId, FileHeader> = bases
        .par_iter()
        .map(|b| Ok((*b, repo.file_header(b)?)))
        .collect::<store::Result<_>>()?;
    let mut patches = Vec::new();
    let mut whole = Vec::new();
    for ((id, path), h) in files.into_iter().zip(headers) {
        let base = match base_of(&path) {
            Some(b) if h.meta.kind == FileKind::Regular && h.size > 0 => {
                let bh = &base_headers[&b];
                let reach = bh.size + h.size;
                (bh.meta.kind == FileKind::Regular && bh.size > 0 && reach <= 1 << MAX_WINDOW_LOG)
                    .then_some(b)
            }
            _ => None,
        };
        match base {
            Some(b) => patches.push((id, b, h)),
            None => whole.push((id, path, h)),
        }
    }
    Ok((patches, whole))
}

/// Files sent whole, in their order: blocks of about `block_size` bytes,
/// and files larger than [`CHUNK`] alone.
fn into_pieces(whole: &[Whole], block_size: usize) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut block = Vec::new();
    let mut block_bytes = 0usize;
    for (id, _, h) in whole {
        if h.size as usize > CHUNK {
            pieces.push(Piece::Large(*id));
            continue;
        }
        block.push(*id);
        block_bytes += h.size as usize + 64;
        if block_bytes >= block_size {
            pieces.push(Piece::Block(std::mem::take(&mut block)));
            block_bytes = 0;
        }
    }
    if !block.is_empty() {
        pieces.push(Piece::Block(block));
    }
    pieces
}

/// Files are numbered in the order they are written: the patched ones,
/// then the pieces. Trees name a file of the delta by its number, and a
/// tree of the delta by its place: ids the reader computes anyway.
fn number_files(patches: &[Patch], pieces: &[Piece]) -> HashMap<ObjectId, u32> {
    let mut file_index: HashMap<ObjectId, u32> = HashMap::new();
    let numbered = patches
        .iter()
        .map(|p| p.0)
        .chain(pieces.iter().flat_map(|p| match p {
            Piece::Block(ids) => ids.clone(),
            Piece::Large(id) => vec![*id],
        }));
    for (i, id) in numbered.enumerate() {
        file_index.insert(id, u32::try_from(i).expect("fewer than 2^31 files"));
    }
    file_index
}

/// Trees: one block, children before parents, each with the references
/// of `file_index` in place of ids, compressed against the old trees at
/// their paths (most of a changed folder's entries are the same).
fn tree_record(
    repo: &Repo,
    trees: &[(ObjectId, Option<ObjectId>)],
    file_index: &HashMap<ObjectId, u32>,
    level: i32,
) -> Result<Vec<u8>, Error> {
    let mut raw = Vec::new();
    let mut bases = Vec::new();
    let mut prefix = Vec::new();
    let mut placed: HashMap<ObjectId, u32> = HashMap::new();
    for (i, (id, base)) in trees.iter().rev().enumerate() {
        let mut t = repo.read_tree(id)?;
        let mut refs = Vec::new();
        for (n, e) in t.entries.iter_mut().enumerate() {
            let r = match e.kind {
                EntryKind::File => file_index.get(&e.id).copied(),
                EntryKind::Dir => placed.get(&e.id).map(|p| p | TREE_REF),
            };
            if let Some(r) = r {
                refs.push((n, r));
                e.id = ObjectId([0; 32]);
            }
        }
        placed.insert(*id, u32::try_from(i).expect("fewer than 2^31 trees"));
        put_u32(&mut raw, refs.len());
        for (n, r) in refs {
            put_u32(&mut raw, n);
            raw.extend_from_slice(&r.to_be_bytes());
        }
        let bytes = t.encode();
        put_u32(&mut raw, bytes.len());
        raw.extend_from_slice(&bytes);
        if let Some(b) = base {
            bases.push(*b);
            prefix.extend_from_slice(&repo.read_tree(b)?.encode());
        }
    }
    if prefix.len() + raw.len() > 1 << MAX_WINDOW_LOG {
        bases.clear();
        prefix.clear();
    }
    let mut rec = Vec::new();
    put_u32(&mut rec, bases.len());
    for b in &bases {
        rec.extend_from_slice(&b.0);
    }
    let z = compress(&raw, (!prefix.is_empty()).then_some(&prefix[..]), level)?;
    rec.extend_from_slice(&z);
    Ok(rec)
}

/// Each patch's entry (file id, base id, header, the content compressed
/// against the base's), encoded in parallel.
fn encode_patches(
    repo: &Repo,
    patches: &[Patch],
    opts: &Options,
    progress: &Progress,
) -> Result<Vec<Vec<u8>>, Error> {
    patches
        .par_iter()
        .map(|(id, base, h)| {
            let (_, old_content) = repo.read_file(base)?;
            let (_, content) = repo.read_file(id)?;
            let patch = compress(&content, Some(&old_content), opts.patch_level)?;
            progress.add(1, h.size);
            let hb = h.encode();
            let mut e = Vec::with_capacity(32 + 32 + 8 + hb.len() + patch.len());
            e.extend_from_slice(&id.0);
            e.extend_from_slice(&base.0);
            put_u32(&mut e, hb.len());
            e.extend_from_slice(&hb);
            put_u32(&mut e, patch.len());
            e.extend_from_slice(&patch);
            Ok(e)
        })
        .collect()
}

/// The blocks of `group` compressed in parallel (`None` for a large
/// file, written in chunks as it is read).
fn encode_blocks(
    repo: &Repo,
    group: &[Piece],
    opts: &Options,
    progress: &Progress,
) -> Result<Vec<Option<Vec<u8>>>, Error> {
    group
        .par_iter()
        .map(|p| match p {
            Piece::Block(ids) => encode_block(repo, ids, opts, progress).map(Some),
            Piece::Large(_) => Ok(None),
        })
        .collect()
}

/// One block: the files read in storage order, laid out in the block's
/// order (header, content), compressed together.
fn encode_block(
    repo: &Repo,
    ids: &[ObjectId],
    opts: &Options,
    progress: &Progress,
) -> Result<Vec<u8>, Error> {
    let mut stored = ids.to_vec();
    sort_stored(repo, &mut stored, |i| i)?;
    let mut read: HashMap<ObjectId, (FileHeader, Vec<u8>)> = stored
        .iter()
        .map(|id| Ok((*id, repo.read_file(id)?)))
        .collect::<store::Result<_>>()?;
    let mut raw = Vec::new();
    for id in ids {
        let (h, content) = read.remove(id).expect("read above");
        let hb = h.encode();
        put_u32(&mut raw, hb.len());
        raw.extend_from_slice(&hb);
        raw.extend_from_slice(&content);
        progress.add(1, h.size);
    }
    let mut rec = Vec::new();
    put_u32(&mut rec, ids.len());
    rec.extend_from_slice(&compress(&raw, None, opts.block_level)?);
    Ok(rec)
}

/// The patches' entries in `P` records of about `block_size` bytes each;
/// returns the bytes of the entries.
fn write_patch_records(
    out: &mut impl Write,
    encoded: Vec<Vec<u8>>,
    block_size: usize,
) -> std::io::Result<u64> {
    let mut bytes = 0;
    let mut rec = Vec::new();
    let mut n = 0usize;
    for e in encoded {
        bytes += e.len() as u64;
        rec.extend_from_slice(&e);
        n += 1;
        if rec.len() >= block_size {
            write_patches(out, n, &rec)?;
            rec.clear();
            n = 0;
        }
    }
    if n > 0 {
        write_patches(out, n, &rec)?;
    }
    Ok(bytes)
}

/// The end of a delta: the commit object (`C`), then `E` with the
/// counts of commits, trees and files.
fn write_end(out: &mut impl Write, commit: &[u8], stats: &Generated) -> std::io::Result<()> {
    out.write_all(b"C")?;
    out.write_all(&(commit.len() as u32).to_be_bytes())?;
    out.write_all(commit)?;
    out.write_all(b"E")?;
    for v in [1u64, stats.trees, stats.files + stats.patched] {
        out.write_all(&v.to_be_bytes())?;
    }
    Ok(())
}

fn write_record(out: &mut impl Write, tag: u8, payload: &[u8]) -> std::io::Result<()> {
    out.write_all(&[tag])?;
    out.write_all(&(payload.len() as u64).to_be_bytes())?;
    out.write_all(payload)
}

fn write_patches(out: &mut impl Write, n: usize, entries: &[u8]) -> std::io::Result<()> {
    out.write_all(b"P")?;
    out.write_all(&(entries.len() as u64 + 4).to_be_bytes())?;
    out.write_all(&(n as u32).to_be_bytes())?;
    out.write_all(entries)
}

/// A large file: its header, then independent chunks compressed a few at
/// a time in parallel.
fn write_large(
    repo: &Repo,
    out: &mut impl Write,
    id: &ObjectId,
    opts: &Options,
    progress: &Progress,
    path: &std::path::Path,
) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut s = repo.open_file(id)?;
    let h = s.header().clone();
    let hb = h.encode();
    out.write_all(b"L").map_err(io)?;
    out.write_all(&(hb.len() as u32).to_be_bytes())
        .map_err(io)?;
    out.write_all(&hb).map_err(io)?;
    let batch = rayon::current_num_threads().max(1);
    let label = format!("file object {id}");
    loop {
        let mut chunks = Vec::new();
        for _ in 0..batch {
            let mut c = Vec::with_capacity(CHUNK);
            (&mut s)
                .take(CHUNK as u64)
                .read_to_end(&mut c)
                .map_err(|e| Error::Invalid(format!("{label}: {e}")))?;
            if c.is_empty() {
                break;
            }
            chunks.push(c);
        }
        if chunks.is_empty() {
            break;
        }
        let z: Vec<Vec<u8>> = chunks
            .par_iter()
            .map(|c| compress(c, None, opts.block_level))
            .collect::<Result<_, _>>()?;
        for (c, z) in chunks.iter().zip(z) {
            out.write_all(&(z.len() as u32).to_be_bytes()).map_err(io)?;
            out.write_all(&z).map_err(io)?;
            progress.add(0, c.len() as u64);
        }
    }
    out.write_all(&0u32.to_be_bytes()).map_err(io)?;
    progress.add(1, 0);
    Ok(())
}
