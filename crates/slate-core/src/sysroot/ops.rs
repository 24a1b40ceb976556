//! Changing the order and the set of deployments: `set-default`,
//! `rollback`, `pin`, `undeploy`, `cleanup`. Each boot-visible change is
//! one file written under a temporary name and renamed, or one removal:
//! a kill at any moment leaves the old default or the new one.

use std::collections::HashSet;

use serde::Serialize;

use rustix::fs::FileType;

use super::deploy::deploy_ref;
use super::dirs::Dir;
use super::status::Ordered;
use super::{entries, kernel, EntryState, Error, Result, Sysroot, SysrootLock};
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
    /// Temporary files and directories of killed commands (a record, an
    /// entry or a kernel half written, a factory `/etc` or `/var` half
    /// made).
    #[serde(default)]
    pub temporary: Vec<String>,
    /// Staged deployments that could not be finalized (tree, kernel or
    /// commit missing), dropped; and marks of finalized ones cleared.
    #[serde(default)]
    pub staged: Vec<String>,
}

impl CleanupReport {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.incomplete.is_empty()
            && self.directories.is_empty()
            && self.refs.is_empty()
            && self.kernels.is_empty()
            && self.temporary.is_empty()
            && self.staged.is_empty()
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
            check_entry_options(old, &d.record)?;
            let mut e = old.clone();
            e.version = priority.to_string();
            if bad {
                e.tries = (tries > 0).then_some((tries, 0));
                e.file = entries::file_name(&e.id, e.tries);
            }
            // The switch: one rename. A re-counted entry has a new name;
            // the old file goes once the new one is in place.
            let dir = self.entries_handle()?;
            entries::write(&dir, &e)?;
            if e.file != old.file {
                entries::remove(&dir, &old.file)?;
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
        if let Some(dir) = self.dir_if_there(&self.entries_dir())? {
            for e in entries::list(&dir)? {
                if e.id == r.entry_id() {
                    entries::remove(&dir, &e.file)?;
                }
            }
        }
        let deploy = self.dir(&self.deploy_dir(&r.os))?;
        deploy.remove_file(format!("{}.toml", r.id))?;
        deploy.sync()?;
        self.drop_ref(&deploy_ref(r))?;
        remove_deployment_tree(&deploy, &r.id)
    }

    pub(crate) fn drop_ref(&self, name: &str) -> Result<()> {
        if let Some(old) = self.repo.read_ref(name)? {
            let mut tx = Transaction::begin(&self.repo)?;
            tx.delete_ref(name, old)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Kernel directories that no entry uses.
    pub(crate) fn remove_unused_kernels(&self) -> Result<Vec<String>> {
        let mut used: HashSet<String> = self.boot_entries()?.into_iter().map(|e| e.linux).collect();
        used.extend(self.staged_kernels()?);
        let mut removed = Vec::new();
        for os in self.oses()? {
            let Some(kdir) = self.dir_if_there(&self.kernels_dir(&os))? else {
                continue;
            };
            for (name, _) in kdir.entries()? {
                let name = name.to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                if !used.contains(&kernel::linux_line(&os, &name)) {
                    kdir.remove_tree(&name)?;
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
        self.cleanup_unlocked()
    }

    /// [`Sysroot::cleanup`], for a caller that holds the lock (a stage
    /// and a finalize repair what a killed one left).
    pub(crate) fn cleanup_unlocked(&self) -> Result<CleanupReport> {
        let mut rep = CleanupReport {
            staged: self.clean_staged()?,
            ..CleanupReport::default()
        };
        let order = self.ordered()?;
        for e in self.stray_entries(&order)? {
            entries::remove(&self.entries_handle()?, &e.file)?;
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
            let dir = self.dir(&self.deploy_dir(&os))?;
            for (name, ft) in dir.entries()? {
                let name = name.to_string_lossy().into_owned();
                if name.ends_with(".toml") || ft != FileType::Directory {
                    continue;
                }
                if !live.iter().any(|r| r.os == os && r.id == name) {
                    dir.remove_tree(&name)?;
                    rep.directories.push(format!("{os}/{name}"));
                }
            }
        }
        rep.temporary = self.remove_temporary_files(&live)?;
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
        for os in self.oses()? {
            rep.directories.extend(self.ext_gc(&os)?);
        }
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

/// An entry read back from the boot directory, about to be made the
/// default: its options are single kernel arguments, and its one `slate=`
/// names its own deployment (a second one, or another deployment's,
/// would boot that one).
fn check_entry_options(e: &super::BootEntry, r: &super::Record) -> Result<()> {
    let what = format!("the boot entry {}", e.file);
    let mut slate = Vec::new();
    for w in e.options.split_whitespace() {
        match w.strip_prefix("slate=") {
            Some(v) => slate.push(v),
            None => super::check_karg(w, &what)?,
        }
    }
    if slate != [r.slate_arg().as_str()] {
        return Err(Error::Refused(format!(
            "{what}: its options name slate={} where {} is slate={}: refused (`slate admin \
             cleanup` does not repair it; redeploy)",
            slate.join(" slate="),
            r.name(),
            r.slate_arg()
        )));
    }
    Ok(())
}

/// Move a deployment's tree aside (one rename), then delete it.
pub(crate) fn remove_deployment_tree(dir: &Dir, dir_name: &str) -> Result<()> {
    if dir.kind(dir_name)?.is_none() {
        return Ok(());
    }
    let aside = format!(".removing-{}", dir_name.trim_start_matches('.'));
    dir.remove_tree(&aside)?;
    dir.rename(dir_name, &aside)?;
    dir.remove_tree(&aside)
}

/// Whether `name` is a temporary name as `fsutil::tmp_name` makes them
/// for an atomic write: `.BASE.PID.N.HEX`.
pub(crate) fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let mut parts = rest.rsplitn(4, '.');
    let (Some(hex), Some(n), Some(pid), Some(base)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    !base.is_empty()
        && !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && digits(n)
        && digits(pid)
}

impl Sysroot {
    /// Remove the temporary files of killed writers: with the sysroot's
    /// lock held no writer is running, so every one is stale. Looked for
    /// where Slate writes atomically: `slate/`, each OS's deploy and state
    /// directories, each deployment (a half-made factory `/etc`), the
    /// entries directory (Slate's own names only) and the kernel
    /// directories.
    fn remove_temporary_files(&self, live: &[super::Record]) -> Result<Vec<String>> {
        fn sweep(dir: &Dir, only: &dyn Fn(&str) -> bool, removed: &mut Vec<String>) -> Result<()> {
            for (name, ft) in dir.entries()? {
                let Some(name) = name.to_str() else { continue };
                if ft != FileType::Directory && is_temp_name(name) && only(name) {
                    dir.remove_file(name)?;
                    removed.push(crate::fsutil::show(&dir.join(name)));
                }
            }
            Ok(())
        }
        let mut removed = Vec::new();
        let any = |_: &str| true;
        sweep(&self.dir(&self.path.join("slate"))?, &any, &mut removed)?;
        for os in self.oses()? {
            let deploy = self.dir(&self.deploy_dir(&os))?;
            sweep(&deploy, &any, &mut removed)?;
            let state = self.dir(&self.state_dir(&os))?;
            sweep(&state, &any, &mut removed)?;
            if state.kind(".var-seed")?.is_some() {
                state.remove_tree(".var-seed")?;
                removed.push(crate::fsutil::show(&state.join(".var-seed")));
            }
            for r in live.iter().filter(|r| r.os == os) {
                if deploy.kind(&r.id)? != Some(FileType::Directory) {
                    continue;
                }
                let d = deploy.sub(&r.id)?;
                for aside in [".etc-factory", super::stage::FINALIZE_DIR] {
                    if d.kind(aside)?.is_some() {
                        d.remove_tree(aside)?;
                        removed.push(crate::fsutil::show(&d.join(aside)));
                    }
                }
            }
            if let Some(kdir) = self.dir_if_there(&self.kernels_dir(&os))? {
                for (name, ft) in kdir.entries()? {
                    if ft == FileType::Directory {
                        sweep(&kdir.sub(&name)?, &any, &mut removed)?;
                    }
                }
            }
        }
        if let Some(entries) = self.dir_if_there(&self.entries_dir())? {
            sweep(&entries, &|n: &str| n.starts_with(".slate-"), &mut removed)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn temporary_names() {
        use super::is_temp_name;
        assert!(is_temp_name(".abc.1.toml.1234.0.1a2b"));
        assert!(is_temp_name(".linux.tmp.99.3.ff"));
        assert!(is_temp_name(&crate::fsutil::tmp_name(".os.toml")));
        assert!(!is_temp_name("abc.1.toml"));
        assert!(!is_temp_name(".staging-abc.1"));
        assert!(!is_temp_name(".x.12.3"));
        assert!(!is_temp_name(".x.a.3.ff"));
    }
}
