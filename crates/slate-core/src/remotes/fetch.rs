//! The seam between the library and the network: a [`Fetch`] brings a
//! remote's ref into a repository (objects checked, the tracking ref
//! `remotes/REMOTE/REF` moved). The HTTP client implements it; the
//! library's use cases (resolve, upgrade) take one, so they never link
//! network code themselves, and tests pass one that writes commits.

use std::time::Duration;

use serde::Serialize;

use crate::hash::ObjectId;
use crate::progress::Progress;
use crate::store::Repo;

/// Whatever went wrong while fetching, as the implementation tells it.
pub type FetchError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A redirect a server answered, followed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Redirect {
    pub from: String,
    pub to: String,
    pub status: u16,
}

/// What a fetch did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fetched {
    /// The commit the remote's ref names, now in the repository.
    pub commit: ObjectId,
    /// How the objects came (`present`, `delta`, `packs`, ...).
    pub method: String,
    pub objects: usize,
    /// Bytes received.
    pub bytes: u64,
    /// Requests made.
    pub requests: u64,
    pub redirects: Vec<Redirect>,
}

/// What a remote's summary says of one of its refs, nothing else
/// downloaded and nothing stored ([`Fetch::check`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefCheck {
    /// The commit the ref names.
    pub commit: ObjectId,
    /// The commit's own time.
    pub timestamp: i64,
    /// Bytes of its files' contents (each once): what a pull without a
    /// delta downloads at most, before compression.
    pub size: u64,
    /// The commit object, when the summary carries it (its subject and
    /// metadata: the image's version).
    #[serde(skip)]
    pub commit_object: Option<crate::object::Commit>,
    /// The deltas to the commit the summary lists: from (none: from
    /// nothing), bytes.
    pub deltas: Vec<(Option<ObjectId>, u64)>,
}

pub trait Fetch {
    /// What `r#ref` of `remote` is now, from the remote's summary alone
    /// (checked as a pull checks it: its signature where the remote
    /// requires one, its age): nothing else is downloaded and nothing
    /// stored. A build without network code cannot.
    fn check(&self, _repo: &Repo, remote: &str, _ref: &str) -> Result<RefCheck, FetchError> {
        Err(format!("remote {remote}: this slate was built without network support").into())
    }

    /// Bring `r#ref` of `remote` (a remote of `repo`) into `repo`, and set
    /// its tracking ref. Signatures the remote requires are checked by
    /// the implementation as it can; the library checks the commit again
    /// before deploying it.
    fn fetch(
        &self,
        repo: &Repo,
        remote: &str,
        r#ref: &str,
        progress: &Progress,
    ) -> Result<Fetched, FetchError>;
}

/// A [`Fetch`] for a build without network code: every fetch is refused.
pub struct NoFetch;

impl Fetch for NoFetch {
    fn fetch(&self, _: &Repo, remote: &str, _: &str, _: &Progress) -> Result<Fetched, FetchError> {
        Err(format!("remote {remote}: this slate was built without network support").into())
    }
}

/// A minimum transfer rate: fewer than `bytes_per_sec` bytes a second over
/// `window` aborts a transfer. `bytes_per_sec == 0`: no minimum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    pub window: Duration,
}

impl Default for MinRate {
    /// Less than 1 KiB/s over 30 s aborts.
    fn default() -> Self {
        MinRate {
            bytes_per_sec: 1024,
            window: Duration::from_secs(30),
        }
    }
}

impl MinRate {
    /// No minimum.
    pub const OFF: MinRate = MinRate {
        bytes_per_sec: 0,
        window: Duration::from_secs(30),
    };

    pub fn is_off(&self) -> bool {
        self.bytes_per_sec == 0
    }

    /// `BYTES` (per second, over 30 s) or `BYTES/SECONDS`; `0` for none.
    pub fn parse(s: &str) -> Result<MinRate, String> {
        let bad = || format!("{s:?}: not BYTES or BYTES/SECONDS (e.g. 1024/30; 0 for none)");
        let (b, w) = match s.split_once('/') {
            Some((b, w)) => (b, Some(w)),
            None => (s, None),
        };
        let bytes_per_sec: u64 = b.trim().parse().map_err(|_| bad())?;
        let window = match w {
            Some(w) => {
                let secs: u64 = w.trim().parse().map_err(|_| bad())?;
                if secs == 0 || secs > 24 * 3600 {
                    return Err(format!("{s:?}: SECONDS must be from 1 to 86400"));
                }
                Duration::from_secs(secs)
            }
            None => MinRate::default().window,
        };
        Ok(MinRate {
            bytes_per_sec,
            window,
        })
    }
}

impl std::fmt::Display for MinRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_off() {
            return write!(f, "no minimum rate");
        }
        write!(
            f,
            "{} bytes/s over {} s",
            self.bytes_per_sec,
            self.window.as_secs_f64()
        )
    }
}
