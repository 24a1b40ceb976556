//! System extensions of an OS's deployments (`docs/format/sysroot.md`,
//! "System extensions"): each deployment's record names the extensions
//! that go with it (name, commit, origin), so the set follows the
//! deployment booted: a deploy or upgrade carries the extensions of the
//! deployment it follows (an extension's newer build when its origin has
//! one that fits the new image, refused when none fits unless dropped),
//! and a rollback boots the older deployment with its own.
//!
//! ```text
//! SYSROOT/slate/ext/OS/COMMIT/            an extension's checkout (hard links), shared
//! SYSROOT/slate/ext/OS/.staging-COMMIT/   one being made
//! repository ref sysext/OS/COMMIT         keeps its objects from prune
//! ```
//!
//! `prepare-root` links the booted deployment's extensions as
//! `/run/extensions/NAME` (`expose.rs`), where `systemd-sysext` merges
//! them at boot.

mod add;
mod expose;

pub use add::{ExtAdded, ExtListed, ExtRemoved};
pub use expose::expose;

use serde::{Deserialize, Serialize};

use super::record::Record;
use super::{Error, Result, Sysroot};
use crate::checkout::{self, CheckoutOptions};
use crate::ext_release::{self as sx, Release};
use crate::hash::ObjectId;
use crate::image_name;
use crate::progress::Progress;
use crate::remotes::Origin;
use crate::store::{ObjectRead, Transaction};

/// An extension a deployment has, in its record (`[[extensions]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtUse {
    /// Its name (`extension-release.NAME`; `/run/extensions/NAME`).
    pub name: String,
    /// Its commit, 64 hex digits.
    pub commit: String,
    /// What it was added from (what an upgrade follows); none for a commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Its image's version (`slate.image.version`), or empty.
    #[serde(default)]
    pub version: String,
}

impl ExtUse {
    /// A record's entry checked before it becomes a path or a ref.
    pub(crate) fn check(&self, what: &str) -> Result<ObjectId> {
        if !image_name::valid_ext_name(&self.name) {
            return Err(Error::Refused(format!(
                "{what}: {:?} is not an extension name",
                self.name
            )));
        }
        ObjectId::from_hex(&self.commit).map_err(|_| {
            Error::Refused(format!(
                "{what}: extension {}: {:?} is not a commit id",
                self.name, self.commit
            ))
        })
    }
}

/// An extension a deploy leaves out: none of its builds fits the new
/// image (`--drop-incompatible`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExtDropped {
    pub name: String,
    pub commit: String,
    pub reason: String,
}

/// The repository ref that keeps an extension's objects.
pub(crate) fn ext_ref(os: &str, commit: &ObjectId) -> String {
    format!("sysext/{os}/{}", commit.to_hex())
}

/// What an extension commit is: its name, release and version, its tree
/// checked (`/usr` and `/opt` only, one release file).
pub(crate) struct ExtInfo {
    pub(crate) name: String,
    pub(crate) release: Release,
    pub(crate) version: String,
}

impl Sysroot {
    pub(crate) fn ext_dir(&self, os: &str) -> std::path::PathBuf {
        self.path.join("slate/ext").join(os)
    }

    /// What the commit `commit` is as a system extension; refused when
    /// it is not one.
    pub(crate) fn ext_info(&self, commit: &ObjectId) -> Result<ExtInfo> {
        let c = self.repo.read_commit(commit)?;
        let not = |why: String| {
            Error::Refused(format!(
                "{}: not a system extension: {why}",
                commit.short(12)
            ))
        };
        sx::check_tree(&self.repo, &c.tree).map_err(not)?;
        let (name, release) = sx::ext_release(&self.repo, &c.tree)?.ok_or_else(|| {
            not(format!(
                "no one file /{}/extension-release.NAME",
                sx::RELEASE_DIR
            ))
        })?;
        let version = c
            .metadata
            .get(crate::image_meta::VERSION)
            .filter(|v| v.len() <= 128 && !v.chars().any(char::is_control))
            .cloned()
            .unwrap_or_default();
        Ok(ExtInfo {
            name,
            release,
            version,
        })
    }

    /// The name of the image `commit` (hex), when its metadata gives one.
    pub(crate) fn image_name(&self, commit: &str) -> Option<String> {
        let c = ObjectId::from_hex(commit).ok()?;
        image_name::of_metadata(&self.repo.read_commit(&c).ok()?.metadata)
    }

    /// The os-release of the OS image `commit`.
    pub(crate) fn image_release(&self, commit: &ObjectId) -> Result<Release> {
        let c = self.repo.read_commit(commit)?;
        Ok(sx::os_release(&self.repo, &c.tree)?.unwrap_or_default())
    }

    /// The extension `commit` checked out as `ext/OS/COMMIT` (its objects
    /// checked first, made as `.staging-COMMIT` and renamed), and its ref
    /// set; nothing when both are there. The caller holds the lock.
    pub(crate) fn ext_check_out(
        &self,
        os: &str,
        commit: &ObjectId,
        progress: &Progress,
    ) -> Result<()> {
        let dir = self.dir_create(&self.ext_dir(os))?;
        let hex = commit.to_hex();
        if dir.kind(&hex)? != Some(rustix::fs::FileType::Directory) {
            let tree = self.repo.read_commit(commit)?.tree;
            super::verify::check(&self.repo, &tree, &[])?;
            let staging = format!(".staging-{hex}");
            dir.remove_tree(&staging)?;
            dir.remove_tree(&hex)?;
            checkout::checkout(
                &self.repo,
                commit,
                &dir.join(&staging),
                &CheckoutOptions::default(),
                progress,
            )?;
            dir.sync()?;
            dir.rename(&staging, &hex)?;
        }
        let r = ext_ref(os, commit);
        let cur = self.repo.read_ref(&r)?;
        if cur != Some(*commit) {
            let mut tx = Transaction::begin(&self.repo)?;
            tx.set_ref(&r, cur, *commit)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The extensions of `os`'s records checked out (a deploy's or stage's
    /// own are checked out before its record is written).
    pub(crate) fn ext_check_out_all(
        &self,
        os: &str,
        uses: &[ExtUse],
        progress: &Progress,
    ) -> Result<()> {
        for u in uses {
            let c = u.check(&format!("extension of {os}"))?;
            self.ext_check_out(os, &c, progress)?;
        }
        Ok(())
    }

    /// Remove the checkouts (and `.staging-` leftovers) and refs of
    /// extensions no record of `os` names. The caller holds the lock.
    pub(crate) fn ext_gc(&self, os: &str) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let live: Vec<String> = self
            .records(os)?
            .iter()
            .flat_map(|r| r.extensions.iter().map(|u| u.commit.clone()))
            .collect();
        if let Some(dir) = self.dir_if_there(&self.ext_dir(os))? {
            for (name, _) in dir.entries()? {
                let name = name.to_string_lossy().into_owned();
                if !live.contains(&name) {
                    dir.remove_tree(&name)?;
                    removed.push(format!("{os}/{name}"));
                }
            }
        }
        let prefix = format!("sysext/{os}/");
        for (name, id) in self.repo.list_refs()? {
            if name.starts_with(&prefix) && !live.contains(&id.to_hex()) {
                let mut tx = Transaction::begin(&self.repo)?;
                tx.delete_ref(&name, id)?;
                tx.commit()?;
            }
        }
        Ok(removed)
    }

    /// The newest commit of each extension of the deployment `os/id`
    /// whose origin is a ref, pulled as a deploy's commit is
    /// ([`Sysroot::resolve`]: a remote's through `fetch`, a local ref from
    /// `from` when given), before an upgrade takes the lock.
    pub(crate) fn ext_pull(
        &self,
        os: &str,
        id: &str,
        from: Option<&std::path::Path>,
        fetch: &dyn crate::remotes::Fetch,
        progress: &Progress,
    ) -> Result<()> {
        let Some(r) = self.records(os)?.into_iter().find(|r| r.id == id) else {
            return Ok(());
        };
        for u in &r.extensions {
            let Some(o) = u.origin.as_ref().filter(|o| o.is_ref()) else {
                continue;
            };
            let from = match o {
                Origin::Remote { .. } => None,
                _ => from,
            };
            self.resolve(&o.to_string(), from, fetch, progress)?;
        }
        Ok(())
    }

    /// The extensions a deployment of `commit` gets when it follows
    /// `follows`: each of its extensions, the commit its origin names now
    /// when that fits the new image, else the one it has when that does;
    /// when neither fits, refused (naming each) unless `drop`, which
    /// leaves it out.
    pub(crate) fn plan_extensions(
        &self,
        follows: Option<&Record>,
        commit: &ObjectId,
        drop: bool,
    ) -> Result<(Vec<ExtUse>, Vec<ExtDropped>)> {
        let Some(f) = follows else {
            return Ok((Vec::new(), Vec::new()));
        };
        let os = self.image_release(commit)?;
        let (mut keep, mut dropped) = (Vec::new(), Vec::new());
        for u in &f.extensions {
            let had = u.check(&format!("the record of {}", f.name()))?;
            let newest = u
                .origin
                .as_ref()
                .and_then(Origin::local_ref)
                .and_then(|r| self.repo.read_ref(&r).ok().flatten());
            let mut reason = String::new();
            let mut chosen = None;
            for cand in newest.into_iter().chain([had]) {
                if let Some(o) = &u.origin {
                    if let Err(e) = crate::remotes::require_trusted(&self.repo, o, &cand) {
                        reason = e.to_string();
                        continue;
                    }
                }
                match self.ext_info(&cand) {
                    Ok(i) if i.name != u.name => {
                        reason =
                            format!("{} is extension {}, not {}", cand.short(12), i.name, u.name)
                    }
                    Ok(i) => match i.release.matches(&os) {
                        Ok(()) => {
                            chosen = Some((cand, i.version));
                            break;
                        }
                        Err(why) => reason = why,
                    },
                    Err(e) => reason = e.to_string(),
                }
            }
            match chosen {
                Some((c, version)) => keep.push(ExtUse {
                    name: u.name.clone(),
                    commit: c.to_hex(),
                    origin: u.origin.clone(),
                    version,
                }),
                None => dropped.push(ExtDropped {
                    name: u.name.clone(),
                    commit: u.commit.clone(),
                    reason,
                }),
            }
        }
        if !dropped.is_empty() && !drop {
            let list: Vec<String> = dropped
                .iter()
                .map(|d| format!("{} ({}): {}", d.name, &d.commit[..12], d.reason))
                .collect();
            return Err(Error::Refused(format!(
                "{} extension(s) of {} have no build for {}: nothing changed (update them, \
                 `slate admin ext remove` them, or --drop-incompatible leaves them out):\n  {}",
                dropped.len(),
                f.name(),
                commit.short(12),
                list.join("\n  ")
            )));
        }
        Ok((keep, dropped))
    }
}

#[cfg(test)]
mod tests {
    /// The layers: sysroot reads extensions through `ext_release`, a
    /// leaf under both, never through compose.
    #[test]
    fn sysroot_does_not_import_compose() {
        for (name, src) in [
            ("mod.rs", include_str!("mod.rs")),
            ("add.rs", include_str!("add.rs")),
            ("expose.rs", include_str!("expose.rs")),
        ] {
            let needle = ["crate::", "compose"].concat();
            assert!(!src.contains(&needle), "sysroot/ext/{name} imports compose");
        }
    }
}
