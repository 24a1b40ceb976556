//! What `Sysroot::resolve` pulled before a deploy, told on stderr.

use std::time::Instant;

use slate_core::remotes::{Fetch, MinRate};
use slate_core::sysroot::{Pulled, Resolved};

use crate::output;

/// The network seam the library pulls a remote's ref through.
/// Without the `remote` feature there is none: a remote's ref is refused.
#[cfg(feature = "remote")]
pub(super) fn fetcher(min_rate: MinRate) -> Box<dyn Fetch> {
    Box::new(slate_remote::HttpFetch {
        opts: slate_remote::pull::PullOptions {
            min_rate,
            ..Default::default()
        },
    })
}

#[cfg(not(feature = "remote"))]
pub(super) fn fetcher(_: MinRate) -> Box<dyn Fetch> {
    Box::new(slate_core::remotes::NoFetch)
}

/// What was pulled, on stderr.
pub(super) fn report(r: &Resolved, started: Instant) {
    match &r.pulled {
        Some(Pulled::Local { from, stats }) => output::pulled_from(from, stats),
        None => {}
        Some(Pulled::Remote(f)) => {
            for x in &f.redirects {
                eprintln!("redirected: {} -> {} (HTTP {})", x.from, x.to, x.status);
            }
            let remote = r.origin.remote().unwrap_or_default();
            eprintln!(
                "pulled {} from {remote} ({}): {} objects, {:.1} MB fetched in {} requests, {:.2} s",
                f.commit.short(12),
                f.method,
                f.objects,
                f.bytes as f64 / 1e6,
                f.requests,
                started.elapsed().as_secs_f64()
            );
        }
    }
}
