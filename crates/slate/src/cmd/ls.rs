use std::io::Write;

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use slate_core::hash::ObjectId;
use slate_core::object::{EntryKind, FileKind};
use slate_core::store::Repo;

use crate::cli::RepoArg;
use crate::output;

/// List the paths of a commit.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate ls --repo repo os/main /etc\n  slate ls -R -l os/main /usr/lib/systemd"
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
    #[arg(long)]
    json: bool,
    commit: String,
    #[arg(default_value = "/")]
    path: String,
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
    path: String,
}

#[derive(Serialize)]
struct CatView {
    commit: String,
    path: String,
    id: String,
    mode: String,
    uid: u32,
    gid: u32,
    size: u64,
    xattrs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_base64: Option<String>,
}

#[derive(Serialize)]
struct LsEntry {
    path: String,
    #[serde(rename = "type")]
    kind: &'static str,
    mode: String,
    uid: u32,
    gid: u32,
    size: u64,
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    xattrs: Vec<String>,
}

fn join(parent: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The names of extended attributes, for listing.
fn xattr_names(x: &slate_core::object::Xattrs) -> Vec<String> {
    x.iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect()
}

fn entry(repo: &Repo, path: String, kind: EntryKind, id: ObjectId) -> anyhow::Result<LsEntry> {
    Ok(match kind {
        EntryKind::Dir => {
            let t = repo.read_tree(&id)?;
            LsEntry {
                path,
                kind: "dir",
                mode: format!("{:04o}", t.meta.mode),
                uid: t.meta.uid,
                gid: t.meta.gid,
                size: 0,
                id: id.to_hex(),
                target: None,
                xattrs: xattr_names(&t.meta.xattrs),
            }
        }
        EntryKind::File => {
            let h = repo.file_header(&id)?;
            let target = if h.meta.kind == FileKind::Symlink {
                Some(String::from_utf8_lossy(&repo.read_file(&id)?.1).into_owned())
            } else {
                None
            };
            LsEntry {
                path,
                kind: h.meta.kind.name(),
                mode: format!("{:04o}", h.meta.mode),
                uid: h.meta.uid,
                gid: h.meta.gid,
                size: h.size,
                id: id.to_hex(),
                target,
                xattrs: xattr_names(&h.meta.xattrs),
            }
        }
    })
}

fn collect(
    repo: &Repo,
    path: String,
    id: ObjectId,
    recursive: bool,
    out: &mut Vec<LsEntry>,
) -> anyhow::Result<()> {
    for e in repo.read_tree(&id)?.entries {
        let p = join(&path, &e.name);
        out.push(entry(repo, p.clone(), e.kind, e.id)?);
        if recursive && e.kind == EntryKind::Dir {
            collect(repo, p, e.id, true, out)?;
        }
    }
    Ok(())
}

fn type_char(kind: &str) -> char {
    match kind {
        "dir" => 'd',
        "symlink" => 'l',
        "char-device" => 'c',
        "block-device" => 'b',
        "fifo" => 'p',
        _ => '-',
    }
}

pub fn run_ls(a: LsArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let id = repo.rev_parse(&a.commit)?;
    let c = repo.read_commit(&id)?;
    let norm = format!("/{}", a.path.trim_matches('/'));
    let (kind, oid) = repo
        .lookup_path(&c.tree, &norm)?
        .with_context(|| format!("commit {id}: no path {norm:?}"))?;
    let mut out = Vec::new();
    match kind {
        EntryKind::Dir => collect(&repo, norm, oid, a.recursive, &mut out)?,
        EntryKind::File => out.push(entry(&repo, norm, kind, oid)?),
    }
    if a.json {
        return output::json(&out);
    }
    let mut so = std::io::stdout().lock();
    for e in &out {
        if a.long {
            write!(
                so,
                "{}{} {:>5} {:>5} {:>10} {}",
                type_char(e.kind),
                e.mode,
                e.uid,
                e.gid,
                e.size,
                e.path
            )?;
            if let Some(t) = &e.target {
                write!(so, " -> {t}")?;
            }
            writeln!(so)?;
        } else {
            writeln!(so, "{}", e.path)?;
        }
    }
    Ok(())
}

pub fn run_cat(a: CatArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let id = repo.rev_parse(&a.commit)?;
    let c = repo.read_commit(&id)?;
    let (kind, oid) = repo
        .lookup_path(&c.tree, &a.path)?
        .with_context(|| format!("commit {id}: no path {:?}", a.path))?;
    if kind == EntryKind::Dir {
        bail!("commit {id}: {:?} is a directory", a.path);
    }
    let (h, content) = repo.read_file(&oid)?;
    match h.meta.kind {
        FileKind::Regular => {}
        FileKind::Symlink => bail!(
            "commit {id}: {:?} is a symlink to {:?}",
            a.path,
            String::from_utf8_lossy(&content)
        ),
        k => bail!(
            "commit {id}: {:?} is a {}, which has no content",
            a.path,
            k.name()
        ),
    }
    if a.json {
        use base64::Engine as _;
        let (content, content_base64) = match String::from_utf8(content) {
            Ok(text) => (Some(text), None),
            Err(e) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
            ),
        };
        return output::json(&CatView {
            commit: id.to_hex(),
            path: format!("/{}", a.path.trim_matches('/')),
            id: oid.to_hex(),
            mode: format!("{:04o}", h.meta.mode),
            uid: h.meta.uid,
            gid: h.meta.gid,
            size: h.size,
            xattrs: xattr_names(&h.meta.xattrs),
            content,
            content_base64,
        });
    }
    std::io::stdout().lock().write_all(&content)?;
    Ok(())
}
