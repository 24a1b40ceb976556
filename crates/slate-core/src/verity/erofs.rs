//! Which file of an EROFS image a block belongs to: the image's directory
//! tree walked from its root (superblock, inodes, directory blocks), each
//! inode's blocks worked out from its layout. Only uncompressed layouts
//! (flat and flat with an inline tail, what `mkfs.erofs` writes without
//! `-z`) are known. The image is untrusted: every offset and count is
//! checked against the image's data blocks, each inode is visited once,
//! and a block the hash tree found damaged is never parsed.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::hashtree::BLOCK;
use crate::object::name::escape as show_bytes;

const MAGIC: u32 = 0xE0F5_E1E2;
const SUPER_OFFSET: u64 = 1024;
const FLAT_PLAIN: u16 = 0;
const FLAT_INLINE: u16 = 2;
const S_IFMT: u16 = 0o170000;
const S_IFDIR: u16 = 0o040000;
const S_IFREG: u16 = 0o100000;
const S_IFLNK: u16 = 0o120000;

/// What a block of the image holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Block 0: the superblock (and the first inodes, when the metadata
    /// starts there; a damaged superblock is not read further).
    Superblock,
    /// Content of the file at this path (`/usr/...`).
    File(String),
    /// Entries of the directory at this path.
    Directory(String),
    /// The inode (and any inline tail) of the entry at this path.
    Inode(String),
    /// A block the walk did not reach (shared metadata, or below a
    /// directory that is itself damaged).
    Unknown,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Superblock => {
                f.write_str("the file system's superblock (and the first inodes after it)")
            }
            Owner::File(p) => write!(f, "the file {p}"),
            Owner::Directory(p) => write!(f, "the entries of the directory {p}"),
            Owner::Inode(p) => write!(f, "the inode of {p}"),
            Owner::Unknown => f.write_str("no file the directory tree reaches"),
        }
    }
}

struct Image<'a> {
    f: &'a File,
    blocks: u64,
    bad: &'a [u64],
    meta_blkaddr: u64,
}

struct Inode {
    mode: u16,
    size: u64,
    layout: u16,
    raw_blkaddr: u64,
    /// Byte offset of the inode, and of its inline tail.
    at: u64,
    tail_at: u64,
}

impl Image<'_> {
    fn read(&self, pos: u64, len: usize) -> Result<Vec<u8>, String> {
        let end = pos.checked_add(len as u64).ok_or("offset overflows")?;
        if end > self.blocks * BLOCK {
            return Err(format!("bytes {pos}..{end} are past the image's data"));
        }
        for b in pos / BLOCK..end.div_ceil(BLOCK) {
            if self.bad.binary_search(&b).is_ok() {
                return Err(format!("block {b} it needs is damaged too"));
            }
        }
        let mut buf = vec![0u8; len];
        self.f
            .read_exact_at(&mut buf, pos)
            .map_err(|e| format!("reading at {pos}: {e}"))?;
        Ok(buf)
    }

    fn inode(&self, nid: u64) -> Result<Inode, String> {
        let at = nid
            .checked_mul(32)
            .and_then(|o| o.checked_add(self.meta_blkaddr * BLOCK))
            .ok_or_else(|| format!("inode {nid} is out of range"))?;
        let head = self.read(at, 32)?;
        let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(head[o..o + 4].try_into().expect("4 bytes"));
        let format = u16_at(0);
        let extended = format & 1 == 1;
        let layout = (format >> 1) & 7;
        let icount = u16_at(2) as u64;
        let xattrs = if icount == 0 {
            0
        } else {
            12 + (icount - 1) * 4
        };
        let (isize, size) = if extended {
            let full = self.read(at, 64)?;
            (
                64,
                u64::from_le_bytes(full[8..16].try_into().expect("8 bytes")),
            )
        } else {
            (32, u32_at(8) as u64)
        };
        if size > self.blocks * BLOCK {
            return Err(format!("inode {nid} claims {size} bytes"));
        }
        Ok(Inode {
            mode: u16_at(4),
            size,
            layout,
            raw_blkaddr: u32_at(16) as u64,
            at,
            tail_at: at + isize + xattrs,
        })
    }
}

impl Inode {
    /// The blocks its inode (and inline tail) spans.
    fn meta_blocks(&self) -> std::ops::RangeInclusive<u64> {
        let end = match self.layout {
            FLAT_INLINE => self.tail_at + self.size % BLOCK,
            _ => self.tail_at,
        };
        self.at / BLOCK..=end.saturating_sub(1).max(self.at) / BLOCK
    }

    /// Its whole data blocks: `(first, count)`.
    fn data_blocks(&self) -> Result<(u64, u64), String> {
        let n = match self.layout {
            FLAT_PLAIN => self.size.div_ceil(BLOCK),
            FLAT_INLINE => self.size / BLOCK,
            l => {
                return Err(format!(
                    "data layout {l} (compressed or chunked) is not read"
                ))
            }
        };
        Ok((self.raw_blkaddr, n))
    }
}

/// Which part of the EROFS image in the first `blocks` blocks of `f`
/// block `target` holds. `bad` (sorted) are blocks known damaged: never
/// parsed. An image whose structure cannot be read is an error saying why.
pub fn owner_of(f: &File, blocks: u64, bad: &[u64], target: u64) -> Result<Owner, String> {
    if target == 0 {
        return Ok(Owner::Superblock);
    }
    let img = Image {
        f,
        blocks,
        bad,
        meta_blkaddr: 0,
    };
    let sb = img.read(SUPER_OFFSET, 128)?;
    let u32_at = |o: usize| u32::from_le_bytes(sb[o..o + 4].try_into().expect("4 bytes"));
    if u32_at(0) != MAGIC {
        return Err("not an EROFS image (no magic number in its superblock)".into());
    }
    if sb[12] != 12 {
        return Err(format!("a block size of 2^{} bytes, not 4096", sb[12]));
    }
    let root = u16::from_le_bytes([sb[14], sb[15]]) as u64;
    let img = Image {
        meta_blkaddr: u32_at(40) as u64,
        ..img
    };
    // Depth first, by name; every inode once.
    let mut seen = HashSet::new();
    let mut stack: Vec<(u64, Vec<u8>)> = vec![(root, b"/usr".to_vec())];
    let limit = blocks * BLOCK / 32;
    while let Some((nid, path)) = stack.pop() {
        if !seen.insert(nid) || seen.len() as u64 > limit {
            continue;
        }
        let p = || show_bytes(&path);
        let at_block = (nid * 32 + img.meta_blkaddr * BLOCK) / BLOCK;
        if at_block == target {
            return Ok(Owner::Inode(p()));
        }
        let Ok(ino) = img.inode(nid) else { continue };
        if ino.meta_blocks().contains(&target) {
            return Ok(Owner::Inode(p()));
        }
        let kind = ino.mode & S_IFMT;
        if !matches!(kind, S_IFDIR | S_IFREG | S_IFLNK) {
            continue;
        }
        let Ok((first, n)) = ino.data_blocks() else {
            continue;
        };
        if (first..first.saturating_add(n)).contains(&target) {
            return Ok(if kind == S_IFDIR {
                Owner::Directory(p())
            } else {
                Owner::File(p())
            });
        }
        if kind != S_IFDIR {
            continue;
        }
        // The directory's entries, a block at a time.
        let nblocks = ino.size.div_ceil(BLOCK);
        let mut children = Vec::new();
        for i in 0..nblocks {
            let len = (ino.size - i * BLOCK).min(BLOCK) as usize;
            let pos = if i < n {
                (first + i) * BLOCK
            } else {
                ino.tail_at
            };
            let Ok(chunk) = img.read(pos, len) else {
                break;
            };
            let Ok(entries) = dirents(&chunk) else { break };
            children.extend(entries);
        }
        for (name, child, _ft) in children.into_iter().rev() {
            if name == b"." || name == b".." {
                continue;
            }
            let mut cp = path.clone();
            cp.push(b'/');
            cp.extend_from_slice(&name);
            stack.push((child, cp));
        }
    }
    Ok(Owner::Unknown)
}

/// The entries of one directory block: (name, nid, file type).
fn dirents(chunk: &[u8]) -> Result<Vec<(Vec<u8>, u64, u8)>, String> {
    if chunk.len() < 12 {
        return Err("a directory block shorter than one entry".into());
    }
    let nameoff = |k: usize| u16::from_le_bytes([chunk[k * 12 + 8], chunk[k * 12 + 9]]) as usize;
    let first = nameoff(0);
    if first % 12 != 0 || first == 0 || first > chunk.len() {
        return Err(format!("a directory block's first name at {first}"));
    }
    let count = first / 12;
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let start = nameoff(k);
        let end = if k + 1 < count {
            nameoff(k + 1)
        } else {
            chunk.len()
        };
        if start < first || start > end || end > chunk.len() {
            return Err(format!("a directory entry's name at {start}..{end}"));
        }
        let mut name = &chunk[start..end];
        if k + 1 == count {
            if let Some(z) = name.iter().position(|&b| b == 0) {
                name = &name[..z];
            }
        }
        let nid = u64::from_le_bytes(chunk[k * 12..k * 12 + 8].try_into().expect("8 bytes"));
        out.push((name.to_vec(), nid, chunk[k * 12 + 10]));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_blocks_are_bounded() {
        assert!(dirents(&[0u8; 4]).is_err());
        // One entry whose name is said to start past the block.
        let mut b = vec![0u8; 24];
        b[8] = 200;
        assert!(dirents(&b).is_err());
        // Two entries, "." and "ab", NUL-padded.
        let mut b = vec![0u8; 40];
        b[8] = 24;
        b[20] = 25;
        b[24] = b'.';
        b[25] = b'a';
        b[26] = b'b';
        let e = dirents(&b).expect("entries");
        assert_eq!(e[0].0, b".");
        assert_eq!(e[1].0, b"ab");
    }

    #[test]
    fn a_file_that_is_not_erofs_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("x");
        std::fs::write(&p, vec![0u8; 8192]).expect("write");
        let f = File::open(&p).expect("open");
        assert_eq!(owner_of(&f, 2, &[], 0), Ok(Owner::Superblock));
        assert!(owner_of(&f, 2, &[], 1)
            .expect_err("no magic")
            .contains("not an EROFS image"));
    }
}
