//! systemd-sysusers, re-implemented: system users and groups from
//! sysusers.d(5) rules, for a root that need not be running.
//!
//! A leaf module: it knows nothing of the store. The reference is systemd
//! 252: for the same root, configuration and arguments the four databases
//! (`/etc/passwd`, `/etc/group`, `/etc/shadow`, `/etc/gshadow`), their
//! modes, the `FILE-` backups and the exit status are the same. Where 252
//! follows symlinks out of `--root` (config directories, `u NAME /PATH`,
//! the databases themselves), Slate resolves them inside the root.
//!
//! As a library: [`load`] reads the configuration, [`plan()`] computes what
//! would be created without writing anything, [`apply`] writes it; [`run`]
//! does what the `systemd-sysusers` command does. What they need of the
//! machine (credentials, the date of `$SOURCE_DATE_EPOCH`, standard input)
//! comes in a [`Host`]; what happens comes back as events in a [`Log`].

pub mod parse;
pub mod plan;
pub mod write;

use std::io;
use std::path::PathBuf;

use serde::Serialize;

use crate::confd::{self, specifier::SystemSpecifiers, LineOutcome, Source};
pub use crate::confd::{os_text, Event, Host, Kind, Level, Log};
use crate::fsutil::Root;

pub use parse::Config;
pub use plan::{NewGroup, NewUser, Plan};

/// The command line of `systemd-sysusers`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--root=`: operate on this directory as `/`.
    pub root: Option<PathBuf>,
    /// `--replace=PATH`: the arguments stand in for this configuration file.
    pub replace: Option<String>,
    /// `--inline`: the arguments are configuration lines, not file names.
    pub inline: bool,
    /// `--dry-run`: compute and report, write nothing, take no lock.
    pub dry_run: bool,
    /// CONFIG arguments: names looked up in the directories, absolute
    /// paths (read as given, like systemd), `-` for standard input.
    pub args: Vec<String>,
}

/// A failure that ends the run with status 1 (its message is in the log).
#[derive(Debug)]
pub struct Failed;

fn fail(log: &mut Log, text: String) -> Failed {
    log.push(Level::Error, text);
    Failed
}

impl Options {
    /// The checks systemd makes on its arguments.
    pub fn validate(&self, cat_config: bool) -> Result<(), String> {
        if let Some(r) = &self.replace {
            if !r.starts_with('/') {
                return Err("The argument to --replace= must be an absolute path.".into());
            }
            if !r.ends_with(".conf") {
                return Err("The argument to --replace= must have the extension '.conf'.".into());
            }
            if cat_config {
                return Err("Option --replace= is not supported with --cat-config".into());
            }
            if self.args.is_empty() {
                return Err(
                    "When --replace= is given, some configuration items must be specified".into(),
                );
            }
        }
        Ok(())
    }

    pub fn open_root(&self) -> io::Result<Root> {
        Root::new(self.root.as_deref().unwrap_or(std::path::Path::new("/")))
    }
}

fn dirs() -> Vec<String> {
    confd::dirs("sysusers.d")
}

/// The configuration files in the order they are read, with `--replace=`
/// applied (`--cat-config`).
pub fn config_files(root: &Root, opts: &Options) -> Vec<confd::ConfFile> {
    let mut files = confd::list(root, &dirs(), ".conf");
    if let Some(r) = &opts.replace {
        confd::insert_replacement(&mut files, &dirs(), r);
    }
    files
}

/// Read the configuration the way `systemd-sysusers` does: CONFIG
/// arguments alone (or lines with `--inline`), or every file of the
/// directories (with the arguments in place of `--replace=`'s file), then
/// the `sysusers.extra` credential. Errors in the directories' files are
/// reported and skipped; errors in arguments are fatal.
pub fn load(root: &Root, opts: &Options, host: &Host, log: &mut Log) -> Result<Config, Failed> {
    let mut specs = SystemSpecifiers::new(root, opts.root.is_some(), host);
    let mut config = Config::default();
    let dirs = dirs();
    let src = Source {
        dirs: &dirs,
        args: &opts.args,
        replace: opts.replace.as_deref(),
        inline: opts.inline,
        extra_credential: "sysusers.extra",
        stdin_name: "-",
        open_error_suffix: ", ignoring",
    };
    let mut on_line = |shown: &str, n: usize, line: &[u8], log: &mut Log| match config
        .parse_line(&mut specs, shown, n, line, log)
    {
        Ok(()) => LineOutcome::Ok,
        Err(e) => {
            log.event(
                Level::Error,
                Kind::InvalidLine,
                None,
                format!("{shown}:{n}: {e}"),
            );
            LineOutcome::Failed
        }
    };
    confd::load(root, &src, host, log, &mut on_line).map_err(|_| Failed)?;
    config.add_implicit();
    Ok(config)
}

fn read_db(root: &Root, name: &str) -> io::Result<Vec<u8>> {
    match root.read(&format!("/etc/{name}")) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        r => r,
    }
}

/// Which users and groups `config` would create in `root`, with their IDs,
/// without writing anything.
pub fn plan(root: &Root, config: &Config, log: &mut Log) -> Result<Plan, Failed> {
    let passwd = read_db(root, "passwd").map_err(|e| {
        fail(
            log,
            format!("Failed to load user database: {}", os_text(&e)),
        )
    })?;
    let group = read_db(root, "group").map_err(|e| {
        fail(
            log,
            format!("Failed to read group database: {}", os_text(&e)),
        )
    })?;
    let existing = plan::Existing::load(&passwd, &group);
    Ok(plan::make_plan(root, config, &existing, log))
}

/// The result of a run.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub plan: Plan,
    /// The databases written (or, with `--dry-run`, that would be).
    pub files: Vec<String>,
}

/// Write what `plan` creates into the four databases of `root`; returns
/// the files written. With `dry_run`, only says what would be written.
pub fn apply(
    root: &Root,
    host: &Host,
    plan: &Plan,
    dry_run: bool,
    log: &mut Log,
) -> Result<Vec<String>, Failed> {
    write::write_files(root, host, plan, dry_run, log).map_err(|e| fail(log, e))
}

/// Everything `systemd-sysusers` does: read the configuration, take the
/// lock, plan, write. `Err` means exit status 1.
pub fn run(opts: &Options, host: &Host, log: &mut Log) -> Result<Outcome, Failed> {
    let root = opts.open_root().map_err(|e| {
        fail(
            log,
            format!(
                "Failed to open root {}: {}",
                opts.root.as_deref().unwrap_or("/".as_ref()).display(),
                os_text(&e)
            ),
        )
    })?;
    let config = load(&root, opts, host, log)?;
    let _lock = if opts.dry_run {
        None
    } else {
        Some(write::take_lock(&root).map_err(|e| {
            fail(
                log,
                format!("Failed to take /etc/passwd lock: {}", os_text(&e)),
            )
        })?)
    };
    let plan = plan(&root, &config, log)?;
    let files = apply(&root, host, &plan, opts.dry_run, log)?;
    Ok(Outcome { plan, files })
}
