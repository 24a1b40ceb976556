//! A deployment's tree, shared by `deploy` and `stage`: room made for
//! it, its objects checked, the checkout under a temporary name, `/usr`
//! stamped, the OS's `/var` seeded, `/etc` prepared, then one rename.

use super::dirs::Dir;
use super::status::Ordered;
use super::{
    human_bytes, io_err, verify, DeployOptions, DeployPlan, Error, EtcConflict, Result, Sysroot,
};
use crate::checkout::{self, CheckoutOptions};
use crate::hash::ObjectId;
use crate::progress::Progress;
use crate::store::ObjectRead;
use crate::verity::UsrVerity;

impl Sysroot {
    /// Check the space the plan needs; with `auto_prune`, remove the
    /// oldest deployments (neither booted, pinned nor followed) until it
    /// is there. Returns those removed.
    pub(crate) fn make_room(&self, plan: &DeployPlan, opts: &DeployOptions) -> Result<Vec<String>> {
        let mut pruned = Vec::new();
        while let Err(short) = self.check_space(plan) {
            if !opts.auto_prune {
                return Err(short);
            }
            let order = self.ordered()?;
            let oldest = order
                .iter()
                .filter(|d| {
                    !d.record.pinned && self.booted.as_deref() != Some(d.record.name().as_str())
                })
                .filter(|d| Some(d.record.name()) != plan.follows)
                .min_by_key(|d| (d.record.created, d.record.serial));
            let Some(victim) = oldest.map(|d| d.record.name()) else {
                return Err(short);
            };
            self.undeploy_unlocked(&victim, false)?;
            self.remove_unused_kernels()?;
            pruned.push(victim);
        }
        Ok(pruned)
    }

    /// Steps 1 and 2 of a deploy: the commit's objects checked (except
    /// those of the deployment `follows`, checked before), the tree
    /// checked out as `deploy/OS/.staging-ID`, `/etc` merged after
    /// `follows` (none: the image's as it is), then renamed to
    /// `deploy/OS/ID`; with a verity `/usr`, its image made from the
    /// checkout and `usr/` emptied. Returns the objects checked, the
    /// conflicts and what maps the image.
    pub(crate) fn check_out(
        &self,
        plan: &DeployPlan,
        follows: Option<&Ordered>,
        progress: &Progress,
    ) -> Result<(usize, Vec<EtcConflict>, Option<UsrVerity>)> {
        let c = self.repo.read_commit(&plan.commit)?;
        let known: Vec<ObjectId> = follows
            .and_then(|d| ObjectId::from_hex(&d.record.commit).ok())
            .and_then(|id| self.repo.read_commit(&id).ok())
            .map(|c| vec![c.tree])
            .unwrap_or_default();
        let checked_objects = verify::check(&self.repo, &c.tree, &known)?;
        let dir = self.dir_create(&self.deploy_dir(&plan.os))?;
        let staging_name = format!(".staging-{}", plan.id);
        dir.remove_tree(&staging_name)?;
        let staging = dir.join(&staging_name);
        let root_tree = self.repo.read_tree(&c.tree)?;
        let private: Vec<Vec<u8>> = root_tree
            .entries
            .iter()
            .filter(|e| e.name != b"usr")
            .map(|e| e.name.clone())
            .collect();
        // /var is the OS's state: a deployment has an empty one (the
        // mount point); the image's seeds the state the first time.
        let co = CheckoutOptions {
            private,
            empty: vec![b"var".to_vec()],
            ..CheckoutOptions::default()
        };
        checkout::checkout(&self.repo, &plan.commit, &staging, &co, progress)?;
        let staged = dir.sub(&staging_name)?;
        stamp_usr(&staged)?;
        let usr_verity = match &plan.usr_verity {
            Some(u) => Some(self.make_usr_image(&staged, &plan.commit, u)?),
            None => None,
        };
        self.seed_var(&plan.os, &plan.commit)?;
        let conflicts = match follows {
            Some(prev) => self.prepare_etc(&staged, prev, &c.tree)?,
            None => Vec::new(),
        };
        drop(staged);
        dir.rename(&staging_name, &plan.id)?;
        dir.sync()?;
        Ok((checked_objects, conflicts, usr_verity))
    }

    /// Fill the OS's persistent `/var` with the image's when it is empty
    /// (the OS's first deployment, or after a reset).
    fn seed_var(&self, os: &str, commit: &ObjectId) -> Result<()> {
        if self.os_config(os)?.var != super::VarMode::Persistent {
            return Ok(());
        }
        let state = self.dir(&self.state_dir(os))?;
        let var = match state.sub("var") {
            Ok(v) => v,
            Err(e) if super::dirs::is_not_found(&e) => state.sub_create("var")?,
            Err(e) => return Err(e),
        };
        if !var.entries()?.is_empty() {
            return Ok(());
        }
        state.remove_tree(".var-seed")?;
        let seed = state.join(".var-seed");
        let co = CheckoutOptions {
            subpath: Some(b"var".to_vec()),
            copy: true,
            ..CheckoutOptions::default()
        };
        match checkout::checkout(&self.repo, commit, &seed, &co, &Progress::default()) {
            Ok(_) => {}
            Err(checkout::Error::NoSuchPath { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        // Onto the empty directory: one rename.
        state.rename(".var-seed", "var")?;
        state.sync()
    }

    /// Refuse, naming the numbers, when the sysroot or the boot directory
    /// has less free space than the plan needs.
    fn check_space(&self, plan: &DeployPlan) -> Result<()> {
        let boot = self.boot()?;
        let dev = |d: &super::dirs::Dir| rustix::fs::fstat(d.fd()).map(|st| st.st_dev).ok();
        // One file system for both: one sum.
        let shared = dev(&self.root).is_some() && dev(&self.root) == dev(boot);
        let checks = if shared {
            vec![(
                "the sysroot",
                &self.root,
                plan.sysroot_bytes + plan.boot_bytes,
            )]
        } else {
            vec![
                ("the sysroot", &self.root, plan.sysroot_bytes),
                ("the boot directory", boot, plan.boot_bytes),
            ]
        };
        for (what, dir, need) in checks {
            let path = dir.path();
            let st = rustix::fs::fstatvfs(dir.fd()).map_err(|e| io_err(path)(e.into()))?;
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            if need > free {
                return Err(Error::Refused(format!(
                    "{what} ({}) has {} free and the deployment needs {}: nothing was written \
                     (remove deployments with `slate admin undeploy`, or deploy with --auto-prune)",
                    path.display(),
                    human_bytes(free),
                    human_bytes(need)
                )));
            }
        }
        Ok(())
    }
}

/// Give the deployment's `/usr` directory the time of the deploy. A
/// checkout leaves every time at the epoch; systemd runs the units with
/// `ConditionNeedsUpdate=/etc` or `/var` when `/usr` is newer than
/// `/etc/.updated` or `/var/.updated` (which systemd-update-done writes
/// with `/usr`'s time), so on the first boot of each new deployment, once.
fn stamp_usr(root: &Dir) -> Result<()> {
    if root.kind("usr")? != Some(rustix::fs::FileType::Directory) {
        return Ok(());
    }
    let usr = root.join("usr");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let t = rustix::fs::Timespec {
        tv_sec: now.as_secs() as i64,
        tv_nsec: now.subsec_nanos() as _,
    };
    rustix::fs::utimensat(
        root.fd(),
        "usr",
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io_err(&usr)(e.into()))
}
