//! Exporting a commit as a reproducible tar archive: entries in tree order,
//! numeric owners and no owner names, every mtime the commit's timestamp,
//! xattrs as PAX `SCHILY.xattr.*` records (and long names as PAX `path` /
//! `linkpath`, with `hdrcharset=BINARY` for names that are not UTF-8),
//! paths sharing one object as tar hard links, device nodes and fifos as
//! such. Names are the tree's bytes. The same commit gives the same bytes
//! on any machine. Contents are streamed from the repository; the archive
//! can be compressed with zstd and written atomically to a file.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

pub mod oci;

use tar::{EntryType, Header};

use crate::fsutil::Output;
use crate::hash::ObjectId;
use crate::object::{name, DirMeta, EntryKind, FileKind, Tree, TreeEntry, Xattrs};
use crate::progress::Progress;
use crate::store::{self, ObjectRead};
use crate::walk::{self, Visitor};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("commit {commit}: no path \"{path}\"")]
    NoSuchPath { commit: ObjectId, path: String },
    #[error("writing the archive: {0}")]
    Write(#[from] std::io::Error),
    #[error("{}: {source}", crate::fsutil::show(path))]
    Output {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ExportStats {
    pub entries: u64,
    pub bytes: u64,
}

/// The archive's form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Tar,
    /// A tar compressed with zstd at this level.
    TarZst(i32),
}

#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Only this path of the commit.
    pub subpath: Option<Vec<u8>>,
    pub format: Format,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            subpath: None,
            format: Format::Tar,
        }
    }
}

struct Exporter<'a, S: ?Sized, W: Write> {
    store: &'a S,
    out: tar::Builder<W>,
    mtime: u64,
    /// Prefix of every path: `./` for the root's entries.
    prefix: Vec<u8>,
    /// First path of each file object, for hard links.
    seen: HashMap<ObjectId, Vec<u8>>,
    stats: ExportStats,
    progress: &'a Progress,
}

/// A PAX extended header body: `LEN key=value\n` records.
fn pax_records(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// Map an error of `Builder::append` with a streamed content: the
/// object's own error where it carries one.
fn append_err(e: std::io::Error) -> Error {
    if store::Error::carried_by(&e) {
        store::Error::from_io(Path::new(""), e).into()
    } else {
        Error::Write(e)
    }
}

impl<S: ObjectRead + ?Sized, W: Write> Exporter<'_, S, W> {
    fn header(&self, kind: EntryType, mode: u32, uid: u32, gid: u32, size: u64) -> Header {
        let mut h = Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid as u64);
        h.set_gid(gid as u64);
        h.set_mtime(self.mtime);
        h.set_size(size);
        h
    }

    /// Append an entry, with a PAX header first when xattrs, long names or
    /// names that are not UTF-8 need one.
    fn append(
        &mut self,
        mut h: Header,
        path: &[u8],
        link: Option<&[u8]>,
        xattrs: &Xattrs,
        data: &mut dyn std::io::Read,
    ) -> Result<(), Error> {
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let binary = std::str::from_utf8(path).is_err()
            || link.is_some_and(|l| std::str::from_utf8(l).is_err());
        if binary {
            pax.push((b"hdrcharset".to_vec(), b"BINARY".to_vec()));
        }
        if path.len() > 100 {
            pax.push((b"path".to_vec(), path.to_vec()));
        }
        if let Some(l) = link {
            if l.len() > 100 {
                pax.push((b"linkpath".to_vec(), l.to_vec()));
            }
        }
        for (k, v) in xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax.push((key, v.clone()));
        }
        if !pax.is_empty() {
            let body = pax_records(&pax);
            let mut ph = self.header(EntryType::XHeader, 0o644, 0, 0, body.len() as u64);
            let last = path
                .rsplit(|&b| b == b'/')
                .find(|c| !c.is_empty())
                .unwrap_or(b"root");
            let mut short = b"PaxHeaders/".to_vec();
            short.extend_from_slice(last);
            set_name(&mut ph, &short)?;
            ph.set_cksum();
            self.out.append(&ph, body.as_slice())?;
        }
        set_name(&mut h, path)?;
        if let Some(l) = link {
            let l = if l.len() > 100 { &l[..100] } else { l };
            h.set_link_name_literal(l)?;
        }
        h.set_cksum();
        let size = h.size()?;
        self.out.append(&h, data).map_err(append_err)?;
        self.stats.entries += 1;
        self.stats.bytes += size;
        self.progress.add(1, size);
        Ok(())
    }

    fn full(&self, rel: &[u8]) -> Vec<u8> {
        let mut p = self.prefix.clone();
        p.extend_from_slice(rel);
        p
    }

    fn dir(&mut self, path: &[u8], meta: &DirMeta) -> Result<(), Error> {
        let h = self.header(EntryType::Directory, meta.mode, meta.uid, meta.gid, 0);
        self.append(h, path, None, &meta.xattrs, &mut std::io::empty())
    }

    fn file(&mut self, id: &ObjectId, path: Vec<u8>) -> Result<(), Error> {
        if let Some(first) = self.seen.get(id).cloned() {
            let m = self.store.file_header(id)?.meta;
            let hdr = self.header(EntryType::Link, m.mode, m.uid, m.gid, 0);
            return self.append(hdr, &path, Some(&first), &Vec::new(), &mut std::io::empty());
        }
        let mut stream = self.store.open_file(id)?;
        let m = stream.header().meta.clone();
        let size = stream.header().size;
        match m.kind {
            FileKind::Regular => {
                let hdr = self.header(EntryType::Regular, m.mode, m.uid, m.gid, size);
                self.append(hdr, &path, None, &m.xattrs, &mut stream)?;
            }
            FileKind::Symlink => {
                let target = stream.read_all()?;
                let hdr = self.header(EntryType::Symlink, 0o777, m.uid, m.gid, 0);
                self.append(hdr, &path, Some(&target), &m.xattrs, &mut std::io::empty())?;
            }
            FileKind::CharDevice | FileKind::BlockDevice | FileKind::Fifo => {
                let t = match m.kind {
                    FileKind::CharDevice => EntryType::Char,
                    FileKind::BlockDevice => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                let mut hdr = self.header(t, m.mode, m.uid, m.gid, 0);
                if m.kind != FileKind::Fifo {
                    hdr.set_device_major(rustix::fs::major(m.rdev))?;
                    hdr.set_device_minor(rustix::fs::minor(m.rdev))?;
                }
                self.append(hdr, &path, None, &m.xattrs, &mut std::io::empty())?;
            }
        }
        self.seen.insert(*id, path);
        Ok(())
    }
}

impl<S: ObjectRead + ?Sized, W: Write> Visitor for Exporter<'_, S, W> {
    type Error = Error;

    fn tree(&mut self, path: &[u8], _id: &ObjectId, tree: &Tree) -> Result<(), Error> {
        let mut p = if path.is_empty() {
            b"./".to_vec()
        } else {
            self.full(path)
        };
        if p.last() != Some(&b'/') {
            p.push(b'/');
        }
        self.dir(&p, &tree.meta)
    }

    fn file(&mut self, path: &[u8], e: &TreeEntry) -> Result<(), Error> {
        let p = self.full(path);
        Exporter::file(self, &e.id, p)
    }
}

/// Set a ustar name, splitting into prefix and name where possible; a name
/// that cannot fit is cut (the PAX `path` record carries it whole).
fn set_name(h: &mut Header, path: &[u8]) -> std::io::Result<()> {
    let u = h
        .as_ustar_mut()
        .ok_or_else(|| std::io::Error::other("not a ustar header"))?;
    u.name.fill(0);
    u.prefix.fill(0);
    if path.len() <= 100 {
        u.name[..path.len()].copy_from_slice(path);
        return Ok(());
    }
    // prefix (<= 155) "/" name (<= 100), split at a slash.
    let split = path
        .iter()
        .enumerate()
        .filter(|(i, &b)| b == b'/' && *i <= 155 && path.len() - i - 1 <= 100 && path.len() - i > 1)
        .map(|(i, _)| i)
        .next();
    match split {
        Some(i) => {
            u.prefix[..i].copy_from_slice(&path[..i]);
            u.name[..path.len() - i - 1].copy_from_slice(&path[i + 1..]);
        }
        None => u.name.copy_from_slice(&path[..100]),
    }
    Ok(())
}

/// Write `commit` (or its `subpath`) as a tar stream to `out`, compressed
/// as `opts.format` says. `progress` counts the entries written and their
/// content bytes (no total).
pub fn export<S: ObjectRead + ?Sized, W: Write>(
    store: &S,
    commit: &ObjectId,
    opts: &ExportOptions,
    out: W,
    progress: &Progress,
) -> Result<ExportStats, Error> {
    match opts.format {
        Format::Tar => export_tar(store, commit, opts.subpath.as_deref(), out, progress),
        Format::TarZst(level) => {
            let mut enc = zstd::stream::Encoder::new(out, level)?;
            let stats = export_tar(store, commit, opts.subpath.as_deref(), &mut enc, progress)?;
            enc.finish()?.flush()?;
            Ok(stats)
        }
    }
}

/// [`export`] into the file `path`: a regular file (new, or an existing
/// one, through a symlink too) is replaced atomically once the archive is
/// whole; a device node or fifo is written to directly.
pub fn export_to_path<S: ObjectRead + ?Sized>(
    store: &S,
    commit: &ObjectId,
    opts: &ExportOptions,
    path: &Path,
    progress: &Progress,
) -> Result<ExportStats, Error> {
    write_to_path(path, |w| export(store, commit, opts, w, progress))
}

/// What `write` writes, into the file `path` as [`export_to_path`] says
/// (the tar and the OCI archive alike).
pub(crate) fn write_to_path(
    path: &Path,
    write: impl FnOnce(std::io::BufWriter<&mut Output>) -> Result<ExportStats, Error>,
) -> Result<ExportStats, Error> {
    let out_err = |source| Error::Output {
        path: path.to_path_buf(),
        source,
    };
    let mut out = Output::open(path, 0o644).map_err(out_err)?;
    let stats = write(std::io::BufWriter::with_capacity(1 << 20, &mut out))?;
    out.finish().map_err(out_err)?;
    Ok(stats)
}

fn export_tar<S: ObjectRead + ?Sized, W: Write>(
    store: &S,
    commit: &ObjectId,
    subpath: Option<&[u8]>,
    out: W,
    progress: &Progress,
) -> Result<ExportStats, Error> {
    let c = store.read_commit(commit)?;
    let mut ex = Exporter {
        store,
        out: tar::Builder::new(out),
        mtime: c.timestamp.max(0) as u64,
        prefix: Vec::new(),
        seen: HashMap::new(),
        stats: ExportStats::default(),
        progress,
    };
    let sub = walk::normalize(subpath.unwrap_or(b""));
    let (kind, id) = walk::lookup(store, &c.tree, &sub)?.ok_or_else(|| Error::NoSuchPath {
        commit: *commit,
        path: name::escape(&name::absolute(&sub)),
    })?;
    match kind {
        EntryKind::Dir => walk::walk(store, &id, b"", &mut ex)?,
        EntryKind::File => {
            let last = sub.rsplit(|&b| b == b'/').next().unwrap_or(&sub).to_vec();
            ex.file(&id, last)?;
        }
    }
    let stats = ex.stats;
    ex.out.into_inner()?.flush()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        let body = pax_records(&[
            (b"path".to_vec(), vec![b'a'; 3]),
            (b"k".to_vec(), vec![b'v'; 95]),
        ]);
        let text = String::from_utf8(body).expect("utf-8");
        for rec in text.split_inclusive('\n') {
            let (len, _) = rec.split_once(' ').expect("length");
            assert_eq!(len.parse::<usize>().expect("number"), rec.len(), "{rec:?}");
        }
    }
}
