use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use clap::Args;
use slate_core::diff;
use slate_core::object::name;
use slate_core::store::ObjectRead;

use super::RepoArg;
use crate::output;

/// Show added (A), removed (D), modified (M) and metadata-only (m) paths
/// between two commits, or between a commit and a directory.
#[derive(Args)]
#[command(
    after_help = "Paths that are not printable UTF-8 are shown escaped (\\xHH, \\n, \\t, \\r, \\\\).\n\n\
    Examples:\n  slate diff --repo repo os/main^ os/main\n  \
    slate diff --stat os/main /srv/rootfs\n  slate diff --json os/main~3 os/main /etc\n  \
    slate diff --packages os/main^ os/main"
)]
pub struct DiffArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Only counts.
    #[arg(long)]
    stat: bool,
    /// The Debian packages added (A), removed (D) and changed (M, old
    /// and new version), from the images' dpkg databases.
    #[arg(long, conflicts_with_all = ["stat", "path"])]
    packages: bool,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
    /// The old side: a revision.
    a: String,
    /// The new side: a revision, or a directory (scanned without writing).
    b: OsString,
    /// Only this path.
    path: Option<OsString>,
}

pub fn run(a: DiffArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let ca = repo.rev_parse(&a.a)?;
    let ta = repo.read_commit(&ca)?.tree;
    if a.packages {
        return packages(&repo, &a, &ta);
    }
    let sub = a.path.as_ref().map(|p| p.as_bytes());
    let b_dir = Path::new(&a.b);
    let entries = if b_dir.is_dir() {
        output::counted("scanned", "files", |p| {
            diff::diff_dir(&repo, &ta, b_dir, sub, p)
        })?
    } else {
        let b_rev = a.b.to_str().ok_or_else(|| {
            anyhow::anyhow!(
                "{} is neither a directory nor a revision",
                name::escape(a.b.as_bytes())
            )
        })?;
        let cb = repo.rev_parse(b_rev)?;
        let tb = repo.read_commit(&cb)?.tree;
        diff::diff(&repo, &ta, &tb, sub, (&a.a, b_rev))?
    };
    if a.stat {
        let s = diff::stat(&entries);
        if a.json {
            return output::json(&s);
        }
        crate::outln!(
            "{} added, {} removed, {} modified, {} metadata only",
            s.added,
            s.removed,
            s.modified,
            s.metadata
        )?;
        return Ok(());
    }
    if a.json {
        return output::json(&entries);
    }
    let mut out = std::io::stdout().lock();
    for e in &entries {
        use std::io::Write;
        writeln!(
            out,
            "{}    {}{}",
            e.change.letter(),
            name::escape(&e.path),
            if e.dir && e.path != b"/" { "/" } else { "" }
        )?;
    }
    Ok(())
}

fn packages(
    repo: &slate_core::store::Repo,
    a: &DiffArgs,
    ta: &slate_core::hash::ObjectId,
) -> anyhow::Result<()> {
    use slate_core::compose::packages;
    let b_rev =
        a.b.to_str()
            .ok_or_else(|| anyhow::anyhow!("--packages compares two revisions"))?;
    let tb = repo.read_commit(&repo.rev_parse(b_rev)?)?.tree;
    let list =
        |t: &slate_core::hash::ObjectId, rev: &str| -> anyhow::Result<Vec<packages::Package>> {
            packages::of_tree(repo, t)?.ok_or_else(|| {
                anyhow::anyhow!(
                    "{rev}: the image has no dpkg database (/{})",
                    packages::STATUS
                )
            })
        };
    let c = packages::changes(&list(ta, &a.a)?, &list(&tb, b_rev)?);
    if a.json {
        return output::json(&c);
    }
    for p in &c.added {
        crate::outln!("A    {} {}", p.name, p.version)?;
    }
    for p in &c.removed {
        crate::outln!("D    {} {}", p.name, p.version)?;
    }
    for (o, n) in &c.changed {
        crate::outln!("M    {} {} -> {}", n.name, o.version, n.version)?;
    }
    Ok(())
}
