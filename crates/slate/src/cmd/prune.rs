use anyhow::Context;
use clap::Args;
use slate_core::prune::{self, PruneOptions};

use super::RepoArg;
use crate::output;

/// Delete objects no commit (or, with --refs-only / --depth, no ref) reaches.
#[derive(Args)]
#[command(after_help = "Examples:\n  slate prune --repo /srv/os --dry-run\n  \
    slate prune --depth 2 --keep-younger-than 30d\n  slate prune --refs-only --json")]
pub struct PruneArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Keep at most N parents of each ref's commit (implies --refs-only).
    #[arg(long, value_name = "N")]
    depth: Option<usize>,
    /// With --depth or --refs-only: also keep commits younger than this
    /// (e.g. 30d, 12h, "2weeks").
    #[arg(long, value_name = "DURATION")]
    keep_younger_than: Option<String>,
    /// Only refs are roots: commits no ref reaches are deleted too.
    #[arg(long)]
    refs_only: bool,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: PruneArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let keep = match &a.keep_younger_than {
        Some(d) => {
            let dur = humantime::parse_duration(d).with_context(|| {
                format!("--keep-younger-than {d:?}: expected a duration like 30d or 12h")
            })?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            Some(now.saturating_sub(dur).as_secs() as i64)
        }
        None => None,
    };
    let opts = PruneOptions {
        depth: a.depth,
        keep_younger_than: keep,
        refs_only: a.refs_only,
    };
    let plan = output::counted("deleted", "objects", |p| {
        prune::prune(&repo, &opts, a.dry_run, p)
    })?;
    if a.json {
        return output::json(&serde_json::json!({ "dry_run": a.dry_run, "plan": plan }));
    }
    let verb = if a.dry_run { "would delete" } else { "deleted" };
    if a.dry_run {
        for (kind, id) in &plan.delete {
            crate::outln!("{kind} {id}")?;
        }
        for p in &plan.delete_packs {
            crate::outln!("pack {p}")?;
        }
    }
    eprintln!(
        "{verb} {} objects and {} packs, freeing {:.1} MB; kept {} commits{}",
        plan.delete.len(),
        plan.delete_packs.len(),
        plan.freed_bytes as f64 / 1e6,
        plan.commits_kept,
        if plan.kept_in_packs > 0 {
            format!(
                " ({} unreachable objects stay in packs still in use)",
                plan.kept_in_packs
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
