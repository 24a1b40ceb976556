//! Changing the order and the set of deployments: `set-default`,
//! `rollback`, `pin`, `undeploy`, `cleanup`. Each boot-visible change is
//! one file written under a temporary name and renamed, or one removal:
//! a kill at any moment leaves the old default or the new one.

use std::collections::HashSet;

use serde::Serialize;

use super::deploy::{deploy_ref, remove_tree};
use super::status::Ordered;
use super::{entries, io_err, kernel, EntryState, Error, Result, Sysroot, SysrootLock};
use crate::hash::ObjectId;
use crate::store::Transaction;

/// What `undeploy` removed.
#[derive(Clone, Debug, Serialize)]
pub struct Undeployed {
    pub deployment: String,
    pub entry: Option<String>,
}

/// What `cleanup` removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CleanupReport {
    /// Entry files naming no deployment, or a second entry of one.
    pub entries: Vec<String>,
    /// Deployments an interrupted deploy or undeploy left without their
    /// boot entry.
    pub incomplete: Vec<String>,
    /// Directories of no deployment (temporary checkouts, removals).
    pub directories: Vec<String>,
    /// Repository refs of no deployment.
    pub refs: Vec<String>,
    /// Kernel directories no entry uses.
    pub kernels: Vec<String>,
}

impl CleanupReport {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.incomplete.is_empty()
            && self.directories.is_empty()
            && self.refs.is_empty()
            && self.kernels.is_empty()
    }
}

impl Sysroot {
    /// Make a deployment (an index of the boot order, `OS/ID` or `ID`)
    /// the default, whatever its boot counter says: an entry with no tries
    /// left is counted again from `tries`.
    pub fn set_default(&self, _lock: &SysrootLock, which: &str, tries: u32) -> Result<String> {
        let order = self.ordered()?;
        let d = self.find(&order, which)?;
        self.make_default(&order, &d, tries)?;
        Ok(d.record.name())
    }

    /// Make the second deployment of the boot order the default.
    pub fn rollback(&self, lock: &SysrootLock, tries: u32) -> Result<(String, String)> {
        let order = self.ordered()?;
        let (Some(cur), Some(prev)) = (order.first(), order.get(1)) else {
            return Err(Error::Refused(
                "there is no other deployment to roll back to".into(),
            ));
        };
        let name = self.set_default(lock, &prev.record.name(), tries)?;
        Ok((cur.record.name(), name))
    }

    fn make_default(&self, order: &[Ordered], d: &Ordered, tries: u32) -> Result<()> {
        let top = order.iter().map(Ordered::priority).max().unwrap_or(0);
        let is_first = order
            .first()
            .is_some_and(|f| f.record.name() == d.record.name());
        let bad = d
            .entry
            .as_ref()
            .is_some_and(|e| e.state() == EntryState::Bad);
        if is_first && !bad {
            return Ok(());
        }
        let priority = top + 1;
        if let Some(old) = &d.entry {
            let mut e = old.clone();
            e.version = priority.to_string();
            if bad {
                e.tries = (tries > 0).then_some((tries, 0));
                e.file = entries::file_name(&e.id, e.tries);
            }
            // The switch: one rename. A re-counted entry has a new name;
            // the old file goes once the new one is in place.
            entries::write(&self.entries_dir(), &e)?;
            if e.file != old.file {
                entries::remove(&self.entries_dir(), &old.file)?;
            }
        }
        let mut r = d.record.clone();
        r.priority = priority;
        self.write_record(&r)
    }

    /// Pin (or unpin) a deployment: a pinned one is never removed to make
    /// room for a new one.
    pub fn pin(&self, _lock: &SysrootLock, which: &str, pinned: bool) -> Result<String> {
        let order = self.ordered()?;
        let d = self.find(&order, which)?;
        let mut r = d.record.clone();
        r.pinned = pinned;
        self.write_record(&r)?;
        Ok(r.name())
    }

    /// Remove a deployment: not the booted one, not the only one.
    pub fn undeploy(&self, _lock: &SysrootLock, which: &str) -> Result<Undeployed> {
        let order = self.ordered()?;
        let d = self.find(&order, which)?;
        let name = d.record.name();
        if self.booted.as_deref() == Some(name.as_str()) {
            return Err(Error::Refused(format!(
                "{name} is the booted deployment; boot another one first"
            )));
        }
        if order.len() == 1 {
            return Err(Error::Refused(format!(
                "{name} is the only deployment; deploy another one first"
            )));
        }
        let entry = d.entry.as_ref().map(|e| e.file.clone());
        self.undeploy_unlocked(&name, true)?;
        self.remove_unused_kernels()?;
        Ok(Undeployed {
            deployment: name,
            entry,
        })
    }

    /// Remove the deployment `OS/ID`: its entries first (the boot loader
    /// no longer sees it), then its record, its ref, its tree.
    pub(crate) fn undeploy_unlocked(&self, name: &str, _checked: bool) -> Result<()> {
        let order = self.ordered()?;
        let d = self.find(&order, name)?;
        let r = &d.record;
        for e in entries::list(&self.entries_dir())? {
            if e.id == r.entry_id() {
                entries::remove(&self.entries_dir(), &e.file)?;
            }
        }
        let rec = self.record_path(r);
        std::fs::remove_file(&rec).map_err(io_err(&rec))?;
        kernel::sync_dir(&self.deploy_dir(&r.os))?;
        self.drop_ref(&deploy_ref(r))?;
        self.remove_deployment_tree(&r.os, &r.id)
    }

    fn drop_ref(&self, name: &str) -> Result<()> {
        if let Some(old) = self.repo.read_ref(name)? {
            let mut tx = Transaction::begin(&self.repo)?;
            tx.delete_ref(name, old)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Move a tree aside (one rename), then delete it.
    fn remove_deployment_tree(&self, os: &str, dir_name: &str) -> Result<()> {
        let dir = self.deploy_dir(os);
        let from = dir.join(dir_name);
        if !from.exists() {
            return Ok(());
        }
        let aside = dir.join(format!(".removing-{}", dir_name.trim_start_matches('.')));
        remove_tree(&aside)?;
        std::fs::rename(&from, &aside).map_err(io_err(&from))?;
        remove_tree(&aside)
    }

    /// Kernel directories that no entry uses.
    pub(crate) fn remove_unused_kernels(&self) -> Result<Vec<String>> {
        let used: HashSet<String> = entries::list(&self.entries_dir())?
            .into_iter()
            .map(|e| e.linux)
            .collect();
        let mut removed = Vec::new();
        for os in self.oses()? {
            let kdir = self.kernels_dir(&os);
            let Ok(rd) = std::fs::read_dir(&kdir) else {
                continue;
            };
            for ent in rd.flatten() {
                let name = ent.file_name().to_string_lossy().into_owned();
                let linux = format!("/slate/{os}/{name}/linux");
                let under_boot = ent
                    .path()
                    .join("linux")
                    .strip_prefix(&self.boot)
                    .map(|p| format!("/{}", p.display()))
                    .unwrap_or(linux);
                if !used.contains(&under_boot) {
                    remove_tree(&ent.path())?;
                    removed.push(format!("{os}/{name}"));
                }
            }
        }
        Ok(removed)
    }

    /// Repair what interrupted commands left: stray or doubled entries,
    /// deployments left without their entry, directories and refs of no
    /// deployment, unused kernels; and records whose order disagrees with
    /// their entries.
    pub fn cleanup(&self, _lock: &SysrootLock) -> Result<CleanupReport> {
        let mut rep = CleanupReport::default();
        let order = self.ordered()?;
        for e in self.stray_entries(&order)? {
            entries::remove(&self.entries_dir(), &e.file)?;
            rep.entries.push(e.file);
        }
        for d in &order {
            if d.record.kernel.is_some() && d.entry.is_none() {
                self.undeploy_unlocked(&d.record.name(), false)?;
                rep.incomplete.push(d.record.name());
            } else if let Some(p) = d.entry.as_ref().and_then(|e| e.version.parse().ok()) {
                if p != d.record.priority {
                    let mut r = d.record.clone();
                    r.priority = p;
                    self.write_record(&r)?;
                }
            }
        }
        let live: Vec<_> = self.all_records()?;
        for os in self.oses()? {
            let dir = self.deploy_dir(&os);
            let rd = std::fs::read_dir(&dir).map_err(io_err(&dir))?;
            for ent in rd.flatten() {
                let name = ent.file_name().to_string_lossy().into_owned();
                if name.ends_with(".toml") || !ent.path().is_dir() {
                    continue;
                }
                if !live.iter().any(|r| r.os == os && r.id == name) {
                    remove_tree(&ent.path())?;
                    rep.directories.push(format!("{os}/{name}"));
                }
            }
        }
        for (name, _) in self.repo.list_refs()? {
            let Some(rest) = name.strip_prefix("deploy/") else {
                continue;
            };
            if !live.iter().any(|r| format!("{}/{}", r.os, r.id) == rest) {
                self.drop_ref(&name)?;
                rep.refs.push(name);
            }
        }
        rep.kernels = self.remove_unused_kernels()?;
        Ok(rep)
    }

    /// The commit of every deployment (what `prune` must keep; their refs
    /// keep them).
    pub fn deployed_commits(&self) -> Result<Vec<ObjectId>> {
        Ok(self
            .all_records()?
            .iter()
            .filter_map(|r| ObjectId::from_hex(&r.commit).ok())
            .collect())
    }
}
