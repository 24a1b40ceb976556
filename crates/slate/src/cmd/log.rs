use clap::Args;
use serde::Serialize;
use slate_core::hash::ObjectId;
use slate_core::object::Commit;
use slate_core::store::{Error as StoreError, ObjectRead, Repo};

use super::RepoArg;
use crate::output;

/// Show the history of a branch or commit, newest first.
#[derive(Args)]
#[command(
    after_help = "Example:\n  slate log --repo repo os/main\n  slate log --json -n 1 os/main"
)]
pub struct LogArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// At most this many commits.
    #[arg(long, short = 'n')]
    max_count: Option<usize>,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
    /// Branch, commit id, or unique prefix.
    rev: String,
}

/// Show one commit with its metadata, and the image's Debian packages
/// when it has a dpkg database.
#[derive(Args)]
#[command(after_help = "Example:\n  slate show --repo repo os/main^")]
pub struct ShowArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
    rev: String,
}

#[derive(Serialize)]
pub struct CommitView {
    id: String,
    parent: Option<String>,
    tree: String,
    timestamp: i64,
    date: String,
    subject: String,
    body: String,
    metadata: std::collections::BTreeMap<String, String>,
    /// The image's name (`usr:VENDOR:ARCH:VERSION`), when its metadata
    /// gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// The image's Debian packages, when it has a dpkg database.
    #[serde(skip_serializing_if = "Option::is_none")]
    packages: Option<Vec<slate_core::compose::packages::Package>>,
}

impl CommitView {
    fn new(id: &ObjectId, c: Commit) -> Self {
        CommitView {
            id: id.to_hex(),
            parent: c.parent.map(|p| p.to_hex()),
            tree: c.tree.to_hex(),
            timestamp: c.timestamp,
            date: output::date(c.timestamp),
            subject: c.subject,
            body: c.body,
            name: slate_core::image_name::of_metadata(&c.metadata),
            metadata: c.metadata,
            packages: None,
        }
    }

    fn print(&self, with_metadata: bool) -> anyhow::Result<()> {
        crate::outln!("commit {}", self.id)?;
        if let Some(p) = &self.parent {
            crate::outln!("Parent: {p}")?;
        }
        crate::outln!("Date:   {}", self.date)?;
        if let Some(n) = &self.name {
            crate::outln!("Name:   {n}")?;
        }
        if with_metadata {
            crate::outln!("Tree:   {}", self.tree)?;
            for (k, v) in &self.metadata {
                crate::outln!("Meta:   {k}={v}")?;
            }
        }
        crate::outln!()?;
        if !self.subject.is_empty() {
            crate::outln!("    {}", self.subject)?;
        }
        if !self.body.is_empty() {
            crate::outln!()?;
            for l in self.body.lines() {
                crate::outln!("    {l}")?;
            }
        }
        if let Some(p) = &self.packages {
            crate::outln!()?;
            crate::outln!("Packages: {}", p.len())?;
            for p in p {
                crate::outln!("    {} {} {}", p.name, p.version, p.architecture)?;
            }
        }
        crate::outln!()
    }
}

fn history(repo: &Repo, start: ObjectId, max: usize) -> anyhow::Result<(Vec<CommitView>, bool)> {
    let mut out = Vec::new();
    let mut next = Some(start);
    while let Some(id) = next {
        if out.len() >= max {
            break;
        }
        match repo.read_commit(&id) {
            Ok(c) => {
                next = c.parent;
                out.push(CommitView::new(&id, c));
            }
            // A parent that is not here (shallow history) ends the log.
            Err(StoreError::Missing { .. }) if !out.is_empty() => return Ok((out, true)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok((out, false))
}

pub fn run_log(a: LogArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let id = repo.rev_parse(&a.rev)?;
    let (commits, truncated) = history(&repo, id, a.max_count.unwrap_or(usize::MAX))?;
    if a.json {
        return output::json(&commits);
    }
    for c in &commits {
        c.print(false)?;
    }
    if truncated {
        eprintln!("(history continues with a parent that is not in this repository)");
    }
    Ok(())
}

pub fn run_show(a: ShowArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let id = repo.rev_parse(&a.rev)?;
    let c = repo.read_commit(&id)?;
    let packages = slate_core::compose::packages::of_tree(&repo, &c.tree)?;
    let mut view = CommitView::new(&id, c);
    view.packages = packages;
    if a.json {
        return output::json(&view);
    }
    view.print(true)
}
