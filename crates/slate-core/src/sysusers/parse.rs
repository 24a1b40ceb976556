//! sysusers.d lines: `TYPE NAME ID GECOS HOME SHELL`, checked and gathered
//! into a [`Config`] the way systemd-sysusers 252 does it, with its texts.

use indexmap::IndexMap;

use crate::confd::specifier::{self, SystemSpecifiers};
use crate::confd::words::{self, Flags};

use super::{Level, Log};

/// One `u` or `g` line (or a user or group implied by an `m` line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    /// `u NAME UID:GROUPNAME`: the group the user joins, which must exist.
    pub group_name: Option<String>,
    /// `u NAME /PATH`: take the UID (and GID) from the owner of PATH.
    pub uid_path: Option<String>,
    /// `g NAME /PATH`: take the GID from the group of PATH.
    pub gid_path: Option<String>,
    pub description: Option<String>,
    pub home: Option<String>,
    pub shell: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The GID was given (`UID:GID`): it must exist or be created, and the
    /// UID is not checked against other groups' GIDs.
    pub id_set_strict: bool,
}

/// Everything the configuration asks for, in file order.
#[derive(Debug, Default)]
pub struct Config {
    pub users: IndexMap<String, Item>,
    pub groups: IndexMap<String, Item>,
    /// Group name → users to add to it (`m` lines).
    pub members: IndexMap<String, Vec<String>>,
    /// UID/GID ranges from `r` lines: sorted, merged `(first, count)`.
    pub ranges: Option<Vec<(u32, u32)>>,
}

/// A line-level failure: the message, already in systemd's words.
pub type LineError = String;

const NAME_MAX: usize = 255;
const PATH_MAX: usize = 4096;
const LONG_LINE_MAX: usize = 1024 * 1024;

/// `parse_uid()`: decimal without sign, leading zero or blank; not
/// 4294967295 or 65535. The error is the `strerror` text systemd prints.
pub fn parse_uid(s: &str) -> Result<u32, &'static str> {
    const EINVAL: &str = "Invalid argument";
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.starts_with('0') && s != "0") {
        return Err(EINVAL);
    }
    let v: u64 = s.parse().map_err(|_| "Numerical result out of range")?;
    let v = u32::try_from(v).map_err(|_| "Numerical result out of range")?;
    if v == u32::MAX || v == 65535 {
        return Err("No such device or address");
    }
    Ok(v)
}

/// systemd's strict user and group name rule: a letter or `_`, then
/// letters, digits, `_` and `-`, at most 31 characters.
pub fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 31
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

fn has_cc(s: &str) -> bool {
    s.chars().any(|c| (c as u32) < 0x20 || c as u32 == 0x7f)
}

pub fn valid_gecos(s: &str) -> bool {
    !has_cc(s) && !s.contains(':')
}

/// `valid_home()` (and `valid_shell()`): absolute, normalized, no control
/// characters, no `:`.
pub fn valid_home(s: &str) -> bool {
    !s.is_empty()
        && !has_cc(s)
        && s.starts_with('/')
        && !s.contains(':')
        && !s.split('/').any(|c| c == "." || c == "..")
        && !s.contains("//")
}

/// `path_simplify()`: collapse `//` and `/./`, drop a trailing `/`.
fn simplify(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Add `first-last` (or one number) to the ranges, merging as systemd does.
fn add_range(ranges: &mut Vec<(u32, u32)>, s: &str) -> Result<(), ()> {
    let (lo, hi) = match s.split_once('-') {
        None => {
            let v = parse_uid(s).map_err(|_| ())?;
            (v, v)
        }
        Some((a, b)) => {
            let a = parse_uid(a).map_err(|_| ())?;
            let b = parse_uid(b).map_err(|_| ())?;
            if a > b {
                return Err(());
            }
            (a, b)
        }
    };
    let nr = hi - lo + 1;
    if lo > u32::MAX - nr {
        return Err(());
    }
    ranges.push((lo, nr));
    ranges.sort();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for &(start, nr) in ranges.iter() {
        if let Some(last) = merged.last_mut() {
            let (ls, ln) = *last;
            if start <= ls + ln {
                let end = (ls + ln).max(start + nr);
                *last = (ls, end - ls);
                continue;
            }
        }
        merged.push((start, nr));
    }
    *ranges = merged;
    Ok(())
}

fn equal(a: &Item, b: &Item) -> bool {
    a.name == b.name
        && a.uid_path == b.uid_path
        && a.gid_path == b.gid_path
        && a.description == b.description
        && a.uid == b.uid
        && a.gid == b.gid
        && a.home == b.home
        && a.shell == b.shell
}

impl Config {
    /// Parse one (already stripped, non-comment) line. `Err` is a message
    /// to report as `FILE:LINE: message`; the caller decides what an error
    /// means for the exit status. Warnings go to `log`.
    pub fn parse_line(
        &mut self,
        specs: &mut SystemSpecifiers<'_>,
        file: &str,
        line_no: usize,
        line: &[u8],
        log: &mut Log,
    ) -> Result<(), LineError> {
        let mut rest = Some(line);
        let flags = Flags {
            unquote: true,
            cunescape: false,
        };
        let cols =
            words::extract_many(&mut rest, 6, flags).map_err(|_| "Syntax error.".to_string())?;
        if cols.len() < 2 {
            return Err("Missing action and name columns.".into());
        }
        if rest.is_some_and(|r| !r.is_empty()) {
            return Err("Trailing garbage.".into());
        }
        let text = |i: usize| -> Option<String> {
            let w = cols.get(i)?;
            (!w.is_empty() && w != b"-").then(|| String::from_utf8_lossy(w).into_owned())
        };
        let action = String::from_utf8_lossy(&cols[0]).into_owned();
        if action.len() != 1 {
            return Err(format!("Unknown modifier '{action}'."));
        }
        let kind = action.as_bytes()[0];
        if !matches!(kind, b'u' | b'g' | b'm' | b'r') {
            return Err(format!("Unknown command type '{}'.", kind as char));
        }
        let mut expand = |raw: &Option<String>,
                          max: usize,
                          shown: Option<&str>|
         -> Result<Option<String>, LineError> {
            let Some(raw) = raw else { return Ok(None) };
            let v =
                specifier::expand(raw.as_bytes(), max, &mut |c| specs.lookup(c)).map_err(|e| {
                    format!(
                        "Failed to replace specifiers in '{}': {e}",
                        shown.unwrap_or(raw)
                    )
                })?;
            Ok(Some(String::from_utf8_lossy(&v).into_owned()))
        };
        let (name_raw, id_raw, desc_raw, home_raw, shell_raw) =
            (text(1), text(2), text(3), text(4), text(5));
        let name = expand(&name_raw, NAME_MAX, None)?;
        if let Some(n) = &name {
            if !valid_name(n) {
                return Err(format!("'{n}' is not a valid user or group name."));
            }
        }
        // systemd names the NAME column in this message (`(null)` if empty).
        let id = expand(
            &id_raw,
            PATH_MAX - 1,
            Some(name_raw.as_deref().unwrap_or("(null)")),
        )?;
        let description = expand(&desc_raw, LONG_LINE_MAX, None)?;
        if let Some(d) = &description {
            if !valid_gecos(d) {
                return Err(format!("'{d}' is not a valid GECOS field."));
            }
        }
        let home = expand(&home_raw, PATH_MAX - 1, None)?;
        if let Some(h) = &home {
            if !valid_home(h) {
                return Err(format!("'{h}' is not a valid home directory field."));
            }
        }
        let shell = expand(&shell_raw, PATH_MAX - 1, None)?;
        if let Some(s) = &shell {
            if !valid_home(s) {
                return Err(format!("'{s}' is not a valid login shell field."));
            }
        }
        let no_extra = |what: char| -> Result<(), LineError> {
            let field = if description.is_some() {
                "GECOS"
            } else if home.is_some() {
                "home directory"
            } else if shell.is_some() {
                "login shell"
            } else {
                return Ok(());
            };
            Err(format!(
                "Lines of type '{what}' don't take a {field} field."
            ))
        };
        let mut item = Item::default();
        match kind {
            b'r' => {
                if name.is_some() {
                    return Err("Lines of type 'r' don't take a name field.".into());
                }
                let Some(id) = id else {
                    return Err("Lines of type 'r' require an ID range in the third field.".into());
                };
                no_extra('r')?;
                let mut ranges = self.ranges.clone().unwrap_or_default();
                add_range(&mut ranges, &id).map_err(|_| format!("Invalid UID range {id}."))?;
                self.ranges = Some(ranges);
                return Ok(());
            }
            b'm' => {
                let Some(name) = name else {
                    return Err("Lines of type 'm' require a user name in the second field.".into());
                };
                let Some(group) = id else {
                    return Err("Lines of type 'm' require a group name in the third field.".into());
                };
                if !valid_name(&group) {
                    return Err(format!("'{group}' is not a valid user or group name."));
                }
                no_extra('m')?;
                let list = self.members.entry(group).or_default();
                if !list.contains(&name) {
                    list.push(name);
                }
                return Ok(());
            }
            b'u' => {
                let Some(n) = name else {
                    return Err("Lines of type 'u' require a user name in the second field.".into());
                };
                item.name = n;
                if let Some(id) = id {
                    if id.starts_with('/') {
                        item.uid_path = Some(simplify(&id));
                    } else {
                        let mut uid_part = id.as_str();
                        if let Some((u, g)) = id.split_once(':') {
                            match parse_uid(g) {
                                Ok(gid) => {
                                    item.gid = Some(gid);
                                    item.id_set_strict = true;
                                }
                                Err(_) if valid_name(g) => item.group_name = Some(g.to_string()),
                                Err(e) => {
                                    return Err(format!(
                                        "Failed to parse GID: '{}': {e}",
                                        id_raw.unwrap_or_default()
                                    ))
                                }
                            }
                            uid_part = u;
                        }
                        if uid_part != "-" {
                            let uid = parse_uid(uid_part).map_err(|e| {
                                format!(
                                    "Failed to parse UID: '{}': {e}",
                                    id_raw.clone().unwrap_or_default()
                                )
                            })?;
                            item.uid = Some(uid);
                        }
                    }
                }
                item.description = description;
                item.home = home;
                item.shell = shell;
            }
            _ => {
                let Some(n) = name else {
                    return Err("Lines of type 'g' require a user name in the second field.".into());
                };
                no_extra('g')?;
                item.name = n;
                if let Some(id) = id {
                    if id.starts_with('/') {
                        item.gid_path = Some(simplify(&id));
                    } else {
                        let gid = parse_uid(&id).map_err(|e| {
                            format!("Failed to parse GID: '{}': {e}", id_raw.unwrap_or_default())
                        })?;
                        item.gid = Some(gid);
                    }
                }
            }
        }
        let (map, what) = if kind == b'u' {
            (&mut self.users, "user")
        } else {
            (&mut self.groups, "group")
        };
        if let Some(existing) = map.get(&item.name) {
            if !equal(existing, &item) {
                log.push(
                    Level::Warning,
                    format!(
                        "{file}:{line_no}: Conflict with earlier configuration for {what} '{}', ignoring line.",
                        item.name
                    ),
                );
            }
            return Ok(());
        }
        map.insert(item.name.clone(), item);
        Ok(())
    }

    /// Users and groups named only by `m` lines are created too.
    pub fn add_implicit(&mut self) {
        for (group, users) in &self.members {
            for u in users {
                if !self.users.contains_key(u) {
                    self.users.insert(
                        u.clone(),
                        Item {
                            name: u.clone(),
                            ..Item::default()
                        },
                    );
                }
            }
            if !self.users.contains_key(group) && !self.groups.contains_key(group) {
                self.groups.insert(
                    group.clone(),
                    Item {
                        name: group.clone(),
                        ..Item::default()
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        assert_eq!(parse_uid("0"), Ok(0));
        assert_eq!(parse_uid("4294967294"), Ok(4294967294));
        assert!(parse_uid("01").is_err());
        assert!(parse_uid("+1").is_err());
        assert!(parse_uid("65535").is_err());
        assert!(parse_uid("4294967296").is_err());
        assert!(valid_name("_a-b9"));
        assert!(!valid_name("9a"));
        assert!(!valid_name("a.b"));
        assert!(!valid_name(&"a".repeat(32)));
        assert!(valid_home("/var/lib/x"));
        assert!(!valid_home("/var/../x"));
        assert!(!valid_home("var"));
    }

    #[test]
    fn ranges_merge() {
        let mut r = Vec::new();
        add_range(&mut r, "500-600").expect("range");
        add_range(&mut r, "601-700").expect("range");
        add_range(&mut r, "100").expect("range");
        assert_eq!(r, vec![(100, 1), (500, 201)]);
        assert!(add_range(&mut r, "7-3").is_err());
        assert!(add_range(&mut r, "5-").is_err());
    }
}
