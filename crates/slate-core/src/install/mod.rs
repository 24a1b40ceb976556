//! Installing an image on a disk: a GPT disk (a file or a block device)
//! with an ESP and a root partition holding a sysroot with one
//! deployment. [`install`] is the use case: the target checked before
//! anything is made, the sysroot made in a work folder, the commit
//! resolved from the source repository ([`Sysroot::resolve`], the trust
//! rule applied), its /etc and /var modes from the image unless the
//! options say otherwise, the deploy, systemd-boot on the ESP, and the
//! disk written ([`disk`]).

pub mod disk;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::hash::ObjectId;
use crate::image_meta::ImageDeploy;
use crate::progress::Progress;
use crate::remotes::NoFetch;
use crate::store::ObjectRead;
use crate::sysroot::{self, DeployOptions, EtcMode, OsConfig, Resolved, Sysroot, VarMode};
use disk::Layout;

/// What an install is asked.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// The disk: an image file (made or replaced) or a block device.
    pub disk: PathBuf,
    /// The disk's size (default: a file, what the sysroot needs with room
    /// to grow; a device, all of it).
    pub size: Option<u64>,
    /// The OS's name in the sysroot.
    pub os: String,
    /// The repository `rev` is in.
    pub from: PathBuf,
    /// A ref or commit of `from`.
    pub rev: String,
    /// Kernel arguments besides the root's.
    pub kargs: Vec<String>,
    /// /etc mode (default: the image's, else persistent).
    pub etc: Option<EtcMode>,
    /// /var mode (default: the image's, else persistent).
    pub var: Option<VarMode>,
    /// Erase a disk that holds partitions.
    pub force: bool,
    /// Where the sysroot is made before it is written.
    pub workdir: PathBuf,
    /// The deployment's time (seconds since the epoch).
    pub now: i64,
}

impl InstallOptions {
    /// An install of `rev` from `from` onto `disk` with the defaults.
    pub fn new(from: PathBuf, disk: PathBuf, rev: String, workdir: PathBuf, now: i64) -> Self {
        InstallOptions {
            disk,
            size: None,
            os: "default".into(),
            from,
            rev,
            kargs: Vec::new(),
            etc: None,
            var: None,
            force: false,
            workdir,
            now,
        }
    }
}

/// What an install made.
#[derive(Debug)]
pub struct InstallReport {
    pub disk: PathBuf,
    pub layout: Layout,
    pub os: String,
    /// The deployment (`OS/ID`).
    pub deployment: String,
    /// The commit deployed, its origin, and what was pulled to have it.
    pub resolved: Resolved,
    /// The boot entry's kernel arguments (the root's first).
    pub kargs: Vec<String>,
    /// The origin the deployment records, what its upgrades follow: the
    /// image's remote (`REMOTE:REF`) when the image names one, else the
    /// ref installed.
    pub origin: Option<crate::remotes::Origin>,
    /// The remotes the image provides, copied into the disk's repository.
    pub remotes: Vec<String>,
    /// A note for the user: the disk is whole, but the kernel could not
    /// be told of a device's new partitions.
    pub note: Option<String>,
}

/// The long steps of an install, each run with a progress to count on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The commit pulled from the source repository (objects).
    Pull,
    /// The deployment checked out (paths).
    Deploy,
    /// The disk written.
    Write,
}

/// Runs each step of an install: a front end shows its progress.
pub trait Steps {
    /// Run `work` (the step `step`), giving it the progress to count on.
    fn run(&self, step: Step, work: &mut dyn FnMut(&Progress));
}

/// Steps run with nothing shown.
pub struct Quiet;

impl Steps for Quiet {
    fn run(&self, _: Step, work: &mut dyn FnMut(&Progress)) {
        work(&Progress::default())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Disk(#[from] disk::Error),
    #[error(transparent)]
    Sysroot(#[from] sysroot::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("making a folder in {}", path.display())]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("moving the ESP's files aside to {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The size asked is below what any disk needs (an empty sysroot).
    #[error(
        "size {size}: a disk of {} MiB is too small: any disk needs at least {} MiB \
         (an ESP of 256 MiB, the root)",
        size >> 20,
        least >> 20
    )]
    SizeTooSmall { size: u64, least: u64 },
    /// The size asked is more than the device holds.
    #[error("size {size}: {} holds {} MiB", disk.display(), device >> 20)]
    SizeOverDevice {
        size: u64,
        disk: PathBuf,
        device: u64,
    },
    /// The size asked cannot hold this sysroot.
    #[error("size {size}")]
    SizeShort {
        size: u64,
        #[source]
        source: disk::Error,
    },
    /// The image's manifest names a mode that is none.
    #[error("the image's {key}: {message}")]
    ImageMode { key: &'static str, message: String },
    #[error(
        "commit {0} has no kernel (/usr/lib/modules/KVER/vmlinuz): a disk of it would not boot"
    )]
    NoKernel(ObjectId),
    #[error("writing {}", disk.display())]
    Write {
        disk: PathBuf,
        #[source]
        source: disk::Error,
    },
    /// A [`Steps`] implementation did not run a step's work.
    #[error("the install's step {0:?} was not run")]
    StepNotRun(Step),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Run `f` as the step `step` of `steps`.
fn step<T>(steps: &dyn Steps, step: Step, f: impl FnOnce(&Progress) -> T) -> Result<T> {
    let mut f = Some(f);
    let mut out = None;
    steps.run(step, &mut |p| {
        if let Some(f) = f.take() {
            out = Some(f(p));
        }
    });
    out.ok_or(Error::StepNotRun(step))
}

/// Install `o.rev` of `o.from` on `o.disk`.
pub fn install(o: &InstallOptions, steps: &dyn Steps) -> Result<InstallReport> {
    sysroot::validate_os_name(&o.os)?;
    disk::check_target(&o.disk, o.force)?;
    let device = disk::device_bytes(&o.disk);
    check_size(o, device)?;
    // (A killed install's folder is removed by the next.)
    let stage = crate::fsutil::WorkDir::new(&o.workdir, "slate-install-")
        .map_err(|(path, source)| Error::WorkDir { path, source })?;
    let root = stage.path().join("sysroot");
    let s = Sysroot::init_fs(&root, Some(Path::new("esp")))?;
    let mut layout = Layout::new()?;

    let resolved: Resolved = step(steps, Step::Pull, |p| {
        s.resolve(&o.rev, Some(&o.from), &NoFetch, p)
    })??;
    let commit = resolved.commit;
    s.os_init(&o.os, &os_config(&s, &commit, o)?)?;
    let mut kargs = layout.kargs();
    kargs.extend(o.kargs.iter().cloned());
    let opts = DeployOptions {
        os: Some(o.os.clone()),
        kargs: kargs.clone(),
        origin: Some(resolved.origin.clone()),
        now: o.now,
        ..Default::default()
    };
    let plan = s.plan_deploy(&commit, &opts)?;
    if plan.kernel.is_none() {
        return Err(Error::NoKernel(commit));
    }
    let deployed = step(steps, Step::Deploy, |p| s.deploy(plan, &opts, p))??;
    // The image's remotes, so the machine knows where its updates come
    // from without `remote add`.
    s.sync_image_remotes()?;
    let remotes = s.image_remotes()?.into_iter().map(|(n, _, _)| n).collect();

    let esp = root.join("esp");
    disk::install_systemd_boot(&esp, Path::new(disk::SYSTEMD_BOOT_EFI))?;
    // On the machine the ESP is mounted at /efi (systemd-gpt-auto-generator).
    s.set_boot_dir(Path::new("/efi"))?;
    let esp_out = stage.path().join("esp");
    std::fs::rename(&esp, &esp_out).map_err(|source| Error::Io {
        path: esp_out.clone(),
        source,
    })?;
    let (root_bytes, esp_bytes) = (disk::tree_bytes(&root)?, disk::tree_bytes(&esp_out)?);
    match o.size {
        Some(size) => layout
            .size_exactly(root_bytes, esp_bytes, size)
            .map_err(|source| Error::SizeShort { size, source })?,
        // A device's root fills it; a file's has room to grow.
        None => layout.size(root_bytes, esp_bytes, device.unwrap_or(0), device)?,
    }
    let note = step(steps, Step::Write, |_| {
        disk::write(&o.disk, &layout, &root, &esp_out, stage.path())
    })?
    .map_err(|source| Error::Write {
        disk: o.disk.clone(),
        source,
    })?;
    Ok(InstallReport {
        disk: o.disk.clone(),
        layout,
        os: o.os.clone(),
        deployment: deployed.record.name(),
        origin: deployed.record.origin.clone(),
        resolved,
        kargs,
        remotes,
        note,
    })
}

/// A size asked is checked against what any disk needs (an empty
/// sysroot) and what the device holds, before anything is made.
fn check_size(o: &InstallOptions, device: Option<u64>) -> Result<()> {
    let Some(size) = o.size else { return Ok(()) };
    let least = Layout::needed_bytes(0, 0);
    if size < least {
        return Err(Error::SizeTooSmall { size, least });
    }
    match device {
        Some(d) if size > d => Err(Error::SizeOverDevice {
            size,
            disk: o.disk.clone(),
            device: d,
        }),
        _ => Ok(()),
    }
}

/// The OS's /etc and /var modes: the options', else the image's
/// ([`ImageDeploy`] in its commit), else persistent.
fn os_config(s: &Sysroot, commit: &ObjectId, o: &InstallOptions) -> Result<OsConfig> {
    let meta = s.repo().read_commit(commit)?.metadata;
    let image = ImageDeploy::read(&meta).map_err(|e| Error::ImageMode {
        key: e.key,
        message: e.message,
    })?;
    Ok(OsConfig {
        etc: o.etc.or(image.etc).unwrap_or(EtcMode::Persistent),
        var: o.var.or(image.var).unwrap_or(VarMode::Persistent),
        from_image: false,
        usr: Default::default(),
    })
}
