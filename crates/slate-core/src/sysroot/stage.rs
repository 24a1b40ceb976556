//! Staged deployments: a deploy split in two, so that `/etc` is merged
//! when the machine shuts down, not when the new version was fetched (an
//! edit made in between is kept).
//!
//! [`Sysroot::stage`] does everything a deploy does that takes time or
//! can fail for want of something (trust, objects, space, the tree, the
//! kernel in the boot directory), and writes the deployment's record with
//! a `staged` mark instead of a boot entry: the boot loader never sees
//! it. One staged deployment per OS: a new stage drops the older one once
//! it is complete. [`Sysroot::finalize_staged`] (run by
//! `slate-finalize-staged.service` at shutdown) merges the `/etc` of the
//! deployment it follows as it is then into a fresh copy of the image's,
//! exchanges it with the staged tree's in one rename, writes the record
//! (still staged), the entry (the switch), then clears the mark. Killed at
//! any moment, the old default boots, or the new one whole; a staged
//! record that has its entry is a deployment whose mark was not cleared
//! yet, and the next finalize (or the boot's check, or `cleanup`) clears
//! it.

use serde::Serialize;

use super::deploy::deploy_ref;
use super::record::Staged;
use super::status::Ordered;
use super::{
    check_karg, entries, kernel, merge_kargs, DeployOptions, DeployPlan, Error, EtcConflict,
    EtcMode, Record, Result, Sysroot, SysrootLock,
};
use crate::checkout::{self, CheckoutOptions};
use crate::hash::ObjectId;
use crate::progress::Progress;
use crate::remotes::{self, Origin};
use crate::store::{ObjectRead, Transaction};

/// A staged deployment, as `stage` and `status` tell it.
#[derive(Clone, Debug, Serialize)]
pub struct StagedDeployment {
    pub os: String,
    pub id: String,
    pub commit: String,
    pub origin: Option<Origin>,
    /// The image's `VERSION_ID`, when its os-release has one.
    pub version: String,
    pub pretty_name: String,
    pub kernel: Option<String>,
    /// Unix time of the stage.
    pub staged_at: i64,
    /// Unix time of a boot that found it still staged (the shutdown
    /// before did not finalize it): kept, finalized at the next shutdown.
    pub kept_at_boot: Option<i64>,
    /// Why it cannot be finalized (its tree, kernel or commit is
    /// missing): the next finalize or boot drops it. None: complete.
    pub problem: Option<String>,
}

/// A staged deployment finalized: the default now.
#[derive(Clone, Debug, Serialize)]
pub struct Finalized {
    pub deployment: String,
    pub commit: String,
    /// The boot entry written (none: the tree has no kernel).
    pub entry: Option<String>,
    /// The deployment whose `/etc` and kernel arguments it took.
    pub follows: Option<String>,
    pub etc_merge: Vec<EtcConflict>,
    /// Deployments it replaced.
    pub removed: Vec<String>,
}

/// A staged deployment dropped because it was incomplete or invalid.
#[derive(Clone, Debug, Serialize)]
pub struct Dropped {
    pub deployment: String,
    pub problem: String,
}

/// What `finalize-staged` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FinalizeReport {
    pub finalized: Vec<Finalized>,
    pub dropped: Vec<Dropped>,
}

/// What the boot's check decided for one staged deployment.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum BootCheck {
    /// Complete: kept staged, finalized at this boot's shutdown.
    Kept { deployment: String, commit: String },
    /// Incomplete or invalid: dropped.
    Dropped { deployment: String, problem: String },
    /// Its finalize was cut short after its entry was written (it is the
    /// default): its mark cleared.
    Completed { deployment: String },
}

impl Sysroot {
    /// Stage `plan` (made by [`Sysroot::plan_deploy`]): the trust rule,
    /// space, objects, tree and kernel as a deploy, no boot entry; the
    /// record marked staged, written last. An older staged deployment of
    /// the OS is dropped then. The caller holds the lock.
    pub fn stage(
        &self,
        plan: DeployPlan,
        opts: &DeployOptions,
        progress: &Progress,
    ) -> Result<StagedDeployment> {
        if let Some(origin) = &plan.origin {
            remotes::require_trusted(&self.repo, origin, &plan.commit)?;
        }
        if let Some(cfg) = &plan.os_config {
            self.os_init(&plan.os, cfg)?;
        }
        self.make_room(&plan, opts)?;
        self.check_out(&plan, None, progress)?;
        let files = match &plan.kernel {
            Some(k) => Some(self.install_kernel(&plan.os, k)?),
            None => None,
        };
        let (linux, initrd) = match files {
            Some((l, i)) => (Some(l), i),
            None => (None, None),
        };
        let record = Record {
            os: plan.os.clone(),
            id: plan.id.clone(),
            serial: plan.serial,
            commit: plan.commit.to_hex(),
            origin: plan.image_origin.clone().or_else(|| plan.origin.clone()),
            kargs: plan.kargs.clone(),
            kernel: plan.kernel.as_ref().map(|k| k.version.clone()),
            priority: plan.priority,
            pinned: false,
            created: opts.now,
            etc_conflicts: Vec::new(),
            etc_merge: Vec::new(),
            pretty_name: plan.pretty_name.clone(),
            version_id: plan.version_id.clone(),
            image_version: plan.image_version.clone(),
            staged: Some(Staged {
                at: opts.now,
                kargs: opts.kargs.clone(),
                tries: opts.tries,
                retain: opts.retain,
                linux,
                initrd,
                kept_at_boot: None,
            }),
        };
        let mut tx = Transaction::begin(&self.repo)?;
        tx.set_ref(&deploy_ref(&record), None, plan.commit)?;
        tx.commit()?;
        self.repo.sync()?;
        // The record last: its presence marks a complete stage.
        self.write_record(&record)?;
        self.drop_staged(&plan.os, Some(&plan.id))?;
        Ok(self.staged_status(&record))
    }

    /// The staged deployment of `os` (the newest, should a kill have
    /// left two), if any; one whose finalize was cut short after its
    /// entry was written is not staged any more.
    pub fn staged(&self, os: &str) -> Result<Option<StagedDeployment>> {
        Ok(self
            .staged_records(os)?
            .first()
            .map(|r| self.staged_status(r)))
    }

    /// The staged deployment of every OS.
    pub fn all_staged(&self) -> Result<Vec<StagedDeployment>> {
        let mut out = Vec::new();
        for os in self.oses()? {
            out.extend(self.staged(&os)?);
        }
        Ok(out)
    }

    /// Drop the staged deployment of `os` (default: the booted one's, or
    /// the only OS): its record first, then its ref and tree. Returns
    /// its name; nothing staged is an error that says so.
    pub fn unstage(&self, _lock: &SysrootLock, os: Option<&str>) -> Result<String> {
        let os = self.pick_os(os)?;
        let Some(newest) = self.staged_records(&os)?.first().map(Record::name) else {
            return Err(Error::Refused(format!("nothing staged for OS {os}")));
        };
        self.drop_staged(&os, None)?;
        Ok(newest)
    }

    /// Finalize the staged deployment of `os`, or of every OS: each
    /// becomes the default, its `/etc` merged from the deployment it
    /// follows as it is now. One that is incomplete or invalid is dropped
    /// (reported). `os` named and nothing staged for it is an error; with
    /// no `os`, nothing staged anywhere is an empty report.
    pub fn finalize_staged(
        &self,
        _lock: &SysrootLock,
        os: Option<&str>,
        now: i64,
    ) -> Result<FinalizeReport> {
        let named = os.is_some();
        let oses = match os {
            Some(os) => vec![self.pick_os(Some(os))?],
            None => self.oses()?,
        };
        let mut report = FinalizeReport::default();
        for os in oses {
            // A mark a finalize cut short left on the default: cleared.
            self.clear_finished_marks(&os)?;
            let staged = self.staged_records(&os)?;
            let Some(newest) = staged.first() else {
                if named {
                    return Err(Error::Refused(format!("nothing staged for OS {os}")));
                }
                continue;
            };
            let newest = newest.clone();
            self.drop_staged(&os, Some(&newest.id))?;
            if let Some(problem) = self.staged_problem(&newest)? {
                self.drop_staged(&os, None)?;
                report.dropped.push(Dropped {
                    deployment: newest.name(),
                    problem,
                });
                continue;
            }
            report.finalized.push(self.finalize_one(newest, now)?);
        }
        Ok(report)
    }

    /// At boot (the unit's start): what a shutdown did not finalize. A
    /// complete staged deployment is kept (noted in its record, for
    /// `status`), to be finalized at this boot's shutdown; an incomplete
    /// or invalid one is dropped; a mark a cut-short finalize left on the
    /// default is cleared.
    pub fn check_staged_at_boot(&self, _lock: &SysrootLock, now: i64) -> Result<Vec<BootCheck>> {
        let mut out = Vec::new();
        for os in self.oses()? {
            for name in self.clear_finished_marks(&os)? {
                out.push(BootCheck::Completed { deployment: name });
            }
            let staged = self.staged_records(&os)?;
            let Some(newest) = staged.first().cloned() else {
                continue;
            };
            self.drop_staged(&os, Some(&newest.id))?;
            if let Some(problem) = self.staged_problem(&newest)? {
                self.drop_staged(&os, None)?;
                out.push(BootCheck::Dropped {
                    deployment: newest.name(),
                    problem,
                });
                continue;
            }
            let mut r = newest.clone();
            if let Some(st) = r.staged.as_mut() {
                st.kept_at_boot = Some(now);
            }
            self.write_record(&r)?;
            out.push(BootCheck::Kept {
                deployment: r.name(),
                commit: r.commit.clone(),
            });
        }
        Ok(out)
    }

    fn finalize_one(&self, r: Record, now: i64) -> Result<Finalized> {
        let st = r.staged.clone().expect("only staged records are finalized");
        let commit = ObjectId::from_hex(&r.commit)
            .map_err(|e| Error::Refused(format!("record of {}: {e}", r.name())))?;
        // The trust rule again, as a deploy applies it.
        if let Some(origin) = r.origin.as_ref().filter(|o| o.is_ref()) {
            remotes::require_trusted(&self.repo, origin, &commit)?;
        }
        let order = self.ordered()?;
        let follows = self.merge_deployment(&order, &r.os);
        let removes = if st.retain {
            Vec::new()
        } else {
            self.auto_removals(&order, &r.os)
        };
        for k in &st.kargs {
            check_karg(k, &format!("the staged record of {}", r.name()))?;
        }
        let base = follows.map(|d| d.record.kargs.clone()).unwrap_or_default();
        if let Some(d) = follows {
            for k in &base {
                check_karg(k, &format!("the record of {}", d.record.name()))?;
            }
        }
        let priority = order.iter().map(Ordered::priority).max().unwrap_or(0) + 1;
        let conflicts = self.merge_staged_etc(&r, &commit, follows)?;
        let mut rec = r.clone();
        rec.kargs = merge_kargs(&base, &st.kargs);
        rec.priority = priority;
        rec.etc_conflicts = conflicts.iter().map(|c| c.path.clone()).collect();
        rec.etc_merge = conflicts;
        // Still staged: a kill here leaves the old default, and the next
        // finalize does it all again.
        self.write_record(&rec)?;
        let entry = match &rec.kernel {
            Some(_) => {
                let tree = self.repo.read_commit(&commit)?.tree;
                let k = kernel::find(&self.repo, &tree)?.ok_or_else(|| {
                    Error::Refused(format!(
                        "{}: commit {commit} has no kernel any more",
                        rec.name()
                    ))
                })?;
                let files = self.install_kernel(&rec.os, &k)?;
                let e = self.entry_for(&rec, files, priority, st.tries)?;
                // The switch.
                entries::write(&self.entries_handle()?, &e)?;
                Some(e.file)
            }
            None => None,
        };
        rec.staged = None;
        self.write_record(&rec)?;
        self.note_bad_commits(&rec.os, now)?;
        let mut removed = Vec::new();
        for name in removes {
            if name != rec.name() && self.undeploy_unlocked(&name, false).is_ok() {
                removed.push(name);
            }
        }
        self.remove_unused_kernels()?;
        self.repo.sync()?;
        Ok(Finalized {
            deployment: rec.name(),
            commit: rec.commit.clone(),
            entry,
            follows: follows.map(|d| d.record.name()),
            etc_merge: rec.etc_merge.clone(),
            removed,
        })
    }

    /// The image's `/etc` checked out afresh beside the staged tree
    /// (`deploy/OS/ID/.finalize/etc`), the local changes of `follows`
    /// merged into it, then exchanged with the tree's `/etc` in one
    /// rename. Done again whole after a kill.
    fn merge_staged_etc(
        &self,
        r: &Record,
        commit: &ObjectId,
        follows: Option<&Ordered>,
    ) -> Result<Vec<EtcConflict>> {
        let Some(prev) = follows else {
            return Ok(Vec::new());
        };
        if self.os_config(&r.os)?.etc == EtcMode::Stateless {
            return Ok(Vec::new());
        }
        let dir = self.dir(&self.deployment_path(r))?;
        dir.remove_tree(FINALIZE_DIR)?;
        let work = dir.sub_create(FINALIZE_DIR)?;
        let co = CheckoutOptions {
            subpath: Some(b"etc".to_vec()),
            private: vec![b"etc".to_vec()],
            copy: true,
            ..CheckoutOptions::default()
        };
        let fresh = work.join("etc");
        match checkout::checkout(&self.repo, commit, &fresh, &co, &Progress::default()) {
            Ok(_) => {}
            Err(checkout::Error::NoSuchPath { .. }) => {
                work.sub_create("etc")?;
            }
            Err(e) => return Err(e.into()),
        }
        let tree = self.repo.read_commit(commit)?.tree;
        let conflicts = self.prepare_etc(&work, prev, &tree)?;
        if dir.kind("etc")?.is_some() {
            work.exchange_with("etc", &dir, "etc")?;
        } else {
            work.rename_to("etc", &dir, "etc")?;
        }
        dir.sync()?;
        drop(work);
        dir.remove_tree(FINALIZE_DIR)?;
        Ok(conflicts)
    }

    /// `cleanup`'s part: marks of finalized deployments cleared, staged
    /// deployments that cannot be finalized (or older than the newest)
    /// dropped. Returns what it did, one line each.
    pub(crate) fn clean_staged(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for os in self.oses()? {
            for n in self.clear_finished_marks(&os)? {
                out.push(format!("{n}: finalized; its staged mark cleared"));
            }
            let Some(newest) = self.staged_records(&os)?.first().cloned() else {
                continue;
            };
            let keep = match self.staged_problem(&newest)? {
                Some(p) => {
                    out.push(format!("{}: dropped: {p}", newest.name()));
                    None
                }
                None => Some(newest.id.as_str()),
            };
            for n in self.drop_staged(&os, keep)? {
                if n != newest.name() {
                    out.push(format!("{n}: dropped: an older staged deployment"));
                }
            }
        }
        Ok(out)
    }

    /// The staged records of `os` that have no entry, newest first.
    fn staged_records(&self, os: &str) -> Result<Vec<Record>> {
        let entries = self.boot_entries()?;
        let mut out: Vec<Record> = self
            .records(os)?
            .into_iter()
            .filter(|r| r.staged.is_some())
            .filter(|r| !entries.iter().any(|e| e.id == r.entry_id()))
            .collect();
        out.sort_by(|a, b| b.serial.cmp(&a.serial).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// Clear the mark of staged records of `os` that have their entry (a
    /// finalize cut short after the switch). Returns their names.
    pub(crate) fn clear_finished_marks(&self, os: &str) -> Result<Vec<String>> {
        let entries = self.boot_entries()?;
        let mut done = Vec::new();
        for mut r in self.records(os)? {
            if r.staged.is_some() && entries.iter().any(|e| e.id == r.entry_id()) {
                r.staged = None;
                self.write_record(&r)?;
                done.push(r.name());
            }
        }
        Ok(done)
    }

    /// Drop the staged deployments of `os` (all but `keep`): record,
    /// ref, tree, then the kernels no one uses. Returns their names.
    pub(crate) fn drop_staged(&self, os: &str, keep: Option<&str>) -> Result<Vec<String>> {
        let mut dropped = Vec::new();
        for r in self.staged_records(os)? {
            if Some(r.id.as_str()) == keep {
                continue;
            }
            let deploy = self.dir(&self.deploy_dir(os))?;
            deploy.remove_file(format!("{}.toml", r.id))?;
            deploy.sync()?;
            self.drop_ref(&deploy_ref(&r))?;
            super::ops::remove_deployment_tree(&deploy, &r.id)?;
            dropped.push(r.name());
        }
        if !dropped.is_empty() {
            self.remove_unused_kernels()?;
        }
        Ok(dropped)
    }

    /// The `linux` lines of staged deployments' kernels (kept by the
    /// removal of unused kernels).
    pub(crate) fn staged_kernels(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for os in self.oses()? {
            for r in self.records(&os)? {
                if let Some(l) = r.staged.and_then(|s| s.linux) {
                    out.push(l);
                }
            }
        }
        Ok(out)
    }

    /// Why the staged record `r` cannot be finalized, if it cannot: its
    /// commit, ref, tree or kernel missing, or a kernel path that is not
    /// one Slate makes (a record is read from a disk).
    fn staged_problem(&self, r: &Record) -> Result<Option<String>> {
        let Ok(commit) = ObjectId::from_hex(&r.commit) else {
            return Ok(Some(format!(
                "its commit {:?} is not an object id",
                r.commit
            )));
        };
        if self.repo.read_commit(&commit).is_err() {
            return Ok(Some(format!("commit {commit} is not in the repository")));
        }
        if self.repo.read_ref(&deploy_ref(r))? != Some(commit) {
            return Ok(Some(format!(
                "its ref {} does not name commit {commit}",
                deploy_ref(r)
            )));
        }
        let deploy = self.dir(&self.deploy_dir(&r.os))?;
        let whole = deploy.kind(&r.id)? == Some(rustix::fs::FileType::Directory)
            && deploy.sub(&r.id)?.kind("usr")? == Some(rustix::fs::FileType::Directory);
        if !whole {
            return Ok(Some(format!(
                "its tree {} is missing or incomplete",
                crate::fsutil::show(&self.deployment_path(r))
            )));
        }
        if r.kernel.is_none() {
            return Ok(None);
        }
        let st = r.staged.as_ref().expect("a staged record");
        let Some(linux) = &st.linux else {
            return Ok(Some(
                "its kernel was not copied to the boot directory".into(),
            ));
        };
        let Some(kdir) = kernel_dir_of(&r.os, linux) else {
            return Ok(Some(format!(
                "its kernel path {linux:?} is not one Slate makes"
            )));
        };
        if let Some(i) = &st.initrd {
            if *i != format!("/slate/{}/{kdir}/initrd", r.os) {
                return Ok(Some(format!(
                    "its initrd path {i:?} is not one Slate makes"
                )));
            }
        }
        let there = match self.dir_if_there(&self.kernels_dir(&r.os).join(kdir))? {
            Some(d) => {
                d.kind("linux")?.is_some() && (st.initrd.is_none() || d.kind("initrd")?.is_some())
            }
            None => false,
        };
        if !there {
            return Ok(Some(format!(
                "its kernel is missing from the boot directory ({})",
                crate::fsutil::show(&self.kernels_dir(&r.os).join(kdir))
            )));
        }
        Ok(None)
    }

    fn staged_status(&self, r: &Record) -> StagedDeployment {
        let st = r.staged.clone().expect("a staged record");
        StagedDeployment {
            os: r.os.clone(),
            id: r.id.clone(),
            commit: r.commit.clone(),
            origin: r.origin.clone(),
            version: r.version_id.clone(),
            pretty_name: r.pretty_name.clone(),
            kernel: r.kernel.clone(),
            staged_at: st.at,
            kept_at_boot: st.kept_at_boot,
            problem: self
                .staged_problem(r)
                .unwrap_or_else(|e| Some(e.to_string())),
        }
    }
}

/// Where a finalize merges `/etc`, inside the staged tree.
pub(crate) const FINALIZE_DIR: &str = ".finalize";

/// `DIR` of a `linux` line `/slate/OS/DIR/linux`: one plain name.
fn kernel_dir_of<'l>(os: &str, linux: &'l str) -> Option<&'l str> {
    let d = linux
        .strip_prefix("/slate/")?
        .strip_prefix(os)?
        .strip_prefix('/')?
        .strip_suffix("/linux")?;
    let plain = !d.is_empty() && !d.starts_with('.') && !d.contains('/');
    plain.then_some(d)
}

#[cfg(test)]
mod tests {
    use super::kernel_dir_of;

    #[test]
    fn a_staged_kernel_path_is_one_slate_makes() {
        assert_eq!(
            kernel_dir_of("debian", "/slate/debian/6.1-abc/linux"),
            Some("6.1-abc")
        );
        for bad in [
            "/slate/debian/../x/linux",
            "/slate/debian/a/b/linux",
            "/slate/other/6.1/linux",
            "/slate/debian//linux",
            "/slate/debian/.x/linux",
            "slate/debian/6.1/linux",
            "/slate/debian/6.1/initrd",
        ] {
            assert_eq!(kernel_dir_of("debian", bad), None, "{bad}");
        }
    }
}
