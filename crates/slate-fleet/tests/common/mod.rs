#![allow(dead_code)]

pub mod pg;

use slate_fleet::wire::{BadCommit, Deployment, Drift, Report, Staged, State};

pub const COMMIT_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub const COMMIT_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

pub fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

/// A machine booted into COMMIT_A (1.0), blessed, with COMMIT_B staged.
pub fn report(hostname: &str) -> Report {
    Report {
        agent_version: "0.1.0".into(),
        hostname: hostname.into(),
        uptime_secs: 42,
        deployments: vec![Deployment {
            os: "debian".into(),
            id: "1".into(),
            commit: COMMIT_A.into(),
            version: "1.0".into(),
            default: true,
            booted: true,
            pinned: false,
            state: Some(State::Good),
            tries_left: None,
            etc_conflicts: vec!["/etc/motd".into()],
            created: 1000,
        }],
        staged: vec![Staged {
            os: "debian".into(),
            commit: COMMIT_B.into(),
            version: "1.1".into(),
        }],
        bad_commits: Vec::<BadCommit>::new(),
        drift: Some(Drift { etc: 2, var: 3 }),
    }
}
