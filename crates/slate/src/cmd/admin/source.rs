//! Where a deployment's commit comes from: the sysroot's repository, a
//! repository pulled from (`--from`), or a remote (`REMOTE:REF`, its
//! signatures checked where the remote requires them).

use std::path::Path;

use anyhow::Context;
use slate_core::pull;
use slate_core::store::{self, Repo};
use slate_core::sysroot::Sysroot;
use slate_remote::client::MinRate;
use slate_remote::pull::PullOptions;

use crate::output;

/// The commit `rev` names in the sysroot's repository, after pulling it
/// from `from` when given; and the ref it came from, if `rev` is one.
pub(super) fn resolve(
    s: &Sysroot,
    rev: &str,
    from: Option<&Path>,
) -> anyhow::Result<(slate_core::hash::ObjectId, Option<String>)> {
    resolve_at_rate(s, rev, from, MinRate::default())
}

/// [`resolve`], a remote's transfers given up below `min_rate`.
pub(super) fn resolve_at_rate(
    s: &Sysroot,
    rev: &str,
    from: Option<&Path>,
    min_rate: MinRate,
) -> anyhow::Result<(slate_core::hash::ObjectId, Option<String>)> {
    let repo = s.repo();
    if let Some((remote, remote_ref)) = remote_rev(repo, rev) {
        if from.is_some() {
            anyhow::bail!("{rev} names a remote's ref: --from REPO does not apply");
        }
        return pull_remote(repo, &remote, &remote_ref, min_rate)
            .map(|c| (c, Some(rev.to_string())));
    }
    if let Some(src) = from {
        let src_repo = Repo::open(src)
            .with_context(|| format!("opening repository {}", output::shown_path(src)))?;
        let commit = src_repo
            .rev_parse(rev)
            .with_context(|| format!("{rev:?} names no commit of {}", output::shown_path(src)))?;
        let is_ref = store::validate_ref_name(rev).is_ok() && src_repo.read_ref(rev)?.is_some();
        let heads = pull::local_heads(&src_repo, &[rev.to_string()])?;
        let mut plan = pull::plan(&src_repo, repo, &heads, None)?;
        let stats = output::counted("pulled", "objects", |p| {
            pull::pull_local(&src_repo, repo, &mut plan, p)
        })
        .with_context(|| format!("pulling {rev} from {}", output::shown_path(src)))?;
        if stats.files + stats.trees + stats.commits > 0 {
            eprintln!(
                "pulled {} commits, {} trees, {} files ({:.1} MB) from {}",
                stats.commits,
                stats.trees,
                stats.files,
                stats.content_bytes as f64 / 1e6,
                output::shown_path(src)
            );
        }
        return Ok((commit, is_ref.then(|| rev.to_string())));
    }
    let commit = repo
        .rev_parse(rev)
        .with_context(|| format!("{rev:?} names no commit of the sysroot's repository (pull it first, use REMOTE:REF, or use --from REPO)"))?;
    check_tracking_ref(repo, rev, &commit)?;
    let is_ref = store::validate_ref_name(rev).is_ok() && repo.read_ref(rev)?.is_some();
    Ok((commit, is_ref.then(|| rev.to_string())))
}

/// `REMOTE:REF` where REMOTE is a remote of the repository.
fn remote_rev(repo: &Repo, rev: &str) -> Option<(String, String)> {
    let (remote, r) = rev.split_once(':')?;
    slate_remote::config::get(repo, remote).ok()?;
    Some((remote.to_string(), r.to_string()))
}

/// Pull REF of REMOTE (its summary and the commit checked against the
/// remote's keys when it requires signatures), then check again that the
/// commit carries a trusted signature: a deployment never comes from an
/// unsigned commit of a remote that requires signatures.
fn pull_remote(
    repo: &Repo,
    remote: &str,
    remote_ref: &str,
    min_rate: MinRate,
) -> anyhow::Result<slate_core::hash::ObjectId> {
    let started = std::time::Instant::now();
    let opts = PullOptions {
        min_rate,
        ..PullOptions::default()
    };
    let done = output::counted("pulled", "objects", |p| {
        slate_remote::pull::pull(repo, remote, remote_ref, &opts, p)
    })
    .with_context(|| format!("pulling {remote_ref} from {remote}"))?;
    for r in &done.redirects {
        eprintln!("redirected: {} -> {} (HTTP {})", r.from, r.to, r.status);
    }
    let commit = slate_core::hash::ObjectId::from_hex(&done.commit)?;
    require_signature(repo, remote, &commit)?;
    eprintln!(
        "pulled {} from {remote} ({}): {} objects, {:.1} MB fetched in {} requests, {:.2} s",
        commit.short(12),
        done.delta
            .as_deref()
            .map(|_| "delta")
            .unwrap_or(&done.method),
        done.objects,
        done.bytes_fetched as f64 / 1e6,
        done.requests,
        started.elapsed().as_secs_f64()
    );
    Ok(commit)
}

fn require_signature(
    repo: &Repo,
    remote: &str,
    commit: &slate_core::hash::ObjectId,
) -> anyhow::Result<()> {
    let cfg = slate_remote::config::get(repo, remote)?;
    if !cfg.verifies() {
        return Ok(());
    }
    let keys = cfg.public_keys()?;
    if repo.verified_signer(commit, &keys).is_none() {
        anyhow::bail!(
            "commit {commit} has no valid signature by a key remote {remote} trusts: \
             not deployed"
        );
    }
    Ok(())
}

/// A local ref `remotes/REMOTE/...` deployed as it is: its commit must
/// still carry a trusted signature where the remote requires one.
fn check_tracking_ref(
    repo: &Repo,
    rev: &str,
    commit: &slate_core::hash::ObjectId,
) -> anyhow::Result<()> {
    let Some(rest) = rev.strip_prefix("remotes/") else {
        return Ok(());
    };
    let Some((remote, _)) = rest.split_once('/') else {
        return Ok(());
    };
    if slate_remote::config::get(repo, remote).is_err() {
        return Ok(());
    }
    require_signature(repo, remote, commit)
}
