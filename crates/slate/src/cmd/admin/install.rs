//! `slate admin install`: a disk (a file or a device) with an ESP and a
//! root partition holding a sysroot with one deployment.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use slate_core::install::disk::Layout;
use slate_core::install::{Error, InstallOptions, InstallReport};
use slate_core::sysroot::{EtcMode, VarMode};

use crate::output;

/// Install an image on a disk: a GPT disk (a file or a device) with an
/// EFI system partition holding systemd-boot and the boot entries, and a
/// root partition holding a sysroot with one deployment of REV.
#[derive(Args)]
#[command(
    long_about = "Install an image on a disk: a GPT disk (a file or a block device) with an \
    EFI system partition (systemd-boot, the boot entry, the kernel) and a root partition \
    holding a sysroot with one deployment of REV, both with the Discoverable Partitions \
    Specification's type UUIDs. The boot entry finds the root by its PARTUUID. The sysroot \
    is made in a folder (--workdir), then written with sfdisk, mkfs.vfat/mcopy and \
    mkfs.ext4 -d, no loop mount; a disk file is built beside its target and renamed over \
    it. A block device is written in place, its root partition filling it; one in use (a \
    partition mounted) is refused. A disk that holds partitions is refused unless --force, \
    naming them; so is an existing file that is not a disk image (no partition table) and \
    not empty. A folder is refused. /etc and /var modes \
    come from the image's manifest ([deploy]) unless --etc or --var says otherwise.",
    after_help = "Examples:\n  slate admin install --from repo --disk disk.img debian/bookworm/x86_64\n  \
    slate admin install --from repo --disk /dev/sdb --force --karg quiet os/main\n  \
    slate admin install --from repo --disk disk.img --size 8G --os debian --etc stateless os/main"
)]
pub struct InstallArgs {
    /// The disk: an image file (made or replaced) or a block device.
    #[arg(long, value_name = "FILE|DEVICE")]
    disk: PathBuf,
    /// The disk's size (K, M, G, T suffixes; default: a file, what the
    /// sysroot needs with room to grow; a device, all of it). A size too
    /// small for the sysroot is refused, naming the size it needs.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    size: Option<u64>,
    /// The OS's name in the sysroot.
    #[arg(long, default_value = "default")]
    os: String,
    /// The repository REV is in.
    #[arg(long, env = "SLATE_REPO", value_name = "REPO")]
    from: PathBuf,
    /// Kernel arguments besides the root's (repeatable).
    #[arg(long = "karg", value_name = "ARG")]
    kargs: Vec<String>,
    /// /etc mode (default: the image's, else persistent).
    #[arg(long, value_name = "MODE")]
    etc: Option<EtcMode>,
    /// /var mode (default: the image's, else persistent).
    #[arg(long, value_name = "MODE")]
    var: Option<VarMode>,
    /// Erase a disk that holds partitions.
    #[arg(long)]
    force: bool,
    /// Where the sysroot is made before it is written (it needs the
    /// image's size, twice).
    #[arg(long, value_name = "DIR", default_value = "/var/tmp")]
    workdir: PathBuf,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
    /// A ref or commit of the repository.
    rev: String,
}

/// `8G`, `512M`, `100K`, `2T` or bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("{s:?}: the suffix is K, M, G or T")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (8G, 512M, bytes)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// What an install made.
#[derive(Serialize)]
struct View {
    disk: String,
    bytes: u64,
    layout: Layout,
    os: String,
    deployment: String,
    commit: String,
    /// What its upgrades follow (`REMOTE:REF` of the image's remote).
    origin: Option<String>,
    /// The remotes the image provides.
    remotes: Vec<String>,
    kargs: Vec<String>,
}

impl View {
    fn of(r: InstallReport) -> View {
        View {
            disk: r.disk.display().to_string(),
            bytes: r.layout.disk_bytes(),
            os: r.os,
            deployment: r.deployment,
            commit: r.resolved.commit.to_hex(),
            origin: r.origin.map(|o| o.to_string()),
            remotes: r.remotes,
            kargs: r.kargs,
            layout: r.layout,
        }
    }
}

pub fn run(a: &InstallArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let r = install(&a.options())?;
    super::source::report(&r.resolved, started);
    if let Some(note) = &r.note {
        eprintln!("warning: {note}");
    }
    let view = View::of(r);
    if a.json {
        return output::json(&view);
    }
    eprintln!(
        "{}: {} MiB, ESP {} MiB ({}), root {} MiB ({}), {} of {} in {:.1} s",
        view.disk,
        view.bytes >> 20,
        view.layout.esp_mib,
        view.layout.esp_uuid,
        view.layout.root_mib,
        view.layout.root_uuid,
        view.deployment,
        &view.commit[..12],
        started.elapsed().as_secs_f64()
    );
    if let Some(o) = &view.origin {
        eprintln!("its upgrades follow {o}");
    }
    Ok(())
}

impl InstallArgs {
    /// The library's options.
    fn options(&self) -> InstallOptions {
        InstallOptions {
            disk: self.disk.clone(),
            size: self.size,
            os: self.os.clone(),
            from: self.from.clone(),
            rev: self.rev.clone(),
            kargs: self.kargs.clone(),
            etc: self.etc,
            var: self.var,
            force: self.force,
            workdir: self.workdir.clone(),
            now: super::now(),
        }
    }
}

/// The library's install, its steps shown on a status line; a size
/// refused is told as the option that asked it.
fn install(o: &InstallOptions) -> anyhow::Result<InstallReport> {
    slate_core::install::install(o, &output::InstallSteps).map_err(|e| match e {
        Error::SizeTooSmall { .. } | Error::SizeOverDevice { .. } => anyhow::anyhow!("--{e}"),
        Error::SizeShort { size, source } => {
            anyhow::Error::new(source).context(format!("--size {size}"))
        }
        Error::Sysroot(e) => e.into(),
        Error::Disk(e) => e.into(),
        Error::Store(e) => e.into(),
        e => e.into(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        use super::parse_size;
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("8X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999T").is_err());
    }
}
