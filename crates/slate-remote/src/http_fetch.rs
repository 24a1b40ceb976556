//! The library's fetch seam ([`slate_core::remotes::Fetch`]) over HTTP:
//! [`pull::pull`] of a remote's ref, with the transfer options it runs
//! with.

use slate_core::hash::ObjectId;
use slate_core::progress::Progress;
use slate_core::remotes::{Fetch, FetchError, Fetched, Redirect, RefCheck};
use slate_core::store::Repo;

use crate::pull::{self, PullOptions};

/// Fetches over HTTP with `opts` (stall, retries, minimum rate).
#[derive(Clone, Debug, Default)]
pub struct HttpFetch {
    pub opts: PullOptions,
}

impl Fetch for HttpFetch {
    fn check(&self, repo: &Repo, remote: &str, r#ref: &str) -> Result<RefCheck, FetchError> {
        Ok(pull::check_ref(repo, remote, r#ref, &self.opts)?)
    }

    fn fetch(
        &self,
        repo: &Repo,
        remote: &str,
        r#ref: &str,
        progress: &Progress,
    ) -> Result<Fetched, FetchError> {
        let done = pull::pull(repo, remote, r#ref, &self.opts, progress)?;
        let commit = ObjectId::from_hex(&done.commit)?;
        Ok(Fetched {
            commit,
            method: match done.delta {
                Some(_) => "delta".to_string(),
                None => done.method,
            },
            objects: done.objects,
            bytes: done.bytes_fetched,
            requests: done.requests,
            redirects: done
                .redirects
                .into_iter()
                .map(|r| Redirect {
                    from: r.from,
                    to: r.to,
                    status: r.status,
                })
                .collect(),
        })
    }
}
