//! `slate admin install`: a disk (a file or a device) with an ESP and a
//! root partition holding a sysroot with one deployment.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use slate_core::disk::{self, Layout};
use slate_core::sysroot::{DeployOptions, EtcMode, OsConfig, Sysroot, VarMode};

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
    pub(crate) disk: PathBuf,
    /// The disk's size (K, M, G, T suffixes; default: a file, what the
    /// sysroot needs with room to grow; a device, all of it). A size too
    /// small for the sysroot is refused, naming the size it needs.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) size: Option<u64>,
    /// The OS's name in the sysroot.
    #[arg(long, default_value = "default")]
    pub(crate) os: String,
    /// The repository REV is in.
    #[arg(long, env = "SLATE_REPO", value_name = "REPO")]
    pub(crate) from: PathBuf,
    /// Kernel arguments besides the root's (repeatable).
    #[arg(long = "karg", value_name = "ARG")]
    pub(crate) kargs: Vec<String>,
    /// /etc mode (default: the image's, else persistent).
    #[arg(long, value_name = "MODE")]
    pub(crate) etc: Option<EtcMode>,
    /// /var mode (default: the image's, else persistent).
    #[arg(long, value_name = "MODE")]
    pub(crate) var: Option<VarMode>,
    /// Erase a disk that holds partitions.
    #[arg(long)]
    pub(crate) force: bool,
    /// Where the sysroot is made before it is written (it needs the
    /// image's size, twice).
    #[arg(long, value_name = "DIR", default_value = "/var/tmp")]
    pub(crate) workdir: PathBuf,
    #[arg(long)]
    pub(crate) json: bool,
    /// A ref or commit of the repository.
    pub(crate) rev: String,
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
pub struct View {
    pub(crate) disk: String,
    pub(crate) bytes: u64,
    pub(crate) layout: Layout,
    pub(crate) os: String,
    pub(crate) deployment: String,
    pub(crate) commit: String,
    pub(crate) kargs: Vec<String>,
}

pub fn run(a: &InstallArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let view = make(a)?;
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
    Ok(())
}

impl InstallArgs {
    /// An install of `rev` from `from` onto `disk` with the defaults.
    pub fn new(from: PathBuf, disk: PathBuf, rev: String, workdir: PathBuf) -> InstallArgs {
        InstallArgs {
            disk,
            size: None,
            os: "default".into(),
            from,
            kargs: Vec::new(),
            etc: None,
            var: None,
            force: false,
            workdir,
            json: false,
            rev,
        }
    }
}

/// Make the disk; what was made.
pub fn make(a: &InstallArgs) -> anyhow::Result<View> {
    slate_core::sysroot::validate_os_name(&a.os)?;
    disk::check_target(&a.disk, a.force)?;
    let device = disk::device_bytes(&a.disk);
    if let Some(size) = a.size {
        // What any disk needs (an empty sysroot), before the real need is
        // known from the deployment.
        let least = Layout::needed_bytes(0, 0);
        if size < least {
            anyhow::bail!(
                "--size {size}: a disk of {} MiB is too small: any disk needs at least {} MiB \
                 (an ESP of 256 MiB, the root)",
                size >> 20,
                least >> 20
            );
        }
        if let Some(dev) = device.filter(|d| size > *d) {
            anyhow::bail!(
                "--size {size}: {} holds {} MiB",
                a.disk.display(),
                dev >> 20
            );
        }
    }
    // (A killed install's folder is removed by the next.)
    let stage = slate_core::fsutil::WorkDir::new(&a.workdir, "slate-install-")
        .map_err(|(p, e)| anyhow::anyhow!("making a folder in {}: {e}", p.display()))?;
    let root = stage.path().join("sysroot");
    let s = Sysroot::init_fs(&root, Some(Path::new("esp")))?;

    let mut layout = Layout::new()?;
    let (commit, origin) = super::resolve(&s, &a.rev, Some(&a.from))?;
    let meta = slate_core::store::ObjectRead::read_commit(s.repo(), &commit)?.metadata;
    let image = slate_core::image_meta::ImageDeploy::read(&meta)?;
    let cfg = OsConfig {
        etc: a.etc.or(image.etc).unwrap_or(EtcMode::Persistent),
        var: a.var.or(image.var).unwrap_or(VarMode::Persistent),
        from_image: false,
    };
    s.os_init(&a.os, &cfg)?;
    let mut kargs = layout.kargs();
    kargs.extend(a.kargs.iter().cloned());
    let opts = DeployOptions {
        os: Some(a.os.clone()),
        kargs: kargs.clone(),
        origin,
        now: super::now(),
        ..Default::default()
    };
    let plan = s.plan_deploy(&commit, &opts)?;
    if plan.kernel.is_none() {
        anyhow::bail!(
            "commit {commit} has no kernel (/usr/lib/modules/KVER/vmlinuz): a disk of it would not boot"
        );
    }
    let deployed = output::counted("deployed", "paths", |p| s.deploy(plan, &opts, p))?;
    let esp = root.join("esp");
    disk::install_systemd_boot(&esp, Path::new(disk::SYSTEMD_BOOT_EFI))?;
    // On the machine the ESP is mounted at /efi (systemd-gpt-auto-generator).
    s.set_boot_dir(Path::new("/efi"))?;
    let esp_out = stage.path().join("esp");
    std::fs::rename(&esp, &esp_out).context("moving the ESP's files aside")?;
    let (root_bytes, esp_bytes) = (disk::tree_bytes(&root)?, disk::tree_bytes(&esp_out)?);
    match a.size {
        Some(size) => layout
            .size_exactly(root_bytes, esp_bytes, size)
            .with_context(|| format!("--size {size}"))?,
        // A device's root fills it; a file's has room to grow.
        None => layout.size(root_bytes, esp_bytes, device.unwrap_or(0), device)?,
    }
    let line = output::status_line(|| "writing the disk".to_string());
    let written = disk::write(&a.disk, &layout, &root, &esp_out, stage.path());
    drop(line);
    if let Some(note) = written.with_context(|| format!("writing {}", a.disk.display()))? {
        eprintln!("warning: {note}");
    }
    Ok(View {
        disk: a.disk.display().to_string(),
        bytes: layout.disk_bytes(),
        os: a.os.clone(),
        deployment: deployed.record.name(),
        commit: commit.to_hex(),
        kargs,
        layout,
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
