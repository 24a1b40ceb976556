//! Choosing IDs: which users and groups are new, with which UID and GID,
//! following systemd-sysusers 252 step by step (suggested ID, ID from a
//! file's owner, the UID reused as GID and back, then the highest free ID
//! of the allowed ranges).

use std::collections::HashMap;

use indexmap::IndexMap;
use serde::Serialize;

use crate::fsutil::Root;

use super::parse::{Config, Item};
use super::{Level, Log};
use crate::confd::Kind;
use crate::userdb::{self as db, Field};

/// The range systemd uses without `r` lines: its build-time
/// `SYSTEM_ALLOC_UID_MIN`…`SYSTEM_UID_MAX` (Debian: 1…999).
pub const DEFAULT_RANGE: (u32, u32) = (1, 999);

/// A group that will be created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewGroup {
    pub name: String,
    pub gid: u32,
}

/// A user that will be created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    /// `None`: the default (`nologin`, or the root shell for UID 0).
    pub shell: Option<String>,
}

/// What applying the configuration would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub groups: Vec<NewGroup>,
    pub users: Vec<NewUser>,
    /// Group → users to add as members (new and existing groups).
    pub members: IndexMap<String, Vec<String>>,
}

/// The existing databases, as systemd indexes them (first entry wins).
#[derive(Default)]
pub(crate) struct Existing {
    by_username: HashMap<Field, u32>,
    by_uid: HashMap<u32, Field>,
    by_groupname: HashMap<Field, u32>,
    by_gid: HashMap<u32, Field>,
}

impl Existing {
    pub(crate) fn load(passwd: &[u8], group: &[u8]) -> Existing {
        let mut e = Existing::default();
        for p in db::parse_passwd(passwd) {
            e.by_username.entry(p.name.clone()).or_insert(p.uid);
            e.by_uid.entry(p.uid).or_insert(p.name);
        }
        for g in db::parse_group(group) {
            e.by_groupname.entry(g.name.clone()).or_insert(g.gid);
            e.by_gid.entry(g.gid).or_insert(g.name);
        }
        e
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ref {
    User(usize),
    Group(usize),
}

struct Planner<'a> {
    root: &'a Root,
    db: &'a Existing,
    ranges: Vec<(u32, u32)>,
    search: u32,
    users: Vec<Item>,
    groups: Vec<Item>,
    group_index: HashMap<String, usize>,
    user_index: HashMap<String, usize>,
    todo_uids: IndexMap<u32, Ref>,
    todo_gids: IndexMap<u32, Ref>,
    log: &'a mut Log,
}

impl Planner<'_> {
    fn item(&mut self, r: Ref) -> &mut Item {
        match r {
            Ref::User(i) => &mut self.users[i],
            Ref::Group(i) => &mut self.groups[i],
        }
    }

    fn name_of(&self, r: Ref) -> &str {
        match r {
            Ref::User(i) => &self.users[i].name,
            Ref::Group(i) => &self.groups[i].name,
        }
    }

    fn in_range(&self, id: u32) -> bool {
        self.ranges
            .iter()
            .any(|&(s, n)| id >= s && u64::from(id) < u64::from(s) + u64::from(n))
    }

    /// `uid_range_next_lower()`: the next candidate below the last one.
    fn next_lower(&mut self) -> Option<u32> {
        if self.search == 0 {
            return None;
        }
        let candidate = self.search - 1;
        let mut closest = None;
        for &(s, n) in &self.ranges {
            let end = s + (n - 1);
            if candidate >= s && candidate <= end {
                self.search = candidate;
                return Some(candidate);
            }
            if end < candidate {
                closest = Some(end);
            }
        }
        self.search = closest?;
        closest
    }

    fn uid_is_ok(&self, uid: u32, name: &str, check_with_gid: bool) -> bool {
        if self.todo_uids.contains_key(&uid) {
            return false;
        }
        if check_with_gid {
            if let Some(&r) = self.todo_gids.get(&uid) {
                if self.name_of(r) != name {
                    return false;
                }
            }
        }
        if self.db.by_uid.contains_key(&uid) {
            return false;
        }
        if check_with_gid {
            if let Some(n) = self.db.by_gid.get(&uid) {
                if n.as_slice() != name.as_bytes() {
                    return false;
                }
            }
        }
        true
    }

    fn gid_is_ok(&self, gid: u32) -> bool {
        !(self.todo_gids.contains_key(&gid)
            || self.todo_uids.contains_key(&gid)
            || self.db.by_gid.contains_key(&gid)
            || self.db.by_uid.contains_key(&gid))
    }

    fn stat_owner(&self, path: &str) -> Option<(u32, u32)> {
        self.root.stat(path).ok().map(|st| (st.st_uid, st.st_gid))
    }

    /// `read_id_from_file()`.
    fn id_from_file(&self, item: &Item, want_uid: bool) -> Option<u32> {
        let gid_path_gid = || {
            item.gid_path
                .as_deref()
                .and_then(|p| self.stat_owner(p))
                .map(|o| o.1)
        };
        if want_uid {
            if let Some(o) = item.uid_path.as_deref().and_then(|p| self.stat_owner(p)) {
                return Some(o.0);
            }
            gid_path_gid()
        } else {
            gid_path_gid().or_else(|| {
                item.uid_path
                    .as_deref()
                    .and_then(|p| self.stat_owner(p))
                    .map(|o| o.1)
            })
        }
    }

    fn info(&mut self, text: String) {
        self.log.push(Level::Info, text);
    }

    fn add_group(&mut self, r: Ref) -> Result<(), String> {
        let name = self.name_of(r).to_string();
        if let Some(&gid) = self.db.by_groupname.get(name.as_bytes()) {
            self.item(r).gid = Some(gid);
            return Ok(());
        }
        let it = self.item(r).clone();
        let mut gid = it.gid;
        if let Some(g) = gid {
            let ok = self.gid_is_ok(g);
            if it.id_set_strict {
                if ok {
                    return Err(format!("Failed to create {name}: please create GID {g}"));
                }
                return Ok(());
            }
            if !ok {
                self.info(format!("Suggested group ID {g} for {name} already used."));
                gid = None;
            }
        }
        if gid.is_none() {
            if let Some(u) = it.uid {
                if self.gid_is_ok(u) {
                    gid = Some(u);
                }
            }
        }
        if gid.is_none() {
            if let Some(c) = self.id_from_file(&it, false) {
                if c > 0 && self.in_range(c) && self.gid_is_ok(c) {
                    gid = Some(c);
                }
            }
        }
        let gid = match gid {
            Some(g) => g,
            None => loop {
                let c = self
                    .next_lower()
                    .ok_or_else(|| format!("No free group ID available for {name}."))?;
                if self.gid_is_ok(c) {
                    break c;
                }
            },
        };
        self.item(r).gid = Some(gid);
        if self.todo_gids.contains_key(&gid) {
            return Err(format!(
                "Requested group {name} with GID {gid} to be created is duplicated or conflicts with another user."
            ));
        }
        self.todo_gids.insert(gid, r);
        self.log.event(
            Level::Info,
            Kind::Group,
            Some(&name),
            format!("Creating group '{name}' with GID {gid}."),
        );
        Ok(())
    }

    fn add_user(&mut self, idx: usize) -> Result<(), String> {
        let it = self.users[idx].clone();
        let name = it.name.clone();
        if let Some(&uid) = self.db.by_username.get(name.as_bytes()) {
            self.users[idx].uid = Some(uid);
            return Ok(());
        }
        let mut uid = it.uid;
        if let Some(u) = uid {
            if !self.uid_is_ok(u, &name, !it.id_set_strict) {
                self.info(format!("Suggested user ID {u} for {name} already used."));
                uid = None;
            }
        }
        if uid.is_none() {
            if let Some(c) = self.id_from_file(&it, true) {
                if c > 0 && self.in_range(c) && self.uid_is_ok(c, &name, true) {
                    uid = Some(c);
                }
            }
        }
        if uid.is_none() {
            if let Some(g) = it.gid {
                if self.uid_is_ok(g, &name, true) {
                    uid = Some(g);
                }
            }
        }
        let uid = match uid {
            Some(u) => u,
            None => loop {
                let c = self
                    .next_lower()
                    .ok_or_else(|| format!("No free user ID available for {name}."))?;
                if self.uid_is_ok(c, &name, true) {
                    break c;
                }
            },
        };
        self.users[idx].uid = Some(uid);
        let gid = it.gid.unwrap_or(0);
        if self.todo_uids.contains_key(&uid) {
            return Err(format!(
                "Requested user {name} with UID {uid} and gid{gid} to be created is duplicated or conflicts with another user."
            ));
        }
        self.todo_uids.insert(uid, Ref::User(idx));
        let desc = it.description.as_deref().unwrap_or("n/a");
        self.log.event(
            Level::Info,
            Kind::User,
            Some(&name),
            format!("Creating user '{name}' ({desc}) with UID {uid} and GID {gid}."),
        );
        Ok(())
    }

    fn process_user(&mut self, idx: usize) -> Result<(), String> {
        let it = self.users[idx].clone();
        let target = it.group_name.clone().unwrap_or_else(|| it.name.clone());
        // A group of that name queued by a `g` line, or else (a group
        // given by name) the group an earlier `u` line queued for itself.
        let queued = |r: Ref| {
            let gid = match r {
                Ref::Group(i) => self.groups[i].gid,
                Ref::User(i) => self.users[i].gid,
            };
            gid.filter(|g| self.todo_gids.get(g) == Some(&r))
        };
        let todo_group = self
            .group_index
            .get(&target)
            .and_then(|&gi| queued(Ref::Group(gi)))
            .or_else(|| {
                let gn = it.group_name.as_ref()?;
                self.user_index
                    .get(gn)
                    .and_then(|&ui| queued(Ref::User(ui)))
            });
        if let Some(gid) = todo_group {
            self.users[idx].gid = Some(gid);
            self.users[idx].id_set_strict = true;
        } else if let Some(gn) = &it.group_name {
            let gid = *self
                .db
                .by_groupname
                .get(gn.as_bytes())
                .ok_or_else(|| format!("Group {gn} not found."))?;
            self.users[idx].gid = Some(gid);
            self.users[idx].id_set_strict = true;
        } else {
            self.add_group(Ref::User(idx))?;
        }
        self.add_user(idx)
    }
}

/// Decide IDs for everything `config` asks for against the existing
/// databases. Failures of single users or groups are logged as errors and
/// skip that entry, as systemd does; they do not stop the others.
pub(crate) fn make_plan(root: &Root, config: &Config, db: &Existing, log: &mut Log) -> Plan {
    let ranges = config.ranges.clone().unwrap_or_else(|| {
        let (lo, hi) = DEFAULT_RANGE;
        vec![(lo, hi - lo + 1)]
    });
    let mut p = Planner {
        root,
        db,
        ranges,
        search: u32::MAX,
        users: config.users.values().cloned().collect(),
        groups: config.groups.values().cloned().collect(),
        group_index: config
            .groups
            .keys()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect(),
        user_index: config
            .users
            .keys()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect(),
        todo_uids: IndexMap::new(),
        todo_gids: IndexMap::new(),
        log,
    };
    for gi in 0..p.groups.len() {
        if let Err(e) = p.add_group(Ref::Group(gi)) {
            p.log.push(Level::Error, e);
        }
    }
    for ui in 0..p.users.len() {
        if let Err(e) = p.process_user(ui) {
            p.log.push(Level::Error, e);
        }
    }
    let groups = p
        .todo_gids
        .iter()
        .map(|(&gid, &r)| NewGroup {
            name: p.name_of(r).to_string(),
            gid,
        })
        .collect();
    let users = p
        .todo_uids
        .iter()
        .map(|(&uid, &r)| {
            let Ref::User(i) = r else {
                unreachable!("only users are queued by UID")
            };
            let u = &p.users[i];
            NewUser {
                name: u.name.clone(),
                uid,
                gid: u.gid.unwrap_or(0),
                gecos: u.description.clone().unwrap_or_default(),
                home: u.home.clone().unwrap_or_else(|| "/".to_string()),
                shell: u.shell.clone(),
            }
        })
        .collect();
    Plan {
        groups,
        users,
        members: config.members.clone(),
    }
}
