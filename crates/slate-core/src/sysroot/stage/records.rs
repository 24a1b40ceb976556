//! The staged records: listed (newest first, one with an entry is not
//! staged any more), checked (what a finalize needs is there, a kernel
//! path is one Slate makes: a record is read from a disk), dropped, and
//! told to `status`.

use super::StagedDeployment;
use crate::hash::ObjectId;
use crate::store::ObjectRead;
use crate::sysroot::deploy::deploy_ref;
use crate::sysroot::{Record, Result, Sysroot};

impl Sysroot {
    /// Whether a record of `os` carries a `staged` mark (read from the
    /// records alone).
    pub(super) fn has_staged_marks(&self, os: &str) -> Result<bool> {
        Ok(self.records(os)?.iter().any(|r| r.staged.is_some()))
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
    pub(super) fn staged_records(&self, os: &str) -> Result<Vec<Record>> {
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
            crate::sysroot::ops::remove_deployment_tree(&deploy, &r.id)?;
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
    pub(super) fn staged_problem(&self, r: &Record) -> Result<Option<String>> {
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

    pub(super) fn staged_status(&self, r: &Record) -> StagedDeployment {
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
