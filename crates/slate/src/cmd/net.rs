//! Delivery over HTTP: `serve` and `pull` (the `remote` feature; a build
//! without it has neither).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use slate_remote::pull::{self, PullOptions};
use slate_remote::serve::Serving;

use super::remote::MinRateArg;
use super::RepoArg;
use crate::output;

/// Serve an archive repository over HTTP/1.1, read-only (keep-alive,
/// range requests). Any static web server serves it as well.
///
/// Only what a pull asks for is served (the summary and its signature,
/// objects, packs, commit signatures, deltas): never the repository's
/// configuration, keys or other files, and no file reached through a
/// symlink. A folder that is not an archive repository is refused unless
/// --any-folder is given.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate serve --bind 0.0.0.0:8080 /srv/os\n  \
    slate serve --any-folder --bind 127.0.0.1:8000 /srv/www"
)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    bind: String,
    /// Threads answering requests.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Serve a folder that is not an archive repository: every regular
    /// file below it, but hidden ones (a name starting with '.'), *.pem
    /// files and a repository's private parts (config, lock, tmp/,
    /// remotes/, corrupt/); never through a symlink.
    #[arg(long)]
    any_folder: bool,
    /// The archive repository's folder (with --any-folder: any folder).
    #[arg(value_name = "DIR")]
    repo: PathBuf,
}

/// Pull a ref of a remote into `remotes/REMOTE/REF`: checked summary and
/// signatures, the missing objects in few large resumable requests, every
/// object checked, the ref moved last.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate pull --repo /srv/local origin os/main\n  \
    slate pull --json origin os/main"
)]
pub struct PullArgs {
    #[command(flatten)]
    repo: RepoArg,
    remote: String,
    #[arg(name = "REF")]
    remote_ref: String,
    /// Move the ref even to an older commit.
    #[arg(long)]
    allow_downgrade: bool,
    /// Seconds a connection may deliver nothing before it is given up.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    stall_timeout: u64,
    #[command(flatten)]
    transfer: MinRateArg,
    /// Print JSON lines on standard output instead of text: progress
    /// events (`"type": "progress"`) while it pulls, then the result.
    #[arg(long)]
    json: bool,
}

pub fn run_serve(a: ServeArgs) -> anyhow::Result<()> {
    let serving = if a.any_folder {
        Serving::AnyFolder
    } else {
        Serving::Repository
    };
    let h = slate_remote::serve::start(&a.repo, &a.bind, a.threads, serving)?;
    eprintln!(
        "serving {} {} on http://{} (Ctrl-C stops)",
        match serving {
            Serving::Repository => "the archive repository",
            Serving::AnyFolder => "the files of the folder",
        },
        a.repo.display(),
        h.addr
    );
    loop {
        std::thread::park();
    }
}

pub fn run_pull(a: PullArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let opts = PullOptions {
        allow_downgrade: a.allow_downgrade,
        stall: Duration::from_secs(a.stall_timeout.max(1)),
        min_rate: a.transfer.min_rate,
        ..PullOptions::default()
    };
    let started = std::time::Instant::now();
    let p = std::sync::Arc::new(slate_core::progress::Progress::default());
    let result = {
        let shown = p.clone();
        let _line = output::status_line(move || progress_text(&shown, started));
        // With --json, a progress object every half second on stdout.
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let ticker = a.json.then(|| {
            let shown = p.clone();
            std::thread::spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Duration::from_millis(500))
                {
                    let _ = output::json_line(&progress_json(&shown, started));
                }
            })
        });
        let r = pull::pull(&repo, &a.remote, &a.remote_ref, &opts, &p);
        drop(stop);
        if let Some(t) = ticker {
            let _ = t.join();
        }
        r
    };
    let done = result.with_context(|| format!("pulling {} from {}", a.remote_ref, a.remote))?;
    if let Some(why) = &done.delta_failed {
        eprintln!("warning: the delta was not used ({why}); the objects came from the packs");
    }
    if a.json {
        let mut v = serde_json::to_value(&done)?;
        v["type"] = "done".into();
        v["seconds"] = started.elapsed().as_secs_f64().into();
        return output::json_line(&v);
    }
    crate::outln!("{} {}", done.local_ref, done.commit)?;
    eprintln!(
        "pulled {} ({}): {} objects ({:.1} MB of files) in {} requests, {:.1} MB fetched, {:.2} s{}",
        done.commit.get(..12).unwrap_or(&done.commit),
        done.delta.as_deref().map(|_| "delta").unwrap_or(&done.method),
        done.objects,
        done.content_bytes as f64 / 1e6,
        done.requests,
        done.bytes_fetched as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        done.signed_by
            .as_deref()
            .map(|k| format!("; signed by {k}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// Bytes fetched of those expected, the rate and the time left, and the
/// objects stored.
fn progress_text(p: &slate_core::progress::Progress, started: std::time::Instant) -> String {
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let got = p.fetched();
    let total = p.fetch_total().max(got);
    let rate = got as f64 / secs;
    let mut s = format!("fetched {:.1}", got as f64 / 1e6);
    if total > 0 {
        s.push_str(&format!("/{:.1}", total as f64 / 1e6));
    }
    s.push_str(&format!(" MB at {:.1} MB/s", rate / 1e6));
    if total > got && rate > 0.0 {
        s.push_str(&format!(", {:.0} s left", (total - got) as f64 / rate));
    }
    match p.total() {
        0 => s,
        t => format!("{s}; stored {}/{t} objects", p.done()),
    }
}

fn progress_json(
    p: &slate_core::progress::Progress,
    started: std::time::Instant,
) -> serde_json::Value {
    let secs = started.elapsed().as_secs_f64();
    serde_json::json!({
        "type": "progress",
        "seconds": secs,
        "bytes_fetched": p.fetched(),
        "bytes_expected": p.fetch_total().max(p.fetched()),
        "bytes_per_second": if secs > 0.0 { p.fetched() as f64 / secs } else { 0.0 },
        "objects_stored": p.done(),
        "objects_total": p.total(),
    })
}
