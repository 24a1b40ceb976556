//! `slate delta`: static deltas of an archive repository.

use anyhow::Context;
use clap::{Args, Subcommand};
use slate_core::delta::{self, Options};
use slate_core::hash::ObjectId;
use slate_core::store::{ObjectRead, Repo};

use super::GlobalRepoArg;
use crate::output;

/// Static deltas: one file per update that turns a commit machines have
/// into the one they want (changed files as patches against their old
/// version, new files compressed together). `slate pull` uses one when
/// the summary lists it; run `slate summary --update` after a change.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    slate delta generate --repo /srv/os --from os/main^ --to os/main\n  \
    slate delta generate --repo /srv/os --ref os/main --previous 3 --empty\n  \
    slate delta list --repo /srv/os\n  \
    slate delta show --repo /srv/os os/main^..os/main")]
pub struct DeltaArgs {
    #[command(flatten)]
    repo: GlobalRepoArg,
    #[command(subcommand)]
    command: DeltaCommand,
}

#[derive(Subcommand)]
enum DeltaCommand {
    /// Make deltas: --from A --to B, --empty --to B (a full image), or
    /// --ref REF --previous N (to REF's commit from each of its N
    /// previous ones).
    #[command(
        after_help = "Examples:\n  slate delta generate --repo /srv/os --from os/main^ --to os/main\n  \
        slate delta generate --repo /srv/os --ref os/main --previous 3 --empty\n  \
        slate summary --repo /srv/os --update   (publish them)"
    )]
    Generate(GenerateArgs),
    /// List the deltas.
    #[command(
        after_help = "Examples:\n  slate delta list --repo /srv/os\n  slate delta list --repo /srv/os --json"
    )]
    List {
        /// Print the result as JSON on standard output (one document;
        /// messages stay on standard error) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show what a delta holds: FROM..TO, or TO alone for the empty delta.
    #[command(
        after_help = "Examples:\n  slate delta show --repo /srv/os os/main^..os/main\n  slate delta show --repo /srv/os --json os/main"
    )]
    Show {
        delta: String,
        /// Print the result as JSON on standard output (one document;
        /// messages stay on standard error) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a delta: FROM..TO, or TO alone for the empty delta.
    #[command(after_help = "Example:\n  slate delta delete --repo /srv/os os/main^..os/main")]
    Delete { delta: String },
    /// Store the objects of a delta file (carried on a disk, say), every
    /// one checked; with --ref, set a ref to its commit once the commit
    /// is complete.
    #[command(
        after_help = "Example:\n  slate delta apply --repo /srv/os /media/usb/update.delta --ref os/main"
    )]
    Apply {
        file: std::path::PathBuf,
        /// The ref to set (created, or moved from the commit it had).
        #[arg(long = "ref", value_name = "REF")]
        ref_name: Option<String>,
        /// Print the result as JSON on standard output (one document;
        /// messages stay on standard error) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct GenerateArgs {
    /// The commit the delta starts from (a revision).
    #[arg(long, value_name = "REV", conflicts_with = "previous")]
    from: Option<String>,
    /// The commit it brings (a revision).
    #[arg(long, value_name = "REV", conflicts_with = "ref_name")]
    to: Option<String>,
    /// Also (or only, with --to) the delta from nothing: a full image.
    #[arg(long)]
    empty: bool,
    /// Make deltas to this ref's commit...
    #[arg(long = "ref", value_name = "REF", requires = "previous")]
    ref_name: Option<String>,
    /// ...from each of its N previous commits.
    #[arg(long, value_name = "N")]
    previous: Option<usize>,
    /// zstd level of patches against old files (1-22).
    #[arg(long, default_value_t = Options::default().patch_level, value_parser = clap::value_parser!(i32).range(1..=22))]
    patch_level: i32,
    /// zstd level of blocks of new files (1-22).
    #[arg(long, default_value_t = Options::default().block_level, value_parser = clap::value_parser!(i32).range(1..=22))]
    block_level: i32,
    /// MiB of new files compressed together in one block (larger: smaller
    /// deltas, less parallel work).
    #[arg(long, default_value_t = (Options::default().block_size >> 20) as u16, value_name = "MIB", value_parser = clap::value_parser!(u16).range(1..=1024))]
    block_size: u16,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

fn resolve(repo: &Repo, rev: &str) -> anyhow::Result<ObjectId> {
    let id = repo.rev_parse(rev)?;
    repo.read_commit(&id)
        .with_context(|| format!("{rev} is not a commit of {}", repo.path().display()))?;
    Ok(id)
}

/// `FROM..TO` or `TO`.
fn parse_range(repo: &Repo, s: &str) -> anyhow::Result<(Option<ObjectId>, ObjectId)> {
    Ok(match s.split_once("..") {
        Some((f, t)) => (Some(resolve(repo, f)?), resolve(repo, t)?),
        None => (None, resolve(repo, s)?),
    })
}

fn short(id: Option<&ObjectId>) -> String {
    id.map(|i| i.short(12)).unwrap_or_else(|| "empty".into())
}

pub fn run(a: DeltaArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    match a.command {
        DeltaCommand::Generate(g) => generate(&repo, g),
        DeltaCommand::List { json } => {
            let all = delta::list(&repo)?;
            if json {
                return output::json(&all);
            }
            for d in &all {
                crate::outln!(
                    "{}..{} {} bytes {}",
                    short(d.from.as_ref()),
                    d.to.short(12),
                    d.size,
                    d.path
                )?;
            }
            Ok(())
        }
        DeltaCommand::Show { delta: spec, json } => {
            let (from, to) = parse_range(&repo, &spec)?;
            let path = repo.path().join(delta::rel_path(from.as_ref(), &to));
            if !path.exists() {
                anyhow::bail!(
                    "no delta {}..{} in {} (make it with `slate delta generate`)",
                    short(from.as_ref()),
                    to.short(12),
                    repo.path().display()
                );
            }
            let d = delta::describe(&path)?;
            if json {
                return output::json(&d);
            }
            crate::outln!(
                "from    {}",
                d.from.map(|f| f.to_hex()).unwrap_or("(empty)".into())
            )?;
            crate::outln!("to      {}", d.to)?;
            crate::outln!("size    {} bytes", d.size)?;
            crate::outln!("trees   {}", d.trees)?;
            crate::outln!(
                "files   {} ({} patched, the rest in {} blocks and {} large files)",
                d.files,
                d.patched,
                d.blocks,
                d.large
            )?;
            Ok(())
        }
        DeltaCommand::Apply {
            file,
            ref_name,
            json,
        } => {
            let started = std::time::Instant::now();
            let a = output::counted("stored", "objects", |p| delta::apply(&repo, &file, p))?;
            if let Some(r) = &ref_name {
                let missing = missing_below(&repo, &a.to)?;
                if missing > 0 {
                    anyhow::bail!(
                        "commit {} lacks {missing} objects (the delta starts from a commit \
                         this repository does not hold whole): {r} not set",
                        a.to
                    );
                }
                let mut tx = slate_core::store::Transaction::begin(&repo)?;
                let old = tx.read_ref(r)?;
                tx.set_ref(r, old, a.to)?;
                tx.commit()?;
            }
            if json {
                return output::json(&a);
            }
            crate::outln!("{}", a.to)?;
            eprintln!(
                "stored {} ({} files whole, {} patched, {} trees; {:.1} MB of files) in {:.2} s{}",
                a.to.short(12),
                a.files,
                a.patched,
                a.trees,
                a.content_bytes as f64 / 1e6,
                started.elapsed().as_secs_f64(),
                ref_name.map(|r| format!("; {r} set")).unwrap_or_default()
            );
            Ok(())
        }
        DeltaCommand::Delete { delta: spec } => {
            let (from, to) = parse_range(&repo, &spec)?;
            if !delta::delete(&repo, from.as_ref(), &to)? {
                anyhow::bail!(
                    "no delta {}..{} in {}",
                    short(from.as_ref()),
                    to.short(12),
                    repo.path().display()
                );
            }
            eprintln!(
                "deleted delta {}..{}; run `slate summary --update` to publish the change",
                short(from.as_ref()),
                to.short(12)
            );
            Ok(())
        }
    }
}

fn generate(repo: &Repo, g: GenerateArgs) -> anyhow::Result<()> {
    let mut pairs: Vec<(Option<ObjectId>, ObjectId)> = Vec::new();
    let to = match (&g.to, &g.ref_name) {
        (Some(t), _) => resolve(repo, t)?,
        (None, Some(r)) => resolve(repo, r)?,
        (None, None) => anyhow::bail!("say which commit the delta brings: --to REV or --ref REF"),
    };
    if let Some(f) = &g.from {
        pairs.push((Some(resolve(repo, f)?), to));
    }
    if let Some(n) = g.previous {
        let mut next = repo.read_commit(&to)?.parent;
        for _ in 0..n {
            let Some(p) = next else { break };
            if !repo.has_object(slate_core::object::ObjectType::Commit, &p)? {
                break;
            }
            pairs.push((Some(p), to));
            next = repo.read_commit(&p)?.parent;
        }
    }
    if g.empty {
        pairs.push((None, to));
    }
    if pairs.is_empty() {
        anyhow::bail!("nothing to make: give --from REV, --empty or --previous N");
    }
    let opts = Options {
        patch_level: g.patch_level,
        block_level: g.block_level,
        block_size: usize::from(g.block_size) << 20,
    };
    let mut made = Vec::new();
    for (from, to) in pairs {
        let started = std::time::Instant::now();
        let d = output::counted("encoded", "files", |p| {
            delta::generate(repo, from, to, &opts, p)
        })
        .with_context(|| {
            format!(
                "making the delta {}..{}",
                short(from.as_ref()),
                to.short(12)
            )
        })?;
        if !g.json {
            crate::outln!("{}", d.path)?;
            eprintln!(
                "delta {}..{}: {:.2} MB ({} files whole in {:.2} MB, {} patched in {:.2} MB, {} trees in {:.2} MB; {:.1} MB of files) in {:.2} s",
                short(from.as_ref()),
                to.short(12),
                d.size as f64 / 1e6,
                d.files,
                d.whole_bytes as f64 / 1e6,
                d.patched,
                d.patch_bytes as f64 / 1e6,
                d.trees,
                d.tree_bytes as f64 / 1e6,
                d.content_bytes as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
        }
        made.push(d);
    }
    if g.json {
        return output::json(&made);
    }
    eprintln!("run `slate summary --update` to publish them");
    Ok(())
}

/// Objects below `commit` that the repository lacks.
fn missing_below(repo: &Repo, commit: &ObjectId) -> anyhow::Result<usize> {
    let tree = repo.read_commit(commit)?.tree;
    Ok(slate_core::walk::missing_below(repo, &[tree])?.len())
}
