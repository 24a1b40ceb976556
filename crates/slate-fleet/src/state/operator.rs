//! The operator's side of kept state: what a machine keeps (metadata
//! only), forgetting it (logged), a group's list and replacement rule,
//! replacements (approved in advance by hardware id, or of one enrolled
//! machine by another), and the re-sealing of every row with a new key.

use std::path::Path;

use super::keys::{self, KeyRing};
use super::seal;
use super::store::{metas, sealed_rows, version};
use super::wire::Meta;
use crate::db::{Db, Tx, Value};
use crate::records::{self, Error, Result};

/// An entry of the state log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LogEntry {
    pub at: i64,
    pub machine: String,
    pub event: String,
    pub detail: String,
}

pub(crate) fn log(
    tx: &mut dyn Tx,
    machine: &str,
    event: &str,
    detail: &str,
    now: i64,
) -> Result<()> {
    tx.exec(
        "INSERT INTO state_log (machine, at, event, detail) VALUES ($1, $2, $3, $4)",
        &[machine.into(), now.into(), event.into(), detail.into()],
    )?;
    Ok(())
}

/// A machine's row id and group id, by its id (or a unique prefix).
fn row_of(tx: &mut dyn Tx, id: &str) -> Result<(i64, i64, String, Option<i64>)> {
    let r = tx
        .query_one(
            "SELECT id, group_id, key_id, replaced_by FROM machines WHERE key_id = $1",
            &[id.into()],
        )?
        .ok_or_else(|| Error::NoMachine(id.to_string()))?;
    Ok((r.int(0)?, r.int(1)?, r.text(2)?, r.opt_int(3)?))
}

/// What the operator sees of a machine's state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Listing {
    pub machine: String,
    pub replaced_by: Option<String>,
    /// A replacement approved in advance, waiting for its hardware id.
    pub pending_hardware: Option<String>,
    pub files: Vec<Meta>,
    pub log: Vec<LogEntry>,
}

pub fn list(db: &Db, id: &str) -> Result<Listing> {
    let m = records::machine(db, id)?;
    db.tx(|tx| {
        let (row, _, key_id, replaced) = row_of(tx, &m.machine)?;
        let replaced_by = match replaced {
            Some(n) => tx
                .query_one("SELECT key_id FROM machines WHERE id = $1", &[n.into()])?
                .map(|r| r.text(0))
                .transpose()?,
            None => None,
        };
        let pending_hardware = tx
            .query_one(
                "SELECT hardware FROM replacements WHERE old_machine = $1 AND used_by IS NULL",
                &[row.into()],
            )?
            .map(|r| r.text(0))
            .transpose()?;
        let log = tx
            .query(
                "SELECT at, machine, event, detail FROM state_log WHERE machine = $1
                 ORDER BY id DESC LIMIT 50",
                &[key_id.as_str().into()],
            )?
            .iter()
            .map(|r| {
                Ok(LogEntry {
                    at: r.int(0)?,
                    machine: r.text(1)?,
                    event: r.text(2)?,
                    detail: r.text(3)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Listing {
            machine: key_id,
            replaced_by,
            pending_hardware,
            files: metas(tx, row)?,
            log,
        })
    })
}

/// Forget a machine's kept files (one path, or all); logged. How many.
pub fn forget(db: &Db, id: &str, path: Option<&str>, by: &str, now: i64) -> Result<u64> {
    let m = records::machine(db, id)?;
    db.tx(|tx| {
        let (row, _, key_id, _) = row_of(tx, &m.machine)?;
        let n = match path {
            Some(p) => tx.exec(
                "DELETE FROM state_files WHERE machine = $1 AND path = $2",
                &[row.into(), p.into()],
            )?,
            None => tx.exec("DELETE FROM state_files WHERE machine = $1", &[row.into()])?,
        };
        let what = path.unwrap_or("every file");
        log(
            tx,
            &key_id,
            "forget",
            &format!("{what}: {n} forgotten by {by}"),
            now,
        )?;
        Ok(n)
    })
}

/// A group's rule for kept state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Policy {
    pub group: String,
    pub keep: Vec<String>,
    /// A new machine with an old one's hardware id takes its state
    /// without an operator (the weaker rule).
    pub auto_replace: bool,
}

pub fn policy(db: &Db, group: &str) -> Result<Policy> {
    db.tx(|tx| {
        let r = tx
            .query_one(
                "SELECT state_keep, auto_replace FROM groups WHERE name = $1",
                &[group.into()],
            )?
            .ok_or_else(|| Error::NoGroup(group.to_string()))?;
        Ok(Policy {
            group: group.to_string(),
            keep: super::path::parse_list(&r.text(0)?).map_err(|invalid| Error::Invalid {
                what: "the group's kept paths",
                invalid,
            })?,
            auto_replace: r.int(1)? != 0,
        })
    })
}

pub fn set_policy(
    db: &Db,
    group: &str,
    keep: Option<&[String]>,
    auto_replace: Option<bool>,
) -> Result<Policy> {
    if let Some(keep) = keep {
        super::path::parse_list(&keep.join("\n")).map_err(|invalid| Error::Invalid {
            what: "--keep",
            invalid,
        })?;
        if keep.iter().any(|p| p.contains('\n')) {
            return Err(Error::BadValue {
                what: "--keep".into(),
                why: "a path with a newline".into(),
            });
        }
    }
    db.tx(|tx| {
        if tx
            .query_one("SELECT id FROM groups WHERE name = $1", &[group.into()])?
            .is_none()
        {
            return Err(Error::NoGroup(group.to_string()));
        }
        if let Some(keep) = keep {
            tx.exec(
                "UPDATE groups SET state_keep = $1 WHERE name = $2",
                &[keep.join("\n").into(), group.into()],
            )?;
        }
        if let Some(a) = auto_replace {
            tx.exec(
                "UPDATE groups SET auto_replace = $1 WHERE name = $2",
                &[i64::from(a).into(), group.into()],
            )?;
        }
        Ok(())
    })?;
    policy(db, group)
}

/// A hardware id as the agent reads it (DMI's product UUID): 1 to 64 of
/// hex digits and `-`, compared in lower case.
pub fn check_hardware(h: &str) -> Result<String> {
    let ok = (1..=64).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if !ok {
        return Err(Error::BadValue {
            what: format!("hardware id {h:?}"),
            why: "not 1 to 64 hex digits and '-' (a DMI product UUID)".into(),
        });
    }
    Ok(h.to_ascii_lowercase())
}

/// Move every kept file of machine row `old` to `new` (the new machine's
/// own files dropped first), each with a new version so its agent
/// restores them; `old` marked replaced. Files stay sealed for the
/// machine that uploaded them. How many moved.
fn transfer(
    tx: &mut dyn Tx,
    old: (i64, &str),
    new: (i64, &str),
    why: &str,
    now: i64,
) -> Result<u64> {
    tx.exec(
        "DELETE FROM state_files WHERE machine = $1",
        &[new.0.into()],
    )?;
    let paths: Vec<String> = tx
        .query(
            "SELECT path FROM state_files WHERE machine = $1",
            &[old.0.into()],
        )?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<_, _>>()?;
    for p in &paths {
        tx.exec(
            "UPDATE state_files SET machine = $1, version = $2, changed = $3
             WHERE machine = $4 AND path = $5",
            &[
                new.0.into(),
                version()?.into(),
                now.into(),
                old.0.into(),
                p.as_str().into(),
            ],
        )?;
    }
    tx.exec(
        "UPDATE machines SET replaced_by = $1 WHERE id = $2",
        &[new.0.into(), old.0.into()],
    )?;
    tx.exec(
        "UPDATE replacements SET used_by = $1 WHERE old_machine = $2 AND used_by IS NULL",
        &[new.0.into(), old.0.into()],
    )?;
    let n = paths.len() as u64;
    log(
        tx,
        old.1,
        "replaced",
        &format!("by {} ({why}): {n} files moved", new.1),
        now,
    )?;
    log(
        tx,
        new.1,
        "replaces",
        &format!("{} ({why}): {n} files restored", old.1),
        now,
    )?;
    Ok(n)
}

fn refuse(why: String) -> Error {
    Error::Refused(why)
}

/// `slate fleet replace OLD NEW`: an enrolled machine takes an old one's
/// state at once (its agent restores it on its next run).
pub fn replace(db: &Db, old: &str, new: &str, by: &str, now: i64) -> Result<u64> {
    let o = records::machine(db, old)?;
    let n = records::machine(db, new)?;
    db.tx(|tx| {
        let (orow, ogroup, oid, oreplaced) = row_of(tx, &o.machine)?;
        let (nrow, ngroup, nid, nreplaced) = row_of(tx, &n.machine)?;
        if orow == nrow {
            return Err(refuse(format!("machine {oid} cannot replace itself")));
        }
        if ogroup != ngroup {
            return Err(refuse(format!(
                "machines {oid} and {nid} are in different groups"
            )));
        }
        if oreplaced.is_some() || nreplaced.is_some() {
            return Err(refuse(format!(
                "machine {} was replaced already",
                if oreplaced.is_some() { &oid } else { &nid }
            )));
        }
        transfer(
            tx,
            (orow, &oid),
            (nrow, &nid),
            &format!("approved by {by}"),
            now,
        )
    })
}

/// `slate fleet replace OLD --by HARDWARE-ID`: the first machine of OLD's
/// group to enroll with that hardware id takes OLD's state.
pub fn replace_by_hardware(db: &Db, old: &str, hardware: &str, by: &str, now: i64) -> Result<()> {
    let hw = check_hardware(hardware)?;
    let o = records::machine(db, old)?;
    db.tx(|tx| {
        let (orow, _, oid, replaced) = row_of(tx, &o.machine)?;
        if replaced.is_some() {
            return Err(refuse(format!("machine {oid} was replaced already")));
        }
        tx.exec(
            "DELETE FROM replacements WHERE old_machine = $1 AND used_by IS NULL",
            &[orow.into()],
        )?;
        tx.exec(
            "INSERT INTO replacements (old_machine, hardware, created) VALUES ($1, $2, $3)",
            &[orow.into(), hw.as_str().into(), now.into()],
        )?;
        log(
            tx,
            &oid,
            "approve",
            &format!("replacement by hardware {hw}, approved by {by}"),
            now,
        )
    })
}

/// At a new machine's enrollment (its row `new`, in group `group`): its
/// hardware id kept, and an old machine's state moved to it if an
/// operator approved it, or the group allows it by hardware id alone.
/// The old machine's id.
pub(crate) fn on_enroll(
    tx: &mut dyn Tx,
    new: (i64, &str),
    group: i64,
    hardware: Option<&str>,
    now: i64,
) -> Result<Option<String>> {
    let Some(hw) = hardware else { return Ok(None) };
    let hw = check_hardware(hw)?;
    tx.exec(
        "UPDATE machines SET hardware = $1 WHERE id = $2",
        &[hw.as_str().into(), new.0.into()],
    )?;
    let approved = tx.query_one(
        "SELECT o.id, o.key_id FROM replacements r JOIN machines o ON o.id = r.old_machine
         WHERE r.hardware = $1 AND r.used_by IS NULL AND o.group_id = $2
           AND o.replaced_by IS NULL AND o.id <> $3
         ORDER BY r.id DESC LIMIT 1",
        &[hw.as_str().into(), group.into(), new.0.into()],
    )?;
    if let Some(r) = approved {
        let old = r.text(1)?;
        transfer(tx, (r.int(0)?, &old), new, "approved in advance", now)?;
        return Ok(Some(old));
    }
    let auto = tx
        .query_one(
            "SELECT auto_replace FROM groups WHERE id = $1",
            &[group.into()],
        )?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0)
        != 0;
    if !auto {
        return Ok(None);
    }
    let same = tx.query_one(
        "SELECT id, key_id FROM machines WHERE group_id = $1 AND hardware = $2
           AND id <> $3 AND replaced_by IS NULL ORDER BY last_seen DESC LIMIT 1",
        &[group.into(), hw.as_str().into(), new.0.into()],
    )?;
    match same {
        Some(r) => {
            let old = r.text(1)?;
            transfer(
                tx,
                (r.int(0)?, &old),
                new,
                "same hardware id, automatic",
                now,
            )?;
            Ok(Some(old))
        }
        None => Ok(None),
    }
}

/// What a rekey did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rekeyed {
    pub key: String,
    pub rows: u64,
    pub retired: Vec<String>,
}

/// A new key first in `key_file`, then every row sealed by another key
/// opened and sealed again with it, a row per transaction (a row the
/// server changed meanwhile is left to the next pass: it was sealed with
/// the new key already). With `retire`, the old keys dropped from the
/// file once no row uses them.
pub fn rekey(db: &Db, key_file: &Path, retire: bool) -> Result<Rekeyed> {
    let new = keys::rotate(key_file)?;
    let ring = KeyRing::open(key_file)?;
    let mut rows = 0;
    for _pass in 0..1000 {
        let batch = db.tx(|tx| {
            sealed_rows(
                tx,
                "key_id <> $1",
                Some(100),
                &[Value::Text(new.id.clone())],
            )
        })?;
        if batch.is_empty() {
            break;
        }
        for r in &batch {
            let old = ring.get(&r.sealed.key_id)?;
            let plain = seal::open(&old, &r.bound(), &r.sealed)?;
            let s = seal::seal(&new, &r.bound(), &plain)?;
            rows += db.tx(|tx| {
                tx.exec(
                    "UPDATE state_files SET key_id = $1, nonce = $2, sealed = $3
                     WHERE path = $4 AND sealed_for = $5 AND key_id = $6 AND nonce = $7",
                    &[
                        s.key_id.as_str().into(),
                        s.nonce.into(),
                        s.data.into(),
                        r.meta.path.as_str().into(),
                        r.sealed_for.as_str().into(),
                        r.sealed.key_id.as_str().into(),
                        r.sealed.nonce.clone().into(),
                    ],
                )
            })?;
        }
    }
    let retired = if retire {
        let left = db.tx(|tx| {
            tx.query_one(
                "SELECT COUNT(*) FROM state_files WHERE key_id <> $1",
                &[new.id.as_str().into()],
            )?
            .map(|r| r.int(0))
            .transpose()
            .map(|n| n.unwrap_or(0))
        })?;
        if left > 0 {
            return Err(refuse(format!(
                "{left} rows are still sealed by old keys; run rekey again"
            )));
        }
        keys::retire(key_file, &[])?
    } else {
        Vec::new()
    };
    Ok(Rekeyed {
        key: new.id,
        rows,
        retired,
    })
}
