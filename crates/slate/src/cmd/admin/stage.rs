//! `slate admin finalize-staged` and `slate admin unstage`: what becomes
//! of a deployment staged with `deploy --stage` or `upgrade --stage`.

use clap::Args;
use slate_core::sysroot::{BootCheck, Sysroot};

use super::deploy::conflict_text;
use super::now;
use crate::output;

/// Make the staged deployment the default: merge /etc from the booted (or
/// default) deployment as it is now, write its boot entry, remove the
/// deployments it replaces. slate-finalize-staged.service runs this at
/// shutdown (its ExecStop=), after everything that could change /etc has
/// stopped; run it by hand to switch now. With --boot (the unit's
/// ExecStart=), it finalizes nothing: it says what a shutdown left staged
/// and keeps it (complete) or drops it (incomplete).
#[derive(Args)]
#[command(after_help = "Examples:\n  slate admin finalize-staged\n  \
    slate admin finalize-staged --os debian --json\n  \
    slate admin finalize-staged --boot   # what slate-finalize-staged.service starts with")]
pub(super) struct FinalizeStagedArgs {
    /// The OS (default: every OS with a staged deployment).
    #[arg(long)]
    os: Option<String>,
    /// At boot: keep a complete staged deployment the last shutdown did
    /// not finalize (it is finalized at this boot's shutdown), drop an
    /// incomplete one, and say which in the journal.
    #[arg(long, conflicts_with = "os")]
    boot: bool,
    /// Print what was finalized (or, with --boot, kept or dropped) as JSON.
    #[arg(long)]
    json: bool,
}

/// Drop the staged deployment of an OS (its tree, record and kernel if
/// no one else uses it): nothing changes at shutdown.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate admin unstage\n  slate admin unstage --os debian --json"
)]
pub(super) struct UnstageArgs {
    /// The OS (default: the booted deployment's, or the only one).
    #[arg(long)]
    os: Option<String>,
    /// Print the deployment dropped as JSON.
    #[arg(long)]
    json: bool,
}

/// `slate admin finalize-staged`.
pub(super) fn finalize(s: &Sysroot, f: FinalizeStagedArgs) -> anyhow::Result<()> {
    let lock = s.lock()?;
    if f.boot {
        let checks = s.check_staged_at_boot(&lock, now())?;
        if f.json {
            return output::json(&checks);
        }
        if checks.is_empty() {
            eprintln!("nothing staged");
        }
        for c in &checks {
            match c {
                BootCheck::Kept { deployment, commit } => eprintln!(
                    "{deployment} ({}) is still staged: the last shutdown did not finalize it; \
                     it is complete and kept, to be finalized at this boot's shutdown",
                    &commit[..12.min(commit.len())]
                ),
                BootCheck::Dropped {
                    deployment,
                    problem,
                } => eprintln!(
                    "dropped the staged deployment {deployment}: {problem}; stage it again"
                ),
                BootCheck::Completed { deployment } => eprintln!(
                    "{deployment}: its finalization was cut short after its boot entry was \
                     written; completed"
                ),
            }
        }
        return Ok(());
    }
    let rep = s.finalize_staged(&lock, f.os.as_deref(), now())?;
    if f.json {
        return output::json(&rep);
    }
    for d in &rep.dropped {
        eprintln!(
            "dropped the staged deployment {}: {}; nothing finalized for it",
            d.deployment, d.problem
        );
    }
    for x in &rep.finalized {
        crate::outln!("{}", x.deployment)?;
        let follows = x
            .follows
            .as_deref()
            .map(|f| format!(", /etc merged from {f}"))
            .unwrap_or_default();
        match &x.entry {
            Some(e) => eprintln!(
                "finalized {} ({}): the default now, boot entry {e}{follows}",
                x.deployment,
                &x.commit[..12]
            ),
            None => eprintln!(
                "finalized {} ({}) without a boot entry (no kernel){follows}",
                x.deployment,
                &x.commit[..12]
            ),
        }
        for c in &x.etc_merge {
            eprintln!("conflict: {}", conflict_text(c));
        }
        for r in &x.removed {
            eprintln!("removed {r}");
        }
    }
    for d in &rep.completed {
        eprintln!(
            "{d}: its finalization was cut short after its boot entry was written; completed"
        );
    }
    super::maint::print_cleanup(&rep.repaired);
    if rep.finalized.is_empty() && rep.dropped.is_empty() && rep.completed.is_empty() {
        eprintln!("nothing staged");
    }
    Ok(())
}

/// `slate admin unstage`.
pub(super) fn unstage(s: &Sysroot, u: UnstageArgs) -> anyhow::Result<()> {
    let lock = s.lock()?;
    let name = s.unstage(&lock, u.os.as_deref())?;
    if u.json {
        return output::json(&serde_json::json!({ "unstaged": name }));
    }
    crate::outln!("{name}")?;
    eprintln!("dropped the staged deployment {name}: nothing changes at shutdown");
    Ok(())
}
