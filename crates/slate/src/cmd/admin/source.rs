//! What `Sysroot::resolve` pulled before a deploy, told on stderr.

use std::time::Instant;

use slate_core::sysroot::{Pulled, Resolved};
use slate_remote::client::MinRate;
use slate_remote::pull::PullOptions;
use slate_remote::HttpFetch;

use crate::output;

/// The network seam the library pulls a remote's ref through.
pub(super) fn fetcher(min_rate: MinRate) -> HttpFetch {
    HttpFetch {
        opts: PullOptions {
            min_rate,
            ..PullOptions::default()
        },
    }
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
