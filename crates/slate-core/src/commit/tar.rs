//! Committing a tar archive (plain, gzip or zstd, detected by magic bytes).
//! Members are read in order into an in-memory directory tree; each file is
//! stored as it is read. Owners are numeric; xattrs come from PAX
//! `SCHILY.xattr.*` records; a leading `/` is stripped as GNU tar does; a
//! member climbing out with `..`, or a hard link to a path the archive has
//! not yet listed, is refused.
//!
//! The stream is read to its end before anything is committed: a gzip
//! member's CRC and a zstd frame's checksum are checked there, and an
//! archive cut off before its end-of-archive blocks, or followed by
//! anything but zeros, is refused. Sparse members (GNU or PAX) are refused.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use super::memtree::{self, Node};
use super::{Error, Result, Stats, TreeScan};
use crate::object::{name, valid_entry_name, DirMeta, FileKind, FileMeta, Xattrs};
use crate::progress::Progress;
use crate::store::{self, FileContent, ObjectWrite};

/// Most bytes the tar reader may take between two members: the header
/// blocks, GNU long names and PAX records of the next one (held in memory
/// whole by the `tar` crate, whatever size their header claims) and what
/// it skips of the one before.
const MAX_BETWEEN_MEMBERS: u64 = 64 << 20;

/// The decompressed stream, noting its end, and counting what the tar
/// reader takes between members (`between` is `Some` while it does).
struct Tracked<'a> {
    inner: Box<dyn Read + 'a>,
    eof: bool,
    between: Rc<Cell<Option<u64>>>,
}

impl Read for Tracked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        if let Some(used) = self.between.get() {
            let used = used + n as u64;
            if used > MAX_BETWEEN_MEMBERS {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "more than {MAX_BETWEEN_MEMBERS} bytes of headers, long names and PAX \
                         records before a member"
                    ),
                ));
            }
            self.between.set(Some(used));
        }
        Ok(n)
    }
}

/// Split a member name into components: leading `/` and `.` components
/// dropped, `..` refused. An empty result is the archive's root.
pub fn sanitize_member_path(raw: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("name climbs out of the archive with '..'".into()),
            c if !valid_entry_name(c) => {
                return Err(format!("invalid component \"{}\"", name::escape(c)))
            }
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

pub(crate) fn decompressed<'a>(
    reader: Box<dyn Read + 'a>,
    name: &str,
) -> Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(1 << 20, reader);
    let head = br.fill_buf().map_err(|source| Error::TarRead {
        archive: name.to_owned(),
        source,
    })?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(br))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(br).map_err(|source| Error::TarRead {
                archive: name.to_owned(),
                source,
            })?,
        )
    } else {
        Box::new(br)
    })
}

/// Store every member of the archive into `store` and return the root
/// tree. `progress` counts the files stored and their bytes as it goes.
pub fn commit_tar_tree<W: ObjectWrite + ?Sized>(
    store: &W,
    reader: Box<dyn Read + '_>,
    archive_name: &str,
    progress: &Progress,
) -> Result<TreeScan> {
    let stats = Stats::default();
    let mut root = Node::empty_dir();
    let stream = decompressed(reader, archive_name)?;
    read_members(
        store,
        stream,
        archive_name,
        progress,
        &stats,
        &mut root,
        None,
    )?;
    let root_id = memtree::write_node(store, &root)?;
    Ok(TreeScan {
        root: root_id,
        stats: stats.snapshot(),
        skipped_sockets: Vec::new(),
    })
}

/// Read the members of a (decompressed) tar stream into `root`, each file
/// stored as it is read, then the stream to its end.
///
/// With `lower` (a container image's layer, `root` then holding this
/// layer alone), `.wh.NAME` members are whiteouts and `.wh..wh..opq`
/// marks its directory opaque; other `.wh..wh.` names (aufs' own) are
/// skipped; a hard link may name a file of the layers below.
pub(crate) fn read_members<W: ObjectWrite + ?Sized>(
    store: &W,
    stream: Box<dyn Read + '_>,
    name: &str,
    progress: &Progress,
    stats: &Stats,
    root: &mut Node,
    lower: Option<&Node>,
) -> Result<()> {
    let between = Rc::new(Cell::new(None));
    let mut archive = tar::Archive::new(Tracked {
        inner: stream,
        eof: false,
        between: between.clone(),
    });
    let read_err = |source| Error::TarRead {
        archive: name.to_owned(),
        source,
    };
    let mut entries = archive.entries().map_err(read_err)?;
    loop {
        between.set(Some(0));
        let Some(entry) = entries.next() else {
            break;
        };
        between.set(None);
        let mut entry = entry.map_err(read_err)?;
        let raw_path = entry.path_bytes().into_owned();
        let member = name::escape(&raw_path);
        let at = At {
            archive: name,
            member: &member,
        };
        let comps = sanitize_member_path(&raw_path).map_err(|r| at.bad(r))?;
        if lower.is_some() {
            if let Some((last, parent)) = comps.split_last() {
                if last.as_slice() == b".wh..wh..opq" {
                    memtree::opaque(root, parent).map_err(|r| at.bad(r))?;
                    continue;
                }
                if last.starts_with(b".wh..wh.") {
                    continue;
                }
                if let Some(hidden) = last.strip_prefix(b".wh.") {
                    if !valid_entry_name(hidden) {
                        return Err(at.bad("whiteout of an invalid name".into()));
                    }
                    let mut target = parent.to_vec();
                    target.push(hidden.to_vec());
                    memtree::whiteout(root, &target).map_err(|r| at.bad(r))?;
                    continue;
                }
            }
        }
        let o = member_meta(&mut entry, &at)?;
        let node = match entry.header().entry_type() {
            tar::EntryType::Directory => {
                Stats::add(&stats.dirs, 1);
                let meta = DirMeta {
                    mode: o.mode,
                    uid: o.uid,
                    gid: o.gid,
                    xattrs: o.xattrs,
                };
                memtree::set_dir(root, &comps, meta).map_err(|r| at.bad(r))?;
                continue;
            }
            tar::EntryType::XGlobalHeader => continue,
            _ => {
                let linked = Linked {
                    root: &*root,
                    lower,
                };
                member_file(store, &mut entry, &linked, &o, &at, stats, progress)?
            }
        };
        memtree::insert(root, &comps, node).map_err(|r| at.bad(r))?;
    }
    between.set(None);
    finish_stream(archive.into_inner(), name)
}

/// Where a hard link's target is looked up: the archive read so far, then
/// (a layer) the layers below.
struct Linked<'a> {
    root: &'a Node,
    lower: Option<&'a Node>,
}

impl Linked<'_> {
    fn file(&self, comps: &[Vec<u8>]) -> Option<crate::hash::ObjectId> {
        match memtree::lookup(self.root, comps) {
            Some(Node::File(id)) => Some(*id),
            Some(_) => None,
            None => match self.lower.and_then(|l| memtree::lookup(l, comps)) {
                Some(Node::File(id)) => Some(*id),
                _ => None,
            },
        }
    }
}

/// The member an error is about: the archive and the member's name
/// (escaped).
struct At<'a> {
    archive: &'a str,
    member: &'a str,
}

impl At<'_> {
    fn bad(&self, reason: String) -> Error {
        Error::Tar {
            archive: self.archive.to_owned(),
            member: self.member.to_owned(),
            reason,
        }
    }
}

/// A member's mode, owner and xattrs.
struct Owned {
    mode: u32,
    uid: u32,
    gid: u32,
    xattrs: Xattrs,
}

impl Owned {
    fn file_meta(&self, kind: FileKind, rdev: u64) -> FileMeta {
        FileMeta {
            kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            rdev,
            xattrs: self.xattrs.clone(),
        }
    }
}

/// A member's mode, owner and xattrs from its header and PAX records
/// (`uid`, `gid`, `SCHILY.xattr.*`; GNU sparse records refused), every
/// number checked to fit, no xattr twice.
fn member_meta<R: Read>(entry: &mut tar::Entry<'_, R>, at: &At<'_>) -> Result<Owned> {
    let h = entry.header();
    let mode = h.mode().map_err(|e| at.bad(e.to_string()))? & 0o7777;
    let mut uid = u32::try_from(h.uid().map_err(|e| at.bad(e.to_string()))?)
        .map_err(|_| at.bad("uid does not fit 32 bits".into()))?;
    let mut gid = u32::try_from(h.gid().map_err(|e| at.bad(e.to_string()))?)
        .map_err(|_| at.bad("gid does not fit 32 bits".into()))?;
    let mut xattrs: Xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(|e| at.bad(e.to_string()))? {
        for ext in exts {
            let ext = ext.map_err(|e| at.bad(e.to_string()))?;
            if ext.key_bytes().starts_with(b"GNU.sparse.") {
                return Err(at.bad(
                    "sparse member (PAX GNU.sparse records): not supported; \
                     make the archive without --sparse"
                        .into(),
                ));
            }
            let num = || -> Result<u32> {
                std::str::from_utf8(ext.value_bytes())
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| at.bad("PAX uid/gid is not a 32-bit number".into()))
            };
            match ext.key_bytes() {
                b"uid" => uid = num()?,
                b"gid" => gid = num()?,
                _ => {}
            }
            if let Some(k) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                if k != crate::fsutil::RESERVED_XATTR {
                    xattrs.push((k.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
    }
    if let Some(dup) = crate::object::normalize_xattrs(&mut xattrs) {
        let dup = name::escape(&dup);
        return Err(at.bad(format!("xattr \"{dup}\" given twice")));
    }
    Ok(Owned {
        mode,
        uid,
        gid,
        xattrs,
    })
}

/// A member that is not a directory, stored: its node in the tree.
fn member_file<W: ObjectWrite + ?Sized, R: Read>(
    store: &W,
    entry: &mut tar::Entry<'_, R>,
    linked: &Linked<'_>,
    o: &Owned,
    at: &At<'_>,
    stats: &Stats,
    progress: &Progress,
) -> Result<Node> {
    use tar::EntryType as T;
    let etype = entry.header().entry_type();
    Ok(match etype {
        T::Regular | T::Continuous => {
            let size = entry.size();
            Stats::add(&stats.files, 1);
            Stats::add(&stats.content_bytes, size);
            let p = Path::new(at.member);
            let content = FileContent::Reader {
                reader: entry,
                path: p,
            };
            let st = store
                .write_file(&o.file_meta(FileKind::Regular, 0), size, content)
                .map_err(|e| match e {
                    store::Error::Io { source, .. }
                        if source.kind() == std::io::ErrorKind::UnexpectedEof =>
                    {
                        at.bad(format!(
                            "the archive ends inside this member's {size} bytes of \
                             content (is it truncated?)"
                        ))
                    }
                    e => e.into(),
                })?;
            progress.add(1, size);
            if st.written {
                Stats::add(&stats.objects_written, 1);
                progress.add_new(1);
            }
            Node::File(st.id)
        }
        T::Symlink => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| at.bad("symlink without a target".into()))?
                .into_owned();
            if target.is_empty() || target.len() > 4095 || target.contains(&0) {
                return Err(at.bad("symlink target is empty, too long or has a NUL".into()));
            }
            Stats::add(&stats.symlinks, 1);
            // Linux gives every symlink mode 0777, whatever the archive says.
            let meta = FileMeta {
                mode: 0o777,
                ..o.file_meta(FileKind::Symlink, 0)
            };
            progress.add(1, 0);
            Node::File(store.write_symlink(&meta, &target)?.id)
        }
        T::Link => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| at.bad("hard link without a target".into()))?
                .into_owned();
            let tcomps = sanitize_member_path(&target)
                .map_err(|r| at.bad(format!("hard link target: {r}")))?;
            match linked.file(&tcomps) {
                Some(id) => Node::File(id),
                None => {
                    return Err(at.bad(format!(
                        "hard link to \"{}\", which is not a file listed earlier in the archive",
                        name::escape(&target)
                    )))
                }
            }
        }
        T::Char | T::Block => {
            let h = entry.header();
            let major = h
                .device_major()
                .map_err(|e| at.bad(e.to_string()))?
                .unwrap_or(0);
            let minor = h
                .device_minor()
                .map_err(|e| at.bad(e.to_string()))?
                .unwrap_or(0);
            let kind = if etype == T::Char {
                FileKind::CharDevice
            } else {
                FileKind::BlockDevice
            };
            Stats::add(&stats.specials, 1);
            progress.add(1, 0);
            let meta = o.file_meta(kind, rustix::fs::makedev(major, minor));
            Node::File(store.write_special(&meta)?.id)
        }
        T::Fifo => {
            Stats::add(&stats.specials, 1);
            progress.add(1, 0);
            Node::File(store.write_special(&o.file_meta(FileKind::Fifo, 0))?.id)
        }
        T::GNUSparse => {
            return Err(at.bad(
                "sparse member (GNU format): not supported; make the archive without --sparse"
                    .into(),
            ))
        }
        other => return Err(at.bad(format!("unsupported member type {other:?}"))),
    })
}

/// After the last member: the archive must have ended with its
/// end-of-archive block, not with the stream, and the stream must hold
/// nothing after it but zeros. Reading the stream to its end checks a
/// gzip member's CRC and length and a zstd frame's checksum.
fn finish_stream(mut t: Tracked<'_>, name: &str) -> Result<()> {
    let bad = |reason: String| Error::TarRead {
        archive: name.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
    };
    if t.eof {
        return Err(bad(
            "the archive ends without its end-of-archive blocks (is it truncated?)".into(),
        ));
    }
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = t.read(&mut buf).map_err(|e| Error::TarRead {
            archive: name.to_owned(),
            source: e,
        })?;
        if n == 0 {
            return Ok(());
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(bad(
                "the archive continues after its end-of-archive blocks with data that is not zeros"
                    .into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A PAX record claiming a huge size is refused once the limit is
    /// read, not read into memory whole.
    #[test]
    fn a_huge_pax_record_is_refused_not_held() {
        let mut h = tar::Header::new_ustar();
        h.set_path("pax").expect("path");
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(1 << 40);
        h.set_cksum();
        let stream =
            std::io::Cursor::new(h.as_bytes().to_vec()).chain(std::io::repeat(b'9').take(1 << 40));
        let sink = crate::store::HashSink::new();
        let Err(e) = commit_tar_tree(&sink, Box::new(stream), "bomb.tar", &Progress::default())
        else {
            panic!("a PAX record of a TiB was accepted");
        };
        assert!(e.to_string().contains("PAX records before a member"), "{e}");
    }

    #[test]
    fn sanitize() {
        assert_eq!(
            sanitize_member_path(b"/etc//./passwd").expect("ok"),
            vec![b"etc".to_vec(), b"passwd".to_vec()]
        );
        assert!(sanitize_member_path(b"./").expect("root").is_empty());
        assert!(sanitize_member_path(b"a/../../etc").is_err());
        assert!(sanitize_member_path(b"..").is_err());
    }

    proptest! {
        #[test]
        fn sanitized_components_are_safe(raw in proptest::collection::vec(prop_oneof![Just(b'/'), Just(b'.'), Just(b'a'), any::<u8>()], 0..40)) {
            if let Ok(comps) = sanitize_member_path(&raw) {
                for c in comps {
                    prop_assert!(valid_entry_name(&c));
                }
            }
        }
    }
}
