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

use std::path::Path;

use rustix::fs::{self as rfs, RenameFlags};
use serde::Serialize;

use super::deploy::remove_tree;
use super::{io_err, kernel, Error, Result, Sysroot, SysrootLock};
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
        let (var_files, var_bytes) = if var {
            du(&self.state_dir(os).join("var"))
        } else {
            (0, 0)
        };
        Ok(ResetPlan {
            os: os.to_string(),
            etc,
            var,
            etc_changes,
            var_files,
            var_bytes,
            machine_id: etc && self.state_dir(os).join("machine-id").exists(),
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
        let dir = self.state_dir(&plan.os);
        let fd = crate::fsutil::open_dir(&dir).map_err(io_err(&dir))?;
        crate::fsutil::atomic_write_at(&fd, REQUEST, text.as_bytes(), 0o644)
            .map_err(io_err(&dir.join(REQUEST)))
    }

    /// The reset requested for `os`: (`/etc`, `/var`).
    pub fn pending_reset(&self, os: &str) -> Option<(bool, bool)> {
        let text = std::fs::read_to_string(self.state_dir(os).join(REQUEST)).ok()?;
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

    /// Wipe what was asked, then drop the request.
    pub(crate) fn apply_reset(&self, os: &str, etc: bool, var: bool) -> Result<()> {
        if etc {
            for r in self.records(os)? {
                self.reset_etc(&r)?;
            }
            let id = self.state_dir(os).join("machine-id");
            match std::fs::remove_file(&id) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&id)(e)),
            }
        }
        if var {
            let v = self.state_dir(os).join("var");
            if v.is_dir() {
                for e in std::fs::read_dir(&v).map_err(io_err(&v))?.flatten() {
                    let p = e.path();
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        remove_tree(&p)?;
                    } else {
                        std::fs::remove_file(&p).map_err(io_err(&p))?;
                    }
                }
            }
        }
        let req = self.state_dir(os).join(REQUEST);
        match std::fs::remove_file(&req) {
            Ok(()) => kernel::sync_dir(&self.state_dir(os)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&req)(e)),
        }
    }

    /// A deployment's `/etc` back to its image's: checked out beside it,
    /// exchanged with it in one rename, the old one deleted.
    fn reset_etc(&self, r: &super::Record) -> Result<()> {
        let dir = self.deployment_path(r);
        let etc = dir.join("etc");
        let fresh = dir.join(".etc-factory");
        remove_tree(&fresh)?;
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
                std::fs::create_dir(&fresh).map_err(io_err(&fresh))?;
            }
            Err(e) => return Err(e.into()),
        }
        if etc.exists() {
            rfs::renameat_with(rfs::CWD, &fresh, rfs::CWD, &etc, RenameFlags::EXCHANGE)
                .map_err(|e| io_err(&etc)(e.into()))?;
            remove_tree(&fresh)
        } else {
            std::fs::rename(&fresh, &etc).map_err(io_err(&etc))
        }
    }
}

/// Files and bytes below `dir`.
fn du(dir: &Path) -> (u64, u64) {
    let mut n = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
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
