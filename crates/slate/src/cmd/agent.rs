//! `slate agent`: one run of the fleet agent (the `remote` feature).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use slate_core::sysroot::{self, BootedBy, Sysroot};
use slate_fleet::agent::{self, FileConfig, Options};

use crate::output;

/// Report this machine to its fleet server and stage the commit the
/// server's rollout gives it, once (slate-agent.timer runs it). The first
/// run makes the machine's key (STATE/machine.key) and enrolls with the
/// group's token. An unreachable server is tried again with backoff, a
/// bounded number of times; nothing on the machine changes then.
///
/// Settings not given here are read from /usr/lib/slate/fleet.toml (the
/// image's, written by compose from the manifest's [fleet]).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate agent --server https://fleet.example:8443 --group web --token-file /root/web.token --ca /usr/lib/slate/fleet-ca.pem\n  \
    slate agent --json   # the settings from /usr/lib/slate/fleet.toml, the token from a credential"
)]
pub struct AgentArgs {
    /// The fleet server's URL.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// The group to enroll into.
    #[arg(long)]
    group: Option<String>,
    /// A file holding the group's enrollment token.
    #[arg(long, value_name = "FILE", conflicts_with = "token_credential")]
    token_file: Option<PathBuf>,
    /// A systemd credential holding the token ($CREDENTIALS_DIRECTORY/NAME).
    #[arg(long, value_name = "NAME")]
    token_credential: Option<String>,
    /// The server's CA certificate (PEM): the only one trusted.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The image's agent settings.
    #[arg(long, default_value = "/usr/lib/slate/fleet.toml", value_name = "FILE")]
    config: PathBuf,
    /// The sysroot (default: from the kernel command line, else /).
    #[arg(long, value_name = "DIR")]
    sysroot: Option<PathBuf>,
    /// The booted deployment from this kernel command line instead of
    /// the running system's.
    #[arg(long, value_name = "FILE")]
    cmdline: Option<PathBuf>,
    /// The agent's folder: its key and enrollment.
    #[arg(long, default_value = "/var/lib/slate/agent", value_name = "DIR")]
    state_dir: PathBuf,
    /// Attempts of each request when the server cannot be reached.
    #[arg(long, default_value_t = 5)]
    attempts: u32,
    /// The first wait between attempts, doubled each time.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    backoff_ms: u64,
    /// Report only: stage nothing.
    #[arg(long)]
    report_only: bool,
    /// Only enroll and sync the machine's kept state (restore what the
    /// server gives back): no report, no stage, no sshd restart. What
    /// slate-state-restore.service runs at boot, before ssh.service.
    #[arg(long, conflicts_with = "no_state")]
    state_only: bool,
    /// Leave the machine's kept state alone.
    #[arg(long)]
    no_state: bool,
    /// The machine's root, where kept paths are read and restored
    /// (symlinks resolved inside it).
    #[arg(long, default_value = "/", value_name = "DIR")]
    root: PathBuf,
    /// The machine's hardware id, sent when it enrolls.
    #[arg(
        long,
        default_value = "/sys/class/dmi/id/product_uuid",
        value_name = "FILE"
    )]
    hardware_file: PathBuf,
    /// Print the run as JSON: {machine, enrolled_now, replaces, state:
    /// {restored, uploaded, conflicts: [{path, why}], ssh_restarted},
    /// state_error, reports, target, outcome: {outcome: no_target|
    /// state_only|not_applied|running|staged_already|went_bad|
    /// not_blessed|ref_moved|staged, ...}}.
    #[arg(long)]
    json: bool,
}

fn open(a: &AgentArgs) -> anyhow::Result<Sysroot> {
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
        None => BootedBy::Running {
            cmdline: &proc_cmdline,
            usr: Path::new("/usr"),
        },
    };
    Sysroot::open_booted(&path, by)
        .with_context(|| format!("opening sysroot {}", output::shown_path(&path)))
}

fn token(a: &AgentArgs, file: &FileConfig) -> anyhow::Result<Option<String>> {
    let path = match (
        &a.token_file,
        a.token_credential
            .as_ref()
            .or(file.token_credential.as_ref()),
    ) {
        (Some(f), _) => f.clone(),
        (None, Some(name)) => {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                anyhow::bail!("credential name {name:?}: a plain name");
            }
            let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
                return Ok(None);
            };
            Path::new(&dir).join(name)
        }
        (None, None) => return Ok(None),
    };
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(Some(t.strip_suffix('\n').unwrap_or(&t).to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && a.token_file.is_none() => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading the token from {}", path.display())),
    }
}

pub fn run(a: AgentArgs) -> anyhow::Result<()> {
    let file = FileConfig::read(&a.config)?;
    let Some(server) = a.server.clone().or(file.url.clone()) else {
        anyhow::bail!(
            "which fleet server? give --server URL (or url in {})",
            a.config.display()
        );
    };
    let Some(group) = a.group.clone().or(file.group.clone()) else {
        anyhow::bail!(
            "which group? give --group NAME (or group in {})",
            a.config.display()
        );
    };
    let opts = Options {
        server,
        group,
        token: token(&a, &file)?,
        ca: a.ca.clone().or(file.ca.clone()),
        state: a.state_dir.clone(),
        attempts: a.attempts,
        backoff: Duration::from_millis(a.backoff_ms),
        apply: !a.report_only,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        kept: if a.state_only {
            agent::StateMode::Only
        } else if a.no_state {
            agent::StateMode::Off
        } else {
            agent::StateMode::Sync
        },
        root: a.root.clone(),
        hardware_file: Some(a.hardware_file.clone()),
    };
    let r = if a.state_only {
        agent::run_state_only(&opts)?
    } else {
        let s = open(&a)?;
        let fetch = slate_remote::HttpFetch {
            opts: Default::default(),
        };
        agent::run(&opts, &s, &fetch)?
    };
    if a.json {
        return output::json(&r);
    }
    if r.enrolled_now {
        eprintln!("enrolled as machine {} in group {}", r.machine, opts.group);
    }
    if let Some(old) = &r.replaces {
        eprintln!("this machine replaces {old}: its kept state came back");
    }
    if let Some(st) = &r.state {
        for p in &st.restored {
            eprintln!("restored {p}");
        }
        for p in &st.uploaded {
            eprintln!("kept on the server: {p}");
        }
        for c in &st.conflicts {
            eprintln!("warning: {}: {}", c.path, c.why);
        }
        if st.ssh_restarted {
            eprintln!("ssh.service restarted");
        }
    }
    if let Some(e) = &r.state_error {
        eprintln!("warning: kept state not synced: {e}");
    }
    crate::outln!(
        "{}",
        serde_json::to_value(&r.outcome)?["outcome"]
            .as_str()
            .unwrap_or("")
    )?;
    eprintln!(
        "reported machine {} ({} reports kept){}",
        r.machine,
        r.reports,
        r.target
            .as_ref()
            .map(|t| format!("; target {} ({})", t.commit, t.reason))
            .unwrap_or_default()
    );
    Ok(())
}
