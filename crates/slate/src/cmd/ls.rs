use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use slate_core::object::{name, EntryKind, FileKind};
use slate_core::store::ObjectRead;
use slate_core::walk;

use super::RepoArg;
use crate::output;

/// List the paths of a commit.
#[derive(Args)]
#[command(
    after_help = "Names that are not printable UTF-8 are shown escaped (\\xHH, \\n, \\t, \\r, \\\\); \
    a PATH argument may be given either way.\n\n\
    Examples:\n  slate ls --repo repo os/main /etc\n  slate ls -R -l os/main /usr/lib/systemd"
)]
pub struct LsArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Recurse into directories.
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Long format: type and mode, owner, group, size, path (and target).
    #[arg(short = 'l', long)]
    long: bool,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
    commit: String,
    #[arg(default_value = "/")]
    path: OsString,
}

/// Print the content of a file in a commit.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate cat --repo repo os/main /etc/os-release\n  slate cat --json os/main /usr/bin/true | jq -r .content_base64 | base64 -d"
)]
pub struct CatArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// The file's metadata and content as JSON: `content` when the content
    /// is UTF-8 text, `content_base64` otherwise.
    #[arg(long)]
    json: bool,
    commit: String,
    path: OsString,
}

#[derive(Serialize)]
struct CatView {
    commit: String,
    #[serde(serialize_with = "name::serialize")]
    path: Vec<u8>,
    id: String,
    mode: String,
    uid: u32,
    gid: u32,
    size: u64,
    #[serde(serialize_with = "name::serialize_all")]
    xattrs: Vec<Vec<u8>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_base64: Option<String>,
}

/// Files larger than this are not put into `--json` (their bytes are
/// streamed by plain `cat`).
const JSON_CONTENT_MAX: u64 = 64 << 20;

pub fn run_ls(a: LsArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let id = repo.rev_parse(&a.commit)?;
    let c = repo.read_commit(&id)?;
    let (path, _, _) = walk::lookup_arg(&repo, &c.tree, a.path.as_bytes())?.with_context(|| {
        format!(
            "commit {id}: no path \"{}\"",
            name::escape(a.path.as_bytes())
        )
    })?;
    let out = walk::list(&repo, &c.tree, &path, a.recursive)?
        .with_context(|| format!("commit {id}: no path \"{}\"", name::escape(&path)))?;
    if a.json {
        return output::json(&out);
    }
    let mut so = std::io::stdout().lock();
    for e in &out {
        let shown = name::escape(&e.path);
        if a.long {
            write!(
                so,
                "{}{} {:>5} {:>5} {:>10} {shown}",
                e.type_char(),
                e.mode,
                e.uid,
                e.gid,
                e.size,
            )?;
            if let Some(t) = &e.target {
                write!(so, " -> {}", name::escape(t))?;
            }
            writeln!(so)?;
        } else {
            writeln!(so, "{shown}")?;
        }
    }
    Ok(())
}

pub fn run_cat(a: CatArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let id = repo.rev_parse(&a.commit)?;
    let c = repo.read_commit(&id)?;
    let (path, kind, oid) =
        walk::lookup_arg(&repo, &c.tree, a.path.as_bytes())?.with_context(|| {
            format!(
                "commit {id}: no path \"{}\"",
                name::escape(a.path.as_bytes())
            )
        })?;
    let shown = name::escape(&name::absolute(&path));
    if kind == EntryKind::Dir {
        bail!("commit {id}: \"{shown}\" is a directory");
    }
    let mut stream = repo.open_file(&oid)?;
    let h = stream.header().clone();
    match h.meta.kind {
        FileKind::Regular => {}
        FileKind::Symlink => bail!(
            "commit {id}: \"{shown}\" is a symlink to \"{}\"",
            name::escape(&stream.read_all()?)
        ),
        k => bail!(
            "commit {id}: \"{shown}\" is a {}, which has no content",
            k.name()
        ),
    }
    if a.json {
        if h.size > JSON_CONTENT_MAX {
            bail!(
                "commit {id}: \"{shown}\" has {} bytes, too many for --json (at most {}); \
                 use `slate cat` without --json",
                h.size,
                JSON_CONTENT_MAX
            );
        }
        use base64::Engine as _;
        let content = stream.read_all()?;
        let (content, content_base64) = match String::from_utf8(content) {
            Ok(text) => (Some(text), None),
            Err(e) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
            ),
        };
        return output::json(&CatView {
            commit: id.to_hex(),
            path: name::absolute(&path),
            id: oid.to_hex(),
            mode: format!("{:04o}", h.meta.mode),
            uid: h.meta.uid,
            gid: h.meta.gid,
            size: h.size,
            xattrs: h.meta.xattrs.iter().map(|(k, _)| k.clone()).collect(),
            content,
            content_base64,
        });
    }
    let mut out = std::io::stdout().lock();
    stream.copy_to(&mut out).map_err(|e| match e {
        Ok(io) => anyhow::Error::from(io).context("writing to standard output"),
        Err(store) => store.into(),
    })?;
    out.flush().context("writing to standard output")?;
    Ok(())
}
