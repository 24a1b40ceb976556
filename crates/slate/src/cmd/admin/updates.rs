//! `slate admin upgrade --check` and `--auto` (the update timer's run),
//! and the last check and next one that `slate admin status` shows. The
//! reboot and systemd calls are commands named by the environment, so
//! tests can put their own in: `SLATE_REBOOT_COMMAND` (default
//! `systemctl reboot`), `SLATE_SYSTEMD_RUN` (default `systemd-run`),
//! `SLATE_SYSTEMCTL` (default `systemctl`).

use std::process::Command;

use serde::Serialize;
use slate_core::sysroot::{LastCheck, RebootRequest, Status, Sysroot, UpdateCheck, UpgradeOptions};

use crate::output;

/// The unit of the reboot a window schedules.
const REBOOT_UNIT: &str = "slate-upgrade-reboot";

/// The command `var` names (words split on white space), else `default`.
fn command(var: &str, default: &str) -> Vec<String> {
    let v = std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    v.as_deref()
        .unwrap_or(default)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Run `argv`: its output, or why it failed.
fn run(argv: &[String]) -> Result<String, String> {
    let (prog, args) = argv.split_first().ok_or("no command")?;
    let o = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            argv.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The reboot `apply` asks for: now (`SLATE_REBOOT_COMMAND`), or a
/// transient timer at the window's next time (`systemd-run
/// --on-calendar=WINDOW`) that runs it. What was run, as text.
pub(super) fn reboot(req: &RebootRequest) -> Result<String, String> {
    let reboot = command("SLATE_REBOOT_COMMAND", "systemctl reboot");
    let argv = match req {
        RebootRequest::Now => reboot,
        RebootRequest::Window(w) => {
            let mut a = command("SLATE_SYSTEMD_RUN", "systemd-run");
            a.extend([
                format!("--unit={REBOOT_UNIT}"),
                format!("--on-calendar={w}"),
                "--timer-property=AccuracySec=1min".into(),
                "--".into(),
            ]);
            a.extend(reboot);
            a
        }
    };
    match run(&argv) {
        Ok(_) => Ok(argv.join(" ")),
        // A window's reboot scheduled by an earlier run stands.
        Err(e) if matches!(req, RebootRequest::Window(_)) && e.contains("already") => {
            Ok(format!("{} (scheduled before)", argv.join(" ")))
        }
        Err(e) => Err(e),
    }
}

fn size(b: Option<u64>) -> String {
    b.map_or_else(|| "unknown size".into(), slate_core::sysroot::human_bytes)
}

/// The first 12 characters of a commit id.
fn short(id: &str) -> String {
    output::one_line(&id.chars().take(12).collect::<String>())
}

/// One line of what a check found.
fn check_line(c: &UpdateCheck) -> String {
    if !c.update {
        return format!(
            "{} is up to date with {} ({}{})",
            c.follows,
            c.origin,
            short(&c.current),
            c.current_version
                .as_ref()
                .map(|v| format!(", version {v}"))
                .unwrap_or_default()
        );
    }
    let version = c
        .version
        .as_ref()
        .map(|v| format!("version {v}, "))
        .unwrap_or_default();
    let subject = c
        .subject
        .as_ref()
        .filter(|s| !s.is_empty())
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    format!(
        "update for {} from {}: {version}commit {}, {} to download ({}){subject}",
        c.follows,
        c.origin,
        short(&c.commit),
        size(c.download_bytes),
        c.download.as_deref().unwrap_or("local"),
    )
}

/// `upgrade --check`.
pub(super) fn check(
    s: &Sysroot,
    opts: &UpgradeOptions,
    json: bool,
    fetch: &dyn slate_core::remotes::Fetch,
) -> anyhow::Result<()> {
    let c = s.check_update(opts, fetch)?;
    if json {
        return output::json(&c);
    }
    crate::outln!("{}", check_line(&c))?;
    Ok(())
}

/// `upgrade --auto`: the policy run, one line per decision on stderr
/// (the journal), the result recorded by the library.
pub(super) fn auto(
    s: &Sysroot,
    opts: &UpgradeOptions,
    json: bool,
    fetch: &dyn slate_core::remotes::Fetch,
) -> anyhow::Result<()> {
    let policy = match s.update_policy(opts.os.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            // A policy file that does not read: recorded, so `status` says why.
            let e = anyhow::Error::from(e);
            if let Ok(os) = s.pick_os(opts.os.as_deref()) {
                let rec = LastCheck {
                    time: opts.deploy.now,
                    result: "error".into(),
                    error: Some(format!("{e:#}")),
                    ..LastCheck::default()
                };
                if let Err(w) = s.record_check(&os, &rec) {
                    eprintln!("warning: {w}");
                }
            }
            anyhow::bail!("slate-upgrade: no policy read, nothing done: {e:#}");
        }
    };
    let Some(policy) = policy else {
        eprintln!(
            "slate-upgrade: no update policy (neither /usr/lib/slate/update.toml nor \
             /etc/slate/update.toml names one): nothing to do"
        );
        return Ok(());
    };
    let out = output::counted("pulled", "objects", |p| {
        s.auto_update(&policy, opts, fetch, p, &mut reboot)
    });
    let out = match out {
        Ok(o) => o,
        // One line, the error's chain on it (the journal's one line of
        // this decision); recorded by the library for `status`.
        Err(e) => anyhow::bail!(
            "slate-upgrade: policy {}: failed, nothing deployed, no reboot: {:#}",
            policy.policy,
            anyhow::Error::from(e)
        ),
    };
    if json {
        return output::json(&out);
    }
    let r = &out.record;
    let line = match r.result.as_str() {
        "up-to-date" => check_line(&out.check),
        "available" => format!("{} (policy check: not staged)", check_line(&out.check)),
        "staged" => format!(
            "{}: staged as {} (it boots next)",
            check_line(&out.check),
            out.deployed.as_deref().unwrap_or("?")
        ),
        "reboot" => format!(
            "{}: staged as {}, reboot asked for: {}",
            check_line(&out.check),
            out.deployed.as_deref().unwrap_or("?"),
            r.reboot.as_deref().unwrap_or("")
        ),
        _ => format!(
            "{}: {}",
            check_line(&out.check),
            r.error.as_deref().unwrap_or(&r.result)
        ),
    };
    eprintln!("slate-upgrade: policy {}: {line}", policy.policy);
    if r.result == "staged" && r.error.is_some() {
        eprintln!("slate-upgrade: {}", r.error.as_deref().unwrap_or_default());
    }
    Ok(())
}

/// An OS's updates in `status`.
#[derive(Serialize)]
pub(super) struct OsUpdates {
    os: String,
    last_check: Option<LastCheck>,
    /// The update timer's next run, as systemd tells it.
    next_check: Option<String>,
    /// Why `next_check` is not known.
    next_check_unknown: Option<String>,
}

/// The update timer's next run, or why it is not known: asked of
/// systemd (`SLATE_SYSTEMCTL`) only for the running system's sysroot.
fn next_check(s: &Sysroot) -> Result<String, String> {
    if s.booted().is_none() {
        return Err("not the running system's sysroot".into());
    }
    let mut a = command("SLATE_SYSTEMCTL", "systemctl");
    a.extend([
        "show".into(),
        "slate-upgrade.timer".into(),
        "--property=NextElapseUSecRealtime".into(),
        "--value".into(),
    ]);
    match run(&a) {
        Ok(t) if !t.is_empty() && t != "n/a" && !t.contains('\n') => Ok(t),
        Ok(_) => Err("slate-upgrade.timer is not scheduled (not enabled?)".into()),
        Err(e) => Err(format!("systemd could not be asked: {e}")),
    }
}

/// The last check of each OS, and the timer's next run.
pub(super) fn updates(s: &Sysroot, st: &Status) -> Vec<OsUpdates> {
    let mut oses: Vec<String> = st.deployments.iter().map(|d| d.os.clone()).collect();
    oses.dedup();
    let mut seen = Vec::new();
    oses.retain(|o| {
        let new = !seen.contains(o);
        seen.push(o.clone());
        new
    });
    let next = next_check(s);
    oses.into_iter()
        .map(|os| {
            let last_check = s.last_check(&os).unwrap_or_else(|e| {
                eprintln!("warning: {e}");
                None
            });
            OsUpdates {
                os,
                last_check,
                next_check: next.clone().ok(),
                next_check_unknown: next.clone().err(),
            }
        })
        .collect()
}

pub(super) fn print_updates(u: &[OsUpdates]) -> anyhow::Result<()> {
    for x in u {
        if let Some(c) = &x.last_check {
            let mut what = c.result.clone();
            if let Some(v) = &c.version {
                what.push_str(&format!(", version {v}"));
            }
            if let Some(id) = &c.commit {
                what.push_str(&format!(
                    ", commit {}",
                    id.chars().take(12).collect::<String>()
                ));
            }
            if let Some(e) = &c.error {
                what.push_str(&format!(": {e}"));
            }
            crate::outln!(
                "{} last check {}: {}",
                x.os,
                output::date(c.time),
                output::one_line(&what)
            )?;
        }
        match (&x.next_check, &x.next_check_unknown) {
            (Some(n), _) => crate::outln!("{} next check {}", x.os, output::one_line(n))?,
            (None, Some(why)) if x.last_check.is_some() => {
                crate::outln!("{} next check unknown: {why}", x.os)?
            }
            _ => {}
        }
    }
    Ok(())
}
