//! The upgrade loop's rules. A boot is blessed by systemd-bless-boot once
//! it reaches `boot-complete.target` (its entry loses its counter); an
//! entry whose tries ran out without that is bad, and the boot loader
//! puts it last. So that an automatic upgrade never goes round in a loop:
//!
//! - no upgrade from a booted deployment that is pending (booted, not
//!   blessed yet) or bad;
//! - a commit whose entry went bad here is recorded in the OS's state
//!   (`SYSROOT/slate/state/OS/bad-commits.toml`) and not deployed or
//!   staged again by `upgrade` until its origin names another commit; an
//!   explicit deploy of it still may. A commit that boots to success
//!   later (its entry blessed) is taken off the list.

use serde::{Deserialize, Serialize};

use super::{parse_toml, write_toml, EntryState, Error, Result, Sysroot};
use crate::fsutil::show;
use crate::hash::ObjectId;

/// The file in `SYSROOT/slate/state/OS/`.
pub const BAD_COMMITS_FILE: &str = "bad-commits.toml";
/// At most this many are kept (the newest).
const MAX_BAD: usize = 64;
/// A larger file is refused.
const MAX_FILE: usize = 256 << 10;

/// A commit whose boot entry ran out of tries on this machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadCommit {
    /// 64 hex digits.
    pub commit: String,
    /// Its image's `VERSION_ID`, when known.
    #[serde(default)]
    pub version: String,
    /// The deployment (`OS/ID`) whose entry went bad.
    pub deployment: String,
    /// Unix time it was found bad.
    pub since: i64,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BadCommits {
    #[serde(default)]
    bad: Vec<BadCommit>,
}

impl Sysroot {
    /// The commits recorded bad for `os`, oldest first.
    pub fn bad_commits(&self, os: &str) -> Result<Vec<BadCommit>> {
        let Some(state) = self.dir_if_there(&self.state_dir(os))? else {
            return Ok(Vec::new());
        };
        let p = state.join(BAD_COMMITS_FILE);
        let Some(b) = state.read(BAD_COMMITS_FILE)? else {
            return Ok(Vec::new());
        };
        if b.len() > MAX_FILE {
            return Err(Error::Refused(format!(
                "{}: {} bytes, more than a list of bad commits holds ({MAX_FILE})",
                show(&p),
                b.len()
            )));
        }
        let list: BadCommits = parse_toml(&p, &b, "a list of bad commits")?;
        for c in &list.bad {
            if ObjectId::from_hex(&c.commit).is_err() {
                return Err(Error::Refused(format!(
                    "{}: {:?} is not a commit id",
                    show(&p),
                    c.commit
                )));
            }
        }
        Ok(list.bad)
    }

    /// The bad commit `commit` of `os`, if it is recorded.
    pub fn bad_commit(&self, os: &str, commit: &ObjectId) -> Result<Option<BadCommit>> {
        let hex = commit.to_hex();
        Ok(self.bad_commits(os)?.into_iter().find(|b| b.commit == hex))
    }

    /// Record the commits of `os` whose entries are bad now (found at
    /// `now`), and take off those whose entries were blessed since.
    /// Written atomically, only when it changes. Returns those added.
    pub(crate) fn note_bad_commits(&self, os: &str, now: i64) -> Result<Vec<BadCommit>> {
        let order = self.ordered()?;
        let old = self.bad_commits(os)?;
        let blessed = |c: &str| {
            order.iter().any(|d| {
                d.record.os == os
                    && d.record.commit == c
                    && d.entry.as_ref().map(|e| e.state()) == Some(EntryState::Good)
            })
        };
        let mut list: Vec<BadCommit> = old
            .iter()
            .filter(|b| !blessed(&b.commit))
            .cloned()
            .collect();
        let mut added = Vec::new();
        for d in order.iter().filter(|d| d.record.os == os && d.bad()) {
            if list.iter().any(|b| b.commit == d.record.commit) {
                continue;
            }
            let b = BadCommit {
                commit: d.record.commit.clone(),
                version: d.record.version_id.clone(),
                deployment: d.record.name(),
                since: now,
            };
            list.push(b.clone());
            added.push(b);
        }
        if list != old {
            let skip = list.len().saturating_sub(MAX_BAD);
            let state = self.dir(&self.state_dir(os))?;
            write_toml(
                &state,
                BAD_COMMITS_FILE,
                &BadCommits {
                    bad: list.split_off(skip),
                },
            )?;
        }
        Ok(added)
    }

    /// Refuse an upgrade of `os` from the booted deployment while its
    /// entry is pending (not blessed yet) or bad.
    pub(crate) fn check_booted_blessed(&self, os: &str) -> Result<()> {
        let Some(booted) = self.booted.as_deref() else {
            return Ok(());
        };
        let order = self.ordered()?;
        let Some(d) = order
            .iter()
            .find(|d| d.record.name() == booted && d.record.os == os)
        else {
            return Ok(());
        };
        let Some(e) = &d.entry else { return Ok(()) };
        match e.state() {
            EntryState::Good => Ok(()),
            state => Err(Error::NotBlessed {
                deployment: booted.to_string(),
                entry: e.file.clone(),
                bad: state == EntryState::Bad,
            }),
        }
    }
}
