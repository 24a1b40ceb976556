//! How many bytes of file content a delta would store, counted before it
//! is applied: a delta comes from a server, and a few compressed bytes
//! can decompress to far more than the commit it claims to make. The
//! caller compares the count with what a signed summary announces, and
//! applies nothing that would store more. Counting stops as soon as the
//! limit is passed, so a decompression bomb costs no more than the limit.

use std::io::{BufReader, Read};
use std::path::Path;

use super::{parse_header, Error};
use crate::object::{FileHeader, FileKind};

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

/// A file header: `u32` length (at most 1 MiB), then its bytes; and the
/// bytes it took.
fn read_file_header(path: &Path, r: &mut impl Read) -> Result<(FileHeader, u64), Error> {
    let n = read_u32(r).map_err(|e| Error::format(path, format!("a file header: {e}")))?;
    if n > 1 << 20 {
        return Err(Error::format(path, format!("a file header of {n} bytes")));
    }
    let mut hb = Vec::new();
    r.take(u64::from(n))
        .read_to_end(&mut hb)
        .map_err(|e| Error::format(path, format!("a file header: {e}")))?;
    let h =
        FileHeader::decode(&hb).map_err(|e| Error::format(path, format!("a file header: {e}")))?;
    Ok((h, 4 + hb.len() as u64))
}

/// Read and drop `n` bytes of a record.
fn skip(path: &Path, r: &mut impl Read, n: u64) -> Result<(), Error> {
    let got = std::io::copy(&mut r.take(n), &mut std::io::sink())
        .map_err(|e| Error::format(path, e.to_string()))?;
    if got < n {
        return Err(Error::format(path, "a record ends before its contents"));
    }
    Ok(())
}

/// The bytes of file headers a delta of `limit` bytes of files may hold
/// in its blocks: a file's header is some 40 bytes, and an honest delta
/// names each file object once; so many headers are only decompressed
/// (empty files named again and again) to make a reader work.
fn header_allowance(limit: u64) -> u64 {
    (64 << 20) + limit / 8
}

/// The bytes of file content the delta at `path` would store (whole,
/// patched and large files; symlink targets), counted from its records
/// without storing anything. Once the count passes `limit`, it is
/// returned at once (the rest is not read). Blocks whose file headers
/// alone pass `header_allowance` are refused.
pub fn content_bytes(path: &Path, limit: u64) -> Result<u64, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let trunc = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::format(path, "truncated (it ends before its end record)")
        } else {
            io(e)
        }
    };
    let mut f = BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(io)?);
    let mut hb = [0u8; 72];
    f.read_exact(&mut hb)
        .map_err(|_| Error::format(path, "truncated header"))?;
    parse_header(path, &hb)?;
    let mut total = 0u64;
    let mut headers = 0u64;
    loop {
        if total > limit {
            return Ok(total);
        }
        let mut tag = [0u8; 1];
        f.read_exact(&mut tag).map_err(trunc)?;
        match tag[0] {
            b'C' => {
                let n = read_u32(&mut f).map_err(trunc)?;
                f.seek_relative(i64::from(n)).map_err(io)?;
            }
            b'T' => {
                let n = read_u64(&mut f).map_err(trunc)?;
                let n = i64::try_from(n).map_err(|_| Error::format(path, "a record too long"))?;
                f.seek_relative(n).map_err(io)?;
            }
            b'P' => {
                let n = read_u64(&mut f).map_err(trunc)?;
                let mut r = (&mut f).take(n);
                let count = read_u32(&mut r).map_err(trunc)?;
                for _ in 0..count {
                    // File id and base id.
                    skip(path, &mut r, 64)?;
                    let (h, _) = read_file_header(path, &mut r)?;
                    total = total.saturating_add(h.size);
                    if total > limit {
                        return Ok(total);
                    }
                    let pl = read_u32(&mut r).map_err(trunc)?;
                    skip(path, &mut r, u64::from(pl))?;
                }
                std::io::copy(&mut r, &mut std::io::sink()).map_err(io)?;
            }
            b'F' => {
                let n = read_u64(&mut f).map_err(trunc)?;
                let mut r = (&mut f).take(n);
                let count = read_u32(&mut r).map_err(trunc)?;
                {
                    let mut d = zstd::stream::read::Decoder::new(&mut r)
                        .map_err(|e| Error::format(path, format!("a block of files: {e}")))?;
                    for _ in 0..count {
                        let (h, n) = read_file_header(path, &mut d)?;
                        headers += n;
                        if headers > header_allowance(limit) {
                            return Err(Error::format(
                                path,
                                format!(
                                    "its blocks hold more than {} bytes of file headers, more \
                                     than {limit} bytes of files need",
                                    header_allowance(limit)
                                ),
                            ));
                        }
                        total = total.saturating_add(h.size);
                        if total > limit {
                            return Ok(total);
                        }
                        if matches!(h.meta.kind, FileKind::Regular | FileKind::Symlink) {
                            skip(path, &mut d, h.size)?;
                        }
                    }
                }
                std::io::copy(&mut r, &mut std::io::sink()).map_err(io)?;
            }
            b'L' => {
                let (h, _) = read_file_header(path, &mut f)?;
                total = total.saturating_add(h.size);
                if total > limit {
                    return Ok(total);
                }
                loop {
                    match read_u32(&mut f).map_err(trunc)? {
                        0 => break,
                        n => f.seek_relative(i64::from(n)).map_err(io)?,
                    }
                }
            }
            b'E' => return Ok(total),
            t => return Err(Error::format(path, format!("unknown record {t:#04x}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::super::{generate, generate::CHUNK, Options};
    use super::content_bytes;
    use crate::commit::{self, CommitOptions, ParentSpec, Source};
    use crate::hash::ObjectId;
    use crate::progress::Progress;
    use crate::store::{Repo, RepoMode};

    fn commit_dir(repo: &Repo, dir: &Path, ts: i64) -> ObjectId {
        let opts = CommitOptions {
            branch: "os".into(),
            subject: format!("at {ts}"),
            body: String::new(),
            timestamp: ts,
            metadata: BTreeMap::new(),
            parent: ParentSpec::Auto,
            skip_if_unchanged: false,
        };
        commit::commit(repo, Source::Dir(dir), &opts, &Progress::default())
            .expect("commit")
            .id
    }

    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_delta_is_measured_by_what_it_would_store() {
        let tmp = tempfile::tempdir().expect("tmp");
        let t = tmp.path();
        let repo = Repo::init(&t.join("repo"), RepoMode::Archive).expect("init");
        let tree = t.join("tree");
        std::fs::create_dir_all(tree.join("usr")).expect("test setup");
        let tool = noise(1, 300_000);
        std::fs::write(tree.join("usr/tool"), &tool).expect("test setup");
        std::os::unix::fs::symlink("tool", tree.join("usr/link")).expect("test setup");
        // Two paths, one file object: stored once.
        std::fs::write(tree.join("usr/a"), b"same").expect("test setup");
        std::fs::write(tree.join("usr/b"), b"same").expect("test setup");
        let v1 = commit_dir(&repo, &tree, 1);
        let mut tool2 = tool.clone();
        tool2[10..20].copy_from_slice(b"0123456789");
        std::fs::write(tree.join("usr/tool"), &tool2).expect("test setup");
        std::fs::write(tree.join("usr/large"), noise(3, CHUNK + 100)).expect("test setup");
        let v2 = commit_dir(&repo, &tree, 2);
        let opts = Options::default();
        let p = Progress::default();
        // Patched tool, large file in chunks.
        let g = generate(&repo, Some(v1), v2, &opts, &p).expect("generate");
        let path = repo.path().join(&g.path);
        let patched = 300_000 + (CHUNK as u64 + 100);
        assert_eq!(content_bytes(&path, u64::MAX).expect("measure"), patched);
        // The full image: every file once, the symlink's target too.
        let g = generate(&repo, None, v2, &opts, &p).expect("generate");
        let path = repo.path().join(&g.path);
        let whole = 300_000 + (CHUNK as u64 + 100) + 4 + 4;
        assert_eq!(content_bytes(&path, u64::MAX).expect("measure"), whole);
        // Counting stops past the limit.
        let n = content_bytes(&path, 1000).expect("measure");
        assert!(n > 1000 && n < whole, "{n}");
        // A block of the same empty file named a million times: refused
        // long before its end, whatever the limit.
        let empty = crate::object::FileHeader {
            meta: crate::object::FileMeta {
                kind: crate::object::FileKind::Regular,
                mode: 0o644,
                uid: 0,
                gid: 0,
                rdev: 0,
                xattrs: Default::default(),
            },
            size: 0,
        }
        .encode();
        let n = 2_000_000u32;
        let mut raw = Vec::new();
        for _ in 0..n {
            raw.extend_from_slice(&(empty.len() as u32).to_be_bytes());
            raw.extend_from_slice(&empty);
        }
        let z = zstd::bulk::compress(&raw, 19).expect("zstd");
        let mut d = std::fs::read(&path).expect("read")[..72].to_vec();
        d.push(b'F');
        d.extend_from_slice(&(z.len() as u64 + 4).to_be_bytes());
        d.extend_from_slice(&n.to_be_bytes());
        d.extend_from_slice(&z);
        let bomb = t.join("bomb.delta");
        std::fs::write(&bomb, &d).expect("write");
        let e = content_bytes(&bomb, 1000).expect_err("refused");
        assert!(e.to_string().contains("bytes of file headers"), "{e}");
        // A cut delta is an error, not a count.
        let b = std::fs::read(&path).expect("read");
        let cut = t.join("cut.delta");
        std::fs::write(&cut, &b[..b.len() - 30]).expect("write");
        assert!(content_bytes(&cut, u64::MAX).is_err());
    }
}
