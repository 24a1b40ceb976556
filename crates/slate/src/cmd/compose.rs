use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use slate_core::compose::{self, Loaded};

use super::RepoArg;
use crate::output;

/// Build an image from a manifest: the tree, made stateless, linted and
/// committed; prints the commit id.
#[derive(Args)]
#[command(
    long_about = "Build an image from a manifest (docs/format/manifest.md): the base tree \
    (mmdebstrap, a folder or a tarball) with the manifest's packages, .deb files and files; \
    made stateless (/etc to factory defaults and tmpfiles.d lines, users to sysusers.d lines, \
    units into /usr, /var to tmpfiles.d lines, dpkg's database into /usr; docs/stateless.md); \
    linted; committed to the manifest's ref. Prints the commit id.\n\n\
    The lockfile pins every package by version and SHA-256 and every other input by digest. \
    It sits beside the manifest, named after it with the extension .lock (image.toml: \
    image.lock in the same folder), or where --lockfile says; every build names it. It is \
    written after a build that committed and used by the next one: its packages come from \
    the cache (no mirror needed), and the same manifest, lockfile and SOURCE_DATE_EPOCH give \
    the same commit id. The base tree mmdebstrap made is kept in the cache by the lockfile's \
    packages (not by SOURCE_DATE_EPOCH, which only dates the commit): a build of an unchanged \
    lockfile takes seconds. Needs root.",
    after_help = "Examples:\n  slate compose --repo repo examples/debian/image.toml\n  \
    slate compose --repo repo --locked --strict image.toml\n  \
    SOURCE_DATE_EPOCH=1700000000 slate compose --repo repo --json image.toml"
)]
pub struct ComposeArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// The lockfile (default: beside the manifest, its name with the
    /// extension `.lock`: `image.toml` → `image.lock`).
    #[arg(long, value_name = "FILE")]
    lockfile: Option<PathBuf>,
    /// Build exactly what the lockfile says, or fail naming each
    /// difference; the lockfile is not written.
    #[arg(long, conflicts_with = "update")]
    locked: bool,
    /// Ignore the lockfile's pins and take the mirror's packages now
    /// (the lockfile is rewritten).
    #[arg(long)]
    update: bool,
    /// Fail when the lint finds paths of /etc or /var accounted for by
    /// nothing.
    #[arg(long)]
    strict: bool,
    /// Packages by digest and base trees of earlier builds.
    #[arg(
        long,
        env = "SLATE_CACHE_DIR",
        value_name = "DIR",
        default_value = "/var/cache/slate/compose"
    )]
    cache_dir: PathBuf,
    /// Build the base tree again even when the cache has it.
    #[arg(long)]
    no_tree_cache: bool,
    /// The Slate the image's initrd gets: a build without network code
    /// (`cargo build --release --no-default-features`), put at
    /// /usr/lib/slate/slate-initrd. Default: `slate-initrd` beside this
    /// binary, where there is one; else the initrd gets this binary.
    #[arg(long, env = "SLATE_INITRD_BIN", value_name = "FILE")]
    initrd_slate: Option<PathBuf>,
    /// Commit even when the ref's commit has the same image (by default
    /// that commit's id is printed and nothing is committed).
    #[arg(long)]
    always_commit: bool,
    /// Let `files` inputs take their sources from this folder too
    /// (repeatable; by default only from below the manifest's folder).
    #[arg(long, value_name = "DIR")]
    allow_files_from: Vec<PathBuf>,
    /// Print what was built as JSON.
    #[arg(long)]
    json: bool,
    /// The manifest (TOML).
    manifest: PathBuf,
}

#[derive(Serialize)]
struct View<'a> {
    manifest: String,
    lockfile: String,
    #[serde(flatten)]
    composed: &'a compose::Composed,
}

fn epoch() -> anyhow::Result<i64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(e) if !e.is_empty() => e
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={e:?} is not a number of seconds")),
        _ => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64),
    }
}

pub fn run(a: ComposeArgs) -> anyhow::Result<()> {
    let loaded = Loaded::read_allowing(&a.manifest, &a.allow_files_from)?;
    if !slate_core::fsutil::is_root() {
        anyhow::bail!(
            "slate compose needs root: it runs mmdebstrap --mode=root and gives files their owners"
        );
    }
    let repo = a.repo.open()?;
    let lockfile = a
        .lockfile
        .clone()
        .unwrap_or_else(|| a.manifest.with_extension("lock"));
    let exe = std::env::current_exe().context("finding the slate binary to put into the image")?;
    let initrd_bin = match &a.initrd_slate {
        Some(p) if !p.is_file() => {
            anyhow::bail!("--initrd-slate {}: no such file", p.display())
        }
        Some(p) => Some(p.clone()),
        None => Some(exe.with_file_name("slate-initrd")).filter(|p| p.is_file()),
    };
    let opts = compose::Options {
        manifest: loaded,
        lockfile: lockfile.clone(),
        locked: a.locked,
        update: a.update,
        strict: a.strict,
        cache_dir: a.cache_dir.clone(),
        tree_cache: !a.no_tree_cache,
        epoch: epoch()?,
        always_commit: a.always_commit,
        slate_bin: Some(exe.clone()),
        initrd_bin,
    };
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let step = Arc::new(Mutex::new(String::new()));
    let shown = step.clone();
    let started = std::time::Instant::now();
    let line = output::status_line(move || shown.lock().map(|s| s.clone()).unwrap_or_default());
    let mut last: Option<(String, std::time::Instant)> = None;
    let mut report = |e: compose::Event<'_>| {
        let name = match e {
            compose::Event::Detail(d) => {
                if let (Ok(mut s), Some((step, _))) = (step.lock(), &last) {
                    *s = format!("{step}: {d}");
                }
                return;
            }
            compose::Event::Step(name) => name,
        };
        if let Some((prev, at)) = last.take() {
            if interactive {
                eprintln!("  {prev} ({:.1} s)", at.elapsed().as_secs_f64());
            }
        }
        if let Ok(mut s) = step.lock() {
            *s = name.to_string();
        }
        last = Some((name.to_string(), std::time::Instant::now()));
    };
    let result = compose::compose(&repo, &opts, &mut report);
    drop(line);
    let c = result.with_context(|| format!("composing {}", a.manifest.display()))?;
    if interactive {
        eprintln!(
            "composed {} {} in {:.1} s: {} packages, base from the {}",
            c.branch,
            c.id.short(12),
            started.elapsed().as_secs_f64(),
            c.packages.len(),
            match c.base {
                compose::base::Made::Mirror => "mirror",
                compose::base::Made::Cache => "package cache",
                compose::base::Made::CachedTree => "tree cache",
                compose::base::Made::Directory => "folder",
                compose::base::Made::Tarball => "tarball",
                compose::base::Made::Oci => "container image",
                compose::base::Made::Image => "OS image it extends",
            }
        );
    }
    if let (Some(n), false) = (&c.name, a.json) {
        eprintln!("name: {n}");
    }
    if let (Some(e), false) = (&c.extension, a.json) {
        eprintln!(
            "system extension {} over {}: {} file(s), {}; {} file(s) the base has left out",
            e.name,
            e.base.short(12),
            e.files,
            e.release.join(" "),
            e.left_out.len()
        );
    }
    if !c.lint.unaccounted.is_empty() {
        eprintln!(
            "lint: {} path(s) of /etc and /var accounted for by nothing (--strict fails on them):",
            c.lint.unaccounted.len()
        );
        for p in c.lint.unaccounted.iter().take(20) {
            eprintln!("  {p}");
        }
        if c.lint.unaccounted.len() > 20 {
            eprintln!(
                "  ... {} more (--json lists them all)",
                c.lint.unaccounted.len() - 20
            );
        }
    }
    for w in &c.lint.writes_usr {
        eprintln!("lint: warning: enabled unit writes into the read-only /usr: {w}; disable it in [units]");
    }
    for b in &c.lint.backups {
        eprintln!("lint: warning: backup file in the factory /etc: {b}");
    }
    if let (Some(h), false) = (&c.usr_root_hash, a.json) {
        eprintln!("/usr verity image: root hash {h} (in the commit's slate.usr.verity)");
    }
    if c.unchanged && !a.json {
        eprintln!("{} already has this image: no new commit", c.branch);
    }
    if !a.json {
        let what = if c.lock_written {
            "written"
        } else if a.locked {
            "followed (--locked)"
        } else {
            "unchanged"
        };
        eprintln!("lockfile {}: {what}", lockfile.display());
    }
    if a.json {
        return output::json(&View {
            manifest: a.manifest.display().to_string(),
            lockfile: lockfile.display().to_string(),
            composed: &c,
        });
    }
    crate::outln!("{}", c.id)
}
