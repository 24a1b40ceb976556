//! Static deltas: one file that turns a commit a machine has (`from`) into
//! the commit it wants (`to`), or brings a whole commit from nothing (an
//! "empty" delta). It holds every object of `to` that `from` lacks: a
//! changed file as a zstd patch against its previous version (the old
//! content is the compressor's reference prefix), new files packed
//! together in large zstd blocks (one context across many small files),
//! files too large to hold in memory in independent chunks. Deltas live at
//! `REPO/deltas/TO/FROM.delta` (`empty.delta` for a full image), are
//! listed with their SHA-256 in the signed summary, and every object they
//! carry is checked against its id when it is stored.
//!
//! Format (all integers big-endian), see `docs/format/remote.md`:
//!
//! ```text
//! "SLATEDL1" | from: 32 bytes (zeros: empty) | to: 32 bytes | record*
//! 'P' u64 len, u32 n, (id, base id, u32 hlen, header, u32 plen, patch)*
//! 'F' u64 len, u32 n, zstd( (u32 hlen, header, content)* )   new files
//! 'L' u32 hlen, header, (u32 clen, zstd chunk)*, u32 0        a large file
//! 'T' u64 len, u32 n, n base tree ids, zstd( per tree, children first:
//!     u32 r, r × (u32 entry, u32 file number | 1<<31 + tree place),
//!     u32 len, tree bytes with those entries' ids zeroed )
//! 'C' u32 len, commit bytes                      the commit `to`
//! 'E' u64 commits, u64 trees, u64 files                   the end
//! ```
//!
//! Files are numbered in the order they come; a whole file's id, and the
//! ids of the trees, are left out: the reader computes them, and the
//! commit's id, which must be `to`, covers them all.

mod apply;
mod generate;
mod measure;

use std::path::{Path, PathBuf};

pub use apply::{apply, Applied};
pub use generate::{generate, Generated, Options};
pub use measure::content_bytes;

use crate::fsutil;
use crate::hash::ObjectId;
use crate::store::{self, Repo};

pub const MAGIC: &[u8; 8] = b"SLATEDL1";
/// The folder of a repository that holds its deltas.
pub const DIR: &str = "deltas";

/// Largest reference a patch may use (the old and new content together):
/// zstd's default window limit for decoders, 128 MiB.
pub(crate) const MAX_WINDOW_LOG: u32 = 27;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{}: {source}", fsutil::show(path))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The delta file does not decode.
    #[error("{}: {reason}", fsutil::show(path))]
    Format { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn format(path: &Path, reason: impl Into<String>) -> Error {
        Error::Format {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Where the delta from `from` (none: the empty delta) to `to` lives,
/// relative to the repository.
pub fn rel_path(from: Option<&ObjectId>, to: &ObjectId) -> String {
    format!(
        "{DIR}/{}/{}.delta",
        to.to_hex(),
        from.map(|f| f.to_hex()).unwrap_or_else(|| "empty".into())
    )
}

/// The first bytes of a delta: where it starts and ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub from: Option<ObjectId>,
    pub to: ObjectId,
}

pub(crate) fn parse_header(path: &Path, b: &[u8; 72]) -> Result<Header, Error> {
    if &b[..8] != MAGIC {
        return Err(Error::format(path, "not a Slate delta (bad magic)"));
    }
    let mut from = [0u8; 32];
    from.copy_from_slice(&b[8..40]);
    let mut to = [0u8; 32];
    to.copy_from_slice(&b[40..72]);
    Ok(Header {
        from: (from != [0; 32]).then_some(ObjectId(from)),
        to: ObjectId(to),
    })
}

/// Read a delta file's header.
pub fn read_header(path: &Path) -> Result<Header, Error> {
    use std::io::Read;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut b = [0u8; 72];
    f.read_exact(&mut b).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::format(path, "truncated header")
        } else {
            io(e)
        }
    })?;
    parse_header(path, &b)
}

/// A delta a repository holds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Listed {
    pub from: Option<ObjectId>,
    pub to: ObjectId,
    pub path: String,
    pub size: u64,
}

/// The deltas of a repository, by target then origin.
pub fn list(repo: &Repo) -> Result<Vec<Listed>, Error> {
    let dir = repo.path().join(DIR);
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(Error::Io { path: dir, source }),
    };
    for to in rd.flatten() {
        let Some(to_id) = to
            .file_name()
            .to_str()
            .and_then(|s| ObjectId::from_hex(s).ok())
        else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(to.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name();
            let Some(stem) = name.to_str().and_then(|s| s.strip_suffix(".delta")) else {
                continue;
            };
            let from = match stem {
                "empty" => None,
                s => match ObjectId::from_hex(s) {
                    Ok(id) => Some(id),
                    Err(_) => continue,
                },
            };
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(Listed {
                from,
                to: to_id,
                path: rel_path(from.as_ref(), &to_id),
                size,
            });
        }
    }
    out.sort_by_key(|a| (a.to, a.from));
    Ok(out)
}

/// Delete the delta from `from` to `to`; false if there was none.
pub fn delete(repo: &Repo, from: Option<&ObjectId>, to: &ObjectId) -> Result<bool, Error> {
    let path = repo.path().join(rel_path(from, to));
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(Error::Io { path, source }),
    }
    // The target's folder goes with its last delta.
    if let Some(parent) = path.parent() {
        let _ = std::fs::remove_dir(parent);
    }
    Ok(true)
}

#[cfg(test)]
mod tests;

/// What a delta file holds, read from its records without applying it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Described {
    pub from: Option<ObjectId>,
    pub to: ObjectId,
    pub size: u64,
    pub trees: u64,
    /// Files it carries (whole or patched).
    pub files: u64,
    pub patched: u64,
    /// Blocks of whole files, and large files sent in chunks.
    pub blocks: u64,
    pub large: u64,
}

/// Read a delta's records (skipping their payloads) and its end record.
pub fn describe(path: &Path) -> Result<Described, Error> {
    use std::io::{Read, Seek};
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
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut f = std::io::BufReader::new(file);
    let mut hb = [0u8; 72];
    f.read_exact(&mut hb)
        .map_err(|_| Error::format(path, "truncated header"))?;
    let Header { from, to } = parse_header(path, &hb)?;
    let mut d = Described {
        from,
        to,
        size,
        trees: 0,
        files: 0,
        patched: 0,
        blocks: 0,
        large: 0,
    };
    let mut b4 = [0u8; 4];
    let mut b8 = [0u8; 8];
    // Skip `n` bytes of a record, never past the file's end nor back.
    let skip = |f: &mut std::io::BufReader<std::fs::File>, n: u64| -> Result<(), Error> {
        let pos = f.stream_position().map_err(io)?;
        match i64::try_from(n) {
            Ok(k) if n <= size.saturating_sub(pos) => f.seek_relative(k).map_err(io),
            _ => Err(Error::format(
                path,
                format!("a record of {n} bytes at byte {pos} goes past the end"),
            )),
        }
    };
    loop {
        let mut tag = [0u8; 1];
        f.read_exact(&mut tag).map_err(trunc)?;
        match tag[0] {
            b'C' => {
                f.read_exact(&mut b4).map_err(trunc)?;
                skip(&mut f, u64::from(u32::from_be_bytes(b4)))?;
            }
            b'T' | b'F' => {
                f.read_exact(&mut b8).map_err(trunc)?;
                skip(&mut f, u64::from_be_bytes(b8))?;
                d.blocks += u64::from(tag[0] == b'F');
            }
            b'P' => {
                f.read_exact(&mut b8).map_err(trunc)?;
                let n = u64::from_be_bytes(b8);
                f.read_exact(&mut b4).map_err(trunc)?;
                d.patched += u64::from(u32::from_be_bytes(b4));
                skip(
                    &mut f,
                    n.checked_sub(4).ok_or_else(|| {
                        Error::format(path, "a patch record of less than 4 bytes")
                    })?,
                )?;
            }
            b'L' => {
                d.large += 1;
                f.read_exact(&mut b4).map_err(trunc)?;
                skip(&mut f, u64::from(u32::from_be_bytes(b4)))?;
                loop {
                    f.read_exact(&mut b4).map_err(trunc)?;
                    match u32::from_be_bytes(b4) {
                        0 => break,
                        n => skip(&mut f, u64::from(n))?,
                    }
                }
            }
            b'E' => {
                let mut c = [0u64; 3];
                for v in &mut c {
                    f.read_exact(&mut b8).map_err(trunc)?;
                    *v = u64::from_be_bytes(b8);
                }
                d.trees = c[1];
                d.files = c[2];
                break;
            }
            t => return Err(Error::format(path, format!("unknown record {t:#04x}"))),
        }
        if f.stream_position().map_err(io)? > size {
            return Err(Error::format(
                path,
                "truncated (it ends before its end record)",
            ));
        }
    }
    Ok(d)
}
