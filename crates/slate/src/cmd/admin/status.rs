//! `status` as text.

use slate_core::sysroot::{BadCommit, EntryState, StagedDeployment, Status};

use crate::output;

/// `COMMIT (VERSION) went bad on this machine on DATE; waiting for a newer one`.
pub(super) fn bad_text(b: &BadCommit) -> String {
    let version = if b.version.is_empty() {
        String::new()
    } else {
        format!(" ({})", b.version)
    };
    format!(
        "{}{version} went bad on this machine on {}; waiting for a newer one (the boot \
         entry of {} ran out of tries, never blessed)",
        b.commit,
        output::date(b.since),
        b.deployment
    )
}

fn print_staged(st: &StagedDeployment) -> anyhow::Result<()> {
    crate::outln!("  staged {}/{}", st.os, st.id)?;
    crate::outln!("    commit   {}", st.commit)?;
    if let Some(o) = &st.origin {
        crate::outln!("    origin   {o}")?;
    }
    match (st.pretty_name.is_empty(), st.version.is_empty()) {
        (false, _) => crate::outln!("    os       {}", st.pretty_name)?,
        (true, false) => crate::outln!("    version  {}", st.version)?,
        (true, true) => {}
    }
    crate::outln!("    staged   {}", output::date(st.staged_at))?;
    if let Some(t) = st.kept_at_boot {
        crate::outln!(
            "    note     the shutdown before the boot of {} did not finalize it: kept, \
             finalized at the next shutdown",
            output::date(t)
        )?;
    }
    match &st.problem {
        Some(p) => {
            crate::outln!("    state    incomplete: {p} (dropped at the next shutdown or boot)")?
        }
        None => crate::outln!("    state    complete: the default from the next shutdown on")?,
    }
    Ok(())
}

pub(super) fn print_status(st: &Status) -> anyhow::Result<()> {
    if st.deployments.is_empty() {
        eprintln!("no deployments in {}", st.sysroot);
    }
    for d in &st.deployments {
        let mark = if d.default { '*' } else { ' ' };
        let booted = if d.booted { " (booted)" } else { "" };
        crate::outln!("{mark} {} {}/{}{booted}", d.index, d.os, d.id)?;
        crate::outln!("    commit   {}", d.commit)?;
        if let Some(o) = &d.origin {
            crate::outln!("    origin   {o}")?;
        }
        if !d.pretty_name.is_empty() {
            crate::outln!("    os       {}", d.pretty_name)?;
        }
        if let Some(n) = &d.name {
            crate::outln!("    name     {n}")?;
        }
        for e in &d.extensions {
            crate::outln!(
                "    ext      {} {} {}",
                output::one_line(&e.name),
                output::short_id(&e.commit),
                output::one_line(if e.version.is_empty() {
                    "-"
                } else {
                    &e.version
                })
            )?;
        }
        if let Some(v) = &d.image_version {
            crate::outln!("    version  {}", output::one_line(v))?;
        }
        let entry = match (d.entry_state, d.tries_left, &d.entry) {
            (Some(EntryState::Good), _, Some(f)) => format!("good ({f})"),
            (Some(EntryState::Pending), Some(t), Some(f)) => {
                format!("pending, {t} tries left ({f})")
            }
            (Some(EntryState::Bad), _, Some(f)) => format!("bad: no tries left ({f})"),
            _ => "none (no kernel)".to_string(),
        };
        crate::outln!("    entry    {entry}")?;
        if let Some(k) = &d.kernel {
            crate::outln!("    kernel   {k}")?;
        }
        if let Some(h) = &d.usr_root_hash {
            crate::outln!("    usr      verity, root hash {h}")?;
        }
        if !d.kargs.is_empty() {
            crate::outln!("    kargs    {}", d.kargs.join(" "))?;
        }
        if d.pinned {
            crate::outln!("    pinned")?;
        }
        if let Some(x) = &d.drift {
            crate::outln!(
                "    drift    /etc: {} paths changed, /var: {} paths undeclared \
                 (slate admin config-diff)",
                x.etc,
                x.var
            )?;
        }
        if d.etc_merge.is_empty() {
            // A record written before each conflict said what happened.
            for c in &d.etc_conflicts {
                crate::outln!("    conflict {c} (kept this machine's)")?;
            }
        }
        for c in &d.etc_merge {
            crate::outln!("    conflict {}", super::deploy::conflict_text(c))?;
        }
    }
    for x in &st.staged {
        print_staged(x)?;
    }
    for b in &st.bad_commits {
        crate::outln!("  bad commit of {}: {}", b.os, bad_text(&b.bad))?;
    }
    for e in &st.stray_entries {
        eprintln!("stray boot entry {e} (remove it with `slate admin cleanup`)");
    }
    Ok(())
}
