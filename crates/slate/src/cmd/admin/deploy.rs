//! `deploy` and `upgrade` once the commit is known: the plan, the
//! warnings (modes, no kernel), `--dry-run`, the deployment and its report.

use slate_core::sysroot::{self, DeployOptions, DeployPlan, ImageChange, Sysroot};

use super::{mode_name, DeployCommon};
use crate::output;

/// A deploy's plan told (and its warnings), then, unless `--dry-run`,
/// applied and its result told. The caller holds the sysroot's lock.
pub(super) fn apply(
    s: &Sysroot,
    plan: DeployPlan,
    opts: &DeployOptions,
    c: &DeployCommon,
) -> anyhow::Result<()> {
    let commit = plan.commit;
    // The modes the image's manifest asked for ([deploy], kept in the
    // commit's metadata by compose) against the OS's.
    let cfg = match &plan.os_config {
        Some(c) => Ok(c.clone()),
        None => s.os_config(&plan.os),
    };
    if let Some(c) = &plan.os_config {
        eprintln!(
            "OS {}'s first deployment: /etc {}, /var {}, as the image asks",
            plan.os,
            mode_name(&c.etc),
            mode_name(&c.var)
        );
    }
    if let (Ok(meta), Ok(cfg)) = (
        slate_core::store::ObjectRead::read_commit(s.repo(), &commit).map(|c| c.metadata),
        cfg,
    ) {
        let image = slate_core::image_meta::ImageDeploy::read(&meta).unwrap_or_else(|e| {
            eprintln!("warning: {e}");
            slate_core::image_meta::ImageDeploy::default()
        });
        for (what, asked, has) in [
            ("etc", image.etc.map(|m| m.to_string()), cfg.etc.to_string()),
            ("var", image.var.map(|m| m.to_string()), cfg.var.to_string()),
        ] {
            if let Some(asked) = asked.filter(|a| *a != has) {
                eprintln!(
                    "warning: the image asks for a {asked} /{what}; OS {} keeps it {has} \
                     (`slate admin os-init {} --{what} {asked}` to follow the image)",
                    plan.os, plan.os
                );
            }
        }
    }
    if plan.kernel.is_none() {
        eprintln!(
            "warning: commit {commit} has no kernel (/usr/lib/modules/KVER/vmlinuz): \
             deployed without a boot entry"
        );
    }
    if c.dry_run {
        if c.json {
            return output::json(&serde_json::json!({ "dry_run": true, "plan": plan }));
        }
        let verb = if opts.stage { "stage" } else { "deploy" };
        crate::outln!("would {verb} {commit} as {}/{}", plan.os, plan.id)?;
        if let Some(k) = &plan.kernel {
            crate::outln!("kernel {} ({})", k.version, k.dir_name())?;
        }
        crate::outln!("kernel arguments: {}", plan.kargs.join(" "))?;
        if let Some(f) = &plan.follows {
            crate::outln!("follows {f} (its /etc changes and kernel arguments)")?;
        }
        for r in &plan.removes {
            crate::outln!("would remove {r}")?;
        }
        for e in &plan.extensions {
            crate::outln!("extension {} {}", e.name, output::short_id(&e.commit))?;
        }
        for e in &plan.dropped_extensions {
            crate::outln!("would leave out extension {}: {}", e.name, e.reason)?;
        }
        crate::outln!(
            "needs {} in the sysroot, {} in the boot directory",
            sysroot::human_bytes(plan.sysroot_bytes),
            sysroot::human_bytes(plan.boot_bytes)
        )?;
        return Ok(());
    }
    let started = std::time::Instant::now();
    if opts.stage {
        return stage(s, plan, opts, c, started);
    }
    let done = output::counted("deploying", "paths", |p| s.deploy(plan, opts, p))?;
    if c.json {
        return output::json(&done);
    }
    let r = &done.record;
    crate::outln!("{}", r.name())?;
    match &done.entry {
        Some(e) => eprintln!(
            "deployed {} ({}) as the default: boot entry {e}; {:.2} s",
            r.name(),
            &r.commit[..12],
            started.elapsed().as_secs_f64()
        ),
        None => eprintln!(
            "deployed {} ({}) without a boot entry; {:.2} s",
            r.name(),
            &r.commit[..12],
            started.elapsed().as_secs_f64()
        ),
    }
    for x in &done.removed {
        eprintln!("removed {x}");
    }
    for x in &done.unstaged {
        eprintln!("dropped the staged deployment {x} (this deploy replaces it)");
    }
    for e in &r.extensions {
        eprintln!(
            "extension {} {} ({}) goes with it",
            e.name,
            output::short_id(&e.commit),
            if e.version.is_empty() {
                "-"
            } else {
                &e.version
            }
        );
    }
    for e in &done.plan.dropped_extensions {
        eprintln!(
            "left out extension {} (--drop-incompatible): {}",
            e.name, e.reason
        );
    }
    for c in &r.etc_merge {
        eprintln!("conflict: {}", conflict_text(c));
    }
    Ok(())
}

/// The plan staged: no boot entry until `finalize-staged` (at shutdown).
fn stage(
    s: &Sysroot,
    plan: DeployPlan,
    opts: &DeployOptions,
    c: &DeployCommon,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    let st = output::counted("staging", "paths", |p| s.stage(plan, opts, p))?;
    if c.json {
        return output::json(&st);
    }
    crate::outln!("{}/{}", st.os, st.id)?;
    eprintln!(
        "staged {}/{} ({}); it becomes the default at shutdown (slate-finalize-staged.service, \
         or `slate admin finalize-staged`), /etc merged then; {:.2} s",
        st.os,
        st.id,
        &st.commit[..12],
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What happened at a path of `/etc` changed here and in the new image.
pub(super) fn conflict_text(c: &sysroot::EtcConflict) -> String {
    let p = &c.path;
    let what = match c.image {
        ImageChange::Changed => format!("{p} was changed here and in the new image"),
        ImageChange::Removed => {
            format!("{p} was changed here and removed by the new image")
        }
        ImageChange::FolderMetadata => format!(
            "the folder {p} had its owner, mode or xattrs changed here and in the new image"
        ),
        ImageChange::Below => format!(
            "{p} is a folder in the new image, which changed what is in it; here it is \
             no longer a folder (a symlink or a file)"
        ),
    };
    match &c.saved {
        Some(s) => format!("{what}: kept this machine's; the image's is {s}"),
        None if c.image == ImageChange::Below => {
            format!("{what}: kept this machine's; the image's files below it are not deployed")
        }
        None if c.image == ImageChange::Removed || c.image == ImageChange::FolderMetadata => {
            format!("{what}: kept this machine's")
        }
        None => format!("{what}: kept this machine's (the image's is not a file: not saved)"),
    }
}
