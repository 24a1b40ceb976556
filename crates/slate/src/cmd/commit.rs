use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use slate_core::commit::oci::{self, ImageRef};
use slate_core::commit::{self, CommitOptions, ParentSpec, Source};
use slate_core::progress::Progress;

use super::RepoArg;
use crate::output;

/// Commit a directory, a tar archive or a container image to a branch;
/// prints the commit id.
#[derive(Args)]
#[command(
    after_help = "A container image (--from) is committed with its layers applied in order \
    (whiteouts and opaque directories as the OCI image spec says), every blob checked against \
    its digest; its labels, digest and creation date are recorded as oci.* metadata, and its \
    creation date is the commit's time unless --timestamp or SOURCE_DATE_EPOCH say otherwise.\n\n\
    Examples:\n  slate commit --repo repo --branch os/main -s 'v1' rootfs/\n  \
    SOURCE_DATE_EPOCH=1700000000 slate commit --branch os/main --add-metadata version=1.2 image.tar.zst\n  \
    tar -C rootfs -c . | slate commit --branch os/main -\n  \
    podman save --format oci-archive -o os.tar localhost/os && \
    slate commit --branch os/main --from oci-archive:os.tar"
)]
pub struct CommitArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Branch to move to the new commit.
    #[arg(long, short = 'b')]
    branch: String,
    /// One-line subject.
    #[arg(long, short = 's', default_value = "")]
    subject: String,
    /// Body text.
    #[arg(long = "body", short = 'm', default_value = "")]
    body: String,
    /// Commit time: seconds since the epoch or an RFC 3339 date. Defaults
    /// to SOURCE_DATE_EPOCH when set, else now.
    #[arg(long)]
    timestamp: Option<String>,
    /// Metadata to record (repeatable).
    #[arg(long = "add-metadata", value_name = "KEY=VALUE")]
    metadata: Vec<String>,
    /// Parent: `auto` (the branch's current commit), `none`, or a revision.
    #[arg(long, default_value = "auto")]
    parent: String,
    /// Make no commit when the branch's commit has the same tree, subject,
    /// body and metadata; print that commit's id.
    #[arg(long)]
    skip_if_unchanged: bool,
    /// Print the commit id, its parent and what the scan found as JSON
    /// instead of the bare id.
    #[arg(long)]
    json: bool,
    /// A container image instead of SOURCE: `oci-archive:FILE[:TAG]`,
    /// `docker-archive:FILE` (as `podman save` writes them) or
    /// `oci:DIR[:TAG]` (an OCI image layout folder).
    #[arg(long, value_name = "IMAGE", conflicts_with = "source")]
    from: Option<String>,
    /// Directory, tar archive (.tar, .tar.gz, .tar.zst), or `-` for a tar on stdin.
    #[arg(required_unless_present = "from")]
    source: Option<PathBuf>,
}

#[derive(Serialize)]
struct CommitView {
    id: String,
    branch: String,
    parent: Option<String>,
    files: u64,
    dirs: u64,
    symlinks: u64,
    specials: u64,
    content_bytes: u64,
    new_file_objects: u64,
    /// No commit was made: the branch's commit has this tree already.
    unchanged: bool,
    skipped_sockets: Vec<String>,
    seconds: f64,
}

fn parse_timestamp(s: &str) -> anyhow::Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let t = humantime::parse_rfc3339_weak(s).with_context(|| {
        format!("invalid timestamp {s:?}: expected seconds since the epoch or an RFC 3339 date")
    })?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)
        .context("timestamp before 1970")?
        .as_secs() as i64)
}

pub fn run(a: CommitArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let repo = a.repo.open()?;
    let image = match &a.from {
        Some(text) => {
            let r = ImageRef::parse(text).map_err(|e| anyhow::anyhow!("--from {e}"))?;
            Some(oci::open(&r).with_context(|| format!("reading the image {text}"))?)
        }
        None => None,
    };
    let created = image.as_ref().and_then(|i| i.created.as_deref());
    let timestamp = match (&a.timestamp, std::env::var("SOURCE_DATE_EPOCH"), created) {
        (Some(t), _, _) => parse_timestamp(t)?,
        (None, Ok(e), _) if !e.is_empty() => e
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={e:?} is not a number of seconds"))?,
        (None, _, Some(c)) => parse_timestamp(c)
            .with_context(|| format!("the image's creation date {c:?}: give --timestamp"))?,
        _ => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64,
    };
    let mut metadata = image
        .as_ref()
        .map(|i| i.metadata.clone())
        .unwrap_or_default();
    for kv in &a.metadata {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--add-metadata {kv:?}: expected KEY=VALUE")
        };
        if k.is_empty() {
            bail!("--add-metadata {kv:?}: empty key");
        }
        if metadata.insert(k.to_owned(), v.to_owned()).is_some() {
            bail!("--add-metadata: the key {k:?} is given twice (or is the image's)");
        }
    }
    let parent = match a.parent.as_str() {
        "auto" => ParentSpec::Auto,
        "none" => ParentSpec::None,
        rev => ParentSpec::Id(
            repo.rev_parse(rev)
                .with_context(|| format!("--parent {rev}"))?,
        ),
    };
    let opts = CommitOptions {
        branch: a.branch.clone(),
        subject: a.subject,
        body: a.body,
        timestamp,
        metadata,
        parent,
        skip_if_unchanged: a.skip_if_unchanged,
    };
    let src_path = a.source.clone().unwrap_or_default();
    let src_name = match &a.from {
        Some(f) => f.clone(),
        None => src_path.display().to_string(),
    };
    let source = if let Some(image) = &image {
        Source::Oci(image)
    } else if src_path.as_os_str() == "-" {
        Source::Tar {
            reader: Box::new(std::io::stdin().lock()),
            name: "<stdin>".into(),
        }
    } else {
        let md = std::fs::metadata(&src_path).with_context(|| format!("source {src_name}"))?;
        if md.is_dir() {
            Source::Dir(&src_path)
        } else {
            let f = std::fs::File::open(&src_path).with_context(|| format!("source {src_name}"))?;
            Source::Tar {
                reader: Box::new(f),
                name: src_name.clone(),
            }
        }
    };
    let progress = std::sync::Arc::new(Progress::default());
    let shown = progress.clone();
    let line = output::status_line(move || {
        format!(
            "{} files, {:.1} MB stored, {} new file objects",
            shown.done(),
            shown.bytes() as f64 / 1e6,
            shown.new_objects()
        )
    });
    let out = commit::commit(&repo, source, &opts, &progress);
    drop(line);
    let out = out.with_context(|| format!("committing {src_name} to {}", a.branch))?;
    let s = &out.scan.stats;
    let sockets = out.scan.skipped_shown();
    if !sockets.is_empty() {
        eprintln!(
            "warning: skipped {} socket(s), which an image cannot hold:",
            sockets.len()
        );
        for p in &sockets {
            eprintln!("  {p}");
        }
    }
    if a.json {
        return output::json(&CommitView {
            id: out.id.to_hex(),
            branch: a.branch,
            parent: out.parent.map(|p| p.to_hex()),
            files: s.files,
            dirs: s.dirs,
            symlinks: s.symlinks,
            specials: s.specials,
            content_bytes: s.content_bytes,
            new_file_objects: s.new_file_objects,
            unchanged: out.unchanged,
            skipped_sockets: sockets,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    eprintln!(
        "{}: {} files, {} dirs, {} symlinks, {} devices/fifos, {:.1} MB; {} new file objects; {:.2} s",
        a.branch,
        s.files,
        s.dirs,
        s.symlinks,
        s.specials,
        s.content_bytes as f64 / 1e6,
        s.new_file_objects,
        started.elapsed().as_secs_f64()
    );
    if out.unchanged {
        eprintln!(
            "{} already has this tree and metadata: no new commit",
            a.branch
        );
    }
    crate::outln!("{}", out.id)?;
    Ok(())
}
