//! The seam between the library and the network: a [`Fetch`] brings a
//! remote's ref into a repository (objects checked, the tracking ref
//! `remotes/REMOTE/REF` moved). The HTTP client implements it; the
//! library's use cases (resolve, upgrade) take one, so they never link
//! network code themselves, and tests pass one that writes commits.

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

pub trait Fetch {
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
