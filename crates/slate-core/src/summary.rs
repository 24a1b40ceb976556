//! A repository's summary, `REPO/summary.json` (and `REPO/summary.sig`):
//! what a client needs to pull from it over plain HTTP. The refs with their
//! commits, the packs with their index digests, the deltas available; and
//! a timestamp that only grows, so that a client can refuse an older one
//! (a replay). See `docs/format/remote.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil;
use crate::hash::ObjectId;
use crate::object::TreeEntry;
use crate::sign::SecretKey;
use crate::store::{self, ObjectRead, Repo, RepoMode};
use crate::walk::{self, Visit, Visitor};

pub const SUMMARY: &str = "summary.json";
pub const SUMMARY_SIG: &str = "summary.sig";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefInfo {
    pub commit: String,
    /// The commit's own timestamp.
    pub timestamp: i64,
    /// Bytes of content of its files.
    pub size: u64,
    /// The commit object itself (base64): a client that has the commit's
    /// tree already (an image rebuilt with nothing changed) needs nothing
    /// else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

impl RefInfo {
    /// The inline commit object, if it is there and is the commit named.
    pub fn inline_commit(&self) -> Option<crate::object::Commit> {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::STANDARD
            .decode(self.object.as_deref()?)
            .ok()?;
        let c = crate::object::Commit::decode(&b).ok()?;
        (c.id().to_hex() == self.commit).then_some(c)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackInfo {
    pub name: String,
    /// Bytes of `NAME.pack`.
    pub size: u64,
    /// SHA-256 of `NAME.idx`.
    pub idx_sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaInfo {
    /// The commit it starts from; none for a full image.
    pub from: Option<String>,
    pub to: String,
    /// Its path in the repository.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub format: u32,
    /// Unix time it was written; each new summary has a larger one.
    pub timestamp: i64,
    pub refs: BTreeMap<String, RefInfo>,
    pub packs: Vec<PackInfo>,
    pub deltas: Vec<DeltaInfo>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{}: {source}", fsutil::show(path))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: only an archive repository is published (make one with `slate init --mode archive` and `slate pull-local`)")]
    NotArchive(String),
}

fn sha256_file(p: &std::path::Path) -> Result<(u64, String), Error> {
    let data = std::fs::read(p).map_err(|source| Error::Io {
        path: p.to_path_buf(),
        source,
    })?;
    Ok((data.len() as u64, hex::encode(Sha256::digest(&data))))
}

/// Content bytes of a tree's files (each object once).
struct Size<'a> {
    repo: &'a Repo,
    seen: std::collections::HashSet<ObjectId>,
    bytes: u64,
}

impl Visitor for Size<'_> {
    type Error = store::Error;
    fn enter(&mut self, _p: &[u8], id: &ObjectId) -> store::Result<Visit> {
        Ok(if self.seen.insert(*id) {
            Visit::Descend
        } else {
            Visit::Skip
        })
    }
    fn file(&mut self, _p: &[u8], e: &TreeEntry) -> store::Result<()> {
        if self.seen.insert(e.id) {
            self.bytes += self.repo.file_header(&e.id)?.size;
        }
        Ok(())
    }
}

impl Summary {
    /// The summary of `repo` now; `previous` is the one it replaces (its
    /// timestamp is exceeded).
    pub fn build(repo: &Repo, previous: Option<&Summary>, now: i64) -> Result<Summary, Error> {
        if repo.mode() != RepoMode::Archive {
            return Err(Error::NotArchive(repo.path().display().to_string()));
        }
        let mut refs = BTreeMap::new();
        for (name, id) in repo.list_refs()? {
            let c = repo.read_commit(&id)?;
            let mut s = Size {
                repo,
                seen: Default::default(),
                bytes: 0,
            };
            walk::walk(repo, &c.tree, b"", &mut s)?;
            refs.insert(
                name,
                RefInfo {
                    commit: id.to_hex(),
                    timestamp: c.timestamp,
                    size: s.bytes,
                    object: Some({
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.encode(c.encode())
                    }),
                },
            );
        }
        let mut packs = Vec::new();
        let pack_dir = repo.path().join("objects/pack");
        if let Ok(rd) = std::fs::read_dir(&pack_dir) {
            let mut names: Vec<String> = rd
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".idx")
                        .map(String::from)
                })
                .collect();
            names.sort();
            for name in names {
                let pack = pack_dir.join(format!("{name}.pack"));
                let Ok(m) = std::fs::metadata(&pack) else {
                    continue;
                };
                let (_, idx_sha256) = sha256_file(&pack_dir.join(format!("{name}.idx")))?;
                packs.push(PackInfo {
                    name,
                    size: m.len(),
                    idx_sha256,
                });
            }
        }
        let mut deltas = Vec::new();
        let delta_dir = repo.path().join("deltas");
        if let Ok(rd) = std::fs::read_dir(&delta_dir) {
            for to in rd.flatten() {
                let to_name = to.file_name().to_string_lossy().into_owned();
                let Ok(files) = std::fs::read_dir(to.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    let fname = f.file_name().to_string_lossy().into_owned();
                    let Some(from) = fname.strip_suffix(".delta") else {
                        continue;
                    };
                    let (size, sha256) = sha256_file(&f.path())?;
                    deltas.push(DeltaInfo {
                        from: (from != "empty").then(|| from.to_string()),
                        to: to_name.clone(),
                        path: format!("deltas/{to_name}/{fname}"),
                        size,
                        sha256,
                    });
                }
            }
        }
        deltas.sort_by(|a, b| (&a.to, &a.from).cmp(&(&b.to, &b.from)));
        let timestamp = match previous {
            Some(p) if p.timestamp >= now => p.timestamp + 1,
            _ => now,
        };
        Ok(Summary {
            format: 1,
            timestamp,
            refs,
            packs,
            deltas,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("plain data serializes");
        v.push(b'\n');
        v
    }

    pub fn from_bytes(b: &[u8]) -> Result<Summary, String> {
        serde_json::from_slice(b).map_err(|e| e.to_string())
    }
}

/// The summary of `repo` as it is on disk, if any.
pub fn read(repo: &Repo) -> Option<Summary> {
    let b = std::fs::read(repo.path().join(SUMMARY)).ok()?;
    Summary::from_bytes(&b).ok()
}

/// Write a new summary (and its signature with `key`; without a key an old
/// signature is removed): the signature first, then the summary, each
/// atomically, so that a reader never pairs a new summary with an old
/// signature that would check.
pub fn update(repo: &Repo, key: Option<&SecretKey>, now: i64) -> Result<Summary, Error> {
    let _lock = repo.lock()?;
    let prev = read(repo);
    let s = Summary::build(repo, prev.as_ref(), now)?;
    let bytes = s.to_bytes();
    let root = fsutil::open_dir(repo.path()).map_err(|source| Error::Io {
        path: repo.path().to_path_buf(),
        source,
    })?;
    let io = |name: &str| {
        let path = repo.path().join(name);
        move |source| Error::Io { path, source }
    };
    match key {
        Some(k) => fsutil::atomic_write_at(&root, SUMMARY_SIG, &k.sign(&bytes), 0o644)
            .map_err(io(SUMMARY_SIG))?,
        None => match std::fs::remove_file(repo.path().join(SUMMARY_SIG)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(SUMMARY_SIG)(e)),
        },
    }
    fsutil::atomic_write_at(&root, SUMMARY, &bytes, 0o644).map_err(io(SUMMARY))?;
    Ok(s)
}
