//! `slate admin`: deployments in a sysroot.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use slate_core::pull;
use slate_core::store::{self, Repo};
use slate_core::sysroot::{
    self, DeployOptions, EntryState, EtcMode, OsConfig, Status, Sysroot, VarMode,
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
    Status(StatusArgs),
    Rollback(RollbackArgs),
    SetDefault(SetDefaultArgs),
    Undeploy(UndeployArgs),
    Pin(PinArgs),
    Cleanup(CleanupArgs),
}

/// Make a directory a sysroot: a bare repository, the deployment and
/// state directories, the boot directory.
#[derive(Args)]
struct InitFsArgs {
    /// The directory (created if missing).
    dir: PathBuf,
    /// The boot directory (an ESP or XBOOTLDR mount point, or any
    /// directory), absolute or relative to DIR.
    #[arg(long, value_name = "DIR", default_value = "boot")]
    boot: PathBuf,
    #[arg(long)]
    json: bool,
}

/// Set up an OS in the sysroot (or change how it keeps /etc and /var).
#[derive(Args)]
struct OsInitArgs {
    /// The OS's name (letters, digits, '.', '_', '-').
    os: String,
    /// stateless: /etc is an empty tmpfs at every boot, filled from the
    /// image's factory defaults; persistent: each deployment has its own
    /// /etc, local changes carried over by a three-way merge.
    #[arg(long, value_name = "MODE", default_value = "persistent")]
    etc: EtcMode,
    /// persistent: one /var for the OS's deployments; volatile: a tmpfs.
    #[arg(long, value_name = "MODE", default_value = "persistent")]
    var: VarMode,
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
    /// A ref or commit of the sysroot's repository (or of --from's).
    rev: String,
    /// The OS (default: the booted deployment's, or the only one).
    #[arg(long)]
    os: Option<String>,
    /// A kernel argument (repeatable): KEY=VALUE or KEY, replacing any of
    /// the same key inherited from the deployment this one follows.
    #[arg(long = "karg", value_name = "KARG")]
    kargs: Vec<String>,
    #[command(flatten)]
    common: DeployCommon,
}

/// Deploy the newest commit of the ref the booted (or default) deployment
/// was deployed from.
#[derive(Args)]
struct UpgradeArgs {
    /// The OS (default: the booted deployment's, or the only one).
    #[arg(long)]
    os: Option<String>,
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
    /// Show what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

/// The deployments in boot order: the first is the default.
#[derive(Args)]
struct StatusArgs {
    #[arg(long)]
    json: bool,
}

/// Make the second deployment of the boot order the default.
#[derive(Args)]
struct RollbackArgs {
    /// Boot-counting tries when the entry must be counted again.
    #[arg(long, default_value_t = 3, value_name = "N")]
    tries: u32,
    #[arg(long)]
    json: bool,
}

/// Make a deployment the default, whatever its boot counter says.
#[derive(Args)]
struct SetDefaultArgs {
    /// Its index in `status`, OS/ID, or ID.
    deployment: String,
    /// Boot-counting tries when the entry must be counted again.
    #[arg(long, default_value_t = 3, value_name = "N")]
    tries: u32,
    #[arg(long)]
    json: bool,
}

/// Remove a deployment (not the booted one, not the only one).
#[derive(Args)]
struct UndeployArgs {
    /// Its index in `status`, OS/ID, or ID.
    deployment: String,
    #[arg(long)]
    json: bool,
}

/// Pin a deployment: a new deploy never removes it.
#[derive(Args)]
struct PinArgs {
    /// Its index in `status`, OS/ID, or ID.
    deployment: String,
    /// Unpin it instead.
    #[arg(long)]
    unpin: bool,
    #[arg(long)]
    json: bool,
}

/// Remove what interrupted commands left: stray boot entries, deployments
/// without their entry, temporary directories, unused kernels and refs.
#[derive(Args)]
struct CleanupArgs {
    #[arg(long)]
    json: bool,
}

pub fn run(a: AdminArgs) -> anyhow::Result<()> {
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
        AdminCommand::InitFs(_) => unreachable!("handled above"),
        AdminCommand::OsInit(o) => {
            let _lock = s.lock()?;
            let cfg = OsConfig {
                etc: o.etc,
                var: o.var,
            };
            let new = s.os_init(&o.os, &cfg)?;
            if o.json {
                return output::json(&serde_json::json!({ "os": o.os, "new": new, "config": cfg }));
            }
            eprintln!(
                "{} OS {}: /etc {}, /var {}",
                if new { "set up" } else { "updated" },
                o.os,
                mode_name(&cfg.etc),
                mode_name(&cfg.var)
            );
            Ok(())
        }
        AdminCommand::Deploy(d) => {
            let _lock = s.lock()?;
            let (commit, origin) = resolve(&s, &d.rev, d.common.from.as_deref())?;
            let opts = DeployOptions {
                os: d.os.clone(),
                kargs: d.kargs.clone(),
                tries: d.common.tries,
                retain: d.common.retain,
                origin,
                now: now(),
            };
            deploy(&s, &commit, &opts, &d.common)
        }
        AdminCommand::Upgrade(u) => {
            let _lock = s.lock()?;
            let status = s.status()?;
            let os = s.pick_os(u.os.as_deref())?;
            let cur = status
                .deployments
                .iter()
                .find(|d| d.booted && d.os == os)
                .or_else(|| status.deployments.iter().find(|d| d.os == os))
                .with_context(|| format!("OS {os} has no deployment to upgrade"))?;
            let origin = cur.origin.clone().with_context(|| {
                format!(
                    "{}/{} was deployed from a commit, not a ref: nothing to follow \
                     (deploy a ref to upgrade from it)",
                    cur.os, cur.id
                )
            })?;
            let (commit, origin) = resolve(&s, &origin, u.common.from.as_deref())?;
            if commit.to_hex() == cur.commit {
                if u.common.json {
                    return output::json(
                        &serde_json::json!({ "upgraded": false, "commit": commit }),
                    );
                }
                eprintln!(
                    "{}/{} is at the newest commit of its ref ({commit}); nothing to do",
                    cur.os, cur.id
                );
                return Ok(());
            }
            let opts = DeployOptions {
                os: Some(os),
                kargs: Vec::new(),
                tries: u.common.tries,
                retain: u.common.retain,
                origin,
                now: now(),
            };
            deploy(&s, &commit, &opts, &u.common)
        }
        AdminCommand::Status(st) => {
            let status = s.status()?;
            if st.json {
                return output::json(&status);
            }
            print_status(&status)
        }
        AdminCommand::Rollback(r) => {
            let lock = s.lock()?;
            let (from, to) = s.rollback(&lock, r.tries)?;
            if r.json {
                return output::json(&serde_json::json!({ "from": from, "default": to }));
            }
            crate::outln!("{to}")?;
            eprintln!("{to} is the default now (was {from}); it boots next time");
            Ok(())
        }
        AdminCommand::SetDefault(d) => {
            let lock = s.lock()?;
            let name = s.set_default(&lock, &d.deployment, d.tries)?;
            if d.json {
                return output::json(&serde_json::json!({ "default": name }));
            }
            crate::outln!("{name}")?;
            eprintln!("{name} is the default now; it boots next time");
            Ok(())
        }
        AdminCommand::Undeploy(u) => {
            let lock = s.lock()?;
            let r = s.undeploy(&lock, &u.deployment)?;
            if u.json {
                return output::json(&r);
            }
            eprintln!("removed {}", r.deployment);
            Ok(())
        }
        AdminCommand::Pin(p) => {
            let lock = s.lock()?;
            let name = s.pin(&lock, &p.deployment, !p.unpin)?;
            if p.json {
                return output::json(
                    &serde_json::json!({ "deployment": name, "pinned": !p.unpin }),
                );
            }
            eprintln!("{} {name}", if p.unpin { "unpinned" } else { "pinned" });
            Ok(())
        }
        AdminCommand::Cleanup(c) => {
            let lock = s.lock()?;
            let rep = s.cleanup(&lock)?;
            if c.json {
                return output::json(&rep);
            }
            if rep.is_empty() {
                eprintln!("nothing to clean up");
            }
            for (what, list) in [
                ("stray boot entry", &rep.entries),
                ("incomplete deployment", &rep.incomplete),
                ("directory", &rep.directories),
                ("ref", &rep.refs),
                ("unused kernel", &rep.kernels),
            ] {
                for x in list {
                    eprintln!("removed {what} {x}");
                }
            }
            Ok(())
        }
    }
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

/// The sysroot, and which deployment is booted.
fn open(a: &AdminArgs) -> anyhow::Result<Sysroot> {
    let proc_cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let booted_here = sysroot::booted_from_cmdline(&proc_cmdline);
    let path = a.sysroot.clone().unwrap_or_else(|| {
        PathBuf::from(if booted_here.is_some() {
            "/sysroot"
        } else {
            "/"
        })
    });
    let probe = Sysroot::open(&path, None)
        .with_context(|| format!("opening sysroot {}", output::shown_path(&path)))?;
    let booted = match &a.cmdline {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading {}", output::shown_path(f)))?;
            sysroot::booted_from_cmdline(&text)
        }
        // /proc/cmdline names a deployment of this sysroot only if that
        // deployment's /usr is the running /usr.
        None => booted_here.filter(|b| {
            same_inode(
                &probe.path().join("slate/deploy").join(b).join("usr"),
                Path::new("/usr"),
            )
        }),
    };
    Ok(Sysroot::open(&path, booted)?)
}

fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The commit `rev` names in the sysroot's repository, after pulling it
/// from `from` when given; and the ref it came from, if `rev` is one.
fn resolve(
    s: &Sysroot,
    rev: &str,
    from: Option<&Path>,
) -> anyhow::Result<(slate_core::hash::ObjectId, Option<String>)> {
    let repo = s.repo();
    if let Some(src) = from {
        let src_repo = Repo::open(src)
            .with_context(|| format!("opening repository {}", output::shown_path(src)))?;
        let heads = pull::local_heads(&src_repo, &[rev.to_string()])?;
        let mut plan = pull::plan(&src_repo, repo, &heads, None)?;
        let stats = output::counted("pulled", "objects", |p| {
            pull::pull_local(&src_repo, repo, &mut plan, p)
        })
        .with_context(|| format!("pulling {rev} from {}", output::shown_path(src)))?;
        if stats.files + stats.trees + stats.commits > 0 {
            eprintln!(
                "pulled {} commits, {} trees, {} files ({:.1} MB) from {}",
                stats.commits,
                stats.trees,
                stats.files,
                stats.content_bytes as f64 / 1e6,
                output::shown_path(src)
            );
        }
    }
    let commit = repo
        .rev_parse(rev)
        .with_context(|| format!("{rev:?} names no commit of the sysroot's repository (pull it first, or use --from REPO)"))?;
    let is_ref = store::validate_ref_name(rev).is_ok() && repo.read_ref(rev)?.is_some();
    Ok((commit, is_ref.then(|| rev.to_string())))
}

fn deploy(
    s: &Sysroot,
    commit: &slate_core::hash::ObjectId,
    opts: &DeployOptions,
    c: &DeployCommon,
) -> anyhow::Result<()> {
    let plan = s.plan_deploy(commit, opts)?;
    if plan.kernel.is_none() {
        eprintln!(
            "warning: commit {commit} has no kernel (/usr/lib/modules/KVER/vmlinuz): \
             deployed without a boot entry"
        );
    }
    if c.dry_run {
        if c.json {
            return output::json(&serde_json::json!({ "dry_run": true, "plan": plan }));
        }
        crate::outln!("would deploy {commit} as {}/{}", plan.os, plan.id)?;
        if let Some(k) = &plan.kernel {
            crate::outln!("kernel {} ({})", k.version, k.dir_name())?;
        }
        crate::outln!("kernel arguments: {}", plan.kargs.join(" "))?;
        if let Some(f) = &plan.follows {
            crate::outln!("follows {f} (its /etc changes and kernel arguments)")?;
        }
        for r in &plan.removes {
            crate::outln!("would remove {r}")?;
        }
        crate::outln!(
            "needs {} in the sysroot, {} in the boot directory",
            sysroot::human_bytes(plan.sysroot_bytes),
            sysroot::human_bytes(plan.boot_bytes)
        )?;
        return Ok(());
    }
    let started = std::time::Instant::now();
    let done = output::counted("deploying", "paths", |p| s.deploy(plan, opts, p))?;
    if c.json {
        return output::json(&done);
    }
    let r = &done.record;
    crate::outln!("{}", r.name())?;
    match &done.entry {
        Some(e) => eprintln!(
            "deployed {} ({}) as the default: boot entry {e}; {:.2} s",
            r.name(),
            &r.commit[..12],
            started.elapsed().as_secs_f64()
        ),
        None => eprintln!(
            "deployed {} ({}) without a boot entry; {:.2} s",
            r.name(),
            &r.commit[..12],
            started.elapsed().as_secs_f64()
        ),
    }
    for x in &done.removed {
        eprintln!("removed {x}");
    }
    for p in &r.etc_conflicts {
        eprintln!(
            "conflict: {p} was changed here and in the new image: kept this machine's; \
             the image's is {p}{}",
            sysroot::NEW_SUFFIX
        );
    }
    Ok(())
}

fn print_status(st: &Status) -> anyhow::Result<()> {
    if st.deployments.is_empty() {
        eprintln!("no deployments in {}", st.sysroot);
    }
    for d in &st.deployments {
        let mark = if d.default { '*' } else { ' ' };
        let booted = if d.booted { " (booted)" } else { "" };
        crate::outln!("{mark} {} {}/{}{booted}", d.index, d.os, d.id)?;
        crate::outln!("    commit   {}", d.commit)?;
        if let Some(o) = &d.origin {
            crate::outln!("    origin   {o}")?;
        }
        if !d.pretty_name.is_empty() {
            crate::outln!("    os       {}", d.pretty_name)?;
        }
        let entry = match (d.entry_state, d.tries_left, &d.entry) {
            (Some(EntryState::Good), _, Some(f)) => format!("good ({f})"),
            (Some(EntryState::Pending), Some(t), Some(f)) => {
                format!("pending, {t} tries left ({f})")
            }
            (Some(EntryState::Bad), _, Some(f)) => format!("bad: no tries left ({f})"),
            _ => "none (no kernel)".to_string(),
        };
        crate::outln!("    entry    {entry}")?;
        if let Some(k) = &d.kernel {
            crate::outln!("    kernel   {k}")?;
        }
        if !d.kargs.is_empty() {
            crate::outln!("    kargs    {}", d.kargs.join(" "))?;
        }
        if d.pinned {
            crate::outln!("    pinned")?;
        }
        for c in &d.etc_conflicts {
            crate::outln!(
                "    conflict {c} (the image's version: {c}{})",
                sysroot::NEW_SUFFIX
            )?;
        }
    }
    for e in &st.stray_entries {
        eprintln!("stray boot entry {e} (remove it with `slate admin cleanup`)");
    }
    Ok(())
}
