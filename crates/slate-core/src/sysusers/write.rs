//! Writing the four databases as systemd-sysusers 252 does: existing
//! entries kept (re-serialised as glibc does), new ones appended before any
//! NIS `+`/`-` entries, members merged, the old file kept as `FILE-`, each
//! file replaced atomically (temporary file, fsync, rename, directory
//! fsync) under the `/etc/.pwd.lock` lock.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FlockOperation, Mode, OFlags, Timestamps};

use crate::fsutil::{self, Root};

use super::plan::Plan;
use super::{Host, Kind, Level, Log};
use crate::userdb::{self as db, Field, GShadow, Group, Passwd, Shadow};

const NOLOGIN: &str = "/usr/sbin/nologin";
const DEFAULT_USER_SHELL: &str = "/bin/bash";
const LOCKED: &[u8] = b"!*";

/// `/etc/.pwd.lock`, held (as a POSIX record lock, like `lckpwdf()`) while
/// the files are rewritten.
pub struct PasswdLock {
    _fd: OwnedFd,
}

pub fn take_lock(root: &Root) -> io::Result<PasswdLock> {
    let etc = root.open_dir("/etc")?;
    let fd = rfs::openat(
        &etc,
        ".pwd.lock",
        OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )?;
    rfs::fcntl_lock(&fd, FlockOperation::LockExclusive)?;
    Ok(PasswdLock { _fd: fd })
}

/// One rewritten database, ready to replace the old one.
struct Pending {
    name: &'static str,
    data: Vec<u8>,
    /// The file it replaces, if there is one: kept as `FILE-`, and its
    /// mode and owner carried over.
    old: Option<OldFile>,
    new_mode: u32,
}

/// An existing database as read: its bytes and its mode, owner and times.
struct OldFile {
    data: Vec<u8>,
    stat: rfs::Stat,
}

/// Read `/etc/NAME` (if it exists) and parse its entries.
fn load<T>(
    root: &Root,
    name: &str,
    parse: fn(&[u8]) -> Vec<T>,
) -> Result<(Option<OldFile>, Vec<T>), String> {
    let read = || -> io::Result<OldFile> {
        let fd = root.open(&format!("/etc/{name}"), OFlags::RDONLY, 0)?;
        let stat = rfs::fstat(&fd)?;
        Ok(OldFile {
            data: fsutil::read_fd_to_end(&fd)?,
            stat,
        })
    };
    match read() {
        Ok(old) => {
            let entries = parse(&old.data);
            Ok((Some(old), entries))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((None, Vec::new())),
        Err(e) => Err(format!(
            "Failed to read {}: {e}",
            root.display(&format!("/etc/{name}"))
        )),
    }
}

/// Where the NIS `+`/`-` entries start (new entries go before them).
fn nis_index<T>(entries: &[T], name: impl Fn(&T) -> &[u8]) -> usize {
    entries
        .iter()
        .position(|e| db::is_nis(name(e)))
        .unwrap_or(entries.len())
}

/// The member list of `name` with the `m` lines' users merged in; `None`
/// when nothing was added (the entry is then written unchanged).
fn merged(plan: &Plan, name: &[u8], current: &[Field]) -> Option<Vec<Field>> {
    let add = plan.members.get(std::str::from_utf8(name).ok()?)?;
    let mut list = current.to_vec();
    let mut added = false;
    for u in add {
        if !list.iter().any(|m| m.as_slice() == u.as_bytes()) {
            list.push(u.as_bytes().to_vec());
            added = true;
        }
    }
    if !added {
        return None;
    }
    let mut uniq: Vec<Field> = Vec::new();
    for m in list {
        if !uniq.contains(&m) {
            uniq.push(m);
        }
    }
    uniq.sort();
    Some(uniq)
}

/// A credential, when given and readable.
fn credential(host: &Host, name: &str) -> Option<Vec<u8>> {
    host.credentials.get(name).ok().flatten()
}

fn shell_for(root: &Root, host: &Host, u: &super::plan::NewUser) -> Vec<u8> {
    if let Some(c) = credential(host, &format!("passwd.shell.{}", u.name)) {
        return c;
    }
    match &u.shell {
        Some(s) => s.as_bytes().to_vec(),
        None if u.uid == 0 => {
            if root.exists(DEFAULT_USER_SHELL) {
                DEFAULT_USER_SHELL.into()
            } else {
                b"/bin/sh".to_vec()
            }
        }
        None => NOLOGIN.into(),
    }
}

fn group_file(root: &Root, plan: &Plan) -> Result<Option<Pending>, String> {
    let shown = root.display("/etc/group");
    let (old, entries) = load(root, "group", db::parse_group)?;
    let mut out = Vec::new();
    let mut changed = false;
    let nis_at = nis_index(&entries, |g| &g.name);
    let new_names: HashSet<&[u8]> = plan.groups.iter().map(|n| n.name.as_bytes()).collect();
    let new_gids: HashSet<u32> = plan.groups.iter().map(|n| n.gid).collect();
    for (i, g) in entries.iter().enumerate() {
        if new_names.contains(g.name.as_slice()) {
            return Err(format!(
                "{shown}: Group \"{}\" already exists.",
                String::from_utf8_lossy(&g.name)
            ));
        }
        if new_gids.contains(&g.gid) {
            return Err(format!("{shown}: Detected collision for GID {}.", g.gid));
        }
        if i == nis_at {
            break;
        }
        match merged(plan, &g.name, &g.mem) {
            Some(mem) => {
                db::put_group(&mut out, &Group { mem, ..g.clone() });
                changed = true;
            }
            None => db::put_group(&mut out, g),
        }
    }
    for n in &plan.groups {
        let mem = merged(plan, n.name.as_bytes(), &[]).unwrap_or_default();
        let g = Group {
            name: n.name.as_bytes().to_vec(),
            passwd: b"x".to_vec(),
            gid: n.gid,
            mem,
        };
        db::put_group(&mut out, &g);
        changed = true;
    }
    for g in &entries[nis_at..] {
        db::put_group(&mut out, g);
    }
    Ok(changed.then_some(Pending {
        name: "group",
        data: out,
        old,
        new_mode: 0o644,
    }))
}

fn gshadow_file(root: &Root, plan: &Plan) -> Result<Option<Pending>, String> {
    let shown = root.display("/etc/gshadow");
    let (old, entries) = load(root, "gshadow", db::parse_gshadow)?;
    let mut out = Vec::new();
    let mut changed = false;
    for g in entries {
        if plan.groups.iter().any(|n| n.name.as_bytes() == g.name) {
            return Err(format!(
                "{shown}: Group \"{}\" already exists.",
                String::from_utf8_lossy(&g.name)
            ));
        }
        match merged(plan, &g.name, &g.mem) {
            Some(mem) => {
                db::put_gshadow(&mut out, &GShadow { mem, ..g });
                changed = true;
            }
            None => db::put_gshadow(&mut out, &g),
        }
    }
    for n in &plan.groups {
        let g = GShadow {
            name: n.name.as_bytes().to_vec(),
            passwd: LOCKED.to_vec(),
            adm: vec![],
            mem: merged(plan, n.name.as_bytes(), &[]).unwrap_or_default(),
        };
        db::put_gshadow(&mut out, &g);
        changed = true;
    }
    Ok(changed.then_some(Pending {
        name: "gshadow",
        data: out,
        old,
        new_mode: 0,
    }))
}

fn passwd_file(root: &Root, host: &Host, plan: &Plan) -> Result<Option<Pending>, String> {
    if plan.users.is_empty() {
        return Ok(None);
    }
    let shown = root.display("/etc/passwd");
    let (old, entries) = load(root, "passwd", db::parse_passwd)?;
    let nis_at = nis_index(&entries, |p| &p.name);
    let new_names: HashSet<&[u8]> = plan.users.iter().map(|u| u.name.as_bytes()).collect();
    let new_uids: HashSet<u32> = plan.users.iter().map(|u| u.uid).collect();
    let mut out = Vec::new();
    for (i, p) in entries.iter().enumerate() {
        if new_names.contains(p.name.as_slice()) {
            return Err(format!(
                "{shown}: User \"{}\" already exists.",
                String::from_utf8_lossy(&p.name)
            ));
        }
        if new_uids.contains(&p.uid) {
            return Err(format!("{shown}: Detected collision for UID {}.", p.uid));
        }
        if i == nis_at {
            break;
        }
        db::put_passwd(&mut out, p);
    }
    for u in &plan.users {
        let p = Passwd {
            name: u.name.as_bytes().to_vec(),
            passwd: b"x".to_vec(),
            uid: u.uid,
            gid: u.gid,
            gecos: u.gecos.as_bytes().to_vec(),
            dir: u.home.as_bytes().to_vec(),
            shell: shell_for(root, host, u),
        };
        db::put_passwd(&mut out, &p);
    }
    for p in &entries[nis_at..] {
        db::put_passwd(&mut out, p);
    }
    Ok(Some(Pending {
        name: "passwd",
        data: out,
        old,
        new_mode: 0o644,
    }))
}

fn shadow_file(
    root: &Root,
    host: &Host,
    plan: &Plan,
    log: &mut Log,
) -> Result<Option<Pending>, String> {
    if plan.users.is_empty() {
        return Ok(None);
    }
    let (old, entries) = load(root, "shadow", db::parse_shadow)?;
    let nis_at = nis_index(&entries, |s| &s.name);
    let lstchg = host.today();
    let mut done: HashSet<&[u8]> = HashSet::new();
    let mut out = Vec::new();
    for s in &entries[..nis_at] {
        let mut s = s.clone();
        if let Some(u) = plan.users.iter().find(|u| u.name.as_bytes() == s.name) {
            if done.insert(u.name.as_bytes()) {
                s.lstchg = lstchg;
            }
        }
        db::put_shadow(&mut out, &s);
    }
    for u in plan
        .users
        .iter()
        .filter(|u| !done.contains(u.name.as_bytes()))
    {
        let mut pwd = LOCKED.to_vec();
        if let Some(h) = credential(host, &format!("passwd.hashed-password.{}", u.name)) {
            pwd = h;
        } else if credential(host, &format!("passwd.plaintext-password.{}", u.name)).is_some() {
            log.push(
                Level::Warning,
                format!(
                    "Credential passwd.plaintext-password.{} is not supported, pass passwd.hashed-password.{} instead; the account stays locked.",
                    u.name, u.name
                ),
            );
        }
        let s = Shadow {
            name: u.name.as_bytes().to_vec(),
            pwd,
            lstchg,
            min: -1,
            max: -1,
            warn: -1,
            inact: -1,
            expire: -1,
            flag: u64::MAX,
        };
        db::put_shadow(&mut out, &s);
    }
    for s in &entries[nis_at..] {
        db::put_shadow(&mut out, s);
    }
    Ok(Some(Pending {
        name: "shadow",
        data: out,
        old,
        new_mode: 0,
    }))
}

/// Write `data` to a new temporary file in `etc` with the old file's mode
/// and owner (or `mode` when there was none) and the given times; fsynced.
fn write_temp(
    etc: &OwnedFd,
    base: &str,
    data: &[u8],
    like: Option<&rfs::Stat>,
    mode: u32,
    times: bool,
) -> io::Result<String> {
    let tmp = fsutil::tmp_name(&format!(".#{base}"));
    let fd = rfs::openat(
        etc,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )?;
    let result = (|| -> io::Result<()> {
        fsutil::write_all_fd(&fd, data)?;
        match like {
            Some(st) => {
                rfs::fchmod(&fd, Mode::from_raw_mode(st.st_mode & 0o7777))?;
                let _ = rfs::fchown(
                    &fd,
                    Some(rfs::Uid::from_raw(st.st_uid)),
                    Some(rfs::Gid::from_raw(st.st_gid)),
                );
                if times {
                    let ts = Timestamps {
                        last_access: rfs::Timespec {
                            tv_sec: st.st_atime,
                            tv_nsec: st.st_atime_nsec as _,
                        },
                        last_modification: rfs::Timespec {
                            tv_sec: st.st_mtime,
                            tv_nsec: st.st_mtime_nsec as _,
                        },
                    };
                    rfs::futimens(&fd, &ts)?;
                }
            }
            None => rfs::fchmod(&fd, Mode::from_raw_mode(mode))?,
        }
        rfs::fsync(&fd)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = rfs::unlinkat(etc, tmp.as_str(), AtFlags::empty());
        return Err(e);
    }
    Ok(tmp)
}

/// Build every changed database, then keep backups, then rename each new
/// file into place. With `dry_run`, only say what would be written.
/// Returns the files written (`/etc/group`, ...).
pub fn write_files(
    root: &Root,
    host: &Host,
    plan: &Plan,
    dry_run: bool,
    log: &mut Log,
) -> Result<Vec<String>, String> {
    let pending: Vec<Pending> = [
        group_file(root, plan)?,
        gshadow_file(root, plan)?,
        passwd_file(root, host, plan)?,
        shadow_file(root, host, plan, log)?,
    ]
    .into_iter()
    .flatten()
    .collect();
    let names: Vec<String> = pending.iter().map(|p| format!("/etc/{}", p.name)).collect();
    if dry_run {
        for n in &names {
            log.push(Level::Info, format!("Would write {n}…"));
        }
        return Ok(names);
    }
    if pending.is_empty() {
        return Ok(names);
    }
    let etc = root
        .open_dir("/etc")
        .map_err(|e| format!("Failed to open {}: {e}", root.display("/etc")))?;
    let mut temps: Vec<String> = Vec::new();
    let cleanup = |temps: &[String]| {
        for t in temps {
            let _ = rfs::unlinkat(&etc, t.as_str(), AtFlags::empty());
        }
    };
    for p in &pending {
        match write_temp(
            &etc,
            p.name,
            &p.data,
            p.old.as_ref().map(|o| &o.stat),
            p.new_mode,
            false,
        ) {
            Ok(t) => temps.push(t),
            Err(e) => {
                cleanup(&temps);
                return Err(format!(
                    "Failed to write {}: {e}",
                    root.display(&format!("/etc/{}", p.name))
                ));
            }
        }
    }
    for p in &pending {
        if let Some(old) = &p.old {
            let backup = format!("{}-", p.name);
            let result =
                write_temp(&etc, &backup, &old.data, Some(&old.stat), 0, true).and_then(|tmp| {
                    rfs::renameat(&etc, tmp.as_str(), &etc, backup.as_str())
                        .map_err(io::Error::from)
                });
            if let Err(e) = result {
                cleanup(&temps);
                return Err(format!(
                    "Failed to make backup {}: {e}",
                    root.display(&format!("/etc/{}", p.name))
                ));
            }
        }
    }
    for (p, t) in pending.iter().zip(&temps) {
        if let Err(e) = rfs::renameat(&etc, t.as_str(), &etc, p.name) {
            cleanup(&temps);
            return Err(format!(
                "Failed to rename {t} to {}: {e}",
                root.display(&format!("/etc/{}", p.name))
            ));
        }
    }
    rfs::fsync(etc.as_fd()).map_err(|e| format!("Failed to sync {}: {e}", root.display("/etc")))?;
    for n in &names {
        log.done(Kind::Database, n, format!("Wrote {}.", root.display(n)));
    }
    Ok(names)
}
