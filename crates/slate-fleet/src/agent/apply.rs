//! The server's target applied: staged through the library, with its
//! rules (the booted deployment blessed first, the trust rule of the
//! origin, a commit that went bad here skipped), becoming the default at
//! the next shutdown. The outcome is seen by the next run's report.

use slate_core::progress::Progress;
use slate_core::remotes::Fetch;
use slate_core::sysroot::{DeployOptions, Sysroot, UpgradeOptions};

use super::AgentError;
use crate::wire::{Report, Target};

/// What a run did with its target.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    NoTarget,
    /// `--state-only`: no report made.
    StateOnly,
    /// `--report-only`.
    NotApplied,
    /// Booted into it already.
    Running,
    /// Staged already (it becomes the default at shutdown).
    StagedAlready,
    /// It went bad here: not staged again.
    WentBad,
    /// The booted deployment is not blessed yet: wait for it.
    NotBlessed {
        detail: String,
    },
    /// The origin's ref names another commit than the target.
    RefMoved {
        names: String,
    },
    Staged {
        deployment: String,
    },
}

fn now() -> i64 {
    crate::now()
}

pub fn apply(
    s: &Sysroot,
    report: &Report,
    t: &Target,
    fetch: &dyn Fetch,
) -> Result<Outcome, AgentError> {
    if report.booted().is_some_and(|b| b.commit == t.commit) {
        return Ok(Outcome::Running);
    }
    if report.staged.iter().any(|x| x.commit == t.commit) {
        return Ok(Outcome::StagedAlready);
    }
    if report.bad_commits.iter().any(|x| x.commit == t.commit) {
        return Ok(Outcome::WentBad);
    }
    let stage_err = |source| AgentError::Stage {
        commit: t.commit.clone(),
        source: Box::new(source),
    };
    let progress = Progress::default();
    let deploy = DeployOptions {
        now: now(),
        stage: true,
        ..DeployOptions::default()
    };
    if t.reason == "abort" {
        // Back to the commit before: it is in the repository (a
        // deployment of it was there), deployed by its id.
        let ready = s
            .prepare_deploy(&t.commit, None, &deploy, fetch, &progress)
            .map_err(stage_err)?;
        let _lock = ready.lock;
        let st = s
            .stage(ready.plan, &ready.opts, &progress)
            .map_err(stage_err)?;
        return Ok(Outcome::Staged {
            deployment: format!("{}/{}", st.os, st.id),
        });
    }
    let opts = UpgradeOptions {
        os: None,
        from: None,
        deploy,
    };
    let up = match s.upgrade(&opts, fetch, &progress) {
        Ok(up) => up,
        Err(e @ slate_core::sysroot::Error::NotBlessed { .. }) => {
            return Ok(Outcome::NotBlessed {
                detail: e.to_string(),
            })
        }
        Err(e) => return Err(stage_err(e)),
    };
    let names = up.resolved.commit.to_hex();
    if names != t.commit {
        return Ok(Outcome::RefMoved { names });
    }
    if up.bad.is_some() {
        return Ok(Outcome::WentBad);
    }
    if up.staged.is_some() {
        return Ok(Outcome::StagedAlready);
    }
    let Some((plan, opts)) = up.plan else {
        return Ok(Outcome::Running);
    };
    let _lock = up.lock;
    let st = s.stage(plan, &opts, &progress).map_err(stage_err)?;
    Ok(Outcome::Staged {
        deployment: format!("{}/{}", st.os, st.id),
    })
}
