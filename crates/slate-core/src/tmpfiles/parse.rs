//! tmpfiles.d(5) lines into [`Item`]s, with systemd-tmpfiles 252's checks,
//! defaults and message texts.

use super::acl::Acl;
use super::columns::{age_column, decode_base64, mode_column, reject, split_columns, Modifiers};

pub use super::item::{is_duplicate, needs_glob, sort_items, takes_ownership, Item};
use super::values::{
    cunescape, home_dir, is_noinfo, item_text, parse_attribute, parse_devnum, parse_id,
    parse_xattrs, spec_error,
};
pub use super::values::{parse_sec, path_startswith, simplify, CHATTR_ALL_FL, FS_DIRSYNC_FL};
use super::{Level, Log};
use crate::confd::specifier::{self, SpecError, SystemSpecifiers};
use crate::confd::{Host, Kind};
use crate::fsutil::Root;
use crate::userdb::Names;

pub use super::values::{
    AGE_BY_ATIME, AGE_BY_BTIME, AGE_BY_CTIME, AGE_BY_DEFAULT_DIR, AGE_BY_DEFAULT_FILE, AGE_BY_MTIME,
};

const PATH_MAX: usize = 4096;

/// `dir/name`, with one slash between them.
fn name_join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// A line that was not accepted.
pub struct Rejected {
    /// The configuration is invalid (exit status 65), as opposed to an
    /// error of another kind.
    pub invalid: bool,
}

/// Everything a line needs besides its text.
pub struct Parser<'r> {
    pub root: &'r Root,
    host: &'r Host,
    pub explicit_root: bool,
    pub boot: bool,
    pub graceful: bool,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// `--user`: the per-user specifiers (`%h %t %S %C %L %u %U %g %G`).
    pub user: bool,
    specs: SystemSpecifiers<'r>,
    names: Names<'r>,
    notified: bool,
}

fn invalid() -> Rejected {
    Rejected { invalid: true }
}

fn failed() -> Rejected {
    Rejected { invalid: false }
}

impl<'r> Parser<'r> {
    pub fn new(root: &'r Root, explicit_root: bool, host: &'r Host) -> Self {
        Parser {
            root,
            host,
            explicit_root,
            boot: false,
            graceful: false,
            include: Vec::new(),
            exclude: Vec::new(),
            user: false,
            specs: SystemSpecifiers::new(root, explicit_root, host),
            names: Names::new(root),
            notified: false,
        }
    }

    fn expand(&mut self, text: &[u8], max: usize) -> Result<Vec<u8>, SpecError> {
        let specs = &mut self.specs;
        let host = self.host;
        let u = &host.user;
        let home = || home_dir(host.home.as_deref(), u);
        // A `$XDG_…` directory: the variable when it is an absolute path,
        // else (`fallback`) a directory below the home directory.
        let xdg = |var: &Option<String>, fallback: Option<&str>| match var {
            Some(v) if v.starts_with('/') => Ok(v.clone()),
            _ => match fallback {
                Some(sub) => home().map(|h| name_join(&h, sub)),
                None => Err(SpecError::Unset),
            },
        };
        let user = self.user;
        specifier::expand(text, max, &mut |c| match c {
            b'A' | b'M' | b'q' => None,
            b'h' => Some(home()),
            b'C' if user => Some(xdg(&u.cache_home, Some(".cache"))),
            b'L' if user => {
                Some(xdg(&u.config_home, Some(".config")).map(|d| name_join(&d, "log")))
            }
            b'S' if user => Some(xdg(&u.config_home, Some(".config"))),
            b't' if user => Some(xdg(&u.runtime_dir, None)),
            b'C' => Some(Ok("/var/cache".into())),
            b'L' => Some(Ok("/var/log".into())),
            b'S' => Some(Ok("/var/lib".into())),
            b't' => Some(Ok("/run".into())),
            b'u' if user => Some(Ok(u.user_name())),
            b'g' if user => Some(Ok(u.group_name())),
            b'U' if user => Some(Ok(u.uid.to_string())),
            b'G' if user => Some(Ok(u.gid.to_string())),
            b'g' | b'u' => Some(Ok("root".into())),
            b'G' | b'U' => Some(Ok("0".into())),
            c => specs.lookup(c),
        })
    }

    fn unresolvable(&mut self, file: &str, line: usize, log: &mut Log) {
        let why = if self.user {
            "Required $XDG_... variable not defined"
        } else {
            "uninitialized /etc/ detected"
        };
        // Within --root (or a chroot) systemd logs this at debug level.
        if !self.notified && !self.explicit_root {
            log.push(
                Level::Info,
                format!("{file}:{line}: Failed to resolve specifier: {why}, skipping."),
            );
            log.push(
                Level::Info,
                "All rules containing unresolvable specifiers will be skipped.".into(),
            );
        }
        self.notified = true;
    }

    /// `find_uid()`/`find_gid()`: a number, `root`, or a name from the
    /// root's own `/etc/passwd` or `/etc/group`.
    pub fn resolve(&mut self, user: bool, name: &str) -> Result<u32, String> {
        if let Some(id) = parse_id(name) {
            return Ok(id);
        }
        if name == "root" {
            return Ok(0);
        }
        self.names.id(user, name)
    }

    fn should_include(&self, path: &str) -> bool {
        if self.exclude.iter().any(|p| path_startswith(path, p)) {
            return false;
        }
        self.include.is_empty() || self.include.iter().any(|p| path_startswith(path, p))
    }

    /// Parse one line (already stripped, not a comment). `Ok(None)`: the
    /// line is skipped without error. The steps, in systemd's order: the
    /// columns, the type's modifiers, the path, the argument the type
    /// needs, the argument's specifiers and default sources, a credential,
    /// base64, then the owner, mode and age columns.
    pub fn parse_line(
        &mut self,
        file: &str,
        line: usize,
        text: &[u8],
        log: &mut Log,
    ) -> Result<Option<Item>, Rejected> {
        let at = format!("{file}:{line}");
        let (cols, raw_arg) = split_columns(text).map_err(|m| reject(log, &at, m, true))?;
        let col = |i: usize| -> Option<String> {
            let w = cols.get(i)?;
            (!w.is_empty() && w != b"-").then(|| String::from_utf8_lossy(w).into_owned())
        };
        let action = String::from_utf8_lossy(&cols[0]).into_owned();
        let m = Modifiers::parse(&action).map_err(|m| reject(log, &at, m, true))?;
        if m.boot && !self.boot {
            return Ok(None);
        }
        let kind = action.as_bytes()[0];
        let Some(path) = self.line_path(file, line, &cols[1], log)? else {
            return Ok(None);
        };
        let mut item = Item {
            kind,
            path,
            argument: raw_arg,
            age_by_file: AGE_BY_DEFAULT_FILE,
            age_by_dir: AGE_BY_DEFAULT_DIR,
            append_or_force: m.force,
            allow_failure: m.allow_failure,
            try_replace: m.replace,
            ..Item::default()
        };
        self.type_argument(&mut item, m.unbase64, &at, log)?;
        if !self.should_include(&item.path) {
            return Ok(None);
        }
        if !m.unbase64 {
            if let Err(e) = self.expand_argument(&mut item, log) {
                if is_noinfo(&e) {
                    self.unresolvable(file, line, log);
                    return Ok(None);
                }
                let (msg, inv) = spec_error(&e);
                let msg = format!("Failed to substitute specifiers in argument: {msg}");
                return Err(reject(log, &at, msg, inv));
            }
        }
        if !self.default_source(&mut item, &at, log)? {
            return Ok(None);
        }
        if m.cred && !self.credential(&mut item, &at, log)? {
            return Ok(None);
        }
        if m.unbase64 {
            decode_base64(&mut item, &at, log)?;
        }
        if !self.owners(&mut item, col(3), col(4), &at, log)? {
            return Ok(None);
        }
        mode_column(&mut item, col(2), &at, log)?;
        age_column(&mut item, col(5), &at, log)?;
        Ok(Some(item))
    }

    /// The path column: specifiers expanded (a line with one that cannot
    /// be resolved is skipped: `None`), `/var/run/` moved to `/run/`,
    /// absolute, simplified.
    fn line_path(
        &mut self,
        file: &str,
        line: usize,
        raw_path: &[u8],
        log: &mut Log,
    ) -> Result<Option<String>, Rejected> {
        let at = format!("{file}:{line}");
        let mut path = match self.expand(raw_path, PATH_MAX - 1) {
            Ok(p) => String::from_utf8_lossy(&p).into_owned(),
            Err(e) if is_noinfo(&e) => {
                self.unresolvable(file, line, log);
                return Ok(None);
            }
            Err(e) => {
                let (m, inv) = spec_error(&e);
                let shown = String::from_utf8_lossy(raw_path);
                let msg = format!("Failed to replace specifiers in '{shown}': {m}");
                return Err(reject(log, &at, msg, inv));
            }
        };
        if let Some(k) = path.strip_prefix("/var/run/") {
            if !k.trim_start_matches('/').is_empty() {
                let n = simplify(&format!("/run/{k}"));
                // Debian's systemd reports this only for files below /etc.
                if path_startswith(file, "/etc") {
                    log.push(
                        Level::Info,
                        format!("{at}: Line references path below legacy directory /var/run/, updating {path} → {n}; please update the tmpfiles.d/ drop-in file accordingly."),
                    );
                }
                path = n;
            }
        }
        if !path.starts_with('/') {
            return Err(reject(
                log,
                &at,
                format!("Path '{path}' not absolute."),
                true,
            ));
        }
        Ok(Some(simplify(&path)))
    }

    /// The argument as the line's type needs it: present where required,
    /// base64 refused where systemd refuses it, and read into the item's
    /// fields (device numbers, xattrs, ACLs, file attributes).
    fn type_argument(
        &mut self,
        item: &mut Item,
        unbase64: bool,
        at: &str,
        log: &mut Log,
    ) -> Result<(), Rejected> {
        let kind = item.kind;
        let err = |log: &mut Log, msg: String| reject(log, at, msg, true);
        let no_b64 = |what: &str| format!("base64 decoding not supported for {what}.");
        match kind {
            b'd' | b'v' | b'q' | b'Q' | b'e' | b'D' | b'p' | b'x' | b'X' | b'r' | b'R' | b'm'
            | b'z' | b'Z' => {
                if item.argument.is_some() {
                    log.push(
                        Level::Warning,
                        format!(
                            "{at}: {} lines don't take argument fields, ignoring.",
                            kind as char
                        ),
                    );
                }
            }
            b'f' | b'F' => {}
            b'L' if unbase64 => return Err(err(log, no_b64("symlink targets"))),
            b'L' => {}
            b'w' if item.argument.is_none() => {
                return Err(err(log, "Write file requires argument.".into()))
            }
            b'w' => {}
            b'C' if unbase64 => return Err(err(log, no_b64("copy sources"))),
            b'C' => {}
            b'c' | b'b' => {
                if unbase64 {
                    return Err(err(log, no_b64("device node creation")));
                }
                let Some(a) = item.argument.as_ref() else {
                    return Err(err(log, "Device file requires argument.".into()));
                };
                let a = String::from_utf8_lossy(a).into_owned();
                match parse_devnum(&a) {
                    Some(mm) => item.major_minor = mm,
                    None => {
                        let msg = format!("Can't parse device file major/minor '{a}'.");
                        return Err(err(log, msg));
                    }
                }
            }
            b't' | b'T' => {
                if unbase64 {
                    return Err(err(log, no_b64("extended attributes")));
                }
                let Some(a) = item.argument.clone() else {
                    let msg = "Set extended attribute requires argument.".into();
                    return Err(err(log, msg));
                };
                item.xattrs = parse_xattrs(&a, log);
            }
            b'a' | b'A' => {
                if unbase64 {
                    return Err(err(log, no_b64("ACLs")));
                }
                let Some(a) = item.argument.clone() else {
                    return Err(err(log, "Set ACLs requires argument.".into()));
                };
                self.parse_acls(item, &String::from_utf8_lossy(&a), log);
            }
            b'h' | b'H' => {
                if unbase64 {
                    return Err(err(log, no_b64("file attributes")));
                }
                let Some(a) = item.argument.as_ref() else {
                    return Err(err(log, "Set file attribute requires argument.".into()));
                };
                match parse_attribute(&String::from_utf8_lossy(a), &item.path) {
                    Ok(v) => item.attribute = Some(v),
                    Err(m) => {
                        log.event(Level::Error, Kind::InvalidLine, None, m);
                        return Err(invalid());
                    }
                }
            }
            _ => {
                let msg = format!("Unknown command type '{}'.", kind as char);
                return Err(err(log, msg));
            }
        }
        Ok(())
    }

    /// `L` and `C` lines without an argument take `/usr/share/factory/PATH`;
    /// a `C` source must be absolute, and a line whose source is not there
    /// is skipped (`false`).
    fn default_source(&self, item: &mut Item, at: &str, log: &mut Log) -> Result<bool, Rejected> {
        match item.kind {
            b'L' if item.argument.is_none() => {
                item.argument = Some(format!("/usr/share/factory{}", item.path).into_bytes());
            }
            b'C' => {
                let src = match &item.argument {
                    None => format!("/usr/share/factory{}", item.path),
                    Some(a) if a.first() == Some(&b'/') => String::from_utf8_lossy(a).into_owned(),
                    Some(a) => {
                        let a = String::from_utf8_lossy(a).into_owned();
                        let msg = format!("Source path '{a}' is not absolute.");
                        return Err(reject(log, at, msg, true));
                    }
                };
                let src = simplify(&src);
                if !self.root.exists_nofollow(&src) {
                    return Ok(false);
                }
                item.argument = Some(src.into_bytes());
            }
            _ => {}
        }
        Ok(true)
    }

    /// `^`: the argument names a credential whose content replaces it. A
    /// line whose credential is not given is skipped (`false`).
    fn credential(&self, item: &mut Item, at: &str, log: &mut Log) -> Result<bool, Rejected> {
        let Some(name) = item.argument.as_ref().map(|a| item_text(a)) else {
            let msg = "Reading from credential requested, but no credential name specified.";
            return Err(reject(log, at, msg.into(), false));
        };
        if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.len() > 255
        {
            let msg = format!("Credential name not valid: {name}");
            return Err(reject(log, at, msg, false));
        }
        if !self.host.credentials.given() {
            return Ok(false);
        }
        match self.host.credentials.get(&name) {
            Ok(Some(data)) => item.argument = Some(data),
            Ok(None) => return Ok(false),
            Err(e) => {
                log.push(
                    Level::Error,
                    format!(
                        "Failed to read credential '{name}': {}",
                        crate::confd::os_text(&e)
                    ),
                );
                return Err(failed());
            }
        }
        Ok(true)
    }

    /// The user and group columns (`:NAME`: only when the line creates).
    /// With `--graceful`, a line naming a user or group that does not
    /// exist is skipped (`false`).
    fn owners(
        &mut self,
        item: &mut Item,
        user: Option<String>,
        group: Option<String>,
        at: &str,
        log: &mut Log,
    ) -> Result<bool, Rejected> {
        if let Some(user) = user {
            let u = match user.strip_prefix(':') {
                Some(u) => {
                    item.uid_only_create = true;
                    u.to_string()
                }
                None => user.clone(),
            };
            match self.resolve(true, &u) {
                Ok(id) => item.uid = Some(id),
                Err(e) if self.graceful && e == "No such process" => return Ok(false),
                Err(e) => {
                    let msg = format!("Failed to resolve user '{u}': {e}");
                    return Err(reject(log, at, msg, true));
                }
            }
        }
        if let Some(group) = group {
            let g = match group.strip_prefix(':') {
                Some(g) => {
                    item.gid_only_create = true;
                    g.to_string()
                }
                None => group.clone(),
            };
            match self.resolve(false, &g) {
                Ok(id) => item.gid = Some(id),
                Err(e) if self.graceful && e == "No such process" => return Ok(false),
                Err(_) => {
                    let msg = format!("Failed to resolve group '{g}'.");
                    return Err(reject(log, at, msg, true));
                }
            }
        }
        Ok(true)
    }

    fn expand_argument(&mut self, item: &mut Item, log: &mut Log) -> Result<(), SpecError> {
        match item.kind {
            b'C' | b'L' | b'f' | b'F' | b'w' => {
                if let Some(a) = &item.argument {
                    let Some(unescaped) = cunescape(a) else {
                        log.push(
                            Level::Error,
                            format!("Failed to unescape parameter to write: {}", item_text(a)),
                        );
                        return Err(SpecError::Invalid);
                    };
                    item.argument = Some(self.expand(&unescaped, PATH_MAX - 1)?);
                }
            }
            b't' | b'T' => {
                let mut out = Vec::new();
                for (name, value) in std::mem::take(&mut item.xattrs) {
                    let name = String::from_utf8_lossy(&self.expand(name.as_bytes(), usize::MAX)?)
                        .into_owned();
                    let value = self.expand(&value, usize::MAX)?;
                    out.push((name, value));
                }
                item.xattrs = out;
            }
            _ => {}
        }
        Ok(())
    }
}

impl Parser<'_> {
    /// `a`/`A` arguments: access and `d:` default entries, with a mask
    /// computed when the line does not merge (`parse_acl()`).
    pub fn parse_acls(&mut self, item: &mut Item, text: &str, log: &mut Log) {
        let (mut access, mut default) = (Vec::new(), Vec::new());
        for entry in text.split(',') {
            match entry
                .strip_prefix("default:")
                .or_else(|| entry.strip_prefix("d:"))
            {
                Some(d) => default.push(d),
                None => access.push(entry),
            }
        }
        let want_mask = !item.append_or_force;
        let parse = |list: &[&str], this: &mut Self| -> Result<Option<Acl>, ()> {
            if list.is_empty() {
                return Ok(None);
            }
            let mut resolve = |user: bool, name: &str| this.resolve(user, name).ok();
            let mut acl = Acl::from_text(&list.join(","), &mut resolve).ok_or(())?;
            if want_mask {
                acl.add_mask_if_needed();
            }
            Ok(Some(acl))
        };
        match (parse(&access, self), parse(&default, self)) {
            (Ok(a), Ok(d)) => {
                item.acl_access = a;
                item.acl_default = d;
            }
            _ => log.push(
                Level::Warning,
                format!("Failed to parse ACL \"{text}\": Invalid argument. Ignoring"),
            ),
        }
    }
}
