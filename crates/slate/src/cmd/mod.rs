//! One module per verb: parse, call the library, render.

pub mod admin;
pub mod checkout;
pub mod commit;
pub mod diff;
pub mod export;
pub mod fsck;
pub mod init;
pub mod log;
pub mod ls;
pub mod man;
pub mod prune;
pub mod pull;
pub mod refs;
pub mod remote;
pub mod sysusers;
pub mod tmpfiles;

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

impl RepoArg {
    pub fn open(&self) -> anyhow::Result<Repo> {
        Repo::open(&self.repo)
            .with_context(|| format!("opening repository {}", self.repo.display()))
    }
}
