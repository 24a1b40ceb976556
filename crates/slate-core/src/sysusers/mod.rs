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
//! [`plan`] computes what would be created without writing anything;
//! [`run`] does what the `systemd-sysusers` command does.

pub mod db;
pub mod parse;
pub mod plan;
pub mod write;

use std::io::{self, Read};
use std::path::PathBuf;

use serde::Serialize;

use crate::confd::{self, specifier::SystemSpecifiers};
pub use crate::confd::{os_text, Level, Log};
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

struct Loader<'r> {
    root: &'r Root,
    specs: SystemSpecifiers<'r>,
    config: Config,
}

impl Loader<'_> {
    /// Parse a whole file; returns whether every line parsed.
    fn parse_text(&mut self, shown: &str, data: &[u8], log: &mut Log) -> bool {
        let mut ok = true;
        for (n, line) in confd::lines(data).into_iter().enumerate() {
            let line = confd::strip(line);
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            if let Err(e) = self
                .config
                .parse_line(&mut self.specs, shown, n + 1, line, log)
            {
                log.push(Level::Error, format!("{shown}:{}: {e}", n + 1));
                ok = false;
            }
        }
        ok
    }

    /// A CONFIG argument (`read_config_file(fn, false)`).
    fn read_arg(&mut self, name: &str, log: &mut Log) -> Result<(), Failed> {
        let (shown, data) = if name == "-" {
            let mut data = Vec::new();
            io::stdin()
                .read_to_end(&mut data)
                .map_err(|e| fail(log, format!("Failed to read '-': {e}")))?;
            ("-".to_string(), data)
        } else if name.starts_with('/') {
            let data = std::fs::read(name).map_err(|e| {
                fail(
                    log,
                    format!("Failed to open '{name}', ignoring: {}", os_text(&e)),
                )
            })?;
            (name.to_string(), data)
        } else {
            let (path, data) = confd::search(self.root, &dirs(), name).map_err(|e| {
                fail(
                    log,
                    format!("Failed to open '{name}', ignoring: {}", os_text(&e)),
                )
            })?;
            (self.root.display(&path), data)
        };
        if self.parse_text(&shown, &data, log) {
            Ok(())
        } else {
            Err(Failed)
        }
    }

    fn parse_arguments(&mut self, opts: &Options, log: &mut Log) -> Result<(), Failed> {
        for (i, arg) in opts.args.iter().enumerate() {
            if opts.inline {
                if let Err(e) = self.config.parse_line(
                    &mut self.specs,
                    "(argument)",
                    i + 1,
                    arg.as_bytes(),
                    log,
                ) {
                    return Err(fail(log, format!("(argument):{}: {e}", i + 1)));
                }
            } else {
                self.read_arg(arg, log)?;
            }
        }
        Ok(())
    }
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
/// arguments alone, or every file of the directories (with the arguments
/// in place of `--replace=`'s file). Errors in the directories' files are
/// reported and skipped; errors in arguments are fatal.
pub fn load(root: &Root, opts: &Options, log: &mut Log) -> Result<Config, Failed> {
    let mut loader = Loader {
        root,
        specs: SystemSpecifiers::new(root, opts.root.is_some()),
        config: Config::default(),
    };
    if opts.replace.is_some() || opts.args.is_empty() {
        for f in config_files(root, opts) {
            if opts.replace.as_deref() == Some(f.path.as_str()) {
                loader.parse_arguments(opts, log)?;
            } else {
                match confd::read(root, &f) {
                    Ok(data) => {
                        loader.parse_text(&root.display(&f.path), &data, log);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => log.push(
                        Level::Error,
                        format!(
                            "Failed to open '{}', ignoring: {}",
                            root.display(&f.path),
                            os_text(&e)
                        ),
                    ),
                }
            }
        }
    } else {
        loader.parse_arguments(opts, log)?;
    }
    let mut config = loader.config;
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

/// Everything `systemd-sysusers` does: read the configuration, take the
/// lock, plan, write. `Err` means exit status 1.
pub fn run(opts: &Options, log: &mut Log) -> Result<Outcome, Failed> {
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
    let config = load(&root, opts, log)?;
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
    let files = write::write_files(&root, &plan, opts.dry_run, log).map_err(|e| fail(log, e))?;
    Ok(Outcome { plan, files })
}
