use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use slate_core::export::{self, ExportOptions, Format};

use super::RepoArg;
use crate::output;

/// Write a commit as a reproducible tar archive or OCI image archive
/// (stdout by default).
#[derive(Args)]
#[command(
    after_help = "With -o, a regular file (or a new one, or the file a symlink points to) is \
    replaced atomically once the archive is whole; a device or fifo is written to as it is.\n\n\
    --format oci-archive writes a container image of one layer (the commit's tree), named by \
    --tag, that `podman load` reads; the same commit and tag give the same bytes. Its layer is \
    written to a scratch file first (beside -o, else in TMPDIR).\n\n\
    Examples:\n  slate export --repo repo os/main -o os.tar\n  \
    slate export --format tar.zst --subpath /etc os/main -o etc.tar.zst\n  \
    slate export os/main | tar --xattrs --xattrs-include='*' -xpf - -C /mnt\n  \
    slate export --format oci-archive --tag localhost/os:1 os/main -o os.oci.tar && \
    podman load -i os.oci.tar"
)]
pub struct ExportArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Only this path of the commit.
    #[arg(long, value_name = "PATH")]
    subpath: Option<OsString>,
    /// The archive's form: a tar, a tar compressed with zstd, or an OCI
    /// image archive.
    #[arg(long, default_value = "tar", value_parser = ["tar", "tar.zst", "oci-archive"])]
    format: String,
    /// The image's name in an OCI archive (`org.opencontainers.image.ref.name`).
    #[arg(long, value_name = "NAME", default_value = "latest")]
    tag: String,
    /// Write here instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    commit: String,
}

pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let id = repo.rev_parse(&a.commit)?;
    let opts = ExportOptions {
        subpath: a.subpath.clone().map(OsString::into_vec),
        format: if a.format == "tar.zst" {
            Format::TarZst(3)
        } else {
            Format::Tar
        },
    };
    if a.format == "oci-archive" {
        return run_oci(&a, &repo, &id);
    }
    let stats = output::counted("wrote", "entries", |progress| -> anyhow::Result<_> {
        Ok(match &a.output {
            Some(path) => {
                export::export_to_path(&repo, &id, &opts, path, progress).with_context(|| {
                    format!("exporting {} to {}", id.short(12), output::shown_path(path))
                })?
            }
            None => {
                let stdout = std::io::stdout();
                if stdout.is_terminal() {
                    bail!(
                        "refusing to write a tar archive to a terminal: use -o FILE or a redirection"
                    );
                }
                let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
                let stats = export::export(&repo, &id, &opts, &mut out, progress)?;
                out.flush().context("writing to standard output")?;
                stats
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

/// `--format oci-archive`.
fn run_oci(
    a: &ExportArgs,
    repo: &slate_core::store::Repo,
    id: &slate_core::hash::ObjectId,
) -> anyhow::Result<()> {
    if a.subpath.is_some() {
        bail!("--subpath: an OCI archive holds the whole tree");
    }
    let scratch = match a.output.as_ref().and_then(|p| p.parent()) {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        Some(_) => PathBuf::from("."),
        None => std::env::temp_dir(),
    };
    let opts = export::oci::OciOptions {
        tag: a.tag.clone(),
        scratch,
    };
    let stats = output::counted("wrote", "entries", |progress| -> anyhow::Result<_> {
        Ok(match &a.output {
            Some(path) => export::oci::export_oci_to_path(repo, id, &opts, path, progress)
                .with_context(|| {
                    format!("exporting {} to {}", id.short(12), output::shown_path(path))
                })?,
            None => {
                let stdout = std::io::stdout();
                if stdout.is_terminal() {
                    bail!(
                        "refusing to write an archive to a terminal: use -o FILE or a redirection"
                    );
                }
                let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
                let stats = export::oci::export_oci(repo, id, &opts, &mut out, progress)?;
                out.flush().context("writing to standard output")?;
                stats
            }
        })
    })?;
    eprintln!(
        "exported {} as the OCI image {}: {} entries, {:.1} MB of content",
        id.short(12),
        a.tag,
        stats.entries,
        stats.bytes as f64 / 1e6
    );
    Ok(())
}
