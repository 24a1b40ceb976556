//! `ext add`, `ext remove`, `ext list`: the extensions of the deployment
//! that boots next (the OS's default) and of its staged deployment.

use std::path::Path;

use serde::Serialize;

use super::{ExtUse, Record};
use crate::hash::ObjectId;
use crate::progress::Progress;
use crate::remotes::{self, Fetch, Origin};
use crate::sysroot::{Error, Result, Sysroot};

/// What `ext add` did.
#[derive(Clone, Debug, Serialize)]
pub struct ExtAdded {
    pub os: String,
    pub name: String,
    pub commit: String,
    pub origin: Option<Origin>,
    pub version: String,
    /// The deployments (`OS/ID`) that have it now.
    pub deployments: Vec<String>,
    /// The commit of the same extension it replaced, if any.
    pub replaced: Option<String>,
    /// Deployments it does not fit (`OS/ID: why`), left as they were:
    /// a staged deployment of another version, while the default's fits.
    pub not_fitting: Vec<String>,
}

/// What `ext remove` did.
#[derive(Clone, Debug, Serialize)]
pub struct ExtRemoved {
    pub os: String,
    pub name: String,
    pub deployments: Vec<String>,
    /// Checkouts no deployment uses any more, removed (`OS/COMMIT`).
    pub removed: Vec<String>,
}

/// A deployment's extensions (`ext list`).
#[derive(Clone, Debug, Serialize)]
pub struct ExtListed {
    /// `OS/ID`.
    pub deployment: String,
    pub default: bool,
    pub booted: bool,
    pub staged: bool,
    pub extensions: Vec<ExtUse>,
}

impl Sysroot {
    /// The records `ext add` and `ext remove` change: the OS's default
    /// deployment's, and its staged deployment's.
    fn ext_targets(&self, os: &str) -> Result<Vec<Record>> {
        let mut out: Vec<Record> = self
            .ordered()?
            .into_iter()
            .find(|d| d.record.os == os)
            .map(|d| d.record)
            .into_iter()
            .collect();
        if let Some(st) = self.staged(os)? {
            if let Some(r) = self
                .records(os)?
                .into_iter()
                .find(|r| r.id == st.id && !out.iter().any(|o| o.id == r.id))
            {
                out.push(r);
            }
        }
        if out.is_empty() {
            return Err(Error::Refused(format!("OS {os} has no deployment")));
        }
        Ok(out)
    }

    /// Add the system extension `rev` names (`REF`, `REMOTE:REF`, a
    /// commit; pulled and its trust rule applied as a deploy's,
    /// [`Sysroot::resolve`]) to the OS's default deployment and its staged
    /// one, replacing the extension of the same name, where it fits the
    /// image (its extension-release against their os-release); refused
    /// when it fits neither. The checkout is made first, then each record
    /// rewritten (one rename each). Takes the lock after the pull.
    pub fn ext_add(
        &self,
        rev: &str,
        os: Option<&str>,
        from: Option<&Path>,
        fetch: &dyn Fetch,
        progress: &Progress,
    ) -> Result<ExtAdded> {
        let resolved = self.resolve(rev, from, fetch, progress)?;
        let _lock = self.lock()?;
        remotes::require_trusted(&self.repo, &resolved.origin, &resolved.commit)?;
        let os = self.pick_os(os)?;
        let info = self.ext_info(&resolved.commit)?;
        let mut targets = Vec::new();
        let mut not_fitting = Vec::new();
        for t in self.ext_targets(&os)? {
            let c = ObjectId::from_hex(&t.commit).map_err(|_| {
                Error::Refused(format!("the record of {}: a bad commit id", t.name()))
            })?;
            let rel = self.image_release(&c)?;
            match info.release.matches(&rel) {
                Ok(()) => targets.push(t),
                Err(why) => not_fitting.push(format!(
                    "{} ({} {}): {why}",
                    t.name(),
                    rel.id,
                    rel.version_id.clone().unwrap_or_default()
                )),
            }
        }
        if targets.is_empty() {
            return Err(Error::Refused(format!(
                "extension {} ({}) does not fit {}; nothing changed",
                info.name,
                resolved.commit.short(12),
                not_fitting.join("; ")
            )));
        }
        self.ext_check_out(&os, &resolved.commit, progress)?;
        let u = ExtUse {
            name: info.name.clone(),
            commit: resolved.commit.to_hex(),
            origin: Some(resolved.origin.clone()).filter(Origin::is_ref),
            version: info.version.clone(),
        };
        let mut replaced = None;
        let mut deployments = Vec::new();
        for mut r in targets {
            if let Some(old) = r.extensions.iter().find(|e| e.name == u.name) {
                replaced = Some(old.commit.clone()).filter(|c| *c != u.commit);
            }
            r.extensions.retain(|e| e.name != u.name);
            r.extensions.push(u.clone());
            r.extensions.sort_by(|a, b| a.name.cmp(&b.name));
            self.write_record(&r)?;
            deployments.push(r.name());
        }
        self.ext_gc(&os)?;
        self.repo.sync()?;
        Ok(ExtAdded {
            os,
            name: u.name,
            commit: u.commit,
            origin: u.origin,
            version: u.version,
            deployments,
            replaced,
            not_fitting,
        })
    }

    /// Remove the extension `name` from the OS's default deployment and
    /// its staged one; checkouts no deployment uses any more go.
    pub fn ext_remove(&self, name: &str, os: Option<&str>) -> Result<ExtRemoved> {
        let _lock = self.lock()?;
        let os = self.pick_os(os)?;
        let mut deployments = Vec::new();
        for mut r in self.ext_targets(&os)? {
            let before = r.extensions.len();
            r.extensions.retain(|e| e.name != name);
            if r.extensions.len() != before {
                self.write_record(&r)?;
                deployments.push(r.name());
            }
        }
        if deployments.is_empty() {
            return Err(Error::Refused(format!(
                "no extension {name:?} on {os}'s default or staged deployment (see `slate admin ext list`)"
            )));
        }
        let removed = self.ext_gc(&os)?;
        Ok(ExtRemoved {
            os,
            name: name.to_string(),
            deployments,
            removed,
        })
    }

    /// The extensions of each deployment of `os` (all OSes when none), in
    /// boot order, then the staged one.
    pub fn ext_list(&self, os: Option<&str>) -> Result<Vec<ExtListed>> {
        let order = self.ordered()?;
        let mut out = Vec::new();
        let mut first_of = std::collections::BTreeSet::new();
        for d in &order {
            if os.is_some_and(|o| o != d.record.os) {
                continue;
            }
            out.push(ExtListed {
                deployment: d.record.name(),
                default: first_of.insert(d.record.os.clone()),
                booted: self.booted.as_deref() == Some(d.record.name().as_str()),
                staged: false,
                extensions: d.record.extensions.clone(),
            });
        }
        for o in self.oses()? {
            if os.is_some_and(|x| x != o) {
                continue;
            }
            if let Some(st) = self.staged(&o)? {
                if let Some(r) = self.records(&o)?.into_iter().find(|r| r.id == st.id) {
                    out.push(ExtListed {
                        deployment: r.name(),
                        default: false,
                        booted: false,
                        staged: true,
                        extensions: r.extensions,
                    });
                }
            }
        }
        Ok(out)
    }
}
