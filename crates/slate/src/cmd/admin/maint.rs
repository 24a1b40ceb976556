//! The commands that look after a sysroot between deploys: `config-diff`,
//! `factory-reset`, `prepare-root` (the initrd's step) and `cleanup`.

use std::path::Path;

use slate_core::sysroot::{self, Sysroot};

use super::{CleanupArgs, ConfigDiffArgs, FactoryResetArgs, PrepareRootArgs};
use crate::output;

/// `slate admin config-diff`.
pub(super) fn config_diff(s: &Sysroot, c: ConfigDiffArgs) -> anyhow::Result<()> {
    let drift = s.config_diff(c.deployment.as_deref())?;
    if c.json {
        return output::json(&drift);
    }
    for e in &drift.etc {
        crate::outln!(
            "{} {}",
            e.change.letter(),
            slate_core::object::name::escape(&e.path)
        )?;
    }
    for p in &drift.var {
        crate::outln!("? {p}")?;
    }
    eprintln!(
        "{}: {} changes in /etc{}, {} undeclared paths in /var{}",
        drift.deployment,
        drift.etc.len(),
        drift
            .etc_dir
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_else(|| " (stateless: rebuilt at every boot)".into()),
        drift.var.len(),
        drift
            .var_dir
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_else(|| " (volatile)".into()),
    );
    Ok(())
}

/// `slate admin factory-reset`.
pub(super) fn factory_reset(s: &Sysroot, f: FactoryResetArgs) -> anyhow::Result<()> {
    let lock = s.lock()?;
    let os = s.pick_os(f.os.as_deref())?;
    let (etc, var) = if f.etc || f.var {
        (f.etc, f.var)
    } else {
        (true, true)
    };
    let plan = s.plan_factory_reset(&os, etc, var)?;
    if !f.json {
        if plan.etc {
            eprintln!(
                "/etc goes back to the image's; lost: {} changed paths",
                plan.etc_changes.len()
            );
            for e in &plan.etc_changes {
                eprintln!(
                    "  {} {}",
                    e.change.letter(),
                    slate_core::object::name::escape(&e.path)
                );
            }
            if plan.machine_id {
                eprintln!("  the machine id (the next boot is a first boot)");
            }
        }
        if plan.var {
            eprintln!(
                "/var is emptied; lost: {} files, {}",
                plan.var_files,
                sysroot::human_bytes(plan.var_bytes)
            );
        }
    }
    if !f.dry_run {
        if f.now {
            s.factory_reset_now(&lock, &plan)?;
        } else {
            s.request_factory_reset(&lock, &plan)?;
        }
    }
    if f.json {
        return output::json(&serde_json::json!({
            "plan": plan, "dry_run": f.dry_run, "now": f.now
        }));
    }
    if f.dry_run {
        eprintln!("nothing was changed (--dry-run)");
    } else if f.now {
        eprintln!("{os} is reset");
    } else {
        eprintln!("{os} will be reset at its next boot");
    }
    Ok(())
}

/// `slate admin prepare-root`.
pub(super) fn prepare_root(s: &Sysroot, p: PrepareRootArgs) -> anyhow::Result<()> {
    let done = s.prepare_root(p.target.as_deref())?;
    if p.target.is_none() {
        record_prepared(&done);
    }
    if p.json {
        return output::json(&done);
    }
    for m in &done.mounts {
        eprintln!("{} on {} ({})", m.source, m.target, m.how);
    }
    if let Some(v) = &done.usr_verity {
        eprintln!(
            "/usr verified: root hash {} ({}), {} on {}",
            v.root_hash, v.signature, v.dm_device, v.loop_device
        );
    }
    eprintln!(
        "{} ready at {}{}",
        done.deployment,
        done.target,
        if done.first_boot {
            "; first boot: new machine id"
        } else {
            ""
        }
    );
    Ok(())
}

/// `slate admin cleanup`.
pub(super) fn cleanup(s: &Sysroot, c: CleanupArgs) -> anyhow::Result<()> {
    let lock = s.lock()?;
    let rep = s.cleanup(&lock)?;
    if c.json {
        return output::json(&rep);
    }
    if rep.is_empty() {
        eprintln!("nothing to clean up");
    }
    print_cleanup(&rep);
    Ok(())
}

/// What a cleanup removed, a line each on stderr.
pub(super) fn print_cleanup(rep: &sysroot::CleanupReport) {
    for (what, list) in [
        ("stray boot entry", &rep.entries),
        ("incomplete deployment", &rep.incomplete),
        ("directory", &rep.directories),
        ("ref", &rep.refs),
        ("unused kernel", &rep.kernels),
        ("temporary file", &rep.temporary),
    ] {
        for x in list {
            eprintln!("removed {what} {x}");
        }
    }
    for x in &rep.staged {
        eprintln!("staged deployment {x}");
    }
}

/// In the initrd: what prepare-root did, and which Slate did it (a build
/// with or without network code), in `/run/slate/prepare-root.json` for
/// the booted system (`/run` outlives the switch to the new root). Only
/// told, never needed: a failure to write it is a warning.
fn record_prepared(done: &slate_core::sysroot::Prepared) {
    let record = serde_json::json!({
        "prepared": done,
        "slate": {
            "version": env!("CARGO_PKG_VERSION"),
            "network": cfg!(feature = "remote"),
        },
    });
    let dir = Path::new("/run/slate");
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| slate_core::fsutil::open_dir(dir))
        .and_then(|fd| {
            let text = serde_json::to_vec_pretty(&record).expect("plain data serializes");
            slate_core::fsutil::atomic_write_at(&fd, "prepare-root.json", &text, 0o644)
        });
    if let Err(e) = written {
        eprintln!("warning: {}/prepare-root.json: {e}", dir.display());
    }
}
