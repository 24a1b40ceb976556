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
//! (still staged), the entry (the switch), removes the deployments it
//! replaces, then clears the mark. Killed at any moment, the old default
//! boots, or the new one whole; a staged record that has its entry is a
//! deployment whose mark was not cleared yet, and the next finalize (or
//! the boot's check, or `cleanup`) clears it.

mod records;

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
    /// Deployments whose finalize was cut short after their entry was
    /// written (the default already): their mark cleared.
    pub completed: Vec<String>,
    /// What killed commands had left, removed after the finalize.
    pub repaired: super::CleanupReport,
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
        // What a killed stage (or deploy) left goes first.
        self.cleanup_unlocked()?;
        self.make_room(&plan, opts)?;
        let (_, _, usr_verity) = self.check_out(&plan, None, progress)?;
        self.ext_check_out_all(&plan.os, &plan.extensions, progress)?;
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
            extensions: plan.extensions.clone(),
            usr_verity,
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
            if self.has_staged_marks(&os)? {
                out.extend(self.staged(&os)?);
            }
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
            // Nothing marked: nothing read of the boot directory either
            // (a shutdown with nothing staged needs no ESP).
            if !self.has_staged_marks(&os)? {
                if named {
                    return Err(Error::Refused(format!("nothing staged for OS {os}")));
                }
                continue;
            }
            // A mark a finalize cut short left on the default: cleared.
            let completed = self.clear_finished_marks(&os)?;
            let had_one = !completed.is_empty();
            report.completed.extend(completed);
            let staged = self.staged_records(&os)?;
            let Some(newest) = staged.first() else {
                if named && !had_one {
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
        // What a killed finalize (or stage) left: temporary files, a
        // `.finalize` folder of a deployment finalized since.
        if !(report.finalized.is_empty() && report.completed.is_empty()) {
            report.repaired = self.cleanup_unlocked()?;
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
            if !self.has_staged_marks(&os)? {
                continue;
            }
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
        // Before anything it removes (see deploy).
        self.note_bad_commits(&r.os, now)?;
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
        // Without an entry, the record is the switch: its mark goes
        // first. With one, the mark goes last, so that a finalize killed
        // while it removes what it replaces is seen by the next (which
        // clears the mark and repairs what the kill left).
        if entry.is_none() {
            rec.staged = None;
            self.write_record(&rec)?;
        }
        let mut removed = Vec::new();
        for name in removes {
            if name != rec.name() && self.undeploy_unlocked(&name, false).is_ok() {
                removed.push(name);
            }
        }
        self.remove_unused_kernels()?;
        self.repo.sync()?;
        if rec.staged.is_some() {
            rec.staged = None;
            self.write_record(&rec)?;
        }
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
}

/// Where a finalize merges `/etc`, inside the staged tree.
pub(crate) const FINALIZE_DIR: &str = ".finalize";
