//! Where an image's files are: the members of an archive (`oci-archive:`,
//! `docker-archive:`: a plain tar, indexed once, each member then read at
//! its offset) or the files of an OCI layout folder (`oci:`). Names come
//! from the image; an archive's are only looked up among its members, and
//! a folder's are built by this module from checked digests, never taken
//! from the image.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Error, Result};
use crate::commit::sanitize_member_path;

/// Symlinks and hard links between an archive's members followed at most
/// this many times for one name.
const MAX_HOPS: usize = 8;
/// Members an image archive may hold.
const MAX_MEMBERS: usize = 1 << 16;

pub(super) enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// A symlink (target relative to the member's folder) or hard link
    /// (target from the archive's root), as a normalized name.
    Link(String),
}

pub(super) enum Blobs {
    Archive {
        path: PathBuf,
        file: File,
        members: HashMap<String, Member>,
    },
    Dir(PathBuf),
}

/// A member's name with `.`, empty components and a leading `/` dropped;
/// `..` refused.
fn normalize(raw: &[u8]) -> Option<String> {
    let comps = sanitize_member_path(raw).ok()?;
    String::from_utf8(comps.join(&b'/')).ok()
}

/// A link's target, relative to the folder `dir` of the archive (absolute
/// targets from its root), resolved lexically: `..` may not climb above
/// the archive's root.
fn resolve(dir: &str, target: &[u8]) -> Option<String> {
    let mut out: Vec<&[u8]> = Vec::new();
    if !target.starts_with(b"/") {
        out.extend(
            dir.as_bytes()
                .split(|&b| b == b'/')
                .filter(|c| !c.is_empty()),
        );
    }
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    normalize(&out.join(&b'/'))
}

/// Reads `len` bytes of a file from `offset`, with no shared file position.
struct At<'a> {
    file: &'a File,
    offset: u64,
    left: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.offset += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

impl Blobs {
    /// Index the members of the archive `path` (a plain tar).
    pub(super) fn archive(path: &Path) -> Result<Blobs> {
        let io = |source| Error::Source {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let mut members = HashMap::new();
        let mut ar = tar::Archive::new(&file);
        for entry in ar.entries_with_seek().map_err(io)? {
            let entry = entry.map_err(io)?;
            let raw = entry.path_bytes().into_owned();
            let bad = |what: &str| Error::Image {
                image: path.display().to_string(),
                reason: format!("member \"{}\": {what}", String::from_utf8_lossy(&raw)),
            };
            let Some(name) = normalize(&raw) else {
                return Err(bad("not a plain name inside the archive"));
            };
            let member = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .ok_or_else(|| bad("a link without a target"))?;
                    let dir = match entry.header().entry_type() {
                        tar::EntryType::Symlink => name.rsplit_once('/').map_or("", |(d, _)| d),
                        _ => "",
                    };
                    Member::Link(resolve(dir, &target).ok_or_else(|| bad("a link leading out"))?)
                }
                _ => continue,
            };
            if members.insert(name, member).is_some() {
                return Err(bad("listed twice"));
            }
            if members.len() > MAX_MEMBERS {
                return Err(bad("more members than an image archive holds"));
            }
        }
        Ok(Blobs::Archive {
            path: path.to_path_buf(),
            file,
            members,
        })
    }

    /// Whether the archive or folder has this file.
    pub(super) fn has(&self, name: &str) -> bool {
        match self {
            Blobs::Archive { members, .. } => members.contains_key(name),
            Blobs::Dir(dir) => {
                normalize(name.as_bytes()).as_deref() == Some(name) && dir.join(name).is_file()
            }
        }
    }

    /// What the messages call the image.
    pub(super) fn shown(&self) -> String {
        match self {
            Blobs::Archive { path, .. } | Blobs::Dir(path) => path.display().to_string(),
        }
    }

    /// Open the file `name` (a member's name in an archive; in a folder, a
    /// name this module's caller built: `index.json`,
    /// `blobs/sha256/HEX`): its reader and its size. A folder's file is
    /// opened without following a symlink and must be a regular file.
    pub(super) fn open(&self, name: &str) -> Result<(Box<dyn Read + '_>, u64)> {
        match self {
            Blobs::Archive {
                path,
                file,
                members,
            } => {
                let missing = || Error::Image {
                    image: path.display().to_string(),
                    reason: format!("no member \"{name}\" (or links that lead nowhere)"),
                };
                let mut at = name.to_owned();
                for _ in 0..=MAX_HOPS {
                    match members.get(&at).ok_or_else(missing)? {
                        Member::File { offset, size } => {
                            let r = At {
                                file,
                                offset: *offset,
                                left: *size,
                            };
                            return Ok((Box::new(r), *size));
                        }
                        Member::Link(t) => at = t.clone(),
                    }
                }
                Err(missing())
            }
            Blobs::Dir(dir) => {
                // Only this module's names (`index.json`, `blobs/sha256/HEX`):
                // a name with `..`, `/` first or empty parts is none of them.
                if normalize(name.as_bytes()).as_deref() != Some(name) {
                    return Err(Error::Image {
                        image: dir.display().to_string(),
                        reason: format!("{name:?} is not a file name of an image layout"),
                    });
                }
                let p = dir.join(name);
                let io = |source| Error::Source {
                    path: p.clone(),
                    source,
                };
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(&p)
                    .map_err(io)?;
                let md = f.metadata().map_err(io)?;
                if !md.is_file() {
                    return Err(Error::Image {
                        image: dir.display().to_string(),
                        reason: format!("{name} is not a regular file"),
                    });
                }
                Ok((Box::new(f), md.len()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn links_resolve_inside_the_archive_only() {
        use super::resolve;
        assert_eq!(resolve("a", b"../b.tar").as_deref(), Some("b.tar"));
        assert_eq!(resolve("a/b", b"./c").as_deref(), Some("a/b/c"));
        assert_eq!(resolve("a", b"/x/y").as_deref(), Some("x/y"));
        assert_eq!(resolve("a", b"../../etc/passwd"), None);
        assert_eq!(resolve("", b".."), None);
    }
}
