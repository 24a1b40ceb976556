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

/// A file header: `u32` length (at most 1 MiB), then its bytes.
fn read_file_header(path: &Path, r: &mut impl Read) -> Result<FileHeader, Error> {
    let n = read_u32(r).map_err(|e| Error::format(path, format!("a file header: {e}")))?;
    if n > 1 << 20 {
        return Err(Error::format(path, format!("a file header of {n} bytes")));
    }
    let mut hb = Vec::new();
    r.take(u64::from(n))
        .read_to_end(&mut hb)
        .map_err(|e| Error::format(path, format!("a file header: {e}")))?;
    FileHeader::decode(&hb).map_err(|e| Error::format(path, format!("a file header: {e}")))
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

/// The bytes of file content the delta at `path` would store (whole,
/// patched and large files; symlink targets), counted from its records
/// without storing anything. Once the count passes `limit`, it is
/// returned at once (the rest is not read).
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
                    let h = read_file_header(path, &mut r)?;
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
                        let h = read_file_header(path, &mut d)?;
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
                let h = read_file_header(path, &mut f)?;
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
