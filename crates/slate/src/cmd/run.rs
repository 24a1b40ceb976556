use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use slate_core::compose::run::{self, Volatile};
use slate_core::store::ObjectRead;

use super::GlobalRepoArg;

/// Run an image in a container (systemd-nspawn): a command, or with
/// `--boot` its init.
#[derive(Args)]
#[command(
    long_about = "Run an image in a container on systemd-nspawn: a ref or commit of the \
    repository (checked out once per commit into the cache), or a folder. With --boot the \
    image's systemd starts as PID 1. --volatile picks nspawn's mode: yes (the default) gives \
    the container an empty /etc and /var and the image's /usr read-only, which is how a \
    stateless image boots; state makes /var a tmpfs; overlay puts a tmpfs over the tree; no \
    runs a private writable copy.\n\n\
    The container has a network of its own with only loopback (nspawn's --private-network): \
    its servers (sshd, a web server) bind no port of the host. --host-network shares the \
    host's network instead (to fetch packages from inside, say).\n\n\
    With --boot, root logs in on the container's console without a password: a drop-in for \
    console-getty.service is bound into the container's /run, so it exists in this run only \
    and the image keeps its accounts locked (--no-autologin: the image's own login). Leave \
    with `poweroff`, or press Ctrl-] three times within a second.\n\n\
    The container's machine name, which is its hostname, comes from the image's name (the \
    manifest's image.name: \"Debian (Slate example)\" gives debian-slate-example), or the \
    folder's name.",
    after_help = "Examples:\n  slate run --repo repo --boot os/main\n  \
    slate run --repo repo os/main -- cat /etc/os-release\n  \
    slate run --host-network --volatile=no rootfs/ -- apt-get update\n  \
    slate run --dry-run --boot os/main\n  \
    slate run --repo repo --boot --extension ext/example/debug/x86-64 usr/example/x86-64"
)]
pub struct RunArgs {
    #[command(flatten)]
    repo: GlobalRepoArg,
    /// nspawn's volatile mode: no, state, yes, overlay.
    #[arg(long, default_value = "yes", value_name = "MODE")]
    volatile: Volatile,
    /// Boot the image's init instead of running a command.
    #[arg(long)]
    boot: bool,
    /// Share the host's network with the container (its servers then bind
    /// the host's ports); without it the container has only loopback.
    #[arg(long)]
    host_network: bool,
    /// The default (a network of the container's own, only loopback); kept
    /// for scripts that ask for it.
    #[arg(long, hide = true, conflicts_with = "host_network")]
    private_network: bool,
    /// With --boot, no root login on the console without a password: the
    /// image's own login prompt (its accounts are locked in the example).
    #[arg(long)]
    no_autologin: bool,
    /// Print the systemd-nspawn command line and run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where checkouts are kept, by commit id.
    #[arg(
        long,
        env = "SLATE_CACHE_DIR",
        value_name = "DIR",
        default_value = "/var/cache/slate"
    )]
    cache_dir: PathBuf,
    /// A system extension (a ref or commit of the repository; repeatable)
    /// bound at /run/extensions/NAME, where the image's systemd-sysext
    /// (systemd-sysext.service with --boot, or `systemd-sysext merge`)
    /// merges it over /usr. It must fit the image (its extension-release
    /// against the image's os-release).
    #[arg(long = "extension", value_name = "REF")]
    extensions: Vec<String>,
    /// A ref or commit of the repository, or a folder.
    image: String,
    /// The command (or, with --boot, arguments for init).
    #[arg(last = true)]
    command: Vec<String>,
}

pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let as_dir = PathBuf::from(&a.image);
    let (tree, name) = if as_dir.is_dir() {
        let name = std::fs::canonicalize(&as_dir)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        (as_dir, name)
    } else {
        let repo = a
            .repo
            .open()
            .with_context(|| format!("{:?} is not a folder, so it names an image", a.image))?;
        let id = repo.rev_parse(&a.image)?;
        let c = repo.read_commit(&id)?;
        let name = c
            .metadata
            .get(slate_core::image_meta::NAME)
            .cloned()
            .or_else(|| Some(a.image.clone()));
        let tree = run::tree_for(&repo, &id, a.volatile, &a.cache_dir)
            .with_context(|| format!("checking out {} for the container", id.short(12)))?;
        (tree, name)
    };
    let extensions = if a.extensions.is_empty() {
        Vec::new()
    } else {
        let repo = a
            .repo
            .open()
            .context("--extension names a ref of a repository")?;
        // Read inside the image's tree: a symlink on the way resolves
        // there, never on the host.
        let root = slate_core::fsutil::Root::new(&tree)
            .with_context(|| format!("opening {}", tree.display()))?;
        let os_release = ["usr/lib/os-release", "etc/os-release"]
            .iter()
            .find_map(|p| root.read(p).ok())
            .map(|t| slate_core::compose::sysext::Release::parse(&String::from_utf8_lossy(&t)));
        a.extensions
            .iter()
            .map(|x| run::extension_for(&repo, x, os_release.as_ref(), &a.cache_dir))
            .collect::<Result<Vec<_>, _>>()?
    };
    let autologin = if a.boot && !a.no_autologin {
        Some(run::autologin_dropin(&a.cache_dir)?)
    } else {
        None
    };
    let opts = run::NspawnOptions {
        volatile: a.volatile,
        boot: a.boot,
        host_network: a.host_network,
        autologin,
        interactive: std::io::IsTerminal::is_terminal(&std::io::stdin()),
        machine: name.as_deref().and_then(run::machine_name),
        extensions,
    };
    let args = run::nspawn_args(&tree, &opts, &a.command);
    if a.dry_run {
        let shown: Vec<String> = std::iter::once("systemd-nspawn".to_string())
            .chain(args.iter().map(|x| x.to_string_lossy().into_owned()))
            .collect();
        crate::outln!("{}", shown.join(" "))?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.boot {
        eprintln!(
            "{}; network: {}. Leave with `poweroff`, or Ctrl-] three times within a second.",
            if opts.autologin.is_some() {
                "console: root logs in without a password (in this container only)"
            } else {
                "console: the image's own login"
            },
            if a.host_network {
                "the host's"
            } else {
                "its own, loopback only (--host-network to share the host's)"
            }
        );
    }
    // Become systemd-nspawn: a signal to this process reaches the
    // container's manager, and nothing is left behind when it is killed.
    let e = std::os::unix::process::CommandExt::exec(
        std::process::Command::new("systemd-nspawn").args(&args),
    );
    Err(anyhow::anyhow!(
        "cannot run systemd-nspawn: {e} (it comes with the systemd-container package)"
    ))
}
