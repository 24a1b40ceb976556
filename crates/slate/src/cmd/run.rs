use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use slate_core::compose::run::{self, Volatile};

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
    runs a private writable copy.",
    after_help = "Examples:\n  slate run --repo repo --boot os/main\n  \
    slate run --repo repo os/main -- cat /etc/os-release\n  \
    slate run --volatile=no rootfs/ -- apt-get update"
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
    /// Give the container a network of its own (only loopback) instead of
    /// the host's: its servers then bind no port of the host.
    #[arg(long)]
    private_network: bool,
    /// Where checkouts are kept, by commit id.
    #[arg(
        long,
        env = "SLATE_CACHE_DIR",
        value_name = "DIR",
        default_value = "/var/cache/slate"
    )]
    cache_dir: PathBuf,
    /// A ref or commit of the repository, or a folder.
    image: String,
    /// The command (or, with --boot, arguments for init).
    #[arg(last = true)]
    command: Vec<String>,
}

pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let as_dir = PathBuf::from(&a.image);
    let tree = if as_dir.is_dir() {
        as_dir
    } else {
        let repo = a
            .repo
            .open()
            .with_context(|| format!("{:?} is not a folder, so it names an image", a.image))?;
        let id = repo.rev_parse(&a.image)?;
        run::tree_for(&repo, &id, a.volatile, &a.cache_dir)
            .with_context(|| format!("checking out {} for the container", id.short(12)))?
    };
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let args = run::nspawn_args(
        &tree,
        a.volatile,
        a.boot,
        a.private_network,
        interactive,
        &a.command,
    );
    // Become systemd-nspawn: a signal to this process reaches the
    // container's manager, and nothing is left behind when it is killed.
    let e = std::os::unix::process::CommandExt::exec(
        std::process::Command::new("systemd-nspawn").args(&args),
    );
    Err(anyhow::anyhow!(
        "cannot run systemd-nspawn: {e} (it comes with the systemd-container package)"
    ))
}
