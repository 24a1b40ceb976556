//! The deployments in boot order, and `status`.

use serde::Serialize;

use super::{dirs::Dir, entries, BootEntry, EntryState, Record, Result, Sysroot};

/// A deployment with its boot entry, if it has one.
#[derive(Clone, Debug)]
pub struct Ordered {
    pub record: Record,
    pub entry: Option<BootEntry>,
}

impl Ordered {
    /// Its place in the order: the entry's `version` (what the boot loader
    /// reads), else the record's.
    pub fn priority(&self) -> u64 {
        self.entry
            .as_ref()
            .and_then(|e| e.version.parse().ok())
            .unwrap_or(self.record.priority)
    }

    pub(crate) fn bad(&self) -> bool {
        self.entry
            .as_ref()
            .is_some_and(|e| e.state() == EntryState::Bad)
    }
}

/// One line of `status`.
#[derive(Clone, Debug, Serialize)]
pub struct DeploymentStatus {
    pub index: usize,
    pub os: String,
    pub id: String,
    pub commit: String,
    pub origin: Option<crate::remotes::Origin>,
    pub version: String,
    /// The image's version (`IMAGE_VERSION`, the manifest's
    /// `image.version`); absent when the image says none.
    pub image_version: Option<String>,
    pub pretty_name: String,
    pub default: bool,
    pub booted: bool,
    pub pinned: bool,
    /// `good`, `pending` (with tries left) or `bad`; absent without a
    /// kernel (no entry).
    pub entry_state: Option<EntryState>,
    pub tries_left: Option<u32>,
    pub entry: Option<String>,
    pub kernel: Option<String>,
    pub kargs: Vec<String>,
    pub etc_conflicts: Vec<String>,
    /// What the image did at each conflict, and where its version was saved.
    pub etc_merge: Vec<super::EtcConflict>,
    pub created: i64,
    /// For the booted deployment (else the default): how many paths of
    /// `/etc` differ from the image, and how many in `/var` no tmpfiles.d
    /// line declares (`config-diff` lists them).
    pub drift: Option<DriftCount>,
    /// The image's name (`usr:VENDOR:ARCH:VERSION`, `image_name`), when
    /// its commit names a vendor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The system extensions that go with it.
    pub extensions: Vec<super::ExtUse>,
    /// `/usr` is a verity image (mounted through dm-verity at boot).
    pub usr_verified: bool,
    /// Its root hash, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usr_root_hash: Option<String>,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct DriftCount {
    pub etc: usize,
    pub var: usize,
}

/// `status`: the deployments in boot order (the first is the default).
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub sysroot: String,
    pub boot: String,
    pub booted: Option<String>,
    pub deployments: Vec<DeploymentStatus>,
    /// Entry files of Slate's that name no deployment (an interrupted
    /// command's leftovers; `cleanup` removes them).
    pub stray_entries: Vec<String>,
    /// The staged deployment of each OS: finalized (the default) at the
    /// next shutdown.
    pub staged: Vec<super::StagedDeployment>,
    /// Commits whose entries went bad here: `upgrade` skips them.
    pub bad_commits: Vec<BadCommitStatus>,
}

/// A commit recorded bad, and its OS.
#[derive(Clone, Debug, Serialize)]
pub struct BadCommitStatus {
    pub os: String,
    #[serde(flatten)]
    pub bad: super::BadCommit,
}

impl Sysroot {
    /// Every deployment, in the boot loader's order: by entry state (no
    /// tries left last), then priority, highest first. Deployments without
    /// a kernel (no entry) are ordered by their records. Of two entries
    /// for one deployment (a re-counted entry written before the old one
    /// was removed), the first in boot order counts. A staged deployment
    /// is not one of them until its entry is written.
    pub(crate) fn ordered(&self) -> Result<Vec<Ordered>> {
        let all = self.boot_entries()?;
        let mut out: Vec<Ordered> = self
            .all_records()?
            .into_iter()
            .map(|record| {
                let id = record.entry_id();
                let entry = all.iter().find(|e| e.id == id).cloned();
                Ordered { record, entry }
            })
            .filter(|d| d.record.staged.is_none() || d.entry.is_some())
            .collect();
        out.sort_by(|a, b| {
            a.bad()
                .cmp(&b.bad())
                .then(b.priority().cmp(&a.priority()))
                .then_with(|| b.record.id.cmp(&a.record.id))
        });
        Ok(out)
    }

    /// The boot entries (none when the entries directory is not there).
    pub(crate) fn boot_entries(&self) -> Result<Vec<BootEntry>> {
        match self.dir_if_there(&self.entries_dir())? {
            Some(d) => entries::list(&d),
            None => Ok(Vec::new()),
        }
    }

    /// The entries directory, made if missing.
    pub(crate) fn entries_handle(&self) -> Result<Dir> {
        self.dir_create(&self.entries_dir())
    }

    /// Entries of Slate's (`slate-*`) that name no deployment.
    pub(crate) fn stray_entries(&self, order: &[Ordered]) -> Result<Vec<BootEntry>> {
        Ok(self
            .boot_entries()?
            .into_iter()
            .filter(|e| e.id.starts_with("slate-"))
            .filter(|e| {
                !order
                    .iter()
                    .any(|d| d.entry.as_ref().is_some_and(|x| x.file == e.file))
            })
            .collect())
    }

    pub fn status(&self) -> Result<Status> {
        let order = self.ordered()?;
        let stray = self.stray_entries(&order)?;
        let drift = self.config_diff(None).ok();
        let deployments = order
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let r = &d.record;
                DeploymentStatus {
                    index: i,
                    os: r.os.clone(),
                    id: r.id.clone(),
                    commit: r.commit.clone(),
                    origin: r.origin.clone(),
                    version: r.version_id.clone(),
                    image_version: Some(r.image_version.clone()).filter(|v| !v.is_empty()),
                    pretty_name: r.pretty_name.clone(),
                    default: i == 0,
                    booted: self.booted.as_deref() == Some(r.name().as_str()),
                    pinned: r.pinned,
                    entry_state: d.entry.as_ref().map(|e| e.state()),
                    tries_left: d.entry.as_ref().and_then(|e| e.tries_left()),
                    entry: d.entry.as_ref().map(|e| e.file.clone()),
                    kernel: r.kernel.clone(),
                    kargs: r.kargs.clone(),
                    etc_conflicts: r.etc_conflicts.clone(),
                    etc_merge: r.etc_merge.clone(),
                    created: r.created,
                    drift: drift
                        .as_ref()
                        .filter(|x| x.deployment == r.name())
                        .map(|x| DriftCount {
                            etc: x.etc.len(),
                            var: x.var.len(),
                        }),
                    name: self.image_name(&r.commit),
                    extensions: r.extensions.clone(),
                    usr_verified: r.usr_verity.is_some(),
                    usr_root_hash: r.usr_verity.as_ref().map(|v| v.root_hash.clone()),
                }
            })
            .collect();
        let mut bad_commits = Vec::new();
        for os in self.oses()? {
            for bad in self.bad_commits(&os)? {
                bad_commits.push(BadCommitStatus {
                    os: os.clone(),
                    bad,
                });
            }
        }
        Ok(Status {
            sysroot: self.path.display().to_string(),
            boot: self.boot.display().to_string(),
            booted: self.booted.clone(),
            deployments,
            stray_entries: stray.into_iter().map(|e| e.file).collect(),
            staged: self.all_staged()?,
            bad_commits,
        })
    }

    /// The deployment at `index` of the boot order, or named `OS/ID` or ID.
    pub(crate) fn find(&self, order: &[Ordered], which: &str) -> Result<Ordered> {
        let found = match which.parse::<usize>() {
            Ok(i) => order.get(i),
            Err(_) => order
                .iter()
                .find(|d| d.record.name() == which || d.record.id == which),
        };
        found
            .cloned()
            .ok_or_else(|| super::Error::NoSuchDeployment(which.to_string()))
    }
}
