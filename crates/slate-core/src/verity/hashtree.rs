//! The dm-verity hash tree (format version 1, as `veritysetup format`
//! writes it with `--no-superblock`): SHA-256, 4096-byte data and hash
//! blocks, the salt before each block's bytes, 128 digests per hash block
//! (the rest of a block zero), levels stored from the top one down right
//! after the data. The kernel's `dm-verity` reads exactly this.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// Data and hash block size.
pub const BLOCK: u64 = 4096;
const DIGEST: usize = 32;
const PER_BLOCK: u64 = BLOCK / DIGEST as u64;

/// One digest.
pub type Hash = [u8; DIGEST];

fn hash_block(salt: &[u8], block: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// Where each level of the tree of `data_blocks` blocks lies, in blocks
/// from the start of the hash area: `(start, count)`, level 0 (the
/// digests of the data) first. The kernel's arithmetic (`verity_ctr`).
pub fn levels(data_blocks: u64) -> Vec<(u64, u64)> {
    let mut n = 0u32;
    while 7 * n < 64 && data_blocks.saturating_sub(1) >> (7 * n) != 0 {
        n += 1;
    }
    let mut out = vec![(0, 0); n as usize];
    let mut pos = 0;
    for i in (0..n as usize).rev() {
        let shift = 7 * (i as u32 + 1);
        let count = if shift >= 64 {
            1
        } else {
            data_blocks.div_ceil(1u64 << shift)
        };
        out[i] = (pos, count);
        pos += count;
    }
    out
}

/// Blocks of the hash area of a tree of `data_blocks` blocks.
pub fn hash_blocks(data_blocks: u64) -> u64 {
    levels(data_blocks).iter().map(|l| l.1).sum()
}

/// Digests of `count` blocks read from `f` at `start` (in blocks), in
/// runs of 1,024 hashed in parallel.
fn digests(f: &File, start: u64, count: u64, salt: &[u8]) -> std::io::Result<Vec<Hash>> {
    const RUN: u64 = 1024;
    let mut out = Vec::with_capacity(count.min(1 << 24) as usize);
    let mut buf = vec![0u8; (RUN * BLOCK) as usize];
    let mut i = 0;
    while i < count {
        let n = (count - i).min(RUN);
        let b = &mut buf[..(n * BLOCK) as usize];
        f.read_exact_at(b, (start + i) * BLOCK)?;
        out.par_extend(b.par_chunks(BLOCK as usize).map(|c| hash_block(salt, c)));
        i += n;
    }
    Ok(out)
}

/// Pack digests into hash blocks (the rest of the last one zero).
fn pack(digests: &[Hash]) -> Vec<u8> {
    let blocks = (digests.len() as u64).div_ceil(PER_BLOCK);
    let mut out = vec![0u8; (blocks * BLOCK) as usize];
    for (i, d) in digests.iter().enumerate() {
        out[i * DIGEST..(i + 1) * DIGEST].copy_from_slice(d);
    }
    out
}

/// The tree's levels (level 0 first, packed) and its root hash, for the
/// first `data_blocks` blocks of `f`.
fn compute(f: &File, data_blocks: u64, salt: &[u8]) -> std::io::Result<(Vec<Vec<u8>>, Hash)> {
    let lv = levels(data_blocks);
    let mut packed: Vec<Vec<u8>> = Vec::with_capacity(lv.len());
    let mut cur = digests(f, 0, data_blocks, salt)?;
    if lv.is_empty() {
        // One data block: its digest is the root.
        return Ok((packed, cur.first().copied().unwrap_or([0; DIGEST])));
    }
    for _ in 0..lv.len() {
        let p = pack(&cur);
        cur = p
            .par_chunks(BLOCK as usize)
            .map(|c| hash_block(salt, c))
            .collect();
        packed.push(p);
    }
    Ok((packed, cur[0]))
}

/// Append the hash tree of `f` (whose length must be a multiple of the
/// block size) after its data, sync it, and return the root hash and the
/// number of data blocks.
pub fn append(f: &mut File, salt: &[u8]) -> std::io::Result<(Hash, u64)> {
    let len = f.seek(SeekFrom::End(0))?;
    if len % BLOCK != 0 || len == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{len} bytes: not a positive multiple of {BLOCK}"),
        ));
    }
    let data_blocks = len / BLOCK;
    let (packed, root) = compute(f, data_blocks, salt)?;
    // Stored from the top level down.
    for p in packed.iter().rev() {
        f.write_all(p)?;
    }
    f.sync_all()?;
    Ok((root, data_blocks))
}

/// What a re-read of an image against its tree found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Data blocks whose content does not match the tree the root hash
    /// vouches for (the reads the kernel fails), in order.
    pub bad_data: Vec<u64>,
    /// Hash blocks (from the start of the hash area) that do not match
    /// their parent's digest (or the root hash).
    pub bad_hash: Vec<u64>,
}

/// Re-read `f` (`data_blocks` blocks of data, its tree after them)
/// against `root`, as the kernel does: a hash block counts only if its
/// parent vouches for it, a data block only if its digest is in a hash
/// block that counts. At most `limit` bad blocks of each kind are listed.
pub fn check(
    f: &File,
    data_blocks: u64,
    salt: &[u8],
    root: &Hash,
    limit: usize,
) -> std::io::Result<Check> {
    let lv = levels(data_blocks);
    let mut out = Check {
        bad_data: Vec::new(),
        bad_hash: Vec::new(),
    };
    let area = data_blocks;
    // Trusted digests of the level below, level by level from the top.
    let mut trusted: Vec<Option<Hash>> = vec![Some(*root)];
    for &(start, count) in lv.iter().rev() {
        let mut blocks = vec![0u8; (count * BLOCK) as usize];
        f.read_exact_at(&mut blocks, (area + start) * BLOCK)?;
        let mut next = Vec::with_capacity((count * PER_BLOCK) as usize);
        for (k, b) in blocks.chunks(BLOCK as usize).enumerate() {
            let ok = trusted
                .get(k)
                .copied()
                .flatten()
                .is_some_and(|want| hash_block(salt, b) == want);
            if !ok && out.bad_hash.len() < limit {
                out.bad_hash.push(start + k as u64);
            }
            for d in b.chunks(DIGEST) {
                next.push(ok.then(|| d.try_into().expect("32-byte chunk")));
            }
        }
        trusted = next;
    }
    const RUN: u64 = 1024;
    let mut i = 0;
    while i < data_blocks && out.bad_data.len() < limit {
        let n = (data_blocks - i).min(RUN);
        let ds = digests(f, i, n, salt)?;
        for (j, d) in ds.iter().enumerate() {
            let b = i + j as u64;
            if trusted.get(b as usize).copied().flatten() != Some(*d) {
                out.bad_data.push(b);
                if out.bad_data.len() >= limit {
                    break;
                }
            }
        }
        i += n;
    }
    Ok(out)
}

/// The whole length an image of `data_blocks` blocks with its tree has.
pub fn image_len(data_blocks: u64) -> u64 {
    (data_blocks + hash_blocks(data_blocks)) * BLOCK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_kernel() {
        assert!(levels(1).is_empty());
        assert_eq!(levels(2), vec![(0, 1)]);
        assert_eq!(levels(128), vec![(0, 1)]);
        assert_eq!(levels(129), vec![(1, 2), (0, 1)]);
        assert_eq!(levels(128 * 128 + 1), vec![(3, 129), (1, 2), (0, 1)]);
    }

    fn image(blocks: u64) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("img");
        let data: Vec<u8> = (0..blocks * BLOCK).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&p, data).expect("write");
        (d, p)
    }

    #[test]
    fn a_tree_checks_and_a_flipped_byte_is_found() {
        let (_d, p) = image(300);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .expect("open");
        let salt = [7u8; 32];
        let (root, n) = append(&mut f, &salt).expect("append");
        assert_eq!(n, 300);
        assert_eq!(f.metadata().expect("stat").len(), image_len(300));
        let clean = check(&f, n, &salt, &root, 8).expect("check");
        assert_eq!(clean.bad_data, Vec::<u64>::new());
        assert!(clean.bad_hash.is_empty());
        // Another root hash vouches for nothing.
        let other = check(&f, n, &salt, &[0; 32], 8).expect("check");
        assert_eq!(other.bad_hash.first(), Some(&0));
        assert_eq!(other.bad_data.len(), 8);
        // One byte of block 200.
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 200 * BLOCK + 17).expect("read");
        b[0] ^= 1;
        f.write_all_at(&b, 200 * BLOCK + 17).expect("write");
        let bad = check(&f, n, &salt, &root, 8).expect("check");
        assert_eq!(bad.bad_data, vec![200]);
        assert!(bad.bad_hash.is_empty());
    }

    /// The same tree as `veritysetup format`, when it is installed.
    #[test]
    fn the_same_root_hash_as_veritysetup() {
        if std::process::Command::new("veritysetup")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: veritysetup is not installed");
            return;
        }
        let (d, p) = image(200);
        let salt = [3u8; 32];
        let hashes = d.path().join("hashes");
        let out = std::process::Command::new("veritysetup")
            .args(["format", "--no-superblock", "--hash=sha256"])
            .arg(format!("--salt={}", hex::encode(salt)))
            .arg(&p)
            .arg(&hashes)
            .output()
            .expect("veritysetup");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let theirs = text
            .lines()
            .find_map(|l| l.strip_prefix("Root hash:"))
            .expect("a root hash line")
            .trim()
            .to_string();
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .expect("open");
        let (root, _) = append(&mut f, &salt).expect("append");
        assert_eq!(hex::encode(root), theirs);
        let tree = std::fs::read(&hashes).expect("read");
        let ours = std::fs::read(&p).expect("read");
        assert_eq!(&ours[(200 * BLOCK) as usize..], &tree[..]);
    }
}
