//! The agent on each machine, one run (a timer starts it): its key made
//! once and kept (`STATE/machine.key`, 0600, written atomically),
//! enrolled once (`STATE/enrolled.json`), the sysroot's status reported
//! (the library's `Sysroot::status`), and the target the server answers
//! staged through the library when its wave has come (`apply.rs`). An
//! unreachable or failing server is retried with backoff, a bounded
//! number of times, and changes nothing on the machine.

mod apply;
mod key;
mod restore;
pub mod state;

use std::path::{Path, PathBuf};
use std::time::Duration;

use slate_core::remotes::Fetch;
use slate_core::sysroot::Sysroot;

use crate::client::{Client, ClientError};
use crate::wire::{Report, Reported};
pub use apply::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    BadFile { path: PathBuf, detail: String },
    #[error("this machine is not enrolled yet and no token was given (--token-file or --token-credential)")]
    NoToken,
    #[error("reading the sysroot's status: {0}")]
    Status(#[source] Box<slate_core::sysroot::Error>),
    #[error("staging {commit}: {source}")]
    Stage {
        commit: String,
        #[source]
        source: Box<slate_core::sysroot::Error>,
    },
    #[error("{what}: {detail}")]
    Answer { what: &'static str, detail: String },
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: ClientError },
}

/// One run's settings.
#[derive(Clone, Debug)]
pub struct Options {
    pub server: String,
    pub group: String,
    /// The enrollment token (needed only before the first enrollment).
    pub token: Option<String>,
    /// The server's CA (pinned); None: the system's.
    pub ca: Option<PathBuf>,
    /// The agent's own folder (`/var/lib/slate/agent`).
    pub state: PathBuf,
    /// Attempts of each request before giving up, and the first wait
    /// (doubled each time).
    pub attempts: u32,
    pub backoff: Duration,
    /// Stage the target when one is given (false: report only).
    pub apply: bool,
    pub agent_version: String,
    /// The machine's kept state: synced, or not, or only that (at early
    /// boot, before sshd: no report, no restart).
    pub kept: StateMode,
    /// The machine's root, where kept paths are read and restored.
    pub root: PathBuf,
    /// The hardware id's file (`/sys/class/dmi/id/product_uuid`).
    pub hardware_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateMode {
    Off,
    Sync,
    Only,
}

/// What a run did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunReport {
    pub machine: String,
    pub enrolled_now: bool,
    /// The machine whose state this one took when it enrolled.
    pub replaces: Option<String>,
    pub state: Option<state::StateSync>,
    /// Why the state was not synced (the run went on).
    pub state_error: Option<String>,
    pub reports: u64,
    pub target: Option<crate::wire::Target>,
    pub outcome: Outcome,
}

/// A request, again after a transient failure (the server unreachable,
/// 5xx, 429), at most `attempts` times, waiting `backoff`, doubled each
/// time. A refusal (4xx) is not retried.
fn retry<T>(
    opts: &Options,
    mut f: impl FnMut() -> Result<T, ClientError>,
) -> Result<T, AgentError> {
    let mut wait = opts.backoff;
    let mut n = 0;
    loop {
        n += 1;
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && n < opts.attempts.max(1) => {
                eprintln!("agent: {e}; again in {:.1} s", wait.as_secs_f64());
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(300));
            }
            Err(e) if e.is_transient() => {
                return Err(AgentError::GaveUp {
                    attempts: n,
                    last: e,
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .chars()
        .filter(|c| !c.is_control())
        .take(crate::wire::MAX_HOSTNAME)
        .collect()
}

fn uptime() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split('.').next().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// The machine's hardware id (DMI's product UUID), if readable and sane.
pub fn hardware_id(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    crate::state::operator::check_hardware(text.trim()).ok()
}

/// What enrolling and syncing the kept state did.
struct Joined {
    enrolled_now: bool,
    replaces: Option<String>,
    state: Option<state::StateSync>,
    state_error: Option<String>,
}

/// Enroll (once) and sync the machine's kept state.
fn enroll_and_sync(opts: &Options, client: &Client, machine: &str) -> Result<Joined, AgentError> {
    let mut replaces = None;
    let enrolled_now = if key::enrolled(&opts.state, &opts.server, &opts.group)? {
        false
    } else {
        let token = opts.token.as_deref().ok_or(AgentError::NoToken)?;
        let host = hostname();
        let hw = opts.hardware_file.as_deref().and_then(hardware_id);
        let e = retry(opts, || {
            client.enroll_as(&opts.group, token, &host, hw.as_deref())
        })?;
        replaces = e.replaces;
        key::mark_enrolled(&opts.state, &opts.server, &opts.group, machine)?;
        true
    };
    let mut joined = Joined {
        enrolled_now,
        replaces,
        state: None,
        state_error: None,
    };
    if opts.kept == StateMode::Off {
        return Ok(joined);
    }
    let root = slate_core::fsutil::Root::new(&opts.root).map_err(|source| AgentError::Io {
        path: opts.root.clone(),
        source,
    })?;
    let restart = opts.kept == StateMode::Sync;
    match state::sync(client, &opts.state, &root, restart) {
        Ok(s) => joined.state = Some(s),
        Err(e) if state::not_kept(&e) || opts.kept == StateMode::Sync => {
            joined.state_error = Some(e.to_string())
        }
        Err(e) => return Err(e),
    }
    Ok(joined)
}

/// A run that only enrolls and syncs the kept state (at early boot: no
/// sysroot needed, no report, no sshd restart).
pub fn run_state_only(opts: &Options) -> Result<RunReport, AgentError> {
    let only = Options {
        kept: StateMode::Only,
        ..opts.clone()
    };
    let signing = key::load_or_make(&only.state)?;
    let client = Client::new(&only.server, signing, only.ca.as_deref())?;
    let machine = client.machine_id();
    let j = enroll_and_sync(&only, &client, &machine)?;
    Ok(RunReport {
        machine,
        enrolled_now: j.enrolled_now,
        replaces: j.replaces,
        state: j.state,
        state_error: j.state_error,
        reports: 0,
        target: None,
        outcome: Outcome::StateOnly,
    })
}

/// One run of the agent.
pub fn run(opts: &Options, sysroot: &Sysroot, fetch: &dyn Fetch) -> Result<RunReport, AgentError> {
    let signing = key::load_or_make(&opts.state)?;
    let client = Client::new(&opts.server, signing, opts.ca.as_deref())?;
    let machine = client.machine_id();
    let j = enroll_and_sync(opts, &client, &machine)?;
    if opts.kept == StateMode::Only {
        return Ok(RunReport {
            machine,
            enrolled_now: j.enrolled_now,
            replaces: j.replaces,
            state: j.state,
            state_error: j.state_error,
            reports: 0,
            target: None,
            outcome: Outcome::StateOnly,
        });
    }
    let status = sysroot
        .status()
        .map_err(|e| AgentError::Status(Box::new(e)))?;
    let report = Report::from_status(&status, &hostname(), uptime(), &opts.agent_version);
    let answer: Reported = retry(opts, || client.report(&report))?;
    let outcome = match (&answer.target, opts.apply) {
        (Some(t), true) => apply::apply(sysroot, &report, t, fetch)?,
        (Some(_), false) => Outcome::NotApplied,
        (None, _) => Outcome::NoTarget,
    };
    Ok(RunReport {
        machine,
        enrolled_now: j.enrolled_now,
        replaces: j.replaces,
        state: j.state,
        state_error: j.state_error,
        reports: answer.reports,
        target: answer.target,
        outcome,
    })
}

/// The agent's settings shipped in an image (`/usr/lib/slate/fleet.toml`,
/// written by compose from the manifest's `[fleet]`): every key optional,
/// the command line wins.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub url: Option<String>,
    pub group: Option<String>,
    /// The CA certificate's path (in the image, `/usr/lib/slate/fleet-ca.pem`).
    pub ca: Option<PathBuf>,
    /// The systemd credential holding the enrollment token.
    pub token_credential: Option<String>,
}

impl FileConfig {
    /// The file's settings, or the defaults when it is missing.
    pub fn read(path: &Path) -> Result<FileConfig, AgentError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
            Err(source) => {
                return Err(AgentError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        toml::from_str(&text).map_err(|e| AgentError::BadFile {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    }
}
