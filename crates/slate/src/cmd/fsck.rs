use std::time::Instant;

use clap::Args;
use slate_core::fsck;

use super::RepoArg;
use crate::output;

/// Check every object of a repository and every commit a ref reaches.
/// Exits non-zero when anything is corrupt or missing.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate fsck --repo /srv/os\n  slate fsck --delete-corrupt --json"
)]
pub struct FsckArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Move corrupt loose objects to REPO/corrupt/ so that a later pull
    /// fetches them again.
    #[arg(long)]
    delete_corrupt: bool,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: FsckArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let repo = a.repo.open()?;
    let report = output::counted("checked", "objects", |p| {
        fsck::fsck(&repo, a.delete_corrupt, p)
    })?;
    if a.json {
        output::json(&report)?;
    } else {
        for p in &report.problems {
            crate::outln!("{} {} object {}: {}", p.state, p.kind, p.id, p.detail)?;
            for u in &p.used_by {
                crate::outln!("  used by {u}")?;
            }
            if p.more_uses > 0 {
                crate::outln!("  ... and {} more uses", p.more_uses)?;
            }
        }
        for p in &report.pack_problems {
            crate::outln!("damaged pack {}: {}", p.pack, p.detail)?;
        }
        for (r, c) in &report.truncated_histories {
            crate::outln!(
                "note: history of {r} ends at {c} (its parent is not in this repository)"
            )?;
        }
        for id in &report.moved_aside {
            crate::outln!("moved aside: {id}")?;
        }
    }
    eprintln!(
        "fsck: {} objects, {} commits checked in {:.2} s: {}",
        report.objects_checked,
        report.commits_walked,
        started.elapsed().as_secs_f64(),
        if report.ok() {
            "no problems".to_string()
        } else {
            format!(
                "{} problems",
                report.problems.len() + report.pack_problems.len()
            )
        }
    );
    if !report.ok() {
        anyhow::bail!(
            "{} corrupt or missing objects and {} damaged packs in {}",
            report.problems.len(),
            report.pack_problems.len(),
            output::shown_path(repo.path())
        );
    }
    Ok(())
}
