//! `slate admin upgrade`: the library's upgrade (pull, lock, the
//! deployment followed checked unchanged, the plan), rendered, and the
//! plan applied unless `--dry-run`.

use std::time::Instant;

use slate_core::sysroot::{DeployOptions, Sysroot, UpgradeOptions};

use super::{apply, now, source, UpgradeArgs};
use crate::output;

pub(super) fn run(s: &Sysroot, u: &UpgradeArgs) -> anyhow::Result<()> {
    let opts = UpgradeOptions {
        os: u.os.clone(),
        from: u.common.from.clone(),
        deploy: DeployOptions {
            tries: u.common.tries,
            retain: u.common.retain,
            auto_prune: u.common.auto_prune,
            now: now(),
            stage: u.common.stage,
            drop_incompatible: u.common.drop_incompatible,
            ..DeployOptions::default()
        },
    };
    let fetch = source::fetcher(u.common.transfer.min_rate);
    if u.check {
        return super::updates::check(s, &opts, u.common.json, &*fetch);
    }
    if u.auto {
        return super::updates::auto(s, &opts, u.common.json, &*fetch);
    }
    let started = Instant::now();
    let up = output::counted("pulled", "objects", |p| s.upgrade(&opts, &*fetch, p))?;
    source::report(&up.resolved, started);
    let commit = up.resolved.commit;
    let Some((plan, deploy_opts)) = up.plan else {
        if u.common.json {
            return output::json(&serde_json::json!({
                "upgraded": false, "commit": commit, "bad": up.bad, "staged": up.staged
            }));
        }
        if let Some(b) = &up.bad {
            eprintln!("{}", super::status::bad_text(b));
            return Ok(());
        }
        if let Some(st) = &up.staged {
            eprintln!("{commit} is staged already ({st}); nothing to do");
            return Ok(());
        }
        eprintln!(
            "{} is at the newest commit of its ref ({commit}); nothing to do",
            up.follows
        );
        return Ok(());
    };
    let _lock = up.lock;
    apply(s, plan, &deploy_opts, &u.common)
}
