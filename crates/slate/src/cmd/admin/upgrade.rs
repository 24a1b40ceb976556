//! `slate admin upgrade`: the newest commit of the ref the booted (or
//! default) deployment was deployed from, deployed. The pull (over the
//! network for `REMOTE:REF`) runs before the sysroot's lock is taken: a
//! slow server holds up this command, never the others; under the lock
//! the deployment followed is read again and must be unchanged.

use anyhow::Context;
use slate_core::sysroot::{DeployOptions, Sysroot};

use super::{deploy, now, resolve_at_rate, UpgradeArgs};
use crate::output;

/// The deployment an upgrade follows: its OS, name, commit and origin.
#[derive(PartialEq, Eq)]
struct Followed {
    os: String,
    id: String,
    commit: String,
    origin: String,
}

fn followed(s: &Sysroot, os: Option<&str>) -> anyhow::Result<Followed> {
    let status = s.status()?;
    let os = s.pick_os(os)?;
    let cur = status
        .deployments
        .iter()
        .find(|d| d.booted && d.os == os)
        .or_else(|| status.deployments.iter().find(|d| d.os == os))
        .with_context(|| format!("OS {os} has no deployment to upgrade"))?;
    let origin = cur.origin.clone().with_context(|| {
        format!(
            "{}/{} was deployed from a commit, not a ref: nothing to follow \
             (deploy a ref to upgrade from it)",
            cur.os, cur.id
        )
    })?;
    Ok(Followed {
        os: cur.os.clone(),
        id: cur.id.clone(),
        commit: cur.commit.clone(),
        origin,
    })
}

pub(super) fn run(s: &Sysroot, u: &UpgradeArgs) -> anyhow::Result<()> {
    let cur = followed(s, u.os.as_deref())?;
    let (commit, origin) = resolve_at_rate(
        s,
        &cur.origin,
        u.common.from.as_deref(),
        u.common.transfer.min_rate,
    )?;
    let _lock = s.lock()?;
    let again = followed(s, u.os.as_deref())?;
    if again != cur {
        anyhow::bail!(
            "the deployments changed while {} was pulled (another command ran): \
             {}/{} from {} now; nothing deployed, run upgrade again",
            cur.origin,
            again.os,
            again.id,
            again.origin
        );
    }
    if commit.to_hex() == cur.commit {
        if u.common.json {
            return output::json(&serde_json::json!({ "upgraded": false, "commit": commit }));
        }
        eprintln!(
            "{}/{} is at the newest commit of its ref ({commit}); nothing to do",
            cur.os, cur.id
        );
        return Ok(());
    }
    let opts = DeployOptions {
        os: Some(cur.os),
        kargs: Vec::new(),
        tries: u.common.tries,
        retain: u.common.retain,
        auto_prune: u.common.auto_prune,
        origin,
        now: now(),
    };
    deploy(s, &commit, &opts, &u.common)
}
