//! Exporting a commit as a reproducible tar archive: entries in tree order,
//! numeric owners and no owner names, every mtime the commit's timestamp,
//! xattrs as PAX `SCHILY.xattr.*` records (and long names as PAX `path` /
//! `linkpath`), paths sharing one object as tar hard links, device nodes
//! and fifos as such. The same commit gives the same bytes on any machine.

use std::collections::HashMap;
use std::io::Write;

use tar::{EntryType, Header};

use crate::hash::ObjectId;
use crate::object::{DirMeta, EntryKind, FileKind, Xattrs};
use crate::progress::Progress;
use crate::store::{self, Repo};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("commit {commit}: no path {path:?}")]
    NoSuchPath { commit: ObjectId, path: String },
    #[error("writing the archive: {0}")]
    Write(#[from] std::io::Error),
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ExportStats {
    pub entries: u64,
    pub bytes: u64,
}

struct Exporter<'a, W: Write> {
    repo: &'a Repo,
    out: tar::Builder<W>,
    mtime: u64,
    /// First path of each file object, for hard links.
    seen: HashMap<ObjectId, String>,
    stats: ExportStats,
    progress: &'a Progress,
}

/// A PAX extended header body: `LEN key=value\n` records.
fn pax_records(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

impl<W: Write> Exporter<'_, W> {
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

    /// Append an entry, with a PAX header first when xattrs or long names
    /// need one.
    fn append(
        &mut self,
        mut h: Header,
        path: &str,
        link: Option<&[u8]>,
        xattrs: &Xattrs,
        data: &[u8],
    ) -> std::io::Result<()> {
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if path.len() > 100 {
            pax.push(("path".into(), path.as_bytes().to_vec()));
        }
        if let Some(l) = link {
            if l.len() > 100 {
                pax.push(("linkpath".into(), l.to_vec()));
            }
        }
        for (k, v) in xattrs {
            pax.push((
                format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)),
                v.clone(),
            ));
        }
        if !pax.is_empty() {
            let body = pax_records(&pax);
            let mut ph = self.header(EntryType::XHeader, 0o644, 0, 0, body.len() as u64);
            let short = format!(
                "PaxHeaders/{}",
                path.rsplit('/').find(|c| !c.is_empty()).unwrap_or("root")
            );
            set_name(&mut ph, short.as_bytes())?;
            ph.set_cksum();
            self.out.append(&ph, body.as_slice())?;
        }
        set_name(&mut h, path.as_bytes())?;
        if let Some(l) = link {
            let l = if l.len() > 100 { &l[..100] } else { l };
            h.set_link_name_literal(l)?;
        }
        h.set_cksum();
        self.out.append(&h, data)?;
        self.stats.entries += 1;
        self.stats.bytes += data.len() as u64;
        self.progress.add(1, data.len() as u64);
        Ok(())
    }

    fn dir(&mut self, path: &str, meta: &DirMeta) -> std::io::Result<()> {
        let h = self.header(EntryType::Directory, meta.mode, meta.uid, meta.gid, 0);
        self.append(h, path, None, &meta.xattrs, &[])
    }

    fn tree(&mut self, id: &ObjectId, path: &str) -> Result<(), Error> {
        let tree = self.repo.read_tree(id)?;
        self.dir(if path.is_empty() { "./" } else { path }, &tree.meta)?;
        for e in &tree.entries {
            let name = String::from_utf8_lossy(&e.name);
            let child = format!("{path}{name}");
            match e.kind {
                EntryKind::Dir => self.tree(&e.id, &format!("{child}/"))?,
                EntryKind::File => self.file(&e.id, &child)?,
            }
        }
        Ok(())
    }

    fn file(&mut self, id: &ObjectId, path: &str) -> Result<(), Error> {
        if let Some(first) = self.seen.get(id).cloned() {
            let (h, _) = (self.repo.file_header(id)?, ());
            let m = &h.meta;
            let hdr = self.header(EntryType::Link, m.mode, m.uid, m.gid, 0);
            self.append(hdr, path, Some(first.as_bytes()), &Vec::new(), &[])?;
            return Ok(());
        }
        let (h, content) = self.repo.read_file(id)?;
        let m = &h.meta;
        match m.kind {
            FileKind::Regular => {
                let hdr = self.header(
                    EntryType::Regular,
                    m.mode,
                    m.uid,
                    m.gid,
                    content.len() as u64,
                );
                self.append(hdr, path, None, &m.xattrs, &content)?;
            }
            FileKind::Symlink => {
                let hdr = self.header(EntryType::Symlink, 0o777, m.uid, m.gid, 0);
                self.append(hdr, path, Some(&content), &m.xattrs, &[])?;
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
                self.append(hdr, path, None, &m.xattrs, &[])?;
            }
        }
        self.seen.insert(*id, path.to_owned());
        Ok(())
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

/// Write `commit` (or its `subpath`) as a tar stream to `out`. `progress`
/// counts the entries written and their content bytes (no total).
pub fn export<W: Write>(
    repo: &Repo,
    commit: &ObjectId,
    subpath: Option<&str>,
    out: W,
    progress: &Progress,
) -> Result<ExportStats, Error> {
    let c = repo.read_commit(commit)?;
    let mut ex = Exporter {
        repo,
        out: tar::Builder::new(out),
        mtime: c.timestamp.max(0) as u64,
        seen: HashMap::new(),
        stats: ExportStats::default(),
        progress,
    };
    let sub = subpath
        .map(|s| s.trim_matches('/'))
        .filter(|s| !s.is_empty());
    match sub {
        None => ex.tree(&c.tree, "")?,
        Some(sub) => {
            let (kind, id) = repo
                .lookup_path(&c.tree, sub)?
                .ok_or_else(|| Error::NoSuchPath {
                    commit: *commit,
                    path: sub.to_owned(),
                })?;
            let name = sub.rsplit('/').next().unwrap_or(sub);
            match kind {
                EntryKind::Dir => ex.tree(&id, "")?,
                EntryKind::File => ex.file(&id, name)?,
            }
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
        let body = pax_records(&[("path".into(), vec![b'a'; 3]), ("k".into(), vec![b'v'; 95])]);
        let text = String::from_utf8(body).expect("utf-8");
        for rec in text.split_inclusive('\n') {
            let (len, _) = rec.split_once(' ').expect("length");
            assert_eq!(len.parse::<usize>().expect("number"), rec.len(), "{rec:?}");
        }
    }
}
