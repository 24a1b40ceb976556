use std::path::PathBuf;
use std::time::Instant;

use std::os::unix::ffi::OsStringExt;

use anyhow::Context;
use clap::Args;
use slate_core::checkout::{self, CheckoutOptions};

use super::RepoArg;
use crate::output;

/// Check a commit out into a directory (hard links where possible).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate checkout --repo repo os/main /srv/os\n  \
    slate checkout --subpath /etc os/main /tmp/etc\n  slate checkout --user-mode --union os/main ~/os"
)]
pub struct CheckoutArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Check out over an existing DEST: keep its directories, replace files.
    #[arg(long)]
    union: bool,
    /// Check out only this path of the commit.
    #[arg(long, value_name = "PATH")]
    subpath: Option<std::ffi::OsString>,
    /// Ignore owners and non-`user.*` xattrs (for users who are not root).
    #[arg(long)]
    user_mode: bool,
    /// Copy every file instead of hard-linking it to the repository: a tree
    /// whose files may be changed in place. (Without it, a file outside
    /// /etc and /var is the repository's own inode: replace it, never
    /// write into it.)
    #[arg(long)]
    copy: bool,
    /// Print what was done as JSON on stdout.
    #[arg(long)]
    json: bool,
    commit: String,
    dest: PathBuf,
}

pub fn run(a: CheckoutArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let repo = a.repo.open()?;
    let id = repo.rev_parse(&a.commit)?;
    let opts = CheckoutOptions {
        union: a.union,
        subpath: a.subpath.map(|p| p.into_vec()),
        user_mode: a.user_mode,
        copy: a.copy,
        ..CheckoutOptions::default()
    };
    let stats = output::counted("placed", "paths", |p| {
        checkout::checkout(&repo, &id, &a.dest, &opts, p)
    })
    .with_context(|| {
        format!(
            "checking out {} at {}",
            id.short(12),
            output::shown_path(&a.dest)
        )
    })?;
    if a.json {
        return output::json(
            &serde_json::json!({ "commit": id.to_hex(), "dest": output::shown_path(&a.dest), "stats": stats }),
        );
    }
    eprintln!(
        "checked out {} at {}: {} dirs, {} hard links, {} copies{}; {:.2} s",
        id.short(12),
        output::shown_path(&a.dest),
        stats.dirs,
        stats.hardlinked,
        stats.copied,
        if stats.skipped_devices > 0 {
            format!(
                ", {} device nodes skipped (not root)",
                stats.skipped_devices
            )
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
