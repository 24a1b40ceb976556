use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use slate_core::pull;
use slate_core::store::Repo;

use super::RepoArg;
use crate::output;

/// Copy commits (with their history) from another local repository of any
/// mode into this one, checking every object's hash on the way.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate pull-local --repo /srv/archive /build/repo os/main\n  \
    slate pull-local --depth 0 --dry-run /build/repo os/main os/stable"
)]
pub struct PullLocalArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Copy at most this many parents of each commit (default: all there are).
    #[arg(long)]
    depth: Option<usize>,
    /// Only print what would be copied.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
    /// The repository to copy from.
    src: PathBuf,
    /// Refs (set to the same commits here) or other revisions (objects only).
    #[arg(required = true)]
    refs: Vec<String>,
}

pub fn run(a: PullLocalArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let dest = a.repo.open()?;
    let src = Repo::open(&a.src)
        .with_context(|| format!("opening source repository {}", output::shown_path(&a.src)))?;
    let heads = pull::local_heads(&src, &a.refs)?;
    let mut plan = pull::plan(&src, &dest, &heads, a.depth)?;
    if a.dry_run {
        if a.json {
            return output::json(&plan);
        }
        crate::outln!(
            "would copy {} commits, {} trees, {} files",
            plan.commits.len(),
            plan.trees.len(),
            plan.files.len()
        )?;
        for r in &plan.refs {
            crate::outln!("would set {} to {}", r.name, r.new)?;
        }
        return Ok(());
    }
    let stats = output::counted("copied", "objects", |p| {
        pull::pull_local(&src, &dest, &mut plan, p)
    })
    .with_context(|| format!("pulling from {}", output::shown_path(&a.src)))?;
    if a.json {
        return output::json(&serde_json::json!({ "refs": plan.refs, "stats": stats }));
    }
    for r in &plan.refs {
        crate::outln!("{} {}", r.name, r.new)?;
    }
    eprintln!(
        "copied {} commits, {} trees, {} files ({:.1} MB) in {:.2} s",
        stats.commits,
        stats.trees,
        stats.files,
        stats.content_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
