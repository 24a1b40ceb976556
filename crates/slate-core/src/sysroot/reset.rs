//! Factory reset: wiping `/etc` and `/var` returns a machine to its
//! shipped state; wiping `/var` alone keeps its settings and drops what it
//! collected. Requested for the next boot (`SYSROOT/slate/state/OS/
//! factory-reset`, done by `prepare-root` before anything is mounted), or
//! done at once on a sysroot whose OS is not the running one.
//!
//! `/etc` of each deployment of the OS goes back to its image's (the new
//! copy is swapped in with one `renameat2(RENAME_EXCHANGE)`), and the kept
//! machine id goes with it: the next boot is a first boot. `/var` (the
//! OS's persistent one) is emptied. The request is removed last: a reset
//! cut short is done again.

use serde::Serialize;

use super::dirs::Dir;
use super::{Error, Result, Sysroot, SysrootLock};
use crate::checkout::{self, CheckoutOptions};
use crate::diff;
use crate::hash::ObjectId;
use crate::progress::Progress;

/// What a factory reset will wipe, and what is lost with it.
#[derive(Clone, Debug, Serialize)]
pub struct ResetPlan {
    pub os: String,
    pub etc: bool,
    pub var: bool,
    /// The drift of `/etc` from the image: what the machine changed.
    pub etc_changes: Vec<diff::Entry>,
    /// Files and bytes in the OS's persistent `/var`.
    pub var_files: u64,
    pub var_bytes: u64,
    /// Whether the kept machine id goes (with `/etc`).
    pub machine_id: bool,
}

const REQUEST: &str = "factory-reset";

impl Sysroot {
    /// What resetting `os` would lose.
    pub fn plan_factory_reset(&self, os: &str, etc: bool, var: bool) -> Result<ResetPlan> {
        self.os_config(os)?;
        let order = self.ordered()?;
        let current = order
            .iter()
            .find(|d| self.booted.as_deref() == Some(d.record.name().as_str()))
            .or_else(|| order.iter().find(|d| d.record.os == os));
        let etc_changes = match (etc, current) {
            (true, Some(d)) => self.config_diff(Some(&d.record.name()))?.etc,
            _ => Vec::new(),
        };
        let state = self.dir(&self.state_dir(os))?;
        let (var_files, var_bytes) = match (var, state.kind("var")?) {
            (false, _) | (true, None) => (0, 0),
            // Refused here already, before anything is asked for.
            (true, Some(_)) => du(&state.sub("var")?),
        };
        Ok(ResetPlan {
            os: os.to_string(),
            etc,
            var,
            etc_changes,
            var_files,
            var_bytes,
            machine_id: etc && state.kind("machine-id")?.is_some(),
        })
    }

    /// Ask for the reset at the next boot of `plan.os`.
    pub fn request_factory_reset(&self, _lock: &SysrootLock, plan: &ResetPlan) -> Result<()> {
        let mut text = String::new();
        if plan.etc {
            text.push_str("etc\n");
        }
        if plan.var {
            text.push_str("var\n");
        }
        let state = self.dir(&self.state_dir(&plan.os))?;
        if plan.var {
            check_var(&state)?;
        }
        state.write(REQUEST, text.as_bytes(), 0o644)
    }

    /// The reset requested for `os`: (`/etc`, `/var`).
    pub fn pending_reset(&self, os: &str) -> Option<(bool, bool)> {
        let bytes = self.dir(&self.state_dir(os)).ok()?.read(REQUEST).ok()??;
        let text = String::from_utf8_lossy(&bytes);
        let has = |w: &str| text.lines().any(|l| l.trim() == w);
        Some((has("etc"), has("var")))
    }

    /// Reset now: only an OS that is not running.
    pub fn factory_reset_now(&self, _lock: &SysrootLock, plan: &ResetPlan) -> Result<()> {
        if let Some(b) = &self.booted {
            if b.split('/').next() == Some(plan.os.as_str()) {
                return Err(Error::Refused(format!(
                    "{} is running ({b}): a reset of the running system happens at the next \
                     boot (leave out --now)",
                    plan.os
                )));
            }
        }
        self.apply_reset(&plan.os, plan.etc, plan.var)
    }

    /// Wipe what was asked, then drop the request. Everything is done
    /// below the handles of the OS's state directory and of each
    /// deployment: a symlink where a directory belongs is refused before
    /// anything is removed.
    pub(crate) fn apply_reset(&self, os: &str, etc: bool, var: bool) -> Result<()> {
        let state = self.dir(&self.state_dir(os))?;
        let var_dir = if var { check_var(&state)? } else { None };
        if etc {
            let deploy = self.dir(&self.deploy_dir(os))?;
            let records = self.records(os)?;
            // Every deployment's directory checked before any is changed.
            for r in &records {
                if deploy.kind(&r.id)?.is_some() {
                    deploy.sub(&r.id)?;
                }
            }
            for r in &records {
                self.reset_etc(&deploy, r)?;
            }
            state.remove_file("machine-id")?;
        }
        if let Some(v) = var_dir {
            v.empty()?;
        }
        if state.remove_file(REQUEST)? {
            state.sync()?;
        }
        Ok(())
    }

    /// A deployment's `/etc` back to its image's: checked out beside it,
    /// exchanged with it in one rename, the old one deleted.
    fn reset_etc(&self, deploy: &Dir, r: &super::Record) -> Result<()> {
        if deploy.kind(&r.id)?.is_none() {
            return Ok(());
        }
        let dir = deploy.sub(&r.id)?;
        dir.remove_tree(".etc-factory")?;
        let fresh = dir.join(".etc-factory");
        let commit = ObjectId::from_hex(&r.commit)
            .map_err(|e| Error::Refused(format!("record of {}: {e}", r.name())))?;
        let co = CheckoutOptions {
            subpath: Some(b"etc".to_vec()),
            private: vec![b"etc".to_vec()],
            copy: true,
            ..CheckoutOptions::default()
        };
        match checkout::checkout(&self.repo, &commit, &fresh, &co, &Progress::default()) {
            Ok(_) => {}
            // No /etc in the image: the factory /etc is empty.
            Err(checkout::Error::NoSuchPath { .. }) => {
                dir.sub_create(".etc-factory")?;
            }
            Err(e) => return Err(e.into()),
        }
        if dir.kind("etc")?.is_some() {
            // A symlink there is exchanged as it is, then removed: never
            // followed.
            dir.exchange(".etc-factory", "etc")?;
            dir.remove_tree(".etc-factory")?;
        } else {
            dir.rename(".etc-factory", "etc")?;
        }
        dir.sync()
    }
}

/// The OS's persistent `/var` (none when absent); a symlink or a file
/// there is refused.
fn check_var(state: &Dir) -> Result<Option<Dir>> {
    match state.kind("var")? {
        None => Ok(None),
        Some(_) => state.sub("var").map(Some),
    }
}

/// Files and bytes below `dir` (symlinks counted, not followed).
fn du(dir: &Dir) -> (u64, u64) {
    let mut n = (0, 0);
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            // DirEntry::metadata does not follow a symlink.
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => {
                    n.0 += 1;
                    n.1 += m.len();
                }
                Err(_) => {}
            }
        }
    }
    n
}
