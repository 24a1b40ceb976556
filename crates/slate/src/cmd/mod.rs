//! One module per verb: parse, call the library, render.

pub mod admin;
#[cfg(feature = "remote")]
pub mod agent;
pub mod checkout;
pub mod commit;
pub mod completions;
pub mod compose;
pub mod delta;
pub mod diff;
pub mod export;
#[cfg(feature = "remote")]
pub mod fleet;
pub mod fsck;
pub mod init;
pub mod log;
pub mod ls;
pub mod man;
#[cfg(feature = "remote")]
pub mod net;
pub mod prune;
pub mod pull;
pub mod refs;
pub mod remote;
pub mod run;
pub mod sysusers;
pub mod tmpfiles;
pub mod vm;

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use slate_core::store::Repo;

/// `--repo`, shared by every command that works on a repository.
#[derive(Args, Clone)]
pub struct RepoArg {
    /// Repository directory.
    #[arg(long, env = "SLATE_REPO", value_name = "DIR")]
    pub repo: PathBuf,
}

/// `--repo` of a command with subcommands: accepted before or after the
/// subcommand's name (`slate delta --repo R list`, `slate delta list --repo R`).
#[derive(Args, Clone)]
pub struct GlobalRepoArg {
    /// Repository directory.
    #[arg(long, env = "SLATE_REPO", value_name = "DIR", global = true)]
    pub repo: Option<PathBuf>,
}

impl GlobalRepoArg {
    pub fn open(&self) -> anyhow::Result<Repo> {
        let Some(repo) = &self.repo else {
            anyhow::bail!("which repository? give --repo DIR (or set SLATE_REPO)");
        };
        RepoArg { repo: repo.clone() }.open()
    }
}

impl RepoArg {
    pub fn open(&self) -> anyhow::Result<Repo> {
        Repo::open(&self.repo)
            .with_context(|| format!("opening repository {}", self.repo.display()))
    }
}
