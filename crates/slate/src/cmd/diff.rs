use std::path::Path;

use anyhow::Context;
use clap::Args;
use slate_core::diff::{self, Change};
use slate_core::hash::ObjectId;
use slate_core::object::EntryKind;
use slate_core::store::Repo;

use crate::cli::RepoArg;
use crate::output;

/// Show added (A), removed (D), modified (M) and metadata-only (m) paths
/// between two commits, or between a commit and a directory.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate diff --repo repo os/main^ os/main\n  \
    slate diff --stat os/main /srv/rootfs\n  slate diff --json os/main~3 os/main /etc"
)]
pub struct DiffArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Only counts.
    #[arg(long)]
    stat: bool,
    #[arg(long)]
    json: bool,
    /// The old side: a revision.
    a: String,
    /// The new side: a revision, or a directory (scanned without writing).
    b: String,
    /// Only this path.
    path: Option<String>,
}

fn subtree(repo: &Repo, root: &ObjectId, path: &str, side: &str) -> anyhow::Result<ObjectId> {
    match repo.lookup_path(root, path)? {
        Some((EntryKind::Dir, id)) => Ok(id),
        Some((EntryKind::File, _)) => anyhow::bail!("{side}: {path:?} is not a directory"),
        None => anyhow::bail!("{side}: no path {path:?}"),
    }
}

pub fn run(a: DiffArgs) -> anyhow::Result<()> {
    let b_is_dir = Path::new(&a.b).is_dir();
    let repo = if b_is_dir {
        Repo::open_hash_only(&a.repo.repo)?
    } else {
        a.repo.open()?
    };
    let ca = repo.rev_parse(&a.a)?;
    let ta = repo.read_commit(&ca)?.tree;
    let tb = if b_is_dir {
        slate_core::commit::commit_dir_tree(&repo, Path::new(&a.b), Default::default())
            .with_context(|| format!("scanning {}", a.b))?
            .root
    } else {
        let cb = repo.rev_parse(&a.b)?;
        repo.read_commit(&cb)?.tree
    };
    let base = a
        .path
        .as_deref()
        .map(|p| format!("/{}", p.trim_matches('/')))
        .filter(|p| p != "/");
    let (ta, tb, base) = match &base {
        Some(p) => (
            subtree(&repo, &ta, p, &a.a)?,
            subtree(&repo, &tb, p, &a.b)?,
            p.clone(),
        ),
        None => (ta, tb, String::new()),
    };
    let entries = diff::diff_trees(&repo, &ta, &tb, &base)?;
    let count = |c: Change| entries.iter().filter(|e| e.change == c).count();
    if a.json {
        if a.stat {
            return output::json(&serde_json::json!({
                "added": count(Change::Added), "removed": count(Change::Removed),
                "modified": count(Change::Modified), "metadata": count(Change::Metadata),
            }));
        }
        return output::json(&entries);
    }
    if a.stat {
        println!(
            "{} added, {} removed, {} modified, {} metadata only",
            count(Change::Added),
            count(Change::Removed),
            count(Change::Modified),
            count(Change::Metadata)
        );
        return Ok(());
    }
    for e in &entries {
        println!(
            "{}    {}{}",
            e.change.letter(),
            e.path,
            if e.dir { "/" } else { "" }
        );
    }
    Ok(())
}
