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
//! the root: nothing outside it is read, written or removed.

pub mod acl;
mod clean;
mod copy;
mod create;
pub mod fs;
mod item;
mod nodes;
pub mod parse;
mod perms;
mod values;

use std::io::{self, Read};
use std::path::PathBuf;

use indexmap::IndexMap;

use crate::confd::{self, ConfFile};
pub use crate::confd::{os_text, Level, Log};
use crate::fsutil::Root;
use parse::{Item, Parser};

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

    fn operations(&self) -> u8 {
        (if self.create { OP_CREATE } else { 0 })
            | (if self.remove { OP_REMOVE } else { 0 })
            | (if self.clean { OP_CLEAN } else { 0 })
    }
}

fn dirs() -> Vec<String> {
    confd::dirs("tmpfiles.d")
}

/// The configuration files in the order they are read, with `--replace=`
/// applied (`--cat-config`).
pub fn config_files(root: &Root, opts: &Options) -> Vec<ConfFile> {
    let mut files = confd::list(root, &dirs(), ".conf");
    if let Some(r) = &opts.replace {
        confd::insert_replacement(&mut files, &dirs(), r);
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

/// A run: the root, the configuration, the messages.
pub struct Runner<'r> {
    pub root: &'r Root,
    pub config: Config,
    pub log: Log,
    hardlinks_protected: Option<bool>,
}

/// A failure already reported in the log.
#[derive(Debug)]
pub struct Failed;

struct Loader<'r, 'l> {
    root: &'r Root,
    parser: Parser<'r>,
    config: Config,
    log: &'l mut Log,
}

impl Loader<'_, '_> {
    fn parse_text(&mut self, shown: &str, data: &[u8]) -> Result<(), Failed> {
        let mut result = Ok(());
        for (n, line) in confd::lines(data).into_iter().enumerate() {
            let line = confd::strip(line);
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            match self.parser.parse_line(shown, n + 1, line, self.log) {
                Ok(Some(item)) => {
                    let at = format!("{shown}:{}", n + 1);
                    self.config.add(item, &at, self.root, self.log);
                }
                Ok(None) => {}
                Err(r) if r.invalid => self.config.invalid = true,
                Err(_) => result = Err(Failed),
            }
        }
        self.config.inherit_ages();
        result
    }

    /// A CONFIG argument: errors opening it end the run.
    fn read_arg(&mut self, name: &str) -> Result<(), Failed> {
        let (shown, data) = if name == "-" {
            let mut data = Vec::new();
            io::stdin().read_to_end(&mut data).map_err(|e| {
                self.log
                    .push(Level::Error, format!("Failed to read '-': {}", os_text(&e)));
                Failed
            })?;
            ("<stdin>".to_string(), data)
        } else {
            let found = if name.starts_with('/') {
                std::fs::read(name).map(|d| (name.to_string(), d))
            } else {
                confd::search(self.root, &dirs(), name).map(|(p, d)| (self.root.display(&p), d))
            };
            found.map_err(|e| {
                self.log.push(
                    Level::Error,
                    format!("Failed to open '{name}': {}", os_text(&e)),
                );
                Failed
            })?
        };
        self.parse_text(&shown, &data)
    }
}

/// Read the configuration as `systemd-tmpfiles` does: CONFIG arguments
/// alone, or every file of the directories (the arguments in place of
/// `--replace=`'s file), then `$CREDENTIALS_DIRECTORY/tmpfiles.extra`.
pub fn load(root: &Root, opts: &Options, log: &mut Log) -> Result<Config, Failed> {
    let mut parser = Parser::new(root, opts.root.is_some());
    parser.boot = opts.boot;
    parser.graceful = opts.graceful;
    parser.include = opts.prefix.clone();
    parser.exclude = opts.exclude_prefix.clone();
    let mut loader = Loader {
        root,
        parser,
        config: Config::default(),
        log,
    };
    if opts.replace.is_some() || opts.args.is_empty() {
        for f in config_files(root, opts) {
            if opts.replace.as_deref() == Some(f.path.as_str()) {
                for a in &opts.args {
                    loader.read_arg(a)?;
                }
            } else {
                match confd::read(root, &f) {
                    Ok(data) => {
                        let _ = loader.parse_text(&root.display(&f.path), &data);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => loader.log.push(
                        Level::Error,
                        format!(
                            "Failed to open '{}': {}",
                            root.display(&f.path),
                            os_text(&e)
                        ),
                    ),
                }
            }
        }
    } else {
        for a in &opts.args {
            loader.read_arg(a)?;
        }
    }
    if let Ok(dir) = std::env::var("CREDENTIALS_DIRECTORY") {
        let path = format!("{dir}/tmpfiles.extra");
        if let Ok(data) = std::fs::read(&path) {
            let _ = loader.parse_text(&path, &data);
        }
    }
    let mut config = loader.config;
    config.link_parents();
    config.glob_matchers = config
        .globs
        .values()
        .flat_map(|&g| config.arrays[g].items.iter())
        .map(|i| fs::Matcher::new(&i.path))
        .collect();
    Ok(config)
}

/// Everything `systemd-tmpfiles` does; returns its exit status (0, 65 for
/// invalid configuration, 73 when something could not be done, 1 when
/// the run could not start).
pub fn run(opts: &Options, log: &mut Log) -> u8 {
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
            return 1;
        }
    };
    let Ok(config) = load(&root, opts, log) else {
        return 1;
    };
    let old_umask = rustix::process::umask(rustix::fs::Mode::empty());
    let mut runner = Runner {
        root: &root,
        config,
        log: Log::default(),
        hardlinks_protected: None,
    };
    let ok = runner.apply(opts.operations());
    rustix::process::umask(old_umask);
    log.messages.append(&mut runner.log.messages);
    if runner.config.invalid {
        EXIT_DATAERR
    } else if !ok {
        EXIT_CANTCREAT
    } else {
        0
    }
}

impl Runner<'_> {
    pub fn show(&self, path: &str) -> String {
        self.root.display(path)
    }

    pub fn error(&mut self, text: String) -> Failed {
        self.log.push(Level::Error, text);
        Failed
    }

    /// Remove and clean first, then create; plain paths before globs.
    /// Returns whether everything succeeded.
    pub fn apply(&mut self, ops: u8) -> bool {
        let mut ok = true;
        for op in [ops & (OP_REMOVE | OP_CLEAN), ops & OP_CREATE] {
            if op == 0 {
                continue;
            }
            let order: Vec<usize> = self
                .config
                .items
                .values()
                .chain(self.config.globs.values())
                .copied()
                .collect();
            for a in order {
                ok &= self.process_array(a, op);
            }
        }
        ok
    }

    fn process_array(&mut self, a: usize, op: u8) -> bool {
        let mut ok = true;
        if op & OP_CREATE != 0 {
            if let Some(p) = self.config.arrays[a].parent {
                ok &= self.process_array(p, OP_CREATE);
            }
        }
        if op & (OP_REMOVE | OP_CLEAN) != 0 {
            let children = self.config.arrays[a].children.clone();
            for c in children {
                ok &= self.process_array(c, op & (OP_REMOVE | OP_CLEAN));
            }
        }
        for n in 0..self.config.arrays[a].items.len() {
            let item = &mut self.config.arrays[a].items[n];
            let todo = op & !item.done;
            if todo == 0 {
                continue;
            }
            item.done |= op;
            let item = item.clone();
            ok &= self.process_item(&item, op);
        }
        ok
    }

    fn process_item(&mut self, i: &Item, op: u8) -> bool {
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

    /// Whether `fs.protected_hardlinks` is on (assumed off when unknown).
    fn hardlinks_protected(&mut self) -> bool {
        *self.hardlinks_protected.get_or_insert_with(|| {
            std::fs::read_to_string("/proc/sys/fs/protected_hardlinks")
                .map(|s| s.trim() == "1")
                .unwrap_or(false)
        })
    }
}
