use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use slate_core::store::{Repo, RepoMode};

/// Create an empty repository.
#[derive(Args)]
#[command(after_help = "Example:\n  slate init --repo /srv/slate --mode archive")]
pub struct InitArgs {
    /// Directory to create (must be empty if it exists).
    #[arg(long, env = "SLATE_REPO", value_name = "DIR")]
    repo: PathBuf,
    /// bare: real owners and xattrs (root); bare-user: metadata in an xattr,
    /// for any user; archive: zstd-compressed, to serve over HTTP.
    #[arg(long, default_value = "bare-user", value_parser = ["bare", "bare-user", "archive"])]
    mode: String,
    /// Print `{"path", "mode"}` of the new repository as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: InitArgs) -> anyhow::Result<()> {
    let mode = RepoMode::from_name(&a.mode).context("unknown mode")?;
    let repo = Repo::init(&a.repo, mode)
        .with_context(|| format!("creating repository {}", a.repo.display()))?;
    if a.json {
        return crate::output::json(&serde_json::json!({
            "path": repo.path(),
            "mode": mode.to_string(),
        }));
    }
    eprintln!(
        "initialized empty {mode} repository in {}",
        repo.path().display()
    );
    Ok(())
}
