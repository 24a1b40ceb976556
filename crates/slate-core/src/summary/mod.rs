//! A repository's summary, `REPO/summary.json` (and `REPO/summary.sig`):
//! what a client needs to pull from it over plain HTTP. The refs with their
//! commits, the packs with their index digests and sizes, the deltas
//! available; a timestamp that only grows, so that a client can refuse an
//! older one (a replay); and optionally the time after which it is no
//! longer to be trusted (so a mirror cannot serve the last good one
//! forever). See `docs/format/remote.md`.
//!
//! A summary comes from a server: [`Summary::from_bytes`] checks every
//! field (`parse.rs`), so that no caller meets a name it would have to
//! check again before it uses it.

mod parse;
pub mod sizes;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::delta;
use crate::fsutil;
use crate::hash::ObjectId;
use crate::object::TreeEntry;
use crate::progress::Progress;
use crate::sign::SecretKey;
use crate::store::{self, ObjectRead, Repo, RepoMode};
use crate::walk::{self, Visit, Visitor};

pub use parse::{date, Expired, MAX_INDEX};

pub const SUMMARY: &str = "summary.json";
pub const SUMMARY_SIG: &str = "summary.sig";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefInfo {
    /// 64 lowercase hex digits.
    pub commit: String,
    /// The commit's own timestamp.
    pub timestamp: i64,
    /// Bytes of content of its files (each file object once): no delta
    /// to this commit may store more.
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
    /// The pack's digest, 64 lowercase hex digits: the files are
    /// `objects/pack/NAME.pack` and `NAME.idx`.
    pub name: String,
    /// Bytes of `NAME.pack`.
    pub size: u64,
    /// SHA-256 of `NAME.idx`.
    pub idx_sha256: String,
    /// Bytes of `NAME.idx` (absent in summaries of older versions): a
    /// client fetches no more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idx_size: Option<u64>,
}

impl PackInfo {
    /// The pack's digest (its name, checked when the summary was parsed).
    pub fn id(&self) -> Result<ObjectId, crate::hash::ParseIdError> {
        ObjectId::from_hex(&self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaInfo {
    /// The commit it starts from; none for a full image.
    pub from: Option<String>,
    pub to: String,
    /// Its path in the repository: always `deltas/TO/FROM.delta` (or
    /// `deltas/TO/empty.delta`).
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub format: u32,
    /// Unix time it was written; each new summary has a larger one.
    pub timestamp: i64,
    /// Unix time after which a client refuses it (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
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
    #[error(transparent)]
    Delta(#[from] delta::Error),
    #[error("{0}: only an archive repository is published (make one with `slate init --mode archive` and `slate pull-local`)")]
    NotArchive(String),
    /// A delta whose header does not match its place.
    #[error("{}: it holds the delta from {} to {to}, whose place is {want}: move or delete it", fsutil::show(path), from.map(|f| f.to_string()).unwrap_or_else(|| "nothing".into()))]
    MisplacedDelta {
        path: PathBuf,
        from: Option<ObjectId>,
        to: ObjectId,
        want: String,
    },
    /// A summary's field that does not check.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

/// SHA-256 and length of a file, read in pieces.
fn sha256_file(p: &Path) -> Result<(u64, String), Error> {
    let io = |source| Error::Io {
        path: p.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(p).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                h.update(&buf[..k]);
                n += k as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok((n, hex::encode(h.finalize())))
}

/// Content bytes of a tree's files (each object once).
struct Size<'a> {
    repo: &'a Repo,
    seen: std::collections::HashSet<ObjectId>,
    bytes: u64,
    progress: &'a Progress,
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
            let size = self.repo.file_header(&e.id)?.size;
            self.bytes += size;
            self.progress.add(0, size);
        }
        Ok(())
    }
}

/// The deltas of `repo`, each described by its own header (not by its
/// file name): a delta whose header does not match its place is an error.
fn deltas(repo: &Repo) -> Result<Vec<DeltaInfo>, Error> {
    let mut out = Vec::new();
    let dir = repo.path().join(delta::DIR);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(Error::Io { path: dir, source }),
    };
    for to in rd {
        let to = to.map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        if !to.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let files = std::fs::read_dir(to.path()).map_err(|source| Error::Io {
            path: to.path(),
            source,
        })?;
        for f in files.flatten() {
            let fname = f.file_name();
            let Some(fname) = fname.to_str() else {
                continue;
            };
            // Temporary files of a delta being written start with a dot.
            if fname.starts_with('.') || !fname.ends_with(".delta") {
                continue;
            }
            let path = f.path();
            let h = delta::read_header(&path)?;
            let want = delta::rel_path(h.from.as_ref(), &h.to);
            let here = format!(
                "{}/{}/{fname}",
                delta::DIR,
                to.file_name().to_string_lossy()
            );
            if here != want {
                return Err(Error::MisplacedDelta {
                    path,
                    from: h.from,
                    to: h.to,
                    want,
                });
            }
            let (size, sha256) = sha256_file(&path)?;
            out.push(DeltaInfo {
                from: h.from.map(|f| f.to_hex()),
                to: h.to.to_hex(),
                path: want,
                size,
                sha256,
            });
        }
    }
    out.sort_by(|a, b| (&a.to, &a.from).cmp(&(&b.to, &b.from)));
    Ok(out)
}

impl Summary {
    /// The summary of `repo` now; `previous` is the one it replaces (its
    /// timestamp is exceeded). With `valid_for`, it expires that many
    /// seconds after `now`. A commit's size is walked once and kept
    /// ([`sizes`]); `progress` counts the refs done (of all) and the bytes
    /// of the commits walked.
    pub fn build(
        repo: &Repo,
        previous: Option<&Summary>,
        now: i64,
        valid_for: Option<u64>,
        progress: &Progress,
    ) -> Result<Summary, Error> {
        if repo.mode() != RepoMode::Archive {
            return Err(Error::NotArchive(repo.path().display().to_string()));
        }
        let mut refs = BTreeMap::new();
        let listed = repo.list_refs()?;
        progress.set_total(listed.len() as u64);
        for (name, id) in listed {
            let c = repo.read_commit(&id)?;
            let size = match sizes::cached(repo, &id) {
                Some(size) => size,
                None => {
                    let mut s = Size {
                        repo,
                        seen: Default::default(),
                        bytes: 0,
                        progress,
                    };
                    walk::walk(repo, &c.tree, b"", &mut s)?;
                    sizes::store(repo, &id, s.bytes)?;
                    s.bytes
                }
            };
            progress.add(1, 0);
            refs.insert(
                name,
                RefInfo {
                    commit: id.to_hex(),
                    timestamp: c.timestamp,
                    size,
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
                        .filter(|n| ObjectId::from_hex(n).is_ok())
                        .map(String::from)
                })
                .collect();
            names.sort();
            for name in names {
                let pack = pack_dir.join(format!("{name}.pack"));
                let Ok(m) = std::fs::metadata(&pack) else {
                    continue;
                };
                let (idx_size, idx_sha256) = sha256_file(&pack_dir.join(format!("{name}.idx")))?;
                packs.push(PackInfo {
                    name,
                    size: m.len(),
                    idx_sha256,
                    idx_size: Some(idx_size),
                });
            }
        }
        let deltas = deltas(repo)?;
        let timestamp = match previous {
            Some(p) if p.timestamp >= now => p.timestamp + 1,
            _ => now,
        };
        // From the clock, not from the timestamp (which may run ahead of
        // it when summaries follow each other within a second).
        let expires = valid_for.map(|s| now.saturating_add(i64::try_from(s).unwrap_or(i64::MAX)));
        Ok(Summary {
            format: 1,
            timestamp,
            expires,
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

    /// A summary as a server sent it, every field checked: ids and digests
    /// are 64 lowercase hex digits, ref names are valid ref names, a
    /// delta's path is the one its ends give, an inline commit object is
    /// the commit named, no pack or delta is listed twice.
    pub fn from_bytes(b: &[u8]) -> Result<Summary, Error> {
        let s: Summary = serde_json::from_slice(b).map_err(|e| Error::Invalid {
            field: "(the JSON)".into(),
            reason: e.to_string(),
        })?;
        s.check()?;
        Ok(s)
    }

    /// Refuse it if it expired before `now` (Unix time).
    pub fn check_expiry(&self, now: i64) -> Result<(), Expired> {
        match self.expires {
            Some(expires) if now > expires => Err(Expired { expires, now }),
            _ => Ok(()),
        }
    }
}

/// The summary of `repo` as it is on disk, if any (and sound).
pub fn read(repo: &Repo) -> Option<Summary> {
    load(repo).ok().flatten()
}

/// The summary of `repo` as it is on disk: none if there is none yet, an
/// error naming the file and the field if it does not parse.
pub fn load(repo: &Repo) -> Result<Option<Summary>, Error> {
    let path = repo.path().join(SUMMARY);
    let b = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Io { path, source }),
    };
    match Summary::from_bytes(&b) {
        Ok(s) => Ok(Some(s)),
        Err(Error::Invalid { field, reason }) => Err(Error::Invalid {
            field: format!("{}: {field}", fsutil::show(&path)),
            reason,
        }),
        Err(e) => Err(e),
    }
}

/// Write a new summary (and its signature with `key`; without a key an old
/// signature is removed): the signature first, then the summary, each
/// atomically, so that a reader never pairs a new summary with an old
/// signature that would check. With `valid_for` (seconds), clients refuse
/// it once that time has passed.
pub fn update(
    repo: &Repo,
    key: Option<&SecretKey>,
    now: i64,
    valid_for: Option<u64>,
) -> Result<Summary, Error> {
    update_with(repo, key, now, valid_for, &Progress::default())
}

/// [`update`], counting its work in `progress` (see [`Summary::build`]).
pub fn update_with(
    repo: &Repo,
    key: Option<&SecretKey>,
    now: i64,
    valid_for: Option<u64>,
    progress: &Progress,
) -> Result<Summary, Error> {
    let _lock = repo.lock()?;
    let prev = read(repo);
    let s = Summary::build(repo, prev.as_ref(), now, valid_for, progress)?;
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
