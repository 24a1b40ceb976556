//! Storing what a delta carries: records read in order, blocks of files
//! and patches decoded in parallel, every object's id computed again and
//! compared with the one the delta names, all in one transaction (it
//! moves no ref: the caller completes the commit and moves its ref).

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use super::generate::{CHUNK, TREE_REF};
use super::{parse_header, Error, Header};
use crate::hash::ObjectId;
use crate::object::{Commit, FileHeader, FileKind, ObjectType, Tree};
use crate::progress::Progress;
use crate::store::{self, FileContent, ObjectRead, ObjectWrite, Repo, StoredFile, Transaction};

/// What applying a delta stored.
#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    pub from: Option<ObjectId>,
    pub to: ObjectId,
    pub trees: u64,
    pub files: u64,
    pub patched: u64,
    /// Patches whose old file the repository lacks (the caller fetches
    /// those files another way).
    pub skipped: u64,
    pub content_bytes: u64,
}

/// Records of whole files held in memory and decoded together, up to this
/// many bytes; a larger record is decoded as it is read.
const BATCH: u64 = 64 << 20;
/// Largest commit, trees and patches records accepted.
const MAX_COMMIT: u32 = 1 << 20;
const MAX_RECORD: u64 = 1 << 30;
/// Largest trees record once decompressed.
const MAX_TREES: u64 = 256 << 20;
/// Most files one delta may carry (a whole distribution holds a few
/// hundred thousand): the numbers of its files are kept in memory.
pub(crate) const MAX_FILES: u32 = 1 << 23;
/// Fewest bytes one entry of a patch record takes: two ids, two lengths
/// and the shortest file header.
const MIN_PATCH_ENTRY: usize = 32 + 32 + 4 + MIN_FILE_HEADER + 4;
/// The shortest file header: magic, kind, mode, uid, gid, rdev, no
/// xattrs, size.
const MIN_FILE_HEADER: usize = 8 + 1 + 4 + 4 + 4 + 8 + 4 + 8;

/// `n` bytes (memory grows with what is read, not with what a length
/// field claims); a shorter input is an unexpected end.
fn read_exactly(r: &mut impl Read, n: u64) -> std::io::Result<Vec<u8>> {
    let mut b = Vec::new();
    r.take(n).read_to_end(&mut b)?;
    if (b.len() as u64) < n {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(b)
}

struct Ctx<'a, 't> {
    tx: &'a Transaction<'t>,
    path: &'a Path,
    progress: &'a Progress,
    files: AtomicU64,
    patched: AtomicU64,
    skipped: AtomicU64,
    bytes: AtomicU64,
    /// The id of each file of the delta, by its number.
    ids: Mutex<HashMap<u32, ObjectId>>,
}

impl Ctx<'_, '_> {
    fn number(&self, n: u32, id: ObjectId) {
        self.ids.lock().expect("no panic while held").insert(n, id);
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::format(self.path, reason)
    }

    /// Number `count` more files after the `next` first ones.
    fn more_files(&self, next: u32, count: u32) -> Result<u32, Error> {
        match next.checked_add(count) {
            Some(n) if n <= MAX_FILES => Ok(n),
            _ => Err(self.err(format!(
                "more than {MAX_FILES} files ({next} and {count} more)"
            ))),
        }
    }

    fn check(&self, kind: ObjectType, id: &ObjectId, got: &ObjectId) -> Result<(), Error> {
        if got != id {
            return Err(self.err(format!(
                "{kind} object {id} rebuilt as {got}: the delta is damaged"
            )));
        }
        Ok(())
    }

    fn stored(&self, s: StoredFile, size: u64) -> Result<(), Error> {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(size, Ordering::Relaxed);
        self.progress.add(1, size);
        if s.written {
            self.progress.add_new(1);
        }
        Ok(())
    }

    /// File number `n`, whose header has been read; its content follows
    /// in `r`. Its id is what it hashes to (the trees that name it, and the
    /// commit above them, check it).
    fn file(&self, n: u32, h: &FileHeader, r: &mut dyn Read) -> Result<(), Error> {
        let label = PathBuf::from(format!("file {n} of {}", self.path.display()));
        let s = match h.meta.kind {
            FileKind::Regular => self.tx.write_file(
                &h.meta,
                h.size,
                FileContent::Reader {
                    reader: r,
                    path: &label,
                },
            )?,
            FileKind::Symlink => {
                let mut target = vec![0u8; h.size as usize];
                r.read_exact(&mut target)
                    .map_err(|e| self.err(format!("file {n}: {e}")))?;
                self.tx.write_symlink(&h.meta, &target)?
            }
            _ => self.tx.write_special(&h.meta)?,
        };
        self.number(n, s.id);
        self.stored(s, h.size)
    }

    /// A block of `count` whole files, numbered from `first`.
    fn block(&self, first: u32, count: u32, z: &mut dyn Read) -> Result<(), Error> {
        let mut d = zstd::stream::read::Decoder::new(z).map_err(|e| self.err(e.to_string()))?;
        for n in first..first + count {
            let h = read_header(&mut d).map_err(|e| self.err(format!("file {n}: {e}")))?;
            self.file(n, &h, &mut d)?;
        }
        let mut rest = [0u8; 1];
        match d.read(&mut rest) {
            Ok(0) => Ok(()),
            Ok(_) => Err(self.err(format!(
                "a block of files holds more than the {count} it announces"
            ))),
            Err(e) => Err(self.err(format!("a block of files: {e}"))),
        }
    }

    /// A record of patches, its files numbered from `first`.
    fn patches(&self, first: u32, b: &[u8]) -> Result<(), Error> {
        let mut r = b;
        let n = take_u32(&mut r).ok_or_else(|| self.err("truncated patch record"))?;
        // The count is the record's word: each entry must fit in what is left.
        if n as usize > r.len() / MIN_PATCH_ENTRY {
            return Err(self.err(format!(
                "a patch record announces {n} patches in {} bytes",
                r.len()
            )));
        }
        let mut items = Vec::with_capacity(n as usize);
        for i in 0..n {
            let bad = || self.err("truncated patch record");
            let id = ObjectId(take(&mut r, 32).ok_or_else(bad)?.try_into().expect("32"));
            let base = ObjectId(take(&mut r, 32).ok_or_else(bad)?.try_into().expect("32"));
            let hl = take_u32(&mut r).ok_or_else(bad)?;
            let hb = take(&mut r, hl as usize).ok_or_else(bad)?;
            let h =
                FileHeader::decode(hb).map_err(|e| self.err(format!("file object {id}: {e}")))?;
            if h.size > 1 << super::MAX_WINDOW_LOG {
                return Err(self.err(format!(
                    "patch of file object {id}: {} bytes, more than a patch can make",
                    h.size
                )));
            }
            let pl = take_u32(&mut r).ok_or_else(bad)?;
            let patch = take(&mut r, pl as usize).ok_or_else(bad)?;
            // Numbered even if its old file is missing: the trees name it.
            self.number(first + i, id);
            items.push((id, base, h, patch));
        }
        items.par_iter().try_for_each(|(id, base, h, patch)| {
            let old = match self.tx.read_file(base) {
                Ok((_, old)) => old,
                Err(store::Error::Missing { .. }) => {
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            let mut d = zstd::stream::read::Decoder::with_ref_prefix(*patch, &old)
                .map_err(|e| self.err(format!("file object {id}: {e}")))?;
            d.window_log_max(super::MAX_WINDOW_LOG)
                .map_err(|e| self.err(format!("file object {id}: {e}")))?;
            let mut content = Vec::with_capacity((h.size as usize).min(CHUNK));
            (&mut d)
                .take(h.size + 1)
                .read_to_end(&mut content)
                .map_err(|e| self.err(format!("patch of file object {id}: {e}")))?;
            if content.len() as u64 != h.size {
                return Err(self.err(format!(
                    "patch of file object {id} gives {} bytes, not {}",
                    content.len(),
                    h.size
                )));
            }
            let s = self
                .tx
                .write_file(&h.meta, h.size, FileContent::Bytes(&content))?;
            self.check(ObjectType::File, id, &s.id)?;
            self.patched.fetch_add(1, Ordering::Relaxed);
            self.stored(s, h.size)
        })
    }
}

fn take<'b>(r: &mut &'b [u8], n: usize) -> Option<&'b [u8]> {
    if r.len() < n {
        return None;
    }
    let (a, b) = r.split_at(n);
    *r = b;
    Some(a)
}

fn take_u32(r: &mut &[u8]) -> Option<u32> {
    take(r, 4).map(|b| u32::from_be_bytes(b.try_into().expect("4")))
}

fn read_u32(r: &mut dyn Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(r: &mut dyn Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn read_header(r: &mut dyn Read) -> std::io::Result<FileHeader> {
    let n = read_u32(r)?;
    if n > 1 << 20 {
        return Err(std::io::Error::other(format!("file header of {n} bytes")));
    }
    let mut hb = vec![0u8; n as usize];
    r.read_exact(&mut hb)?;
    FileHeader::decode(&hb).map_err(std::io::Error::other)
}

/// The content of a large file: chunks decompressed one at a time.
struct Chunks<'r> {
    inner: &'r mut dyn Read,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for Chunks<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            let n = read_u32(self.inner)?;
            if n == 0 {
                self.done = true;
                return Ok(0);
            }
            if n as usize > 2 * CHUNK {
                return Err(std::io::Error::other(format!("chunk of {n} bytes")));
            }
            let mut z = vec![0u8; n as usize];
            self.inner.read_exact(&mut z)?;
            self.buf = zstd::bulk::decompress(&z, CHUNK)?;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Store the objects of the delta at `path` in `repo`: files, then trees,
/// then the commit, whose id must be the delta's target (every file and
/// tree id the delta leaves out is computed, and the commit's id covers
/// them all). The repository's refs are not touched.
pub fn apply(repo: &Repo, path: &Path, progress: &Progress) -> Result<Applied, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(io)?);
    let mut hb = [0u8; 72];
    f.read_exact(&mut hb)
        .map_err(|_| Error::format(path, "truncated header"))?;
    let Header { from, to } = parse_header(path, &hb)?;
    let tx = Transaction::begin(repo)?;
    let ctx = Ctx {
        tx: &tx,
        path,
        progress,
        files: AtomicU64::new(0),
        patched: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        ids: Mutex::new(HashMap::new()),
    };
    let trunc = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::format(path, "truncated (it ends before its end record)")
        } else {
            io(e)
        }
    };
    let mut commit: Option<Commit> = None;
    let mut trees = 0u64;
    let mut new_trees = std::collections::HashSet::new();
    // The number of the next file, and blocks read but not yet stored.
    let mut next = 0u32;
    let mut pending: Vec<(u32, u32, Vec<u8>)> = Vec::new();
    let mut pending_bytes = 0u64;
    let flush = |pending: &mut Vec<(u32, u32, Vec<u8>)>| -> Result<(), Error> {
        pending
            .par_iter()
            .try_for_each(|(first, count, z)| ctx.block(*first, *count, &mut z.as_slice()))?;
        pending.clear();
        Ok(())
    };
    let counts = loop {
        let mut tag = [0u8; 1];
        f.read_exact(&mut tag).map_err(trunc)?;
        match tag[0] {
            b'C' => {
                let n = read_u32(&mut f).map_err(trunc)?;
                if n > MAX_COMMIT {
                    return Err(ctx.err(format!("commit record of {n} bytes")));
                }
                let mut b = vec![0u8; n as usize];
                f.read_exact(&mut b).map_err(trunc)?;
                let c = Commit::decode(&b).map_err(|e| ctx.err(e.to_string()))?;
                ctx.check(ObjectType::Commit, &to, &c.id())?;
                commit = Some(c);
            }
            b'F' => {
                let n = read_u64(&mut f).map_err(trunc)?;
                let count = read_u32(&mut f).map_err(trunc)?;
                let first = next;
                next = ctx.more_files(next, count)?;
                let len = n
                    .checked_sub(4)
                    .ok_or_else(|| ctx.err("a block of files of less than 4 bytes"))?;
                if len > BATCH {
                    flush(&mut pending)?;
                    pending_bytes = 0;
                    let mut r = (&mut f).take(len);
                    ctx.block(first, count, &mut r)?;
                    if r.limit() != 0 {
                        return Err(ctx.err("a block of files ends before its record"));
                    }
                    continue;
                }
                let b = read_exactly(&mut f, len).map_err(trunc)?;
                pending_bytes += len;
                pending.push((first, count, b));
                if pending_bytes >= BATCH {
                    flush(&mut pending)?;
                    pending_bytes = 0;
                }
            }
            b'T' | b'P' => {
                let n = read_u64(&mut f).map_err(trunc)?;
                if n > MAX_RECORD {
                    return Err(ctx.err(format!("record of {n} bytes")));
                }
                let b = read_exactly(&mut f, n).map_err(trunc)?;
                if tag[0] == b'T' {
                    // Trees name the files: all of them are stored first.
                    flush(&mut pending)?;
                    pending_bytes = 0;
                    let t = store_trees(&ctx, &b)?;
                    trees += t.len() as u64;
                    new_trees.extend(t);
                } else {
                    let count = b
                        .get(..4)
                        .map(|c| u32::from_be_bytes(c.try_into().expect("4")))
                        .ok_or_else(|| ctx.err("truncated patch record"))?;
                    let first = next;
                    next = ctx.more_files(next, count)?;
                    ctx.patches(first, &b)?;
                }
            }
            b'L' => {
                flush(&mut pending)?;
                pending_bytes = 0;
                let n = next;
                next = ctx.more_files(next, 1)?;
                let h = read_header(&mut f).map_err(trunc)?;
                let mut chunks = Chunks {
                    inner: &mut f,
                    buf: Vec::new(),
                    pos: 0,
                    done: false,
                };
                ctx.file(n, &h, &mut chunks)?;
                let mut rest = [0u8; 1];
                if chunks.read(&mut rest).map_err(trunc)? != 0 {
                    return Err(ctx.err(format!("file {n}: more content than its size")));
                }
            }
            b'E' => {
                let mut c = [0u64; 3];
                for v in &mut c {
                    *v = read_u64(&mut f).map_err(trunc)?;
                }
                break c;
            }
            t => return Err(ctx.err(format!("unknown record {t:#04x}"))),
        }
    };
    flush(&mut pending)?;
    let Some(commit) = commit else {
        return Err(ctx.err("no commit record"));
    };
    let files = ctx.files.load(Ordering::Relaxed);
    let skipped = ctx.skipped.load(Ordering::Relaxed);
    if counts != [1, trees, u64::from(next)] || files + skipped != u64::from(next) {
        return Err(ctx.err(format!(
            "its end record counts {:?} (commits, trees, files) but it held [1, {trees}, {next}]",
            counts
        )));
    }
    if !new_trees.contains(&commit.tree) && !tx.has_object(ObjectType::Tree, &commit.tree)? {
        return Err(ctx.err(format!(
            "the tree of commit {to}, {}, is neither in the delta nor in the repository",
            commit.tree
        )));
    }
    let got = tx.write_commit(&commit)?;
    ctx.check(ObjectType::Commit, &to, &got)?;
    let out = Applied {
        from,
        to,
        trees,
        files: files - ctx.patched.load(Ordering::Relaxed),
        patched: ctx.patched.load(Ordering::Relaxed),
        skipped,
        content_bytes: ctx.bytes.load(Ordering::Relaxed),
    };
    tx.commit()?;
    Ok(out)
}

/// The trees, children first: each with the files and trees of the delta
/// it names by number put back, stored, and its id kept for its parents.
fn store_trees(ctx: &Ctx<'_, '_>, rec: &[u8]) -> Result<Vec<ObjectId>, Error> {
    let mut r = rec;
    let bad = || ctx.err("truncated trees record");
    let n = take_u32(&mut r).ok_or_else(bad)?;
    let mut prefix = Vec::new();
    for _ in 0..n {
        let b = ObjectId(take(&mut r, 32).ok_or_else(bad)?.try_into().expect("32"));
        let t = ctx.tx.read_tree(&b).map_err(|e| {
            ctx.err(format!(
                "tree object {b}, on which its trees are encoded, cannot be read: {e}"
            ))
        })?;
        prefix.extend_from_slice(&t.encode());
        // The writer keeps its reference within a decoder's window.
        if prefix.len() as u64 > 1 << super::MAX_WINDOW_LOG {
            return Err(ctx.err(format!(
                "trees encoded on {n} base trees of more than {} bytes",
                1u64 << super::MAX_WINDOW_LOG
            )));
        }
    }
    let mut d = zstd::stream::read::Decoder::with_ref_prefix(r, &prefix)
        .map_err(|e| ctx.err(format!("trees: {e}")))?;
    d.window_log_max(super::MAX_WINDOW_LOG)
        .map_err(|e| ctx.err(format!("trees: {e}")))?;
    let mut raw = Vec::new();
    (&mut d)
        .take(MAX_TREES + 1)
        .read_to_end(&mut raw)
        .map_err(|e| ctx.err(format!("trees: {e}")))?;
    if raw.len() as u64 > MAX_TREES {
        return Err(ctx.err(format!("trees record of more than {MAX_TREES} bytes")));
    }
    let mut r = raw.as_slice();
    let ids = ctx.ids.lock().expect("no panic while held");
    let mut placed: Vec<ObjectId> = Vec::new();
    while !r.is_empty() {
        let i = placed.len();
        let nrefs = take_u32(&mut r).ok_or_else(bad)?;
        let mut refs = Vec::new();
        for _ in 0..nrefs {
            let entry = take_u32(&mut r).ok_or_else(bad)?;
            let to = take_u32(&mut r).ok_or_else(bad)?;
            refs.push((entry as usize, to));
        }
        let len = take_u32(&mut r).ok_or_else(bad)?;
        let b = take(&mut r, len as usize).ok_or_else(bad)?;
        let mut t = Tree::decode(b).map_err(|e| ctx.err(format!("tree {i}: {e}")))?;
        for (entry, to) in refs {
            let id = if to & TREE_REF != 0 {
                placed.get((to & !TREE_REF) as usize).copied()
            } else {
                ids.get(&to).copied()
            };
            match (t.entries.get_mut(entry), id) {
                (Some(e), Some(id)) => e.id = id,
                _ => {
                    return Err(ctx.err(format!(
                        "tree {i} names entry {entry} as {to:#x}, which the delta does not hold"
                    )))
                }
            }
        }
        let got = ctx.tx.write_tree(&t)?;
        placed.push(got);
        ctx.progress.add(1, 0);
    }
    Ok(placed)
}
