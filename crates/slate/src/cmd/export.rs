use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use slate_core::export;
use slate_core::progress::Progress;

use crate::cli::RepoArg;
use crate::output;

/// Write a commit as a reproducible tar archive (stdout by default).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate export --repo repo os/main -o os.tar\n  \
    slate export --format tar.zst --subpath /etc os/main -o etc.tar.zst\n  \
    slate export os/main | tar --xattrs --xattrs-include='*' -xpf - -C /mnt"
)]
pub struct ExportArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Only this path of the commit.
    #[arg(long, value_name = "PATH")]
    subpath: Option<String>,
    #[arg(long, default_value = "tar", value_parser = ["tar", "tar.zst"])]
    format: String,
    /// Write here (atomically) instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    commit: String,
}

fn write_archive<W: Write>(
    a: &ExportArgs,
    repo: &slate_core::store::Repo,
    id: &slate_core::hash::ObjectId,
    out: W,
    progress: &Progress,
) -> anyhow::Result<export::ExportStats> {
    if a.format == "tar.zst" {
        let mut enc = zstd::stream::Encoder::new(out, 3)?;
        let stats = export::export(repo, id, a.subpath.as_deref(), &mut enc, progress)?;
        enc.finish()?.flush()?;
        Ok(stats)
    } else {
        Ok(export::export(
            repo,
            id,
            a.subpath.as_deref(),
            out,
            progress,
        )?)
    }
}

pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let id = repo.rev_parse(&a.commit)?;
    let stats = output::counted("wrote", "entries", |progress| -> anyhow::Result<_> {
        Ok(match &a.output {
            Some(path) => {
                let dir = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                let mut tmp = tempfile::Builder::new()
                    .prefix(".slate-export")
                    .tempfile_in(dir)
                    .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
                let stats = write_archive(
                    &a,
                    &repo,
                    &id,
                    std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut()),
                    progress,
                )?;
                tmp.as_file()
                    .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
                tmp.as_file()
                    .sync_all()
                    .with_context(|| format!("writing {}", path.display()))?;
                tmp.persist(path)
                    .with_context(|| format!("writing {}", path.display()))?;
                stats
            }
            None => {
                let stdout = std::io::stdout();
                if stdout.is_terminal() {
                    bail!(
                    "refusing to write a tar archive to a terminal: use -o FILE or a redirection"
                );
                }
                write_archive(
                    &a,
                    &repo,
                    &id,
                    std::io::BufWriter::with_capacity(1 << 20, stdout.lock()),
                    progress,
                )?
            }
        })
    })?;
    eprintln!(
        "exported {}: {} entries, {:.1} MB of content",
        id.short(12),
        stats.entries,
        stats.bytes as f64 / 1e6
    );
    Ok(())
}
