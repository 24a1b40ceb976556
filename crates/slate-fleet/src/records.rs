//! Groups, machines and their reports: every rule of who may write what.
//! Each function is one transaction; a refusal changes nothing (the nonce
//! of a refused request is not kept either).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::db::{Db, DbError, Tx, Value};
use crate::wire::{Enroll, Enrolled, Health, Invalid, MachineInfo, Report, Reported, MAX_TEXT};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("enrollment refused: no group {group:?} with that token")]
    BadToken { group: String },
    #[error("unknown machine key {key_id}: enroll first")]
    UnknownKey { key_id: String },
    #[error("nonce {nonce} of key {key_id} was used before: a replayed request")]
    Replay { key_id: String, nonce: String },
    #[error("key {key_id} is enrolled in group {enrolled:?}, not {asked:?}")]
    OtherGroup {
        key_id: String,
        enrolled: String,
        asked: String,
    },
    #[error("group {0:?} exists")]
    GroupExists(String),
    #[error("no group {0:?}")]
    NoGroup(String),
    #[error("no machine {0:?}")]
    NoMachine(String),
    #[error(
        "group name {0:?}: 1 to 64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit"
    )]
    BadGroupName(String),
    #[error("{what}: {why}")]
    BadValue { what: String, why: String },
    #[error("invalid {what}: {invalid}")]
    Invalid {
        what: &'static str,
        invalid: Invalid,
    },
    #[error("state of machine {machine}: {why}")]
    TooMuch { machine: String, why: String },
    #[error("machine {machine} was replaced by {by}: its state is {by}'s now")]
    Replaced { machine: String, by: String },
    #[error("{0}")]
    Refused(String),
    #[error("this server keeps no machine state: start it with --state-key FILE")]
    NoState,
    #[error(transparent)]
    Key(#[from] crate::state::KeyError),
    #[error(transparent)]
    Seal(#[from] crate::state::SealError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A token's stored form: its SHA-256 (tokens are random, 128 bits or
/// more: a slow hash adds nothing).
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub fn check_group_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadGroupName(name.to_string()))
    }
}

/// A group: a name, the `REMOTE:REF` its machines follow.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Group {
    pub name: String,
    pub follows: String,
    pub machines: u64,
    pub created: i64,
}

pub fn add_group(db: &Db, name: &str, follows: &str, token: &str, now: i64) -> Result<()> {
    check_group_name(name)?;
    if follows.is_empty() || follows.len() > MAX_TEXT || follows.chars().any(char::is_control) {
        return Err(Error::BadValue {
            what: format!("--ref {follows:?}"),
            why: "not a REMOTE:REF".into(),
        });
    }
    db.tx(|tx| {
        let n = tx.exec(
            "INSERT INTO groups (name, follows, token_hash, created) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING",
            &[
                name.into(),
                follows.into(),
                token_hash(token).into(),
                now.into(),
            ],
        )?;
        if n == 0 {
            return Err(Error::GroupExists(name.to_string()));
        }
        Ok(())
    })
}

pub fn groups(db: &Db) -> Result<Vec<Group>> {
    db.tx(|tx| {
        tx.query(
            "SELECT g.name, g.follows, g.created,
                    (SELECT COUNT(*) FROM machines m WHERE m.group_id = g.id)
             FROM groups g ORDER BY g.name",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(Group {
                name: r.text(0)?,
                follows: r.text(1)?,
                created: r.int(2)?,
                machines: r.int(3)? as u64,
            })
        })
        .collect()
    })
}

/// Keep a request's nonce; a nonce seen before refuses the request.
/// Nonces older than twice the allowed skew are dropped first (their
/// requests would be refused as stale anyway).
pub(crate) fn use_nonce(tx: &mut dyn Tx, key_id: &str, nonce: &str, now: i64) -> Result<()> {
    tx.exec(
        "DELETE FROM nonces WHERE at < $1",
        &[(now - 2 * crate::auth::MAX_SKEW).into()],
    )?;
    let n = tx.exec(
        "INSERT INTO nonces (key_id, nonce, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[key_id.into(), nonce.into(), now.into()],
    )?;
    if n == 0 {
        return Err(Error::Replay {
            key_id: key_id.to_string(),
            nonce: nonce.to_string(),
        });
    }
    Ok(())
}

/// A signed request's identity, as [`crate::auth::verify`] found it.
pub struct Caller<'a> {
    pub public: &'a [u8; 32],
    pub key_id: &'a str,
    pub nonce: &'a str,
}

/// Enroll the caller's key into a group whose token it knows. Enrolling
/// again into the same group is allowed (an agent that lost the answer).
pub fn enroll(db: &Db, who: &Caller, req: &Enroll, now: i64) -> Result<Enrolled> {
    req.check().map_err(|invalid| Error::Invalid {
        what: "enrollment",
        invalid,
    })?;
    db.tx(|tx| {
        use_nonce(tx, who.key_id, who.nonce, now)?;
        let refused = || Error::BadToken {
            group: req.group.clone(),
        };
        let row = tx.query_one(
            "SELECT id, token_hash FROM groups WHERE name = $1",
            &[req.group.as_str().into()],
        )?;
        // An unknown group is refused as a wrong token is, after the same
        // comparison: the answer tells nothing of which groups exist.
        let (group_id, stored) = match row {
            Some(r) => (Some(r.int(0)?), r.bytes(1)?),
            None => (None, vec![0u8; 32]),
        };
        let same: bool = token_hash(&req.token).ct_eq(&stored).into();
        let Some(group_id) = group_id.filter(|_| same) else {
            return Err(refused());
        };
        let existing = tx.query_one(
            "SELECT m.group_id, g.name FROM machines m JOIN groups g ON g.id = m.group_id
             WHERE m.key_id = $1",
            &[who.key_id.into()],
        )?;
        let replaces = match existing {
            Some(r) if r.int(0)? != group_id => {
                return Err(Error::OtherGroup {
                    key_id: who.key_id.to_string(),
                    enrolled: r.text(1)?,
                    asked: req.group.clone(),
                })
            }
            Some(_) => {
                tx.exec(
                    "UPDATE machines SET hostname = $1, last_seen = $2 WHERE key_id = $3",
                    &[req.hostname.as_str().into(), now.into(), who.key_id.into()],
                )?;
                None
            }
            None => {
                let row = tx
                    .query_one(
                        "INSERT INTO machines (key_id, public_key, group_id, hostname, enrolled, last_seen)
                         VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
                        &[
                            who.key_id.into(),
                            Value::Bytes(who.public.to_vec()),
                            group_id.into(),
                            req.hostname.as_str().into(),
                            now.into(),
                        ],
                    )?
                    .map(|r| r.int(0))
                    .transpose()?
                    .ok_or_else(|| Error::BadValue {
                        what: "a machine's insert".into(),
                        why: "returned no id".into(),
                    })?;
                crate::state::operator::on_enroll(
                    tx,
                    (row, who.key_id),
                    group_id,
                    req.hardware.as_deref(),
                    now,
                )?
            }
        };
        Ok(Enrolled {
            machine: who.key_id.to_string(),
            group: req.group.clone(),
            replaces,
        })
    })
}

/// The enrolled machine of a key (its row id), or `UnknownKey`. The key
/// itself, not only its id, must match.
pub(crate) fn machine_of(tx: &mut dyn Tx, who: &Caller) -> Result<i64> {
    let row = tx.query_one(
        "SELECT id, public_key FROM machines WHERE key_id = $1",
        &[who.key_id.into()],
    )?;
    match row {
        Some(r) if r.bytes(1)? == who.public[..] => Ok(r.int(0)?),
        _ => Err(Error::UnknownKey {
            key_id: who.key_id.to_string(),
        }),
    }
}

/// Store a report of the caller's machine, and make it its latest.
pub fn report(db: &Db, who: &Caller, report: &Report, now: i64) -> Result<Reported> {
    report.check().map_err(|invalid| Error::Invalid {
        what: "report",
        invalid,
    })?;
    // Stored as parsed (known fields only), not as sent.
    let body = serde_json::to_string(report).map_err(|e| Error::BadValue {
        what: "a report".into(),
        why: e.to_string(),
    })?;
    let health = report.health();
    let bad_commits: Vec<&str> = report
        .bad_commits
        .iter()
        .map(|b| b.commit.as_str())
        .collect();
    let bad_commits = bad_commits.join(" ");
    let booted = report.booted();
    db.tx(|tx| {
        let machine = machine_of(tx, who)?;
        use_nonce(tx, who.key_id, who.nonce, now)?;
        let id = tx
            .query_one(
                "INSERT INTO reports (machine, received, health, booted_commit, booted_version,
                    staged_commit, drift_etc, drift_var, body, bad_commits)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                &[
                    machine.into(),
                    now.into(),
                    health.as_str().into(),
                    booted.map(|b| b.commit.as_str()).into(),
                    booted.map(|b| b.version.as_str()).into(),
                    report.staged.first().map(|s| s.commit.as_str()).into(),
                    report.drift.map(|d| d.etc as i64).into(),
                    report.drift.map(|d| d.var as i64).into(),
                    body.as_str().into(),
                    bad_commits.as_str().into(),
                ],
            )?
            .map(|r| r.int(0))
            .transpose()?
            .ok_or_else(|| Error::BadValue {
                what: "a report's insert".into(),
                why: "returned no id".into(),
            })?;
        tx.exec(
            "UPDATE machines SET last_report = $1, last_seen = $2, hostname = $3 WHERE id = $4",
            &[
                id.into(),
                now.into(),
                report.hostname.as_str().into(),
                machine.into(),
            ],
        )?;
        let n = tx
            .query_one(
                "SELECT COUNT(*) FROM reports WHERE machine = $1",
                &[machine.into()],
            )?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        let target = crate::rollout::target_of(tx, machine, who.key_id)?;
        Ok(Reported {
            machine: who.key_id.to_string(),
            reports: n as u64,
            target,
        })
    })
}

/// A machine as the operator sees it: its record and latest report.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MachineRow {
    pub machine: String,
    pub group: String,
    pub hostname: String,
    pub enrolled: i64,
    pub last_seen: i64,
    pub health: Option<Health>,
    pub booted_commit: Option<String>,
    pub booted_version: Option<String>,
    pub staged_commit: Option<String>,
    pub drift_etc: Option<i64>,
    pub drift_var: Option<i64>,
    pub reports: u64,
}

const MACHINE_SELECT: &str = "SELECT m.key_id, g.name, m.hostname, m.enrolled, m.last_seen,
        r.health, r.booted_commit, r.booted_version, r.staged_commit, r.drift_etc, r.drift_var,
        (SELECT COUNT(*) FROM reports x WHERE x.machine = m.id)
     FROM machines m JOIN groups g ON g.id = m.group_id
     LEFT JOIN reports r ON r.id = m.last_report";

fn machine_row(r: &crate::db::Row) -> Result<MachineRow> {
    Ok(MachineRow {
        machine: r.text(0)?,
        group: r.text(1)?,
        hostname: r.text(2)?,
        enrolled: r.int(3)?,
        last_seen: r.int(4)?,
        health: r.opt_text(5)?.map(|h| Health::parse(&h)),
        booted_commit: r.opt_text(6)?,
        booted_version: r.opt_text(7)?,
        staged_commit: r.opt_text(8)?,
        drift_etc: r.opt_int(9)?,
        drift_var: r.opt_int(10)?,
        reports: r.int(11)? as u64,
    })
}

/// Machines by id, `limit` from `offset`, and how many there are.
pub fn machines(db: &Db, offset: u64, limit: u64) -> Result<(Vec<MachineRow>, u64)> {
    db.tx(|tx| {
        let total = tx
            .query_one("SELECT COUNT(*) FROM machines", &[])?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        let rows = tx.query(
            &format!("{MACHINE_SELECT} ORDER BY m.key_id LIMIT $1 OFFSET $2"),
            &[
                (limit.min(i64::MAX as u64) as i64).into(),
                (offset.min(i64::MAX as u64) as i64).into(),
            ],
        )?;
        let list = rows.iter().map(machine_row).collect::<Result<_>>()?;
        Ok((list, total as u64))
    })
}

/// One machine by its id (or a unique prefix of 8 digits or more).
pub fn machine(db: &Db, id: &str) -> Result<MachineRow> {
    if id.len() < 8 || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::NoMachine(id.to_string()));
    }
    db.tx(|tx| {
        let rows = tx.query(
            &format!("{MACHINE_SELECT} WHERE m.key_id LIKE $1 ORDER BY m.key_id LIMIT 2"),
            &[format!("{}%", id.to_ascii_lowercase()).into()],
        )?;
        match rows.as_slice() {
            [one] => machine_row(one),
            _ => Err(Error::NoMachine(id.to_string())),
        }
    })
}

/// A report of a machine's history.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HistoryEntry {
    pub received: i64,
    pub health: Health,
    pub booted_commit: Option<String>,
    pub booted_version: Option<String>,
    pub report: serde_json::Value,
}

/// A machine's latest reports, newest first.
pub fn history(db: &Db, id: &str, limit: u64) -> Result<Vec<HistoryEntry>> {
    let m = machine(db, id)?;
    db.tx(|tx| {
        let rows = tx.query(
            "SELECT r.received, r.health, r.booted_commit, r.booted_version, r.body
             FROM reports r JOIN machines m ON m.id = r.machine
             WHERE m.key_id = $1 ORDER BY r.id DESC LIMIT $2",
            &[m.machine.as_str().into(), (limit.min(10_000) as i64).into()],
        )?;
        rows.iter()
            .map(|r| {
                Ok(HistoryEntry {
                    received: r.int(0)?,
                    health: Health::parse(&r.text(1)?),
                    booted_commit: r.opt_text(2)?,
                    booted_version: r.opt_text(3)?,
                    report: serde_json::from_str(&r.text(4)?).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    })
}

/// The caller's own record: a machine reads only its own.
pub fn own(db: &Db, who: &Caller, now: i64) -> Result<MachineInfo> {
    db.tx(|tx| -> Result<()> {
        machine_of(tx, who)?;
        use_nonce(tx, who.key_id, who.nonce, now)
    })?;
    let m = machine(db, who.key_id)?;
    Ok(MachineInfo {
        machine: m.machine,
        group: m.group,
        hostname: m.hostname,
        enrolled: m.enrolled,
        last_seen: m.last_seen,
        health: m.health,
        booted_commit: m.booted_commit,
        booted_version: m.booted_version,
        reports: m.reports,
    })
}
