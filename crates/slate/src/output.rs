//! Rendering helpers: JSON on stdout, errors with their chain and a hint on
//! stderr, dates.

use std::io::Write;

use serde::Serialize;
use slate_core::{checkout, commit, store};

/// Print `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
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

/// RFC 3339 UTC date of a Unix timestamp.
pub fn date(ts: i64) -> String {
    match u64::try_from(ts) {
        Ok(s) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
        )
        .to_string(),
        Err(_) => format!("@{ts}"),
    }
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

fn hint(e: &anyhow::Error) -> Option<&'static str> {
    match store_error(e)? {
        store::Error::NotARepo { .. } => Some("create one with `slate init --repo DIR`, or point --repo / SLATE_REPO at an existing one"),
        store::Error::Ambiguous { .. } => Some("give more hex digits of the id"),
        store::Error::UnknownRev { .. } => Some("`slate refs` lists branches; `slate log BRANCH` lists commit ids"),
        store::Error::Corrupt { .. } => Some("the repository is damaged; `slate fsck` reports what is affected"),
        store::Error::BadRefName { .. } => Some("use names like `os/stable` or `main`"),
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
