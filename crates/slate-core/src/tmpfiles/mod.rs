//! systemd-tmpfiles, re-implemented: files, directories, links, devices,
//! copies of factory defaults, permissions, ACLs, xattrs and file
//! attributes from tmpfiles.d(5) rules, and age-based cleaning; for a root
//! that need not be running.
//!
//! A leaf module: it knows nothing of the store. The reference is systemd
//! 252: for the same root, configuration and arguments the tree and the
//! exit status are the same. Where 252 follows a symlink out of `--root`
//! (`w` on a link to an absolute path, `R` below a link, globs and parent
//! creation through links, `C` sources), Slate resolves every path inside
//! the root: nothing outside it is read, written or removed; removal stops
//! at mount points. Where 252 puts `--root` in front of what `%S %C %L %t`
//! expand to (a path then lands twice inside the root, a file's content
//! names the build machine), Slate expands them as the image sees them.
//! With `--user` (per-user configuration from the XDG directories, the
//! user's specifiers) it follows 252 exactly. A file with several hard links is replaced by a copy
//! of its own before it is changed in place, so no other link (a
//! repository object, say) changes with it.
//!
//! As a library: [`load`] reads the configuration, [`plan`] computes what
//! will be done in which order (a plain value, with what each step is
//! expected to do), [`apply`] carries it out. What they need of the
//! machine comes in a [`Host`]; what happens comes back as [`Event`]s; the
//! process umask is never changed.

pub mod acl;
mod clean;
mod columns;
mod copy;
mod create;
pub mod fs;
mod item;
mod nodes;
pub mod parse;
mod paths;
mod perms;
mod plan;
#[cfg(test)]
mod tests;
mod unshare;
mod values;

use std::io;
use std::path::PathBuf;

use indexmap::IndexMap;

use crate::confd::{self, ConfFile, LineOutcome, Source};
pub use crate::confd::{os_text, Event, Host, Kind, Level, Log};
use crate::fsutil::Root;
use parse::{Item, Parser};
pub use plan::{Effect, Plan, Step};

/// Operations, as bits.
pub const OP_CREATE: u8 = 1;
pub const OP_REMOVE: u8 = 2;
pub const OP_CLEAN: u8 = 4;

/// Exit statuses of systemd-tmpfiles.
pub const EXIT_DATAERR: u8 = 65;
pub const EXIT_CANTCREAT: u8 = 73;

/// The command line of `systemd-tmpfiles`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub root: Option<PathBuf>,
    pub create: bool,
    pub clean: bool,
    pub remove: bool,
    pub boot: bool,
    pub prefix: Vec<String>,
    pub exclude_prefix: Vec<String>,
    pub replace: Option<String>,
    /// Lines naming users or groups that do not exist are skipped quietly.
    pub graceful: bool,
    /// CONFIG arguments: names looked up in the directories, absolute
    /// paths (read as given, like systemd), `-` for standard input.
    pub args: Vec<String>,
    /// Plan only: change nothing.
    pub dry_run: bool,
    /// `--user`: the user's own configuration (`user-tmpfiles.d` in the
    /// XDG directories) and specifiers.
    pub user: bool,
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
        }
        if !(self.create || self.clean || self.remove || cat_config) {
            return Err(
                "You need to specify at least one of --clean, --create or --remove.".into(),
            );
        }
        if self.user && self.root.is_some() {
            return Err("Combination of --user and --root= is not supported.".into());
        }
        if self.replace.is_some() && cat_config {
            return Err("Option --replace= is not supported with --cat-config".into());
        }
        if self.replace.is_some() && self.args.is_empty() {
            return Err(
                "When --replace= is given, some configuration items must be specified".into(),
            );
        }
        Ok(())
    }

    pub fn open_root(&self) -> io::Result<Root> {
        Root::new(self.root.as_deref().unwrap_or(std::path::Path::new("/")))
    }

    pub fn operations(&self) -> u8 {
        (if self.create { OP_CREATE } else { 0 })
            | (if self.remove { OP_REMOVE } else { 0 })
            | (if self.clean { OP_CLEAN } else { 0 })
    }
}

/// The directories of the configuration, highest priority first: the
/// system's `tmpfiles.d`, or with `--user` the `user-tmpfiles.d` of
/// `$XDG_CONFIG_DIRS` (`/etc/xdg`), `$XDG_CONFIG_HOME` (`~/.config`),
/// `$XDG_RUNTIME_DIR` (when set), `$XDG_DATA_HOME` (`~/.local/share`)
/// and `$XDG_DATA_DIRS` (`/usr/local/share:/usr/share`), as systemd 252
/// orders them.
pub fn config_dirs(opts: &Options, host: &Host) -> Vec<String> {
    if !opts.user {
        return confd::dirs("tmpfiles.d");
    }
    let u = &host.user;
    let home = values::home_dir(host.home.as_deref(), u).ok();
    let list = |v: &Option<String>, default: &[&str]| -> Vec<String> {
        match v {
            Some(v) => v
                .split(':')
                .filter(|d| !d.is_empty())
                .map(String::from)
                .collect(),
            None => default.iter().map(|d| d.to_string()).collect(),
        }
    };
    let below_home = |v: &Option<String>, sub: &str| match v {
        Some(v) => Some(v.clone()),
        None => home
            .as_ref()
            .map(|h| format!("{}/{sub}", h.trim_end_matches('/'))),
    };
    let mut dirs = list(&u.config_dirs, &["/etc/xdg"]);
    dirs.extend(below_home(&u.config_home, ".config"));
    dirs.extend(u.runtime_dir.clone());
    dirs.extend(below_home(&u.data_home, ".local/share"));
    dirs.extend(list(&u.data_dirs, &["/usr/local/share", "/usr/share"]));
    dirs.iter()
        .map(|d| format!("{}/user-tmpfiles.d", d.trim_end_matches('/')))
        .collect()
}

/// The configuration files in the order they are read, with `--replace=`
/// applied (`--cat-config`).
pub fn config_files(root: &Root, opts: &Options, host: &Host) -> Vec<ConfFile> {
    let dirs = config_dirs(opts, host);
    let mut files = confd::list(root, &dirs, ".conf");
    if let Some(r) = &opts.replace {
        confd::insert_replacement(&mut files, &dirs, r);
    }
    files
}

/// All lines of one path (`ItemArray`), linked to the closest parent path.
#[derive(Debug, Default)]
pub struct Array {
    pub items: Vec<Item>,
    parent: Option<usize>,
    children: Vec<usize>,
}

/// The parsed configuration: plain paths and globs, each in the order
/// first seen.
#[derive(Debug, Default)]
pub struct Config {
    pub arrays: Vec<Array>,
    pub items: IndexMap<String, usize>,
    pub globs: IndexMap<String, usize>,
    /// Some line was invalid (exit status 65).
    pub invalid: bool,
    /// The glob lines' patterns, compiled once for cleaning.
    glob_matchers: Vec<fs::Matcher>,
}

impl Config {
    fn add(&mut self, item: Item, at: &str, root: &Root, log: &mut Log) {
        let glob = parse::needs_glob(item.kind);
        let map = if glob {
            &mut self.globs
        } else {
            &mut self.items
        };
        match map.get(&item.path) {
            Some(&idx) => {
                let a = &mut self.arrays[idx];
                if parse::is_duplicate(&a.items, &item) {
                    log.push(
                        Level::Info,
                        format!(
                            "{at}: Duplicate line for path \"{}\", ignoring.",
                            root.display(&item.path)
                        ),
                    );
                    return;
                }
                a.items.push(item);
                parse::sort_items(&mut a.items);
            }
            None => {
                self.arrays.push(Array::default());
                let idx = self.arrays.len() - 1;
                map.insert(item.path.clone(), idx);
                self.arrays[idx].items.push(item);
            }
        }
    }

    /// `X` lines take the age of the `d`-like line of their path or of
    /// the closest one above them.
    fn inherit_ages(&mut self) {
        let dirs: Vec<(String, Option<u64>)> = self
            .items
            .values()
            .flat_map(|&i| self.arrays[i].items.iter())
            .filter(|j| b"dDvqQ".contains(&j.kind))
            .map(|j| (j.path.clone(), j.age))
            .collect();
        for &gi in self.globs.values() {
            for i in &mut self.arrays[gi].items {
                if i.kind != b'X' {
                    continue;
                }
                let mut candidate: Option<&(String, Option<u64>)> = None;
                for j in &dirs {
                    if j.0 == i.path {
                        candidate = Some(j);
                        break;
                    }
                    let better = match candidate {
                        Some(c) => parse::path_startswith(&j.0, &c.0) && fs::fnmatch(&i.path, &j.0),
                        None => parse::path_startswith(&i.path, &j.0),
                    };
                    if better {
                        candidate = Some(j);
                    }
                }
                if let Some((_, Some(age))) = candidate {
                    i.age = Some(*age);
                }
            }
        }
    }

    /// Link every array to the closest array of a path above it.
    fn link_parents(&mut self) {
        let all: Vec<usize> = self
            .items
            .values()
            .chain(self.globs.values())
            .copied()
            .collect();
        for a in all {
            let Some(first) = self.arrays[a].items.first() else {
                continue;
            };
            let mut prefix = first.path.clone();
            while let Some(pos) = prefix.rfind('/') {
                prefix.truncate(pos);
                let key = if prefix.is_empty() {
                    "/"
                } else {
                    prefix.as_str()
                };
                if let Some(&p) = self.items.get(key).or_else(|| self.globs.get(key)) {
                    if p != a {
                        self.arrays[p].children.push(a);
                        self.arrays[a].parent = Some(p);
                    }
                    break;
                }
                if prefix.is_empty() {
                    break;
                }
            }
        }
    }

    /// Whether a plain line exists for `path` or a glob line matches it.
    pub fn covers(&self, path: &str) -> bool {
        self.items.contains_key(path) || self.glob_matchers.iter().any(|m| m.matches(path))
    }
}

/// A run: the root, the configuration, the host, the events.
pub struct Runner<'r> {
    pub root: &'r Root,
    pub config: Config,
    pub host: &'r Host,
    pub log: Log,
}

/// A failure already reported in the log.
#[derive(Debug)]
pub struct Failed;

/// Read the configuration as `systemd-tmpfiles` does: CONFIG arguments
/// alone, or every file of the directories (the arguments in place of
/// `--replace=`'s file), then the `tmpfiles.extra` credential.
pub fn load(root: &Root, opts: &Options, host: &Host, log: &mut Log) -> Result<Config, Failed> {
    let mut parser = Parser::new(root, opts.root.is_some(), host);
    parser.boot = opts.boot;
    parser.graceful = opts.graceful;
    parser.include = opts.prefix.clone();
    parser.exclude = opts.exclude_prefix.clone();
    parser.user = opts.user;
    let mut config = Config::default();
    let dirs = config_dirs(opts, host);
    let src = Source {
        dirs: &dirs,
        args: &opts.args,
        replace: opts.replace.as_deref(),
        inline: false,
        extra_credential: "tmpfiles.extra",
        stdin_name: "<stdin>",
        open_error_suffix: "",
    };
    let mut on_line = |shown: &str, n: usize, line: &[u8], log: &mut Log| match parser
        .parse_line(shown, n, line, log)
    {
        Ok(Some(mut item)) => {
            let at = format!("{shown}:{n}");
            item.line = at.clone();
            config.add(item, &at, root, log);
            LineOutcome::Ok
        }
        Ok(None) => LineOutcome::Ok,
        Err(r) if r.invalid => {
            config.invalid = true;
            LineOutcome::Invalid
        }
        Err(_) => LineOutcome::Failed,
    };
    confd::load(root, &src, host, log, &mut on_line).map_err(|_| Failed)?;
    config.inherit_ages();
    config.link_parents();
    config.glob_matchers = config
        .globs
        .values()
        .flat_map(|&g| config.arrays[g].items.iter())
        .map(|i| fs::Matcher::new(&i.path))
        .collect();
    Ok(config)
}

/// The result of a run.
#[derive(Debug, Default, serde::Serialize)]
pub struct Outcome {
    /// A line was invalid (`systemd-tmpfiles` exits 65).
    pub invalid_config: bool,
    /// Something could not be done (exit 73).
    pub failed: bool,
    /// The steps, in order.
    pub plan: Vec<Step>,
}

/// Everything `systemd-tmpfiles` does: read the configuration, plan, and
/// (unless `dry_run`) apply. `Err` when the run could not start (exit 1).
pub fn run(opts: &Options, host: &Host, log: &mut Log) -> Result<Outcome, Failed> {
    let root = match opts.open_root() {
        Ok(r) => r,
        Err(e) => {
            log.push(
                Level::Error,
                format!(
                    "Failed to open root {}: {}",
                    opts.root.as_deref().unwrap_or("/".as_ref()).display(),
                    os_text(&e)
                ),
            );
            return Err(Failed);
        }
    };
    let config = load(&root, opts, host, log)?;
    let invalid_config = config.invalid;
    let p = plan(&root, config, opts.operations(), host);
    let steps = p.steps.clone();
    let failed = if opts.dry_run {
        false
    } else {
        !apply(&root, p, host, log)
    };
    Ok(Outcome {
        invalid_config,
        failed,
        plan: steps,
    })
}

/// What `config` will do to `root` with the operations `ops`
/// ([`OP_CREATE`], [`OP_REMOVE`], [`OP_CLEAN`]), step by step in the order
/// they run; nothing is changed.
pub fn plan(root: &Root, config: Config, ops: u8, host: &Host) -> Plan {
    let r = Runner {
        root,
        config,
        host,
        log: Log::default(),
    };
    let steps = r.plan_steps(ops);
    Plan {
        steps,
        config: r.config,
    }
}

/// Carry out a plan; whether every step succeeded. Events go to `log`.
pub fn apply(root: &Root, plan: Plan, host: &Host, log: &mut Log) -> bool {
    let mut r = Runner {
        root,
        config: plan.config,
        host,
        log: Log::default(),
    };
    let mut ok = true;
    for s in &plan.steps {
        let item = r.config.arrays[s.array].items[s.item].clone();
        ok &= r.process_item(&item, s.ops);
    }
    log.events.append(&mut r.log.events);
    ok
}

impl Runner<'_> {
    pub fn show(&self, path: &str) -> String {
        self.root.display(path)
    }

    pub fn error(&mut self, text: String) -> Failed {
        self.log.push(Level::Error, text);
        Failed
    }

    pub(super) fn process_item(&mut self, i: &Item, op: u8) -> bool {
        let mut created = if op & OP_CREATE != 0 {
            self.create_item(i).is_ok()
        } else {
            true
        };
        if i.allow_failure {
            created = true;
        }
        let removed = op & OP_REMOVE == 0 || self.remove_item(i).is_ok();
        let cleaned = op & OP_CLEAN == 0 || self.clean_item(i).is_ok();
        created && removed && cleaned
    }
}
