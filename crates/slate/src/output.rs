//! Rendering helpers: JSON on stdout, errors with their chain and a hint on
//! stderr, dates.

use std::io::Write;

use serde::Serialize;
use slate_core::{checkout, commit, compose, store};

/// Write one line to standard output; an error (a closed pipe is not one:
/// SIGPIPE ends the process; a full disk or `/dev/full` is) is returned,
/// never a panic.
pub fn line(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .context("writing to standard output")
}

/// `println!` that returns the error of a failed write: `outln!(...)?`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

/// Print `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Print `value` as one line of JSON on stdout (a stream of JSON lines).
#[cfg(feature = "remote")]
pub fn json_line<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// The events an engine reported, as systemd's tools print them: one
/// line each on stderr, debug-level ones left out.
pub fn print_events(log: &slate_core::confd::Log) {
    let mut err = std::io::stderr().lock();
    for e in log.printed() {
        let _ = writeln!(err, "{}", e.text);
    }
}

/// The `--json` of `slate tmpfiles` and `slate sysusers`, one shape for
/// both: `{tool, dry_run, status, plan, events}`.
pub fn engine_json<P: Serialize>(
    tool: &str,
    dry_run: bool,
    status: u8,
    plan: &P,
    log: &slate_core::confd::Log,
) -> anyhow::Result<()> {
    json(&serde_json::json!({
        "tool": tool,
        "dry_run": dry_run,
        "status": status,
        "plan": plan,
        "events": log.events,
    }))
}

/// A path of this machine as text: its bytes with the lossless escape of
/// names (`docs/format/paths.md`), so a name that is not UTF-8 is shown, not
/// altered.
pub fn shown_path(p: &std::path::Path) -> String {
    slate_core::fsutil::show(p)
}

/// The UTC date of a Unix timestamp, RFC 3339 (`2024-05-01T12:00:00Z`);
/// every `i64` has one (the library's, which a summary's expiry uses too).
/// Text read from a disk or a server, on one line: control characters
/// (a terminal's escapes, newlines) shown as `?`.
/// The first 12 characters of a commit id read from a record (which a
/// hostile disk may fill with anything), on one line.
pub fn short_id(s: &str) -> String {
    one_line(s.get(..12).unwrap_or(s))
}

pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

pub fn date(ts: i64) -> String {
    slate_core::summary::date(ts)
}

fn store_error(e: &anyhow::Error) -> Option<&store::Error> {
    e.chain().find_map(|c| {
        c.downcast_ref::<store::Error>()
            .or_else(|| match c.downcast_ref::<commit::Error>() {
                Some(commit::Error::Store(s)) => Some(s),
                _ => None,
            })
            .or_else(|| match c.downcast_ref::<checkout::Error>() {
                Some(checkout::Error::Store(s)) => Some(s),
                _ => None,
            })
    })
}

/// Whether `c` is (or wraps) a missing remote's error.
fn no_such_remote(c: &(dyn std::error::Error + 'static)) -> bool {
    use slate_core::remotes::Error::NoSuchRemote;
    matches!(c.downcast_ref(), Some(NoSuchRemote { .. }))
        || matches!(
            c.downcast_ref(),
            Some(slate_core::sysroot::Error::Remotes(NoSuchRemote { .. }))
        )
        || {
            #[cfg(feature = "remote")]
            let remote = matches!(
                c.downcast_ref(),
                Some(slate_remote::Error::Remotes(NoSuchRemote { .. }))
            );
            #[cfg(not(feature = "remote"))]
            let remote = false;
            remote
        }
}

fn hint(e: &anyhow::Error) -> Option<&'static str> {
    if e.chain().any(no_such_remote) {
        return Some(
            "add it with `slate remote add --repo REPO NAME URL` (REPO: the repository named \
             above; `slate remote list --repo REPO` shows those it has)",
        );
    }
    // Advice for a library error is the binary's: the library names what is
    // wrong, the hint says which option of the command changes it.
    for c in e.chain() {
        if let Some(checkout::Error::Exists(_)) = c.downcast_ref::<checkout::Error>() {
            return Some("use --union to check out over it");
        }
        if let Some(compose::Error::NoLockfile(_)) = c.downcast_ref::<compose::Error>() {
            return Some("compose once without --locked to write it");
        }
    }
    if e.chain().any(|c| {
        matches!(
            c.downcast_ref::<checkout::Error>(),
            Some(checkout::Error::Owner { .. } | checkout::Error::NeedsRoot { .. })
        )
    }) {
        return Some(
            "only root can give files other owners; `slate checkout --user-mode` checks out \
             with your own (and skips device nodes)",
        );
    }
    if e.chain().any(|c| {
        matches!(
            c.downcast_ref::<store::Error>(),
            Some(store::Error::RefMoved { .. })
        )
    }) {
        return Some("another writer moved the ref meanwhile; run the command again");
    }
    if e.chain().any(|c| {
        matches!(
            c.downcast_ref::<slate_core::sysroot::Error>(),
            Some(slate_core::sysroot::Error::NoSuchRev { sysroot: true, .. })
        )
    }) {
        return Some("pull it first, use REMOTE:REF, or use --from REPO");
    }
    if !slate_core::fsutil::is_root()
        && e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
        })
    {
        return Some(
            "this needs root: a sysroot, its repository (mode 0700: it holds files with their \
             real owners) and a bare repository are readable by root only; run the command as root",
        );
    }
    match store_error(e)? {
        store::Error::NotARepo { .. } => Some("create one with `slate init --repo DIR`, or point --repo / SLATE_REPO at an existing one"),
        store::Error::Ambiguous { .. } => Some("give more hex digits of the id"),
        store::Error::UnknownRev { .. } => Some("`slate refs` lists branches; `slate log BRANCH` lists commit ids"),
        store::Error::Corrupt { .. } => Some("the repository is damaged; `slate fsck` reports what is affected"),
        store::Error::BadRefName { .. } => Some("use names like `os/stable` or `main`"),
        store::Error::BareNeedsRoot { .. } => Some("use --mode bare-user"),
        _ => None,
    }
}

pub fn print_error(e: &anyhow::Error) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "slate: error: {e}");
    let mut shown = e.to_string();
    for cause in e.chain().skip(1) {
        // Messages that already include their cause's text are not repeated.
        let text = cause.to_string();
        if !shown.contains(&text) {
            let _ = writeln!(err, "  caused by: {text}");
        }
        shown = text;
    }
    if let Some(h) = hint(e) {
        let _ = writeln!(err, "hint: {h}");
    }
}

/// A live status line on stderr while long work runs, drawn only when
/// stderr is a terminal: `message` is asked for its text ten times a
/// second. The line is cleared when the value is dropped.
pub struct StatusLine {
    bar: indicatif::ProgressBar,
    stop: Option<std::sync::mpsc::Sender<()>>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

pub fn status_line(message: impl Fn() -> String + Send + 'static) -> StatusLine {
    let target = indicatif::ProgressDrawTarget::stderr_with_hz(10);
    let bar = indicatif::ProgressBar::with_draw_target(None, target);
    if bar.is_hidden() {
        return StatusLine {
            bar,
            stop: None,
            ticker: None,
        };
    }
    if let Ok(style) = indicatif::ProgressStyle::with_template("{elapsed:>3} {msg}") {
        bar.set_style(style);
    }
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let shown = bar.clone();
    let ticker = std::thread::spawn(move || {
        shown.set_message(message());
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            stopped.recv_timeout(std::time::Duration::from_millis(100))
        {
            shown.set_message(message());
        }
    });
    StatusLine {
        bar,
        stop: Some(stop),
        ticker: Some(ticker),
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}

/// Run `work` with a [`Progress`](slate_core::progress::Progress) it
/// fills, under a status line of it: "`what` DONE/TOTAL `unit`" (DONE alone
/// while the total is not known), and the bytes moved once there are any.
/// The line is gone when `work` returns.
pub fn counted<T>(
    what: &'static str,
    unit: &'static str,
    work: impl FnOnce(&slate_core::progress::Progress) -> T,
) -> T {
    let p = std::sync::Arc::new(slate_core::progress::Progress::default());
    let shown = p.clone();
    let _line = status_line(move || {
        let mut s = match shown.total() {
            0 => format!("{what} {} {unit}", shown.done()),
            total => format!("{what} {}/{total} {unit}", shown.done()),
        };
        if shown.bytes() > 0 {
            s.push_str(&format!(", {:.1} MB", shown.bytes() as f64 / 1e6));
        }
        s
    });
    work(&p)
}

/// Each step of a library install on a status line.
pub struct InstallSteps;

impl slate_core::install::Steps for InstallSteps {
    fn run(
        &self,
        step: slate_core::install::Step,
        work: &mut dyn FnMut(&slate_core::progress::Progress),
    ) {
        use slate_core::install::Step;
        match step {
            Step::Pull => counted("pulled", "objects", work),
            Step::Deploy => counted("deployed", "paths", work),
            Step::Write => {
                let _line = status_line(|| "writing the disk".to_string());
                work(&slate_core::progress::Progress::default())
            }
        }
    }
}

/// What a pull from a local repository brought, on stderr (nothing when
/// it brought nothing).
pub fn pulled_from(from: &std::path::Path, stats: &slate_core::pull::PullStats) {
    if stats.files + stats.trees + stats.commits > 0 {
        eprintln!(
            "pulled {} commits, {} trees, {} files ({:.1} MB) from {}",
            stats.commits,
            stats.trees,
            stats.files,
            stats.content_bytes as f64 / 1e6,
            shown_path(from)
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn advice_comes_from_the_error_variant() {
        use super::hint;
        use slate_core::{checkout, compose, store};
        use std::path::PathBuf;
        let p = || PathBuf::from("/x");
        let e = anyhow::Error::from(checkout::Error::Exists(p())).context("checking out main");
        assert_eq!(e.root_cause().to_string(), "/x: already exists");
        assert_eq!(hint(&e), Some("use --union to check out over it"));
        let e = anyhow::Error::from(store::Error::BareNeedsRoot { path: p() });
        assert!(!e.to_string().contains("bare-user"), "{e}");
        assert_eq!(hint(&e), Some("use --mode bare-user"));
        let e = anyhow::Error::from(compose::Error::NoLockfile(p()));
        assert_eq!(e.to_string(), "--locked: no lockfile at /x");
        assert_eq!(hint(&e), Some("compose once without --locked to write it"));
    }

    #[test]
    fn every_timestamp_has_a_date() {
        use super::date;
        assert_eq!(date(0), "1970-01-01T00:00:00Z");
        assert_eq!(date(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(date(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(date(-1), "1969-12-31T23:59:59Z");
        assert_eq!(date(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(date(253_402_300_800), "+10000-01-01T00:00:00Z");
        assert_eq!(date(-62_167_219_201), "-0001-12-31T23:59:59Z");
        // Milliseconds taken for seconds, and the extremes.
        assert!(date(1_700_000_000_000).starts_with("+55840-"));
        assert!(date(i64::MAX).ends_with('Z') && date(i64::MIN).starts_with('-'));
        // Agrees with humantime over its range.
        for ts in (0..253_402_300_799i64).step_by(7_777_777_777) {
            let h = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(ts as u64),
            )
            .to_string();
            assert_eq!(date(ts), h);
        }
    }
}
