//! File objects: every non-directory inode. The id covers the header (type,
//! mode, owner, device number, xattrs, content length) and the content (file
//! bytes, or a symlink's target); never timestamps.

use crate::hash::{Hasher, ObjectId};

use super::codec::{put_u32, put_u64, put_xattrs, DecodeError, Reader};
use super::Xattrs;

pub(crate) const FILE_MAGIC: &[u8; 8] = b"SLATEF1\0";

/// The type of a non-directory inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    Regular,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
}

impl FileKind {
    pub fn code(self) -> u8 {
        match self {
            FileKind::Regular => b'f',
            FileKind::Symlink => b'l',
            FileKind::CharDevice => b'c',
            FileKind::BlockDevice => b'b',
            FileKind::Fifo => b'p',
        }
    }
    pub fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            b'f' => FileKind::Regular,
            b'l' => FileKind::Symlink,
            b'c' => FileKind::CharDevice,
            b'b' => FileKind::BlockDevice,
            b'p' => FileKind::Fifo,
            _ => return None,
        })
    }
    /// The `S_IFMT` bits of this type.
    pub fn type_bits(self) -> u32 {
        match self {
            FileKind::Regular => 0o100000,
            FileKind::Symlink => 0o120000,
            FileKind::CharDevice => 0o020000,
            FileKind::BlockDevice => 0o060000,
            FileKind::Fifo => 0o010000,
        }
    }
    /// The kind of a non-directory inode from its `st_mode`.
    pub fn from_st_mode(st_mode: u32) -> Option<Self> {
        Some(match st_mode & 0o170000 {
            0o100000 => FileKind::Regular,
            0o120000 => FileKind::Symlink,
            0o020000 => FileKind::CharDevice,
            0o060000 => FileKind::BlockDevice,
            0o010000 => FileKind::Fifo,
            _ => return None,
        })
    }
    /// One letter as `ls -l` prints it.
    pub fn ls_char(self) -> char {
        match self {
            FileKind::Regular => '-',
            FileKind::Symlink => 'l',
            FileKind::CharDevice => 'c',
            FileKind::BlockDevice => 'b',
            FileKind::Fifo => 'p',
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Regular => "file",
            FileKind::Symlink => "symlink",
            FileKind::CharDevice => "char-device",
            FileKind::BlockDevice => "block-device",
            FileKind::Fifo => "fifo",
        }
    }
}

/// The metadata of a non-directory inode, as the id covers it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileMeta {
    pub kind: FileKind,
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Device number for character and block devices, else 0.
    pub rdev: u64,
    /// Sorted by name.
    pub xattrs: Xattrs,
}

/// The self-delimiting prefix of a file object: metadata and content length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub meta: FileMeta,
    /// Bytes of content (file size, or length of a symlink's target).
    pub size: u64,
}

impl FileHeader {
    /// The canonical header bytes.
    pub fn encode(&self) -> Vec<u8> {
        let m = &self.meta;
        let mut out = Vec::with_capacity(48);
        out.extend_from_slice(FILE_MAGIC);
        out.push(m.kind.code());
        put_u32(&mut out, m.mode & 0o7777);
        put_u32(&mut out, m.uid);
        put_u32(&mut out, m.gid);
        put_u64(&mut out, m.rdev);
        put_xattrs(&mut out, &m.xattrs);
        put_u64(&mut out, self.size);
        out
    }

    /// Decode a header from the start of `buf`; returns it and its length.
    pub fn decode_prefix(buf: &[u8]) -> Result<(Self, usize), DecodeError> {
        let mut r = Reader::new(buf, "file object header");
        r.magic(FILE_MAGIC)?;
        let code = r.u8()?;
        let kind = FileKind::from_code(code)
            .ok_or_else(|| r.err(format!("unknown file type code {code:#04x}")))?;
        let mode = r.u32()?;
        if mode & !0o7777 != 0 {
            return Err(r.err(format!("mode {mode:#o} has bits outside 07777")));
        }
        let uid = r.u32()?;
        let gid = r.u32()?;
        let rdev = r.u64()?;
        if rdev != 0 && !matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) {
            return Err(r.err("device number on a non-device"));
        }
        let xattrs = r.xattrs()?;
        let size = r.u64()?;
        if kind == FileKind::Symlink && (size == 0 || size > 4095) {
            return Err(r.err(format!("symlink target of {size} bytes (must be 1..=4095)")));
        }
        if matches!(
            kind,
            FileKind::CharDevice | FileKind::BlockDevice | FileKind::Fifo
        ) && size != 0
        {
            return Err(r.err("content on a device or fifo"));
        }
        Ok((
            FileHeader {
                meta: FileMeta {
                    kind,
                    mode,
                    uid,
                    gid,
                    rdev,
                    xattrs,
                },
                size,
            },
            r.pos(),
        ))
    }

    /// Decode a header that must fill `buf` exactly.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (h, n) = Self::decode_prefix(buf)?;
        if n != buf.len() {
            return Err(DecodeError {
                what: "file object header",
                offset: n,
                reason: "trailing bytes".into(),
            });
        }
        Ok(h)
    }

    /// A hasher already fed with this header; feed it the content next.
    pub fn hasher(&self) -> Hasher {
        let mut h = Hasher::new();
        h.update(&self.encode());
        h
    }

    /// The id of a file object with this header and `content`.
    pub fn id_of(&self, content: &[u8]) -> ObjectId {
        debug_assert_eq!(content.len() as u64, self.size);
        let mut h = self.hasher();
        h.update(content);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> FileHeader {
        FileHeader {
            meta: FileMeta {
                kind: FileKind::Regular,
                mode: 0o4755,
                uid: 0,
                gid: 0,
                rdev: 0,
                xattrs: vec![(b"security.capability".to_vec(), vec![1, 2, 3])],
            },
            size: 5,
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let enc = h.encode();
        assert_eq!(FileHeader::decode(&enc).expect("decodes"), h);
        let mut with_content = enc.clone();
        with_content.extend_from_slice(b"hello");
        let (d, n) = FileHeader::decode_prefix(&with_content).expect("prefix");
        assert_eq!((d, n), (h, enc.len()));
    }

    #[test]
    fn metadata_changes_id() {
        let a = sample();
        let mut b = sample();
        b.meta.mode = 0o755;
        assert_ne!(a.id_of(b"hello"), b.id_of(b"hello"));
        let mut c = sample();
        c.meta.xattrs.clear();
        assert_ne!(a.id_of(b"hello"), c.id_of(b"hello"));
    }

    #[test]
    fn rejects_bad_headers() {
        let mut enc = sample().encode();
        enc[8] = b'z';
        let e = FileHeader::decode(&enc).expect_err("bad type");
        assert!(e.to_string().contains("unknown file type"), "{e}");
        assert!(FileHeader::decode(&sample().encode()[..20]).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = FileHeader::decode_prefix(&bytes);
        }

        #[test]
        fn decode_inverts_encode(mode in 0u32..0o7777, uid: u32, gid: u32, size in 0u64..1<<40,
                                 names in proptest::collection::btree_set("[a-z.]{1,20}", 0..4)) {
            let xattrs: Xattrs = names.into_iter().map(|n| (n.into_bytes(), b"v".to_vec())).collect();
            let h = FileHeader { meta: FileMeta { kind: FileKind::Regular, mode, uid, gid, rdev: 0, xattrs }, size };
            prop_assert_eq!(FileHeader::decode(&h.encode()).expect("decodes"), h);
        }
    }
}
