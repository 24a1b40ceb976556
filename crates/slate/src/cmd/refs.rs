use anyhow::Context;
use clap::Args;
use serde::Serialize;
use slate_core::store::{Error as StoreError, Transaction};

use super::RepoArg;
use crate::output;

/// List refs, or create or delete one.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate refs --repo repo\n  slate refs --create os/stable os/main\n  slate refs --delete os/old"
)]
pub struct RefsArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Create ref NAME at COMMIT (fails if it exists).
    #[arg(long, num_args = 2, value_names = ["NAME", "COMMIT"], conflicts_with = "delete")]
    create: Option<Vec<String>>,
    /// Delete ref NAME.
    #[arg(long, value_name = "NAME")]
    delete: Option<String>,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

/// Print the full commit id of a revision: a branch, a full id, a unique
/// prefix, with `^` (parent) or `~N` (N-th ancestor).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate rev-parse --repo repo os/main\n  slate rev-parse os/main^^\n  slate rev-parse 3fa9c1"
)]
pub struct RevParseArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
    rev: String,
}

/// Move a branch to another commit (typically back to an older one).
#[derive(Args)]
#[command(after_help = "Example:\n  slate reset --repo repo os/main os/main^")]
pub struct ResetArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Print `{"branch", "from", "to"}` as JSON instead of the new id.
    #[arg(long)]
    json: bool,
    branch: String,
    commit: String,
}

#[derive(Serialize)]
struct RefView {
    name: String,
    commit: String,
}

pub fn run_refs(a: RefsArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    if let Some(v) = a.create {
        let (name, rev) = (&v[0], &v[1]);
        slate_core::store::validate_ref_name(name)?;
        let id = repo.rev_parse(rev)?;
        let mut tx = Transaction::begin(&repo)?;
        if tx.read_ref(name)?.is_some() {
            anyhow::bail!(
                "ref {name:?} already exists (use `slate reset {name} {rev}` to move it)"
            );
        }
        tx.create_ref(name, id)?;
        tx.commit()?;
        eprintln!("created {name} at {id}");
        return Ok(());
    }
    if let Some(name) = a.delete {
        let mut tx = Transaction::begin(&repo)?;
        let old = tx
            .read_ref(&name)?
            .ok_or_else(|| StoreError::NoSuchRef { name: name.clone() })?;
        tx.delete_ref(&name, old)?;
        tx.commit()?;
        eprintln!("deleted {name} (was {old})");
        return Ok(());
    }
    let refs = repo.list_refs()?;
    if a.json {
        return output::json(
            &refs
                .iter()
                .map(|(n, id)| RefView {
                    name: n.clone(),
                    commit: id.to_hex(),
                })
                .collect::<Vec<_>>(),
        );
    }
    for (n, _) in refs {
        crate::outln!("{n}")?;
    }
    Ok(())
}

pub fn run_rev_parse(a: RevParseArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let id = repo.rev_parse(&a.rev)?;
    if a.json {
        return output::json(&serde_json::json!({ "rev": a.rev, "commit": id.to_hex() }));
    }
    crate::outln!("{id}")?;
    Ok(())
}

pub fn run_reset(a: ResetArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let id = repo.rev_parse(&a.commit)?;
    let mut tx = Transaction::begin(&repo)?;
    let old = tx
        .read_ref(&a.branch)?
        .with_context(|| format!("branch {:?} does not exist", a.branch))?;
    tx.set_ref(&a.branch, Some(old), id)?;
    tx.commit()?;
    if a.json {
        return output::json(&serde_json::json!({
            "branch": a.branch,
            "from": old.to_hex(),
            "to": id.to_hex(),
        }));
    }
    eprintln!("{}: {} -> {}", a.branch, old.short(12), id.short(12));
    crate::outln!("{id}")?;
    Ok(())
}
