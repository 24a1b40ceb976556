//! Deployments: several versions of an OS side by side in one sysroot, one
//! of them the default, switched atomically, rolled back by one switch.
//!
//! A sysroot is any directory (the physical root of a machine, or a
//! directory a test builds):
//!
//! ```text
//! SYSROOT/slate/sysroot.toml          where the boot directory is
//! SYSROOT/slate/lock                  held by every command that writes
//! SYSROOT/slate/repo/                 a bare repository
//! SYSROOT/slate/deploy/OS/ID/         a deployment: a checkout of its commit
//! SYSROOT/slate/deploy/OS/ID.toml     its record (commit, origin, kernel arguments, pin)
//! SYSROOT/slate/state/OS/os.toml      the OS's settings (/etc and /var modes)
//! SYSROOT/slate/state/OS/var/         the OS's persistent /var
//! BOOT/loader/entries/slate-OS-ID+3.conf   a Boot Loader Specification entry
//! BOOT/slate/OS/KVER-HASH/{linux,initrd}   kernels, shared by deployments
//! ```
//!
//! The boot loader's order of the entries (systemd-boot's: `sort-key`,
//! then `version` newest first, entries with no tries left last) is the
//! order of the deployments: the switch to another default is one entry
//! written under a temporary name and renamed. See
//! `docs/format/sysroot.md`.

mod booted;
mod deploy;
mod dirs;
mod drift;
mod entries;
mod etc;
mod ext;
mod image_remotes;
mod kernel;
mod ops;
mod prepare;
mod record;
mod reset;
mod resolve;
mod rules;
mod stage;
mod status;
mod tree;
#[cfg(test)]
mod trust_tests;
mod update;
mod usr_verity;
mod verify;

/// The deploy modes, defined with the image's metadata that names them.
pub use crate::image_meta::{EtcMode, UsrMode, VarMode};
pub use booted::{default_path, BootedBy};
pub use deploy::{check_karg, human_bytes, merge_kargs, DeployOptions, DeployPlan, Deployed};
pub use drift::Drift;
pub use entries::{boot_order, strverscmp, BootEntry, EntryState};
pub use etc::{EtcConflict, ImageChange, NEW_SUFFIX};
pub use ext::{expose as expose_extensions, ExtAdded, ExtDropped, ExtListed, ExtRemoved, ExtUse};
pub use kernel::Kernel;
pub use ops::{CleanupReport, Undeployed};
pub use prepare::{Mounted, Prepared};
pub use record::{Record, Staged};
pub use reset::ResetPlan;
pub use resolve::{Pulled, ReadyDeploy, Resolved, Upgrade, UpgradeOptions};
pub use rules::{BadCommit, BAD_COMMITS_FILE};
pub use stage::{BootCheck, Dropped, FinalizeReport, Finalized, StagedDeployment};
pub use status::{BadCommitStatus, DeploymentStatus, DriftCount, Status};
pub use update::{AutoOutcome, LastCheck, RebootRequest, UpdateCheck, LAST_CHECK};
pub use usr_verity::{UsrMounted, UsrPlan};

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};

use crate::fsutil::show;
use crate::store::{self, Repo, RepoMode};
use dirs::Dir;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Checkout(#[from] crate::checkout::Error),
    #[error("{}: {source}", show(path))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a sysroot (no slate/sysroot.toml); create one with `slate admin init-fs`", show(.0))]
    NotASysroot(PathBuf),
    #[error("OS {0:?} is not set up in this sysroot; run `slate admin os-init {0}`")]
    NoSuchOs(String),
    #[error("no deployment {0} (see `slate admin status`)")]
    NoSuchDeployment(String),
    /// Bad input or a request that would break the sysroot; nothing changed.
    #[error("{0}")]
    Refused(String),
    /// A remote's configuration, or its trust rule refusing a commit
    /// ([`crate::remotes::Error::Untrusted`]).
    #[error(transparent)]
    Remotes(#[from] crate::remotes::Error),
    /// `rev` names no commit of the repository at `repo`.
    #[error("{rev:?} names no commit of {}", show(repo))]
    NoSuchRev {
        rev: String,
        repo: PathBuf,
        /// Whether it was the sysroot's repository (else one pulled from).
        sysroot: bool,
        #[source]
        source: Box<store::Error>,
    },
    /// Pulling from a remote failed.
    #[error("pulling {remote_ref} from {remote}")]
    Fetch {
        remote: String,
        remote_ref: String,
        #[source]
        source: crate::remotes::FetchError,
    },
    /// Pulling from a local repository failed.
    #[error("pulling {rev} from {}", show(from))]
    PullLocal {
        rev: String,
        from: PathBuf,
        #[source]
        source: Box<crate::pull::Error>,
    },
    /// The deployment `upgrade` would follow was made from a commit id.
    #[error("{0} was deployed from a commit, not a ref: nothing to follow (deploy a ref to upgrade from it)")]
    NothingToFollow(String),
    /// The booted deployment's boot was not blessed (pending), or its
    /// entry ran out of tries (bad): `upgrade` does not go on from it.
    #[error("{}", not_blessed(deployment, entry, *bad))]
    NotBlessed {
        deployment: String,
        entry: String,
        bad: bool,
    },
    /// The deployments changed while the origin was pulled.
    #[error("the deployments changed while {origin} was pulled (another command ran): {now} from {now_origin} now; nothing deployed, run upgrade again")]
    ChangedMeanwhile {
        origin: String,
        now: String,
        now_origin: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn not_blessed(deployment: &str, entry: &str, bad: bool) -> String {
    if bad {
        format!(
            "the booted deployment {deployment} is bad (its entry {entry} ran out of tries): \
             no upgrade from it; nothing changed"
        )
    } else {
        format!(
            "the booted deployment {deployment} is not blessed yet (its entry {entry} is still \
             counted: this boot has not reached boot-complete.target): no upgrade from it until \
             it is; nothing changed"
        )
    }
}

/// A TOML file's bytes decoded as `what`: not UTF-8, or not such a file,
/// is refused with the path named (never read with bytes replaced).
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    what: &str,
) -> Result<T> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::Refused(format!("{}: not {what}: not UTF-8 ({e})", show(path))))?;
    toml::from_str(text).map_err(|e| Error::Refused(format!("{}: not {what}: {e}", show(path))))
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `SYSROOT/slate/state/OS/os.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsConfig {
    pub etc: EtcMode,
    pub var: VarMode,
    /// The modes are `os-init`'s defaults, chosen by no one: the OS's
    /// first deployment takes its image's (the manifest's `[deploy]`,
    /// `slate.deploy.etc` and `slate.deploy.var` in the commit).
    #[serde(default)]
    pub from_image: bool,
    /// `verity`: every deployment's `/usr` is a verified image, whatever
    /// its image asks (an image that asks for one gets one anyway).
    #[serde(default, skip_serializing_if = "UsrMode::is_plain")]
    pub usr: UsrMode,
}

impl OsConfig {
    /// Explicit modes.
    pub fn new(etc: EtcMode, var: VarMode) -> OsConfig {
        OsConfig {
            etc,
            var,
            from_image: false,
            usr: UsrMode::Plain,
        }
    }

    /// These modes, with what an image's commit metadata asks for in place
    /// of the defaults (only when `from_image`). An unknown mode there is an
    /// error naming the key.
    pub fn with_image(&self, meta: &crate::image_meta::Metadata) -> Result<OsConfig> {
        if !self.from_image {
            return Ok(self.clone());
        }
        let image = crate::image_meta::ImageDeploy::read(meta)
            .map_err(|e| Error::Refused(e.to_string()))?;
        Ok(OsConfig {
            etc: image.etc.unwrap_or(self.etc),
            var: image.var.unwrap_or(self.var),
            from_image: false,
            usr: self.usr,
        })
    }
}

/// `SYSROOT/slate/sysroot.toml`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SysrootConfig {
    /// The boot directory (an ESP, an XBOOTLDR partition, or a directory):
    /// absolute, or relative to the sysroot.
    boot: PathBuf,
}

/// An opened sysroot.
pub struct Sysroot {
    path: PathBuf,
    /// The sysroot's handle: every directory of it is opened below this
    /// one, no symlink followed.
    root: Dir,
    /// The boot directory as configured (`sysroot.toml`'s `boot`).
    boot_cfg: PathBuf,
    /// The boot directory, for messages and as a prefix of the paths below it.
    boot: PathBuf,
    /// Its handle; none when it is not there (a disk whose ESP is not
    /// mounted at its place).
    boot_dir: Option<Dir>,
    repo: Repo,
    /// The deployment booted (`OS/ID`), as a kernel command line names it.
    booted: Option<String>,
    /// Whether `booted` is running this process (its `/etc` and `/var`
    /// are the live ones), not merely named.
    running: bool,
}

/// The writer lock of a sysroot, released on drop.
pub struct SysrootLock {
    _fd: OwnedFd,
}

/// Whether `name` may name an OS: letters, digits, `.`, `_`, `-`; not
/// starting with `.` or `-`; at most 64 bytes.
pub fn validate_os_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Refused(format!(
            "{name:?} is not an OS name: use letters, digits, '.', '_' and '-', \
             not starting with '.' or '-' (no '/' or '..')"
        )))
    }
}

impl Sysroot {
    /// Make `path` a sysroot: the repository, the directories, the boot
    /// directory (`boot`, default `SYSROOT/boot`). The configuration is
    /// written last: its presence marks a complete sysroot.
    pub fn init_fs(path: &Path, boot: Option<&Path>) -> Result<Sysroot> {
        std::fs::create_dir_all(path).map_err(io_err(path))?;
        let path = std::fs::canonicalize(path).map_err(io_err(path))?;
        let root = Dir::open_named(&path)?;
        let slate = root.sub_create("slate")?;
        if slate.kind("sysroot.toml")?.is_some() {
            return Err(Error::Refused(format!(
                "{}: already a sysroot",
                show(&path)
            )));
        }
        for d in ["deploy", "state"] {
            slate.sub_create(d)?;
        }
        let repo_path = slate.join("repo");
        if slate
            .sub("repo")
            .and_then(|r| r.kind("config"))
            .ok()
            .flatten()
            != Some(rfs::FileType::RegularFile)
        {
            slate.remove_tree("repo")?;
            Repo::init(&repo_path, RepoMode::Bare)?;
        }
        let boot_rel = boot
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("boot"));
        let (_, boot_dir) = resolve_boot(&root, &path, &boot_rel, false, true)?;
        boot_dir
            .ok_or_else(|| not_there(&path.join(&boot_rel)))?
            .create_rel(Path::new("loader/entries"))?;
        let cfg = SysrootConfig { boot: boot_rel };
        write_toml(&slate, "sysroot.toml", &cfg)?;
        Sysroot::open(&path, None)
    }

    /// Name another boot directory (absolute, or relative to the
    /// sysroot): where a machine will find its ESP once the sysroot is on
    /// a disk (`slate admin install` writes `/efi`).
    pub fn set_boot_dir(&self, boot: &Path) -> Result<()> {
        let cfg = SysrootConfig {
            boot: boot.to_path_buf(),
        };
        write_toml(&self.root.sub("slate")?, "sysroot.toml", &cfg)
    }

    /// Open the sysroot at `path`. `booted` is the running deployment
    /// (`OS/ID`), when the caller knows this sysroot is the running one.
    ///
    /// The boot directory is looked up inside the sysroot (symlinks on
    /// the way resolved as if the sysroot were `/`), unless the sysroot
    /// is `/` or the running system's ([`Sysroot::set_running`]): a disk
    /// given as `--sysroot` never names the host's `/efi` or `/boot`.
    pub fn open(path: &Path, booted: Option<String>) -> Result<Sysroot> {
        let path = std::fs::canonicalize(path).map_err(io_err(path))?;
        let root = Dir::open_named(&path)?;
        let cfg_path = path.join("slate/sysroot.toml");
        let slate = match root.sub("slate") {
            Ok(d) => d,
            Err(e) if dirs::is_not_found(&e) => return Err(Error::NotASysroot(path)),
            Err(e) => return Err(e),
        };
        let cfg: SysrootConfig = match slate.read("sysroot.toml")? {
            Some(b) => parse_toml(&cfg_path, &b, "a sysroot configuration")?,
            None => return Err(Error::NotASysroot(path)),
        };
        // The repository's own directories are opened without following
        // symlinks; its top one must not be a symlink either.
        let repo_dir = slate.sub("repo")?;
        let repo = Repo::open(repo_dir.path())?;
        let (boot, boot_dir) = resolve_boot(&root, &path, &cfg.boot, false, false)?;
        Ok(Sysroot {
            path,
            root,
            boot_cfg: cfg.boot,
            boot,
            boot_dir,
            repo,
            booted,
            running: false,
        })
    }

    /// Declare that the booted deployment is the one running this
    /// process: `/etc` and `/var` are then read live, and the boot
    /// directory is the running system's (its ESP mounted at `/efi`).
    pub fn set_running(&mut self, running: bool) {
        self.running = running && self.booted.is_some();
        if let Ok((boot, dir)) =
            resolve_boot(&self.root, &self.path, &self.boot_cfg, self.running, false)
        {
            self.boot = boot;
            self.boot_dir = dir;
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn boot_dir(&self) -> &Path {
        &self.boot
    }
    pub fn repo(&self) -> &Repo {
        &self.repo
    }
    pub fn booted(&self) -> Option<&str> {
        self.booted.as_deref()
    }

    pub(crate) fn deploy_dir(&self, os: &str) -> PathBuf {
        self.path.join("slate/deploy").join(os)
    }
    pub(crate) fn state_dir(&self, os: &str) -> PathBuf {
        self.path.join("slate/state").join(os)
    }
    pub(crate) fn entries_dir(&self) -> PathBuf {
        self.boot.join("loader/entries")
    }
    pub(crate) fn kernels_dir(&self, os: &str) -> PathBuf {
        self.boot.join("slate").join(os)
    }

    /// The boot directory's handle; an error naming it when it is not there.
    pub(crate) fn boot(&self) -> Result<&Dir> {
        self.boot_dir.as_ref().ok_or_else(|| not_there(&self.boot))
    }

    /// The directory `p` (a path below the sysroot or the boot directory
    /// as this module makes them), opened below their handle: a symlink
    /// or `..` on the way is refused.
    pub(crate) fn dir(&self, p: &Path) -> Result<Dir> {
        let (base, rel) = self.base_of(p)?;
        base.open_rel(rel)
    }

    /// As [`Sysroot::dir`], the missing directories made.
    pub(crate) fn dir_create(&self, p: &Path) -> Result<Dir> {
        let (base, rel) = self.base_of(p)?;
        base.create_rel(rel)
    }

    /// The directory `p`, or none when it is not there.
    pub(crate) fn dir_if_there(&self, p: &Path) -> Result<Option<Dir>> {
        match self.dir(p) {
            Ok(d) => Ok(Some(d)),
            Err(e) if dirs::is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn base_of<'p>(&self, p: &'p Path) -> Result<(&Dir, &'p Path)> {
        if let Ok(rel) = p.strip_prefix(&self.boot) {
            return Ok((self.boot()?, rel));
        }
        match p.strip_prefix(&self.path) {
            Ok(rel) => Ok((&self.root, rel)),
            Err(_) => Err(Error::Refused(format!(
                "{}: not below the sysroot {}",
                show(p),
                show(&self.path)
            ))),
        }
    }

    /// Wait for and take the sysroot's writer lock.
    pub fn lock(&self) -> Result<SysrootLock> {
        let slate = self.root.sub("slate")?;
        let p = slate.join("lock");
        let fd = rfs::openat(
            slate.fd(),
            "lock",
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io_err(&p)(e.into()))?;
        rfs::flock(&fd, FlockOperation::LockExclusive).map_err(|e| io_err(&p)(e.into()))?;
        Ok(SysrootLock { _fd: fd })
    }

    /// Set up (or change the settings of) the OS `name`.
    pub fn os_init(&self, name: &str, cfg: &OsConfig) -> Result<bool> {
        validate_os_name(name)?;
        self.dir_create(&self.deploy_dir(name))?;
        let state = self.dir_create(&self.state_dir(name))?;
        state.sub_create("var")?;
        let existed = state.kind("os.toml")?.is_some();
        write_toml(&state, "os.toml", cfg)?;
        Ok(!existed)
    }

    /// The settings of the OS `name`.
    pub fn os_config(&self, name: &str) -> Result<OsConfig> {
        validate_os_name(name)?;
        let p = self.state_dir(name).join("os.toml");
        let Some(state) = self.dir_if_there(&self.state_dir(name))? else {
            return Err(Error::NoSuchOs(name.to_string()));
        };
        match state.read("os.toml")? {
            Some(b) => parse_toml(&p, &b, "an OS configuration"),
            None => Err(Error::NoSuchOs(name.to_string())),
        }
    }

    /// The OSes set up here, sorted.
    pub fn oses(&self) -> Result<Vec<String>> {
        let dir = self.dir(&self.path.join("slate/state"))?;
        let mut out = Vec::new();
        for (n, ft) in dir.entries()? {
            let Some(n) = n.to_str() else { continue };
            if ft != rfs::FileType::Directory || validate_os_name(n).is_err() {
                continue;
            }
            if dir.sub(n)?.kind("os.toml")?.is_some() {
                out.push(n.to_string());
            }
        }
        out.sort();
        Ok(out)
    }
}

fn not_there(boot: &Path) -> Error {
    Error::Refused(format!(
        "{}: the boot directory is not there (mount the ESP there, or name the boot \
         directory in slate/sysroot.toml)",
        show(boot)
    ))
}

/// The boot directory `cfg` of the sysroot at `path`: on this machine when
/// `host` (or the sysroot is `/`), else inside the sysroot, resolved with
/// `RESOLVE_IN_ROOT` so that no symlink of the disk leads out of it.
/// Returns its path (for messages) and its handle (none when not there;
/// made when `create`).
fn resolve_boot(
    root: &Dir,
    path: &Path,
    cfg: &Path,
    host: bool,
    create: bool,
) -> Result<(PathBuf, Option<Dir>)> {
    let rel = cfg.strip_prefix("/").unwrap_or(cfg);
    if host || path == Path::new("/") {
        let p = path.join(cfg);
        if create {
            std::fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        return Ok((p.clone(), Dir::open_named(&p).ok()));
    }
    let p = path.join(rel);
    let open = || {
        rfs::openat2(
            root.fd(),
            if rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                rel
            },
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    };
    if create && open().is_err() {
        root.create_rel(rel)?;
    }
    Ok((p.clone(), open().ok().map(|fd| Dir::from_fd(fd, p))))
}

/// Write `name` in `dir` as TOML, atomically.
pub(crate) fn write_toml<T: Serialize>(dir: &Dir, name: &str, value: &T) -> Result<()> {
    let text = toml::to_string(value)
        .expect("plain data serializes")
        .into_bytes();
    dir.write(name, &text, 0o644)
}

/// The deployment a kernel command line names (`slate=/slate/deploy/OS/ID`),
/// as `OS/ID`.
pub fn booted_from_cmdline(cmdline: &str) -> Option<String> {
    cmdline.split_whitespace().find_map(|w| {
        let v = w.strip_prefix("slate=")?;
        let rest = v.trim_start_matches('/').strip_prefix("slate/deploy/")?;
        let (os, id) = rest.split_once('/')?;
        (!os.is_empty() && !id.is_empty() && !id.contains('/')).then(|| format!("{os}/{id}"))
    })
}
