//! Updates without a person: `check_update` (what the followed
//! deployment's origin offers now, from the remote's summary alone), the
//! update policy of a deployment (its image's `/usr/lib/slate/update.toml`
//! under its `/etc/slate/update.toml`), the unattended run of a policy
//! (`auto_update`: check, stage, or stage and reboot), and the OS's last
//! check, kept in `SYSROOT/slate/state/OS/last-check.toml`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{parse_toml, write_toml, Error, Result, Sysroot, UpgradeOptions};
use crate::fsutil::show;
use crate::hash::ObjectId;
use crate::object::Commit;
use crate::progress::Progress;
use crate::remotes::{Fetch, Origin};
use crate::store::{ObjectRead, Repo};
use crate::update_policy::{self, Effective, Policy, PolicyFile, Reboot};

/// The file of an OS's last check, in its state folder.
pub const LAST_CHECK: &str = "last-check.toml";

/// What `upgrade --check` found.
#[derive(Clone, Debug, Serialize)]
pub struct UpdateCheck {
    /// Whether the origin names another commit than the deployment's.
    pub update: bool,
    pub os: String,
    /// The deployment followed (`OS/ID`), its commit and image version.
    pub follows: String,
    pub current: String,
    pub current_version: Option<String>,
    pub origin: Origin,
    /// The commit the origin names now.
    pub commit: String,
    /// Its image version and subject (its changelog line), when the
    /// summary carries the commit (or it is local).
    pub version: Option<String>,
    pub subject: Option<String>,
    /// Its time.
    pub timestamp: Option<i64>,
    /// Bytes to download: the delta from the deployment's commit when the
    /// summary lists one, else the commit's files as the summary counts
    /// them; none for a local ref.
    pub download_bytes: Option<u64>,
    /// `delta` or `objects`.
    pub download: Option<String>,
}

/// The last unattended run of an OS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastCheck {
    /// Unix time it ran.
    pub time: i64,
    /// `up-to-date`, `available` (policy check), `staged`, `reboot`
    /// (staged, and the reboot asked for), `bad-commit` (the commit went
    /// bad here: not staged again), or `error`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// The commit offered, and its image version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// What went wrong (`result = "error"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was asked to reboot (the command, or the window's calendar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<String>,
}

/// A reboot `auto_update` asks of its caller, once the update is staged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RebootRequest {
    Now,
    /// At the next time of this calendar.
    Window(String),
}

/// What `auto_update` did.
#[derive(Clone, Debug, Serialize)]
pub struct AutoOutcome {
    pub policy: Effective,
    pub check: UpdateCheck,
    pub record: LastCheck,
    /// The deployment made (`OS/ID`), for `stage` and `apply`.
    pub deployed: Option<String>,
}

fn version_of(c: &Commit) -> Option<String> {
    c.metadata
        .get(crate::image_meta::VERSION)
        .map(|v| v.chars().filter(|c| !c.is_control()).take(128).collect())
}

fn subject_of(c: &Commit) -> String {
    c.subject
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

impl Sysroot {
    /// What the origin of the booted (else the default) deployment of
    /// `opts.os` names now: for `REMOTE:REF`, the remote's summary alone
    /// ([`Fetch::check`]); for a local ref, the sysroot's repository (or
    /// `opts.from`'s). Nothing is pulled or changed.
    pub fn check_update(&self, opts: &UpgradeOptions, fetch: &dyn Fetch) -> Result<UpdateCheck> {
        let cur = self.followed(opts.os.as_deref())?;
        let current = ObjectId::from_hex(&cur.commit).ok();
        let current_version = current
            .and_then(|c| self.repo.read_commit(&c).ok())
            .map(|c| super::image_remotes::image_version(&self.repo, &c))
            .filter(|v| !v.is_empty());
        let mut out = UpdateCheck {
            update: false,
            os: cur.os.clone(),
            follows: format!("{}/{}", cur.os, cur.id),
            current: cur.commit.clone(),
            current_version,
            origin: cur.origin.clone(),
            commit: String::new(),
            version: None,
            subject: None,
            timestamp: None,
            download_bytes: None,
            download: None,
        };
        match &cur.origin {
            Origin::Remote { remote, r#ref } => {
                if let Some(f) = &opts.from {
                    return Err(Error::Refused(format!(
                        "{} names a remote's ref: --from {} does not apply",
                        cur.origin,
                        show(f)
                    )));
                }
                self.sync_image_remotes()?;
                let rc = fetch
                    .check(&self.repo, remote, r#ref)
                    .map_err(|source| Error::Fetch {
                        remote: remote.clone(),
                        remote_ref: r#ref.clone(),
                        source,
                    })?;
                out.commit = rc.commit.to_hex();
                out.timestamp = Some(rc.timestamp);
                if let Some(c) = &rc.commit_object {
                    out.version = version_of(c);
                    out.subject = Some(subject_of(c));
                }
                let delta = rc
                    .deltas
                    .iter()
                    .find(|(from, _)| from.is_some() && *from == current);
                (out.download_bytes, out.download) = match delta {
                    Some((_, size)) => (Some(*size), Some("delta".into())),
                    None => (Some(rc.size), Some("objects".into())),
                };
            }
            Origin::Ref(r) => {
                let from_repo;
                let repo: &Repo = match &opts.from {
                    Some(p) => {
                        from_repo = Repo::open(p)?;
                        &from_repo
                    }
                    None => &self.repo,
                };
                let c = repo.rev_parse(r).map_err(|source| Error::NoSuchRev {
                    rev: r.clone(),
                    repo: repo.path().to_path_buf(),
                    sysroot: opts.from.is_none(),
                    source: Box::new(source),
                })?;
                out.commit = c.to_hex();
                if let Ok(obj) = repo.read_commit(&c) {
                    out.version = version_of(&obj);
                    out.subject = Some(subject_of(&obj));
                    out.timestamp = Some(obj.timestamp);
                }
            }
            Origin::Commit(_) => return Err(Error::NothingToFollow(out.follows)),
        }
        out.update = out.commit != out.current;
        Ok(out)
    }

    /// The update policy of the deployment `upgrade` follows for `os`:
    /// its image's file under its `/etc`'s; `None` when neither names a
    /// policy. Both files are checked as untrusted input.
    pub fn update_policy(&self, os: Option<&str>) -> Result<Option<Effective>> {
        let cur = self.followed(os)?;
        let commit = ObjectId::from_hex(&cur.commit)
            .map_err(|_| Error::Refused(format!("{}/{}: a bad commit id", cur.os, cur.id)))?;
        let c = self.repo.read_commit(&commit)?;
        let what = format!("{}/{}:/{}", cur.os, cur.id, update_policy::IMAGE_FILE);
        let image =
            match crate::walk::lookup(&self.repo, &c.tree, update_policy::IMAGE_FILE.as_bytes())? {
                Some((crate::object::EntryKind::File, id)) => {
                    if self.repo.file_header(&id)?.size > update_policy::MAX_FILE as u64 {
                        return Err(Error::Refused(format!("{what}: too large")));
                    }
                    let b = self.repo.open_file(&id)?.read_all()?;
                    let text = String::from_utf8(b)
                        .map_err(|_| Error::Refused(format!("{what}: not UTF-8")))?;
                    Some(PolicyFile::parse(&what, &text).map_err(Error::Refused)?)
                }
                _ => None,
            };
        let etc_dir = self
            .deploy_dir(&cur.os)
            .join(&cur.id)
            .join("etc")
            .join("slate");
        let over = match self.dir_if_there(&etc_dir)? {
            Some(d) => match d.read("update.toml")? {
                Some(b) => {
                    let p = etc_dir.join("update.toml");
                    let what = show(&p).to_string();
                    if b.len() > update_policy::MAX_FILE {
                        return Err(Error::Refused(format!("{what}: too large")));
                    }
                    let text = String::from_utf8(b)
                        .map_err(|_| Error::Refused(format!("{what}: not UTF-8")))?;
                    Some(PolicyFile::parse(&what, &text).map_err(Error::Refused)?)
                }
                None => None,
            },
            None => None,
        };
        Ok(PolicyFile::effective(image.as_ref(), over.as_ref()))
    }

    /// The last unattended run of `os`, if one was recorded.
    pub fn last_check(&self, os: &str) -> Result<Option<LastCheck>> {
        let Some(d) = self.dir_if_there(&self.state_dir(os))? else {
            return Ok(None);
        };
        let Some(b) = d.read(LAST_CHECK)? else {
            return Ok(None);
        };
        let p: PathBuf = self.state_dir(os).join(LAST_CHECK);
        if b.len() > 64 << 10 {
            return Err(Error::Refused(format!("{}: too large", show(&p))));
        }
        parse_toml(&p, &b, "a last-check record").map(Some)
    }

    /// Record `c` as the last run of `os`, atomically.
    pub fn record_check(&self, os: &str, c: &LastCheck) -> Result<()> {
        write_toml(&self.dir_create(&self.state_dir(os))?, LAST_CHECK, c)
    }

    /// One unattended run of `policy` for the deployment `upgrade`
    /// follows: check; with `stage`, pull and deploy the update (it boots
    /// next); with `apply`, then ask `reboot` for the reboot (now, or at
    /// the window). Whatever happens, the result is recorded
    /// ([`Sysroot::last_check`]) before this returns; an error (a
    /// signature, a download) is recorded and returned, and no reboot is
    /// asked for.
    pub fn auto_update(
        &self,
        policy: &Effective,
        opts: &UpgradeOptions,
        fetch: &dyn Fetch,
        progress: &Progress,
        reboot: &mut dyn FnMut(&RebootRequest) -> std::result::Result<String, String>,
    ) -> Result<AutoOutcome> {
        let os = self.pick_os(opts.os.as_deref())?;
        let mut rec = LastCheck {
            time: opts.deploy.now,
            policy: Some(policy.policy),
            ..LastCheck::default()
        };
        let fail = |rec: &mut LastCheck, e: &Error| -> Result<()> {
            rec.result = "error".into();
            rec.error = Some(error_chain(e));
            self.record_check(&os, rec)
        };
        let check = match self.check_update(opts, fetch) {
            Ok(c) => c,
            Err(e) => {
                fail(&mut rec, &e)?;
                return Err(e);
            }
        };
        rec.commit = Some(check.commit.clone());
        rec.version = check.version.clone();
        let mut out = AutoOutcome {
            policy: policy.clone(),
            check,
            record: LastCheck::default(),
            deployed: None,
        };
        if !out.check.update {
            rec.result = "up-to-date".into();
        } else if policy.policy == Policy::Check {
            rec.result = "available".into();
        } else {
            match self.stage_update(opts, fetch, progress) {
                Ok(Staging::Staged(name)) => {
                    out.deployed = Some(name);
                    rec.result = "staged".into();
                }
                Ok(Staging::Nothing) => rec.result = "up-to-date".into(),
                Ok(Staging::Bad(b)) => {
                    rec.result = "bad-commit".into();
                    rec.error = Some(format!(
                        "commit {} went bad on this machine: not deployed again until its origin names a newer one",
                        b.commit
                    ));
                }
                Err(e) => {
                    fail(&mut rec, &e)?;
                    return Err(e);
                }
            }
            if policy.policy == Policy::Apply && out.deployed.is_some() {
                let req = match (policy.reboot, &policy.window) {
                    (Reboot::Window, Some(w)) => RebootRequest::Window(w.clone()),
                    _ => RebootRequest::Now,
                };
                match reboot(&req) {
                    Ok(what) => {
                        rec.result = "reboot".into();
                        rec.reboot = Some(what);
                    }
                    Err(why) => {
                        rec.error = Some(format!("the reboot could not be asked for: {why}"));
                    }
                }
            }
        }
        self.record_check(&os, &rec)?;
        out.record = rec;
        Ok(out)
    }

    /// Pull the followed origin's commit and stage it (it becomes the
    /// default when the machine shuts down: `slate-finalize-staged`):
    /// `Ok(Staged(OS/ID))`, also when it is staged already; `Bad` when
    /// the commit went bad on this machine (not retried).
    fn stage_update(
        &self,
        opts: &UpgradeOptions,
        fetch: &dyn Fetch,
        progress: &Progress,
    ) -> Result<Staging> {
        let opts = UpgradeOptions {
            deploy: super::DeployOptions {
                stage: true,
                ..opts.deploy.clone()
            },
            ..opts.clone()
        };
        let up = self.upgrade(&opts, fetch, progress)?;
        if let Some(b) = up.bad {
            return Ok(Staging::Bad(b));
        }
        if let Some(st) = up.staged {
            return Ok(Staging::Staged(st));
        }
        let Some((plan, deploy)) = up.plan else {
            return Ok(Staging::Nothing);
        };
        let st = self.stage(plan, &deploy, progress)?;
        drop(up.lock);
        Ok(Staging::Staged(format!("{}/{}", st.os, st.id)))
    }
}

/// What [`Sysroot::stage_update`] did.
enum Staging {
    Staged(String),
    Bad(super::BadCommit),
    Nothing,
}

/// An error with its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut t = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        t.push_str(": ");
        t.push_str(&s.to_string());
        cur = s.source();
    }
    t
}
