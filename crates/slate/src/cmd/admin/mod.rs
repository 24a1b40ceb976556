//! `slate admin`: deployments in a sysroot.

mod deploy;
mod ext;
mod install;
mod maint;
mod remote;
mod source;
mod stage;
mod status;
mod updates;
mod upgrade;
mod verify;

use deploy::apply;
use maint::{cleanup, config_diff, factory_reset, prepare_root};
use status::print_status;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use slate_core::sysroot::{
    self, BootedBy, DeployOptions, EtcMode, OsConfig, Sysroot, UsrMode, VarMode,
};

use crate::output;

/// Deploy OS versions side by side in a sysroot, switch between them
/// atomically, roll back.
///
/// A sysroot holds a bare repository, one directory per deployment (a
/// hard-link checkout of its commit), each OS's persistent state, and
/// Boot Loader Specification entries (with systemd-boot's boot counting)
/// in its boot directory. The boot loader's order of the entries is the
/// order of the deployments: the first is the default.
#[derive(Args)]
#[command(after_help = "Examples:\n  slate admin init-fs /srv/machine\n  \
    slate admin --sysroot /srv/machine os-init debian --etc persistent\n  \
    slate admin --sysroot /srv/machine deploy --from build-repo --karg root=/dev/vda2 os/main\n  \
    slate admin --sysroot /srv/machine status\n  \
    slate admin --sysroot /srv/machine rollback")]
pub struct AdminArgs {
    /// The sysroot (default: /sysroot when booted from a Slate deployment,
    /// else /).
    #[arg(long, global = true, env = "SLATE_SYSROOT", value_name = "DIR")]
    sysroot: Option<PathBuf>,
    /// The kernel command line that names the booted deployment (default:
    /// /proc/cmdline, which counts only when this sysroot is the running
    /// system's).
    #[arg(long, global = true, value_name = "FILE")]
    cmdline: Option<PathBuf>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    InitFs(InitFsArgs),
    OsInit(OsInitArgs),
    Deploy(DeployArgs),
    Upgrade(UpgradeArgs),
    FinalizeStaged(stage::FinalizeStagedArgs),
    Unstage(stage::UnstageArgs),
    Status(StatusArgs),
    Rollback(RollbackArgs),
    SetDefault(SetDefaultArgs),
    Undeploy(UndeployArgs),
    Pin(PinArgs),
    Cleanup(CleanupArgs),
    ConfigDiff(ConfigDiffArgs),
    FactoryReset(FactoryResetArgs),
    PrepareRoot(PrepareRootArgs),
    Install(install::InstallArgs),
    Remote(remote::AdminRemoteArgs),
    Ext(ext::ExtArgs),
    Verify(verify::VerifyArgs),
}

/// The drift of a machine from its image: every path of /etc added (A),
/// modified (M, m for metadata only) or removed (D) against the image's
/// /etc, and every path of /var that no tmpfiles.d line of the image
/// declares (?).
#[derive(Args)]
#[command(after_help = "Examples:\n  slate admin config-diff\n  slate admin config-diff --json 1")]
struct ConfigDiffArgs {
    /// The deployment (index, OS/ID or ID; default: the booted one, else
    /// the default).
    deployment: Option<String>,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

/// Return an OS to its shipped state: wipe /etc (and the kept machine id)
/// and /var, or /var alone (the settings stay, the collected state goes).
/// Done at the next boot, or at once with --now when the OS is not the
/// running one. Prints what will be lost.
#[derive(Args)]
#[command(after_help = "Examples:\n  slate admin factory-reset\n  \
    slate admin factory-reset --var\n  slate admin --sysroot /mnt/disk factory-reset --now")]
struct FactoryResetArgs {
    /// The OS (default: the booted deployment's, or the only one).
    #[arg(long)]
    os: Option<String>,
    /// Wipe /etc (with neither flag: both).
    #[arg(long)]
    etc: bool,
    /// Wipe /var (with neither flag: both).
    #[arg(long)]
    var: bool,
    /// Reset now instead of at the next boot (not for the running OS).
    #[arg(long)]
    now: bool,
    /// Only print what would be lost.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

/// The initrd's step before switching root: build the booted deployment's
/// root (read from the kernel command line) at TARGET: /usr read-only,
/// /etc and /var as the OS keeps them, the machine id, the physical
/// sysroot at /sysroot; a requested factory reset first.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate admin prepare-root   (in the initrd, before switch-root)\n  slate admin --sysroot /mnt/disk --cmdline 'slate=/slate/deploy/debian/ID' prepare-root --target /mnt/root --json\n\nFiles:\n  /run/slate/prepare-root.json  what it did, read by `slate admin status`"
)]
struct PrepareRootArgs {
    /// Where to build the root (default: over the sysroot itself, as in
    /// an initrd).
    #[arg(long, value_name = "DIR")]
    target: Option<PathBuf>,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

/// Make a directory a sysroot: a bare repository, the deployment and
/// state directories, the boot directory.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate admin init-fs /srv/machine\n  slate admin init-fs /mnt/disk --boot efi\n\nFiles:\n  DIR/slate/repo  the sysroot's bare repository (root only)\n  DIR/slate/deploy/OS/ID  the deployments\n  DIR/boot/loader/entries  the boot entries (or those of --boot)"
)]
struct InitFsArgs {
    /// The directory (created if missing).
    dir: PathBuf,
    /// The boot directory (an ESP or XBOOTLDR mount point, or any
    /// directory), inside DIR: absolute (as DIR sees it) or relative to
    /// DIR. Only the running system's sysroot (or /) uses the machine's.
    #[arg(long, value_name = "DIR", default_value = "boot")]
    boot: PathBuf,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

/// Set up an OS in the sysroot (or change how it keeps /etc and /var).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate admin --sysroot /srv/machine os-init debian\n  slate admin --sysroot /srv/machine os-init debian --etc stateless --var persistent\n  slate admin --sysroot /srv/machine os-init debian --usr verity"
)]
struct OsInitArgs {
    /// The OS's name (letters, digits, '.', '_', '-').
    os: String,
    /// stateless: /etc is an empty tmpfs at every boot, filled from the
    /// image's factory defaults; persistent: each deployment has its own
    /// /etc, local changes carried over by a three-way merge. Without
    /// --etc and --var, a new OS takes the modes its first image asks for
    /// (its manifest's [deploy]; persistent where it asks nothing), and an
    /// existing one keeps its own.
    #[arg(long, value_name = "MODE")]
    etc: Option<EtcMode>,
    /// persistent: one /var for the OS's deployments; volatile: a tmpfs.
    #[arg(long, value_name = "MODE")]
    var: Option<VarMode>,
    /// verity: every deployment's /usr is a read-only EROFS image mounted
    /// through dm-verity (as for an image whose manifest asks for it);
    /// plain: a directory, unless the image asks for verity. Kept when
    /// not given.
    #[arg(long, value_name = "MODE")]
    usr: Option<UsrMode>,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

/// Deploy a commit: check it out beside the others, carry /etc over, and
/// make it the default with one atomic switch.
#[derive(Args)]
#[command(after_help = "Examples:\n  slate admin deploy os/main\n  \
    slate admin deploy --from /srv/build-repo --karg root=/dev/vda2 --karg quiet os/main\n  \
    slate admin deploy --dry-run --json 3f2a1b0c")]
struct DeployArgs {
    /// A ref or commit of the sysroot's repository (or of --from's), or
    /// REMOTE:REF to pull REF from a remote of the repository first (its
    /// signatures checked where the remote requires them).
    rev: String,
    /// The OS (default: the booted deployment's, or the only one).
    #[arg(long)]
    os: Option<String>,
    /// A kernel argument (repeatable): KEY=VALUE or KEY, replacing any of
    /// the same key inherited from the deployment this one follows. One
    /// word each: no spaces, control characters or quotes; not slate=.
    #[arg(long = "karg", value_name = "KARG")]
    kargs: Vec<String>,
    #[command(flatten)]
    common: DeployCommon,
}

/// Deploy the newest commit of the ref the booted (or default) deployment
/// was deployed from (for REMOTE:REF, pulled from the remote first, before
/// the sysroot's lock is taken: other admin commands are not held up by a
/// slow server).
///
/// No upgrade from a booted deployment that is not blessed yet (its boot
/// has not reached boot-complete.target) or bad. A commit whose boot
/// entry ran out of tries on this machine is recorded, and upgrade waits
/// for a newer one (exit 0, nothing changed); `slate admin deploy COMMIT`
/// still deploys it.
#[derive(Args)]
#[command(after_help = "Examples:\n  slate admin upgrade\n  \
    slate admin upgrade --stage   # the default at the next shutdown, /etc merged then\n  \
    slate admin --sysroot /srv/machine upgrade --from /srv/os\n  \
    slate admin upgrade --check   # is there an update? its version, size and changelog line\n  \
    slate admin upgrade --check --json\n  \
    slate admin upgrade --auto    # what slate-upgrade.service runs: the image's [update] policy\n  \
    slate admin upgrade --dry-run --json\n\n\
    --check exits 0 whether or not there is an update (\"update\": true or false with --json),\n\
    1 when the check failed. --auto exits 0 when the policy ran (up to date, reported,\n\
    staged, reboot asked for), 1 when it failed (recorded for `slate admin status`).\n\n\
    Environment of --auto: SLATE_REBOOT_COMMAND (default \"systemctl reboot\") reboots;\n\
    SLATE_SYSTEMD_RUN (default \"systemd-run\") schedules the reboot of a window.")]
struct UpgradeArgs {
    /// The OS (default: the booted deployment's, or the only one).
    #[arg(long)]
    os: Option<String>,
    /// Only tell whether an update exists: its commit, version, download
    /// size (the delta's from the deployed commit when the remote has
    /// one, else its files') and changelog line (the commit's subject),
    /// from the remote's summary alone; nothing is downloaded besides,
    /// nothing changes.
    #[arg(long, conflicts_with_all = ["auto", "dry_run", "stage"])]
    check: bool,
    /// Run the update policy (/usr/lib/slate/update.toml of the image,
    /// overridden by /etc/slate/update.toml): check only reports; stage
    /// stages the update; apply stages it and reboots (now, or at the
    /// reboot window). One line per decision; the result is recorded
    /// for `slate admin status`.
    #[arg(long, conflicts_with_all = ["dry_run", "stage"])]
    auto: bool,
    #[command(flatten)]
    common: DeployCommon,
}

#[derive(Args)]
struct DeployCommon {
    /// Pull the ref from this repository into the sysroot's first.
    #[arg(long, value_name = "REPO")]
    from: Option<PathBuf>,
    /// Boot-counting tries of the new entry (0: not counted).
    #[arg(long, default_value_t = 3, value_name = "N")]
    tries: u32,
    /// Keep every older deployment (by default the booted one, the
    /// previous default and pinned ones stay).
    #[arg(long)]
    retain: bool,
    /// When the sysroot or the boot directory lacks space, remove the
    /// oldest deployments that are neither booted nor pinned (nor the one
    /// this follows) first.
    #[arg(long)]
    auto_prune: bool,
    /// Stage the deployment instead: pulled, checked, checked out and its
    /// kernel copied now, but no boot entry; it becomes the default when
    /// the machine shuts down (slate-finalize-staged.service runs `slate
    /// admin finalize-staged`), /etc merged then, so that a change made
    /// meanwhile is kept. A new stage replaces the OS's older one.
    #[arg(long)]
    stage: bool,
    /// Leave out the system extensions of the deployment followed that
    /// have no build for the new image (by default the deploy is refused,
    /// naming them, before anything changes).
    #[arg(long)]
    drop_incompatible: bool,
    /// Show what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    transfer: crate::cmd::remote::MinRateArg,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

/// The deployments in boot order: the first is the default.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate admin status\n  slate admin --sysroot /srv/machine status --json | jq '.deployments[0]'"
)]
struct StatusArgs {
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

/// Make the second deployment of the boot order the default.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate admin rollback\n  slate admin --sysroot /srv/machine rollback --json"
)]
struct RollbackArgs {
    /// Boot-counting tries when the entry must be counted again.
    #[arg(long, default_value_t = 3, value_name = "N")]
    tries: u32,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

/// Make a deployment the default, whatever its boot counter says.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate admin set-default 1\n  slate admin set-default debian/3f2a9c1b0d4e.0"
)]
struct SetDefaultArgs {
    /// Its index in `status`, OS/ID, or ID.
    deployment: String,
    /// Boot-counting tries when the entry must be counted again.
    #[arg(long, default_value_t = 3, value_name = "N")]
    tries: u32,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

/// Remove a deployment (not the booted one, not the only one).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate admin undeploy 2\n  slate admin undeploy debian/3f2a9c1b0d4e.0"
)]
struct UndeployArgs {
    /// Its index in `status`, OS/ID, or ID.
    deployment: String,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

/// Pin a deployment: a new deploy never removes it.
#[derive(Args)]
#[command(after_help = "Examples:\n  slate admin pin 1\n  slate admin pin --unpin 1")]
struct PinArgs {
    /// Its index in `status`, OS/ID, or ID.
    deployment: String,
    /// Unpin it instead.
    #[arg(long)]
    unpin: bool,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

/// Remove what interrupted commands left: stray boot entries, deployments
/// without their entry, temporary directories and files, unused kernels
/// and refs.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate admin cleanup\n  slate admin --sysroot /srv/machine cleanup --json"
)]
struct CleanupArgs {
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: AdminArgs) -> anyhow::Result<()> {
    if let AdminCommand::Install(i) = &a.command {
        return install::run(i);
    }
    if let AdminCommand::InitFs(i) = &a.command {
        let s = Sysroot::init_fs(&i.dir, Some(&i.boot))
            .with_context(|| format!("making {} a sysroot", output::shown_path(&i.dir)))?;
        if i.json {
            return output::json(&serde_json::json!({
                "sysroot": s.path(), "boot": s.boot_dir(), "repo": s.repo().path()
            }));
        }
        eprintln!(
            "{} is a sysroot: repository {}, boot directory {}",
            s.path().display(),
            s.repo().path().display(),
            s.boot_dir().display()
        );
        return Ok(());
    }
    let s = open(&a)?;
    match a.command {
        AdminCommand::InitFs(_) | AdminCommand::Install(_) => unreachable!("handled above"),
        AdminCommand::OsInit(o) => os_init(&s, o),
        AdminCommand::Deploy(d) => deploy_cmd(&s, d),
        AdminCommand::Upgrade(u) => upgrade::run(&s, &u),
        AdminCommand::FinalizeStaged(f) => stage::finalize(&s, f),
        AdminCommand::Unstage(u) => stage::unstage(&s, u),
        AdminCommand::Status(st) => status_cmd(&s, st),
        AdminCommand::Rollback(r) => rollback(&s, r),
        AdminCommand::SetDefault(d) => set_default(&s, d),
        AdminCommand::Undeploy(u) => undeploy(&s, u),
        AdminCommand::Pin(p) => pin(&s, p),
        AdminCommand::ConfigDiff(c) => config_diff(&s, c),
        AdminCommand::FactoryReset(f) => factory_reset(&s, f),
        AdminCommand::PrepareRoot(p) => prepare_root(&s, p),
        AdminCommand::Cleanup(c) => cleanup(&s, c),
        AdminCommand::Remote(r) => remote::run(&s, r),
        AdminCommand::Ext(e) => ext::run(&s, e),
        AdminCommand::Verify(v) => verify::run(&s, v),
    }
}

/// `slate admin os-init`.
fn os_init(s: &Sysroot, o: OsInitArgs) -> anyhow::Result<()> {
    let _lock = s.lock()?;
    let old = s.os_config(&o.os).ok();
    let cfg = match (o.etc, o.var, &old) {
        (None, None, Some(old)) => old.clone(),
        (None, None, None) => OsConfig {
            from_image: true,
            ..OsConfig::new(EtcMode::Persistent, VarMode::Persistent)
        },
        (etc, var, old) => OsConfig::new(
            etc.or(old.as_ref().map(|c| c.etc))
                .unwrap_or(EtcMode::Persistent),
            var.or(old.as_ref().map(|c| c.var))
                .unwrap_or(VarMode::Persistent),
        ),
    };
    let cfg = OsConfig {
        usr: o.usr.or(old.as_ref().map(|c| c.usr)).unwrap_or_default(),
        ..cfg
    };
    let new = s.os_init(&o.os, &cfg)?;
    if o.json {
        return output::json(&serde_json::json!({ "os": o.os, "new": new, "config": cfg }));
    }
    if cfg.from_image {
        eprintln!(
            "set up OS {}: /etc and /var as its first image asks ([deploy]), else persistent",
            o.os
        );
    } else {
        eprintln!(
            "{} OS {}: /etc {}, /var {}",
            if new { "set up" } else { "updated" },
            o.os,
            mode_name(&cfg.etc),
            mode_name(&cfg.var)
        );
    }
    if !cfg.usr.is_plain() {
        eprintln!("  /usr of its deployments: {}", cfg.usr);
    }
    Ok(())
}

/// `slate admin deploy`.
fn deploy_cmd(s: &Sysroot, d: DeployArgs) -> anyhow::Result<()> {
    let opts = DeployOptions {
        os: d.os.clone(),
        kargs: d.kargs.clone(),
        tries: d.common.tries,
        retain: d.common.retain,
        auto_prune: d.common.auto_prune,
        origin: None,
        now: now(),
        stage: d.common.stage,
        drop_incompatible: d.common.drop_incompatible,
    };
    let started = std::time::Instant::now();
    let fetch = source::fetcher(d.common.transfer.min_rate);
    let p = output::counted("pulled", "objects", |p| {
        s.prepare_deploy(&d.rev, d.common.from.as_deref(), &opts, &*fetch, p)
    })?;
    source::report(&p.resolved, started);
    let _lock = p.lock;
    apply(s, p.plan, &p.opts, &d.common)
}

/// `slate admin status`.
fn status_cmd(s: &Sysroot, st: StatusArgs) -> anyhow::Result<()> {
    let status = s.status()?;
    let updates = updates::updates(s, &status);
    if st.json {
        let mut v = serde_json::to_value(&status)?;
        v["updates"] = serde_json::to_value(&updates)?;
        return output::json(&v);
    }
    print_status(&status)?;
    updates::print_updates(&updates)
}

/// `slate admin rollback`.
fn rollback(s: &Sysroot, r: RollbackArgs) -> anyhow::Result<()> {
    let lock = s.lock()?;
    let (from, to) = s.rollback(&lock, r.tries)?;
    if r.json {
        return output::json(&serde_json::json!({ "from": from, "default": to }));
    }
    crate::outln!("{to}")?;
    eprintln!("{to} is the default now (was {from}); it boots next time");
    warn_staged(s);
    Ok(())
}

/// `slate admin set-default`.
fn set_default(s: &Sysroot, d: SetDefaultArgs) -> anyhow::Result<()> {
    let lock = s.lock()?;
    let name = s.set_default(&lock, &d.deployment, d.tries)?;
    if d.json {
        return output::json(&serde_json::json!({ "default": name }));
    }
    crate::outln!("{name}")?;
    eprintln!("{name} is the default now; it boots next time");
    warn_staged(s);
    Ok(())
}

/// A staged deployment overrides a new choice of default at shutdown:
/// say so.
fn warn_staged(s: &Sysroot) {
    for st in s.all_staged().unwrap_or_default() {
        eprintln!(
            "warning: {}/{} is staged and becomes the default at shutdown; \
             `slate admin unstage --os {}` keeps this choice",
            st.os, st.id, st.os
        );
    }
}

/// `slate admin undeploy`.
fn undeploy(s: &Sysroot, u: UndeployArgs) -> anyhow::Result<()> {
    let lock = s.lock()?;
    let r = s.undeploy(&lock, &u.deployment)?;
    if u.json {
        return output::json(&r);
    }
    eprintln!("removed {}", r.deployment);
    Ok(())
}

/// `slate admin pin`.
fn pin(s: &Sysroot, p: PinArgs) -> anyhow::Result<()> {
    let lock = s.lock()?;
    let name = s.pin(&lock, &p.deployment, !p.unpin)?;
    if p.json {
        return output::json(&serde_json::json!({ "deployment": name, "pinned": !p.unpin }));
    }
    eprintln!("{} {name}", if p.unpin { "unpinned" } else { "pinned" });
    Ok(())
}

fn mode_name<T: serde::Serialize>(m: &T) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The sysroot, its booted deployment found by the library from the
/// kernel command line (`--cmdline FILE`, else /proc/cmdline).
fn open(a: &AdminArgs) -> anyhow::Result<Sysroot> {
    let proc_cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let path = a
        .sysroot
        .clone()
        .unwrap_or_else(|| sysroot::default_path(&proc_cmdline));
    let given = match &a.cmdline {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading {}", output::shown_path(f)))?,
        ),
        None => None,
    };
    let by = match &given {
        Some(text) => BootedBy::Cmdline(text),
        None if matches!(a.command, AdminCommand::PrepareRoot(_)) => BootedBy::Initrd {
            cmdline: &proc_cmdline,
        },
        None => BootedBy::Running {
            cmdline: &proc_cmdline,
            usr: Path::new("/usr"),
        },
    };
    Sysroot::open_booted(&path, by)
        .with_context(|| format!("opening sysroot {}", output::shown_path(&path)))
}
