//! Rollouts: a group's machines moved to a commit in waves. The wave
//! logic is pure (`waves.rs`); here it meets the database. A rollout's
//! progress is computed from each machine's latest report (by
//! [`tick_all`] in the server every 2 s, and by [`status`] and [`act`] for
//! every command that reads or changes it); a
//! machine's target follows from its wave and the rollout's state
//! ([`target_of`], in each report's answer).

pub mod waves;
pub mod window;

use crate::db::{Db, Tx};
use crate::records::{check_group_name, Error, Result};
use crate::wire::{Health, Target};
pub use waves::{Standing, State, WaveCount, Waves};

/// A rollout as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rollout {
    pub id: i64,
    pub group: String,
    pub commit: String,
    /// The commit most of the group ran when it started: where an abort
    /// sends the machines back.
    pub previous: Option<String>,
    /// The calendar event whose minutes a wave may open in.
    pub window: Option<String>,
    pub waves: String,
    pub max_failures: u64,
    pub state: String,
    /// Waves open (1 to the number of waves).
    pub opened: u64,
    pub failures: u64,
    pub counts: Vec<WaveCount>,
    pub created: i64,
    pub updated: i64,
}

struct Row {
    id: i64,
    group_id: i64,
    follows: String,
    commit: String,
    previous: Option<String>,
    waves: Waves,
    max_failures: u64,
    state: State,
    opened: usize,
    created: i64,
    window: Option<String>,
}

const SELECT: &str = "SELECT r.id, r.group_id, g.follows, r.target_commit, r.previous_commit,
        r.waves, r.max_failures, r.state, r.opened, r.created, r.open_window
     FROM rollouts r JOIN groups g ON g.id = r.group_id";

fn row(r: &crate::db::Row) -> Result<Row> {
    let bad = |what: &str, v: String| Error::BadValue {
        what: format!("rollout {} in the database", r.int(0).unwrap_or(0)),
        why: format!("{what} {v:?}"),
    };
    let waves = r.text(5)?;
    let state = r.text(7)?;
    Ok(Row {
        id: r.int(0)?,
        group_id: r.int(1)?,
        follows: r.text(2)?,
        commit: r.text(3)?,
        previous: r.opt_text(4)?,
        waves: Waves::parse(&waves).map_err(|_| bad("waves", waves.clone()))?,
        max_failures: r.int(6)?.max(0) as u64,
        state: State::parse(&state).ok_or_else(|| bad("state", state.clone()))?,
        opened: r.int(8)?.max(1) as usize,
        created: r.int(9)?,
        window: r.opt_text(10)?,
    })
}

/// The group's latest rollout.
fn latest(tx: &mut dyn Tx, group_id: i64) -> Result<Option<Row>> {
    tx.query_one(
        &format!("{SELECT} WHERE r.group_id = $1 ORDER BY r.id DESC LIMIT 1"),
        &[group_id.into()],
    )?
    .as_ref()
    .map(row)
    .transpose()
}

fn group_id(tx: &mut dyn Tx, group: &str) -> Result<i64> {
    check_group_name(group)?;
    tx.query_one("SELECT id FROM groups WHERE name = $1", &[group.into()])?
        .map(|r| r.int(0))
        .transpose()?
        .ok_or_else(|| Error::NoGroup(group.to_string()))
}

/// Each machine of the group with its wave and standing.
fn standings(tx: &mut dyn Tx, r: &Row) -> Result<Vec<(usize, Standing)>> {
    let rows = tx.query(
        "SELECT m.key_id, x.booted_commit, x.health, x.bad_commits
         FROM machines m LEFT JOIN reports x ON x.id = m.last_report
         WHERE m.group_id = $1",
        &[r.group_id.into()],
    )?;
    rows.iter()
        .map(|x| {
            let machine = x.text(0)?;
            let booted = x.opt_text(1)?;
            let health = x.opt_text(2)?.map(|h| Health::parse(&h));
            let bad = x.opt_text(3)?.unwrap_or_default();
            let standing = if bad.split(' ').any(|c| c == r.commit) {
                Standing::Failed
            } else if booted.as_deref() == Some(r.commit.as_str())
                && health == Some(Health::Blessed)
            {
                Standing::Done
            } else {
                Standing::Waiting
            };
            Ok((r.waves.of(&machine), standing))
        })
        .collect()
}

/// Bring a rollout's progress up to date (in the caller's transaction).
fn advance(tx: &mut dyn Tx, r: &Row, now: i64) -> Result<Rollout> {
    let counts = waves::count(r.waves.len(), &standings(tx, r)?);
    let mut s = waves::step(&counts, r.opened, r.state, r.max_failures);
    if s.opened > r.opened {
        if let Some(w) = &r.window {
            // Outside its window (or the window unreadable) no wave opens.
            if !window::open_at(w, now).unwrap_or(false) {
                s.opened = r.opened;
                s.state = State::Running;
            }
        }
    }
    tx.exec(
        "UPDATE rollouts SET opened = $1, state = $2, failures = $3, updated = $4 WHERE id = $5",
        &[
            (s.opened as i64).into(),
            s.state.as_str().into(),
            (s.failures as i64).into(),
            now.into(),
            r.id.into(),
        ],
    )?;
    Ok(Rollout {
        id: r.id,
        group: String::new(),
        commit: r.commit.clone(),
        previous: r.previous.clone(),
        window: r.window.clone(),
        waves: r.waves.to_string(),
        max_failures: r.max_failures,
        state: s.state.as_str().to_string(),
        opened: s.opened as u64,
        failures: s.failures,
        counts,
        created: r.created,
        updated: now,
    })
}

/// Start a rollout of `commit` to a group. Refused while another of the
/// group's is running or paused.
pub fn start(
    db: &Db,
    group: &str,
    commit: &str,
    waves: &Waves,
    max_failures: u64,
    window: Option<&str>,
    now: i64,
) -> Result<Rollout> {
    if let Some(w) = window {
        window::check(w).map_err(|why| Error::BadValue {
            what: "the rollout's window".into(),
            why,
        })?;
    }
    if commit.len() != 64
        || !commit
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(Error::BadValue {
            what: format!("commit {commit:?}"),
            why: "not a commit id (64 lowercase hex digits)".into(),
        });
    }
    db.tx(|tx| {
        let gid = group_id(tx, group)?;
        if let Some(r) = latest(tx, gid)? {
            if r.state.active() {
                return Err(Error::BadValue {
                    what: format!("group {group:?}"),
                    why: format!(
                        "rollout {} of {} is {}: abort it first",
                        r.id,
                        &r.commit[..12],
                        r.state.as_str()
                    ),
                });
            }
        }
        // Where the group is: the booted commit most of its machines report.
        let previous = tx
            .query_one(
                "SELECT x.booted_commit, COUNT(*) AS n FROM machines m
                 JOIN reports x ON x.id = m.last_report
                 WHERE m.group_id = $1 AND x.booted_commit IS NOT NULL
                 GROUP BY x.booted_commit ORDER BY n DESC, x.booted_commit LIMIT 1",
                &[gid.into()],
            )?
            .map(|r| r.text(0))
            .transpose()?;
        tx.exec(
            "INSERT INTO rollouts (group_id, target_commit, previous_commit, waves, max_failures,
                state, opened, failures, created, updated, open_window)
             VALUES ($1, $2, $3, $4, $5, 'running', 1, 0, $6, $6, $7)",
            &[
                gid.into(),
                commit.into(),
                previous.into(),
                waves.to_string().into(),
                (max_failures.min(i64::MAX as u64) as i64).into(),
                now.into(),
                window.into(),
            ],
        )?;
        let r = latest(tx, gid)?.ok_or_else(|| Error::NoGroup(group.to_string()))?;
        let mut out = advance(tx, &r, now)?;
        out.group = group.to_string();
        Ok(out)
    })
}

/// What an operator does to a group's rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pause,
    /// Resume, optionally with a new failure limit.
    Resume(Option<u64>),
    /// Stop it; the machines of its open waves go back to the previous commit.
    Abort,
}

pub fn act(db: &Db, group: &str, action: Action, now: i64) -> Result<Rollout> {
    db.tx(|tx| {
        let gid = group_id(tx, group)?;
        let mut r = latest(tx, gid)?
            .filter(|r| r.state.active())
            .ok_or_else(|| Error::BadValue {
                what: format!("group {group:?}"),
                why: "has no running or paused rollout".into(),
            })?;
        match action {
            Action::Pause => r.state = State::Paused,
            Action::Abort => r.state = State::Aborted,
            Action::Resume(max) => {
                r.state = State::Running;
                if let Some(m) = max {
                    r.max_failures = m;
                    tx.exec(
                        "UPDATE rollouts SET max_failures = $1 WHERE id = $2",
                        &[(m.min(i64::MAX as u64) as i64).into(), r.id.into()],
                    )?;
                }
            }
        }
        let mut out = advance(tx, &r, now)?;
        out.group = group.to_string();
        Ok(out)
    })
}

/// The group's latest rollout, its progress brought up to date.
pub fn status(db: &Db, group: &str, now: i64) -> Result<Option<Rollout>> {
    db.tx(|tx| {
        let gid = group_id(tx, group)?;
        let Some(r) = latest(tx, gid)? else {
            return Ok(None);
        };
        let mut out = advance(tx, &r, now)?;
        out.group = group.to_string();
        Ok(Some(out))
    })
}

/// Every group's running rollout brought up to date (the server's timer).
pub fn tick_all(db: &Db, now: i64) -> Result<()> {
    let groups: Vec<String> = db.tx(|tx| -> Result<Vec<String>> {
        tx.query(
            "SELECT DISTINCT g.name FROM rollouts r JOIN groups g ON g.id = r.group_id
             WHERE r.state = 'running'",
            &[],
        )?
        .iter()
        .map(|r| Ok(r.text(0)?))
        .collect()
    })?;
    for g in groups {
        status(db, &g, now)?;
    }
    Ok(())
}

/// What a machine should run: the rollout's commit once its wave is open,
/// the previous commit after an abort (if its wave was open), else nothing.
pub fn target_of(tx: &mut dyn Tx, machine: i64, key_id: &str) -> Result<Option<Target>> {
    let Some(gid) = tx
        .query_one(
            "SELECT group_id FROM machines WHERE id = $1",
            &[machine.into()],
        )?
        .map(|r| r.int(0))
        .transpose()?
    else {
        return Ok(None);
    };
    let Some(r) = latest(tx, gid)? else {
        return Ok(None);
    };
    if r.waves.of(key_id) >= r.opened {
        return Ok(None);
    }
    let (commit, reason) = match r.state {
        State::Aborted => match &r.previous {
            Some(p) => (p.clone(), "abort"),
            None => return Ok(None),
        },
        _ => (r.commit.clone(), "rollout"),
    };
    Ok(Some(Target {
        commit,
        follows: r.follows.clone(),
        rollout: r.id,
        reason: reason.to_string(),
    }))
}
