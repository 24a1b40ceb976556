//! Where a deployment's commit comes from, and `upgrade`.
//!
//! [`Sysroot::resolve`] turns what a user names (`REF`, a commit id,
//! `REMOTE:REF`, or a revision of another repository) into a commit of
//! the sysroot's repository and its typed [`Origin`], pulling it first
//! (through the caller's [`Fetch`] for a remote) and applying the trust
//! rule. [`Sysroot::upgrade`] follows a deployment's origin: pull first,
//! then take the lock, check the deployment followed is unchanged, and
//! plan the deploy of the newer commit.

use std::path::{Path, PathBuf};

use super::{DeployOptions, DeployPlan, Error, Result, Sysroot, SysrootLock};
use crate::hash::ObjectId;
use crate::progress::Progress;
use crate::pull::{self, PullStats};
use crate::remotes::{self, Fetch, Fetched, Origin};
use crate::store::{self, Repo};

/// What a pull before a deploy brought.
#[derive(Debug)]
pub enum Pulled {
    /// From a remote, through the caller's [`Fetch`].
    Remote(Fetched),
    /// From a local repository (`--from`).
    Local { from: PathBuf, stats: PullStats },
}

/// A commit of the sysroot's repository, where it came from, and what
/// was pulled to have it.
#[derive(Debug)]
pub struct Resolved {
    pub commit: ObjectId,
    pub origin: Origin,
    pub pulled: Option<Pulled>,
}

/// What `upgrade` is asked.
#[derive(Clone, Debug)]
pub struct UpgradeOptions {
    /// The OS (default: the booted deployment's, or the only one).
    pub os: Option<String>,
    /// Pull the origin's ref from this repository instead.
    pub from: Option<PathBuf>,
    /// The deploy's options (its OS and origin are the followed one's).
    pub deploy: DeployOptions,
}

/// An upgrade ready to apply, the sysroot locked.
pub struct Upgrade {
    /// Held until the plan is applied (or dropped).
    pub lock: SysrootLock,
    /// The deployment followed (`OS/ID`).
    pub follows: String,
    pub resolved: Resolved,
    /// The deploy of the newer commit; `None` when the deployment
    /// followed is at the newest commit of its origin already, when that
    /// commit went bad on this machine (`bad`), or when it is staged
    /// already (`staged`).
    pub plan: Option<(DeployPlan, DeployOptions)>,
    /// The newest commit went bad here: not deployed again until its
    /// origin names a newer one.
    pub bad: Option<super::BadCommit>,
    /// The newest commit is staged already (`OS/ID`), with `deploy.stage`.
    pub staged: Option<String>,
}

/// A deploy ready to apply, the sysroot locked.
pub struct ReadyDeploy {
    /// Held until the plan is applied (or dropped).
    pub lock: SysrootLock,
    pub resolved: Resolved,
    pub plan: DeployPlan,
    /// The options planned with (the origin the resolved one).
    pub opts: DeployOptions,
}

/// The deployment an upgrade follows: its OS, name, commit and origin.
#[derive(PartialEq, Eq)]
pub(crate) struct Followed {
    pub(crate) os: String,
    pub(crate) id: String,
    pub(crate) commit: String,
    pub(crate) origin: Origin,
}

impl Sysroot {
    /// The commit `rev` names, pulled first into the sysroot's repository
    /// when it is `REMOTE:REF` (a remote of the repository, through
    /// `fetch`) or when `from` names a repository to pull from. The trust
    /// rule applies to the result ([`remotes::require_trusted`]).
    pub fn resolve(
        &self,
        rev: &str,
        from: Option<&Path>,
        fetch: &dyn Fetch,
        progress: &Progress,
    ) -> Result<Resolved> {
        let repo = &self.repo;
        if rev.contains(':') {
            // The images' remotes, as the deployments now provide them.
            self.sync_image_remotes()?;
        }
        let remote_rev = rev
            .split_once(':')
            .filter(|(remote, _)| remotes::config::exists(repo, remote));
        if let Some((remote, r)) = remote_rev {
            if from.is_some() {
                return Err(Error::Refused(format!(
                    "{rev} names a remote's ref: --from REPO does not apply"
                )));
            }
            let fetched =
                fetch
                    .fetch(repo, remote, r, progress)
                    .map_err(|source| Error::Fetch {
                        remote: remote.to_string(),
                        remote_ref: r.to_string(),
                        source,
                    })?;
            let origin = Origin::Remote {
                remote: remote.to_string(),
                r#ref: r.to_string(),
            };
            remotes::require_trusted(repo, &origin, &fetched.commit)?;
            return Ok(Resolved {
                commit: fetched.commit,
                origin,
                pulled: Some(Pulled::Remote(fetched)),
            });
        }
        let Some(src) = from else {
            // REMOTE:REF of a remote that is not there (a ref name has
            // no ':'): say so, rather than that no commit has this name.
            if let Some((remote, _)) = rev.split_once(':') {
                if remotes::config::is_name(remote) && repo.rev_parse(rev).is_err() {
                    return Err(Error::Remotes(remotes::Error::NoSuchRemote {
                        name: remote.to_string(),
                        repo: repo.path().to_path_buf(),
                    }));
                }
            }
            let (commit, origin) = named(repo, rev, true)?;
            remotes::require_trusted(repo, &origin, &commit)?;
            return Ok(Resolved {
                commit,
                origin,
                pulled: None,
            });
        };
        let src_repo = Repo::open(src)?;
        let (commit, origin) = named(&src_repo, rev, false)?;
        // The rule read where the ref is: `remotes/R/...` of `src`, whose
        // remote R the sysroot's repository may not have.
        remotes::require_trusted(&src_repo, &origin, &commit)?;
        let local_err = |source| Error::PullLocal {
            rev: rev.to_string(),
            from: src.to_path_buf(),
            source: Box::new(source),
        };
        let heads = pull::local_heads(&src_repo, &[rev.to_string()]).map_err(local_err)?;
        let mut plan = pull::plan(&src_repo, repo, &heads, None).map_err(local_err)?;
        let stats = pull::pull_local(&src_repo, repo, &mut plan, progress).map_err(local_err)?;
        // Its signatures come along: an initrd with trusted keys checks a
        // verity /usr's root hash against one (`usr_verity`).
        repo.copy_signatures(&src_repo, &commit)
            .map_err(|e| match e {
                crate::sign::Error::Io { path, source } => Error::Io { path, source },
                other => Error::Io {
                    path: src.to_path_buf(),
                    source: std::io::Error::other(other.to_string()),
                },
            })?;
        Ok(Resolved {
            commit,
            origin,
            pulled: Some(Pulled::Local {
                from: src.to_path_buf(),
                stats,
            }),
        })
    }

    /// Deploy what `rev` names ([`Sysroot::resolve`]): pulled first,
    /// before the lock is taken (a slow server holds up this deploy
    /// only), then planned under the lock with `opts`, its origin the
    /// resolved one. The caller applies the plan ([`Sysroot::deploy`]) or
    /// shows it.
    pub fn prepare_deploy(
        &self,
        rev: &str,
        from: Option<&Path>,
        opts: &DeployOptions,
        fetch: &dyn Fetch,
        progress: &Progress,
    ) -> Result<ReadyDeploy> {
        let resolved = self.resolve(rev, from, fetch, progress)?;
        let lock = self.lock()?;
        let opts = DeployOptions {
            origin: Some(resolved.origin.clone()),
            ..opts.clone()
        };
        let plan = self.plan_deploy(&resolved.commit, &opts)?;
        Ok(ReadyDeploy {
            lock,
            resolved,
            plan,
            opts,
        })
    }

    /// Upgrade the booted (else the default) deployment of `opts.os`: the
    /// newest commit of its origin, pulled before the lock is taken (a
    /// slow server holds up this upgrade only), then, under the lock, the
    /// deployment followed read again (it must be unchanged) and the
    /// deploy planned. The caller applies the plan ([`Sysroot::deploy`],
    /// or [`Sysroot::stage`] with `deploy.stage`) or shows it.
    ///
    /// The upgrade loop's rules (`rules.rs`): no upgrade from a booted
    /// deployment that is not blessed yet or bad ([`Error::NotBlessed`],
    /// before anything is pulled), and none to a commit recorded bad on
    /// this machine (`bad` says which).
    pub fn upgrade(
        &self,
        opts: &UpgradeOptions,
        fetch: &dyn Fetch,
        progress: &Progress,
    ) -> Result<Upgrade> {
        let cur = self.followed(opts.os.as_deref())?;
        self.check_booted_blessed(&cur.os)?;
        let resolved = self.resolve(
            &cur.origin.to_string(),
            opts.from.as_deref(),
            fetch,
            progress,
        )?;
        self.ext_pull(&cur.os, &cur.id, opts.from.as_deref(), fetch, progress)?;
        let lock = self.lock()?;
        let again = self.followed(opts.os.as_deref())?;
        if again != cur {
            return Err(Error::ChangedMeanwhile {
                origin: cur.origin.to_string(),
                now: format!("{}/{}", again.os, again.id),
                now_origin: again.origin.to_string(),
            });
        }
        let follows = format!("{}/{}", cur.os, cur.id);
        self.note_bad_commits(&cur.os, opts.deploy.now)?;
        let bad = self.bad_commit(&cur.os, &resolved.commit)?;
        let staged = match self.staged(&cur.os)? {
            Some(st) if opts.deploy.stage && st.commit == resolved.commit.to_hex() => {
                Some(format!("{}/{}", st.os, st.id))
            }
            _ => None,
        };
        if resolved.commit.to_hex() == cur.commit || bad.is_some() || staged.is_some() {
            return Ok(Upgrade {
                lock,
                follows,
                resolved,
                plan: None,
                bad,
                staged,
            });
        }
        let deploy = DeployOptions {
            os: Some(cur.os),
            origin: Some(resolved.origin.clone()),
            ..opts.deploy.clone()
        };
        let plan = self.plan_deploy(&resolved.commit, &deploy)?;
        Ok(Upgrade {
            lock,
            follows,
            resolved,
            plan: Some((plan, deploy)),
            bad: None,
            staged: None,
        })
    }

    pub(crate) fn followed(&self, os: Option<&str>) -> Result<Followed> {
        let status = self.status()?;
        let os = self.pick_os(os)?;
        let cur = status
            .deployments
            .iter()
            .find(|d| d.booted && d.os == os)
            .or_else(|| status.deployments.iter().find(|d| d.os == os))
            .ok_or_else(|| Error::Refused(format!("OS {os} has no deployment to upgrade")))?;
        let origin = cur
            .origin
            .clone()
            .filter(Origin::is_ref)
            .ok_or_else(|| Error::NothingToFollow(format!("{}/{}", cur.os, cur.id)))?;
        Ok(Followed {
            os: cur.os.clone(),
            id: cur.id.clone(),
            commit: cur.commit.clone(),
            origin,
        })
    }
}

/// The commit `rev` names in `repo`, and its origin: the ref, when `rev`
/// is one, else the commit.
fn named(repo: &Repo, rev: &str, sysroot: bool) -> Result<(ObjectId, Origin)> {
    let commit = repo.rev_parse(rev).map_err(|source| Error::NoSuchRev {
        rev: rev.to_string(),
        repo: repo.path().to_path_buf(),
        sysroot,
        source: Box::new(source),
    })?;
    let is_ref = store::validate_ref_name(rev).is_ok() && repo.read_ref(rev)?.is_some();
    let origin = if is_ref {
        Origin::Ref(rev.to_string())
    } else {
        Origin::Commit(commit)
    };
    Ok((commit, origin))
}
