//! What travels between an agent and the server (`docs/format/fleet.md`):
//! JSON with every field named (unknown ones refused), every string and
//! list bounded, every commit id 64 hex digits. Checked field by field
//! before anything is stored.

use serde::{Deserialize, Serialize};
use slate_core::sysroot::{EntryState, Status};

/// The largest request body the server reads.
pub const MAX_BODY: usize = 256 * 1024;
/// The longest string field (names, versions, paths).
pub const MAX_TEXT: usize = 256;
/// The longest hostname (DNS: 253).
pub const MAX_HOSTNAME: usize = 253;
pub const MAX_DEPLOYMENTS: usize = 64;
/// The most `/etc` conflict paths, staged deployments or bad commits.
pub const MAX_LIST: usize = 256;

/// A field that breaks the rules, by name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {why}")]
pub struct Invalid {
    pub field: String,
    pub why: String,
}

fn invalid(field: impl Into<String>, why: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        why: why.into(),
    }
}

fn text(field: &str, v: &str, max: usize) -> Result<(), Invalid> {
    if v.len() > max {
        return Err(invalid(
            field,
            format!("{} bytes, more than {max}", v.len()),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(invalid(field, "holds a control character"));
    }
    Ok(())
}

fn commit(field: &str, v: &str) -> Result<(), Invalid> {
    if v.len() != 64 || !v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid(field, "not a commit id (64 lowercase hex digits)"));
    }
    Ok(())
}

fn count(field: &str, n: usize, max: usize) -> Result<(), Invalid> {
    if n > max {
        return Err(invalid(field, format!("{n} entries, more than {max}")));
    }
    Ok(())
}

/// `POST /api/v1/enroll`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enroll {
    pub group: String,
    pub token: String,
    pub hostname: String,
    /// The machine's hardware id (DMI's product UUID), when it has one:
    /// what a replacement approved in advance names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<String>,
}

impl Enroll {
    pub fn check(&self) -> Result<(), Invalid> {
        text("group", &self.group, MAX_TEXT)?;
        text("token", &self.token, MAX_TEXT)?;
        text("hostname", &self.hostname, MAX_HOSTNAME)?;
        if let Some(h) = &self.hardware {
            if crate::state::operator::check_hardware(h).is_err() {
                return Err(invalid("hardware", "not 1 to 64 hex digits and '-'"));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolled {
    /// The machine's id: 32 hex digits of its key's SHA-256.
    pub machine: String,
    pub group: String,
    /// The machine whose kept state this one took at its enrollment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// What boot counting says of a deployment's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Good,
    Pending,
    Bad,
}

/// One deployment of a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub os: String,
    pub id: String,
    pub commit: String,
    pub version: String,
    pub default: bool,
    pub booted: bool,
    pub pinned: bool,
    pub state: Option<State>,
    pub tries_left: Option<u32>,
    pub etc_conflicts: Vec<String>,
    pub created: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Staged {
    pub os: String,
    pub commit: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BadCommit {
    pub os: String,
    pub commit: String,
    pub version: String,
    /// Unix time it was found bad.
    pub since: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drift {
    pub etc: u64,
    pub var: u64,
}

/// `POST /api/v1/report`: what `slate admin status --json` knows, trimmed
/// to what a fleet needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub agent_version: String,
    pub hostname: String,
    pub uptime_secs: u64,
    pub deployments: Vec<Deployment>,
    pub staged: Vec<Staged>,
    pub bad_commits: Vec<BadCommit>,
    /// `/etc` and `/var` drift of the booted deployment.
    pub drift: Option<Drift>,
}

/// A machine's health as its last report tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// The booted deployment's entry is good, and no newer commit went bad.
    Blessed,
    /// The booted deployment has not yet booted to success.
    Pending,
    /// A commit went bad here after the booted deployment was made (boot
    /// counting put the machine back), or the booted entry is bad.
    Bad,
    /// Nothing booted is known (a report from outside a deployment).
    Unknown,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Blessed => "blessed",
            Health::Pending => "pending",
            Health::Bad => "bad",
            Health::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Health {
        match s {
            "blessed" => Health::Blessed,
            "pending" => Health::Pending,
            "bad" => Health::Bad,
            _ => Health::Unknown,
        }
    }
}

impl Report {
    pub fn check(&self) -> Result<(), Invalid> {
        text("agent_version", &self.agent_version, MAX_TEXT)?;
        text("hostname", &self.hostname, MAX_HOSTNAME)?;
        count("deployments", self.deployments.len(), MAX_DEPLOYMENTS)?;
        count("staged", self.staged.len(), MAX_LIST)?;
        count("bad_commits", self.bad_commits.len(), MAX_LIST)?;
        for (i, d) in self.deployments.iter().enumerate() {
            let f = |name: &str| format!("deployments[{i}].{name}");
            text(&f("os"), &d.os, MAX_TEXT)?;
            text(&f("id"), &d.id, MAX_TEXT)?;
            commit(&f("commit"), &d.commit)?;
            text(&f("version"), &d.version, MAX_TEXT)?;
            count(&f("etc_conflicts"), d.etc_conflicts.len(), MAX_LIST)?;
            for (j, p) in d.etc_conflicts.iter().enumerate() {
                text(&f(&format!("etc_conflicts[{j}]")), p, 4096)?;
            }
        }
        for (name, n) in [
            (
                "booted",
                self.deployments.iter().filter(|d| d.booted).count(),
            ),
            (
                "default",
                self.deployments.iter().filter(|d| d.default).count(),
            ),
        ] {
            if n > 1 {
                return Err(invalid("deployments", format!("{n} are {name}")));
            }
        }
        for (i, s) in self.staged.iter().enumerate() {
            text(&format!("staged[{i}].os"), &s.os, MAX_TEXT)?;
            commit(&format!("staged[{i}].commit"), &s.commit)?;
            text(&format!("staged[{i}].version"), &s.version, MAX_TEXT)?;
        }
        for (i, b) in self.bad_commits.iter().enumerate() {
            text(&format!("bad_commits[{i}].os"), &b.os, MAX_TEXT)?;
            commit(&format!("bad_commits[{i}].commit"), &b.commit)?;
            text(&format!("bad_commits[{i}].version"), &b.version, MAX_TEXT)?;
        }
        Ok(())
    }

    pub fn booted(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.booted)
    }

    pub fn health(&self) -> Health {
        let Some(b) = self.booted() else {
            return Health::Unknown;
        };
        match b.state {
            Some(State::Pending) => Health::Pending,
            Some(State::Bad) => Health::Bad,
            Some(State::Good) | None => {
                // Boot counting put the machine back: a deployment of its
                // OS made after the booted one ran out of tries. (A bad
                // commit's `since` is when the machine noticed, not when
                // it went bad: it says nothing of the order.)
                let went_back = self
                    .deployments
                    .iter()
                    .any(|d| d.os == b.os && d.state == Some(State::Bad) && d.created > b.created);
                if went_back {
                    Health::Bad
                } else {
                    Health::Blessed
                }
            }
        }
    }

    /// The report of a sysroot's status (the library's, not the CLI's).
    pub fn from_status(
        status: &Status,
        hostname: &str,
        uptime_secs: u64,
        agent_version: &str,
    ) -> Report {
        let state = |s: Option<EntryState>| {
            s.map(|s| match s {
                EntryState::Good => State::Good,
                EntryState::Pending => State::Pending,
                EntryState::Bad => State::Bad,
            })
        };
        let booted_drift = status
            .deployments
            .iter()
            .find(|d| d.booted)
            .or(status.deployments.first())
            .and_then(|d| d.drift);
        Report {
            agent_version: agent_version.to_string(),
            hostname: hostname.to_string(),
            uptime_secs,
            deployments: status
                .deployments
                .iter()
                .take(MAX_DEPLOYMENTS)
                .map(|d| Deployment {
                    os: d.os.clone(),
                    id: d.id.clone(),
                    commit: d.commit.clone(),
                    version: d.version.clone(),
                    default: d.default,
                    booted: d.booted,
                    pinned: d.pinned,
                    state: state(d.entry_state),
                    tries_left: d.tries_left,
                    etc_conflicts: d.etc_conflicts.iter().take(MAX_LIST).cloned().collect(),
                    created: d.created,
                })
                .collect(),
            staged: status
                .staged
                .iter()
                .take(MAX_LIST)
                .map(|s| Staged {
                    os: s.os.clone(),
                    commit: s.commit.clone(),
                    version: s.version.clone(),
                })
                .collect(),
            bad_commits: status
                .bad_commits
                .iter()
                .take(MAX_LIST)
                .map(|b| BadCommit {
                    os: b.os.clone(),
                    commit: b.bad.commit.clone(),
                    version: b.bad.version.clone(),
                    since: b.bad.since,
                })
                .collect(),
            drift: booted_drift.map(|d| Drift {
                etc: d.etc as u64,
                var: d.var as u64,
            }),
        }
    }
}

/// The answer to a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reported {
    pub machine: String,
    /// Reports of this machine the server keeps.
    pub reports: u64,
    /// What the machine should run, when a rollout of its group says.
    pub target: Option<Target>,
}

/// A commit a machine should stage, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub commit: String,
    /// The `REMOTE:REF` the group follows (where the commit is pulled from).
    pub follows: String,
    pub rollout: i64,
    /// `rollout` (its wave is open) or `abort` (back to the version before).
    pub reason: String,
}

/// `GET /api/v1/self`: the machine's own record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineInfo {
    pub machine: String,
    pub group: String,
    pub hostname: String,
    pub enrolled: i64,
    pub last_seen: i64,
    pub health: Option<Health>,
    pub booted_commit: Option<String>,
    pub booted_version: Option<String>,
    pub reports: u64,
}

/// An error answer: `{"error": "…"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(commit: char, created: i64, state: Option<State>, booted: bool) -> Deployment {
        Deployment {
            os: "debian".into(),
            id: format!("{commit}.0"),
            commit: commit.to_string().repeat(64),
            version: String::new(),
            default: booted,
            booted,
            pinned: false,
            state,
            tries_left: None,
            etc_conflicts: Vec::new(),
            created,
        }
    }

    fn report(deployments: Vec<Deployment>, bad_since: Option<i64>) -> Report {
        Report {
            agent_version: "0".into(),
            hostname: "h".into(),
            uptime_secs: 0,
            deployments,
            staged: Vec::new(),
            bad_commits: bad_since
                .map(|since| BadCommit {
                    os: "debian".into(),
                    commit: "c".repeat(64),
                    version: "3".into(),
                    since,
                })
                .into_iter()
                .collect(),
            drift: None,
        }
    }

    /// Put back by boot counting (a newer deployment went bad) is bad; a
    /// newer deployment booted and blessed is blessed, however late the
    /// machine noticed the older bad commit.
    #[test]
    fn health_follows_the_order_of_deployments() {
        let back = report(
            vec![
                dep('a', 10, Some(State::Good), true),
                dep('c', 20, Some(State::Bad), false),
            ],
            Some(25),
        );
        assert_eq!(back.health(), Health::Bad);
        let on = report(
            vec![
                dep('d', 30, Some(State::Good), true),
                dep('c', 20, Some(State::Bad), false),
                dep('a', 10, Some(State::Good), false),
            ],
            Some(40),
        );
        assert_eq!(on.health(), Health::Blessed);
        let pending = report(vec![dep('d', 30, Some(State::Pending), true)], None);
        assert_eq!(pending.health(), Health::Pending);
        assert_eq!(report(Vec::new(), None).health(), Health::Unknown);
    }
}
