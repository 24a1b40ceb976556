//! `slate pull REMOTE REF`: the remote's summary, checked (its signature
//! where the remote requires one; never older than the last one accepted),
//! then the commit (and its signature), then its missing objects, then the
//! ref, which moves only once everything is stored and durable, and never
//! to an older commit unless asked.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use sha2::{Digest, Sha256};

use serde::Serialize;
use slate_core::delta;
use slate_core::hash::ObjectId;
use slate_core::object::ObjectType;
use slate_core::progress::Progress;
use slate_core::pull::{self as local_pull, PullPlan, RefMove};
use slate_core::sign::{self, PublicKey};
use slate_core::store::{self, ObjectRead, ObjectWrite, Repo};
use slate_core::summary::{DeltaInfo, Summary, SUMMARY, SUMMARY_SIG};
use slate_core::walk;

use crate::client::{Client, MinRate, Redirect};
use crate::config::{self, RemoteConfig, RemoteState};
use crate::fetch::HttpStore;
use crate::Error;

/// The largest summary accepted.
const MAX_SUMMARY: u64 = 64 << 20;
/// The largest signature fetched (an Ed25519 signature is 64 bytes).
const MAX_SIGNATURE: u64 = 1024;

#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Move the ref even to an older commit.
    pub allow_downgrade: bool,
    /// How long a connection may deliver nothing before it is given up.
    pub stall: Duration,
    /// Tries of each mirror before the next.
    pub retries: u32,
    pub backoff: Duration,
    /// The slowest transfer accepted.
    pub min_rate: MinRate,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            allow_downgrade: false,
            stall: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_millis(300),
            min_rate: MinRate::default(),
        }
    }
}

/// What a pull did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Pulled {
    pub remote: String,
    pub remote_ref: String,
    /// The local ref set (`remotes/REMOTE/REF`).
    pub local_ref: String,
    pub commit: String,
    /// The ref's commit before, if it had one.
    pub previous: Option<String>,
    /// The key whose signature checked, if signatures are required.
    pub signed_by: Option<String>,
    /// How the objects came: `present`, `delta`, `packs`.
    pub method: String,
    /// The delta used (its path on the remote), if any.
    pub delta: Option<String>,
    /// Why a delta listed for this commit was not used, if one failed.
    pub delta_failed: Option<String>,
    pub objects: usize,
    pub trees: usize,
    pub files: usize,
    /// Bytes of the files stored.
    pub content_bytes: u64,
    /// What was asked of the server.
    pub requests: u64,
    pub bytes_fetched: u64,
    /// The redirects the servers answered, followed.
    pub redirects: Vec<Redirect>,
}

/// The summary of a remote, checked: its signature against `keys` (when
/// the remote requires one) and its age against `state`.
pub fn fetch_summary(
    client: &Client,
    cfg: &RemoteConfig,
    state: &RemoteState,
    name: &str,
) -> Result<Summary, Error> {
    let bytes = client
        .get(SUMMARY, MAX_SUMMARY)
        .map_err(|e| in_remote(name, e))?;
    if cfg.verifies() {
        let keys = cfg.public_keys()?;
        let sig = match client.get(SUMMARY_SIG, MAX_SIGNATURE) {
            Ok(s) => s,
            Err(Error::NotFound(..)) => {
                return Err(Error::Refused(format!(
                    "remote {name} has no summary signature ({SUMMARY_SIG}) and its \
                     summaries must be signed"
                )))
            }
            Err(e) => return Err(in_remote(name, e)),
        };
        if !keys.iter().any(|k| k.verify(&bytes, &sig)) {
            return Err(Error::Refused(format!(
                "remote {name}: the summary's signature does not check with any trusted key"
            )));
        }
    }
    let s = Summary::from_bytes(&bytes)
        .map_err(|e| Error::Corrupt(format!("remote {name}: {SUMMARY}: {e}")))?;
    if s.timestamp < state.summary_timestamp {
        return Err(Error::Refused(format!(
            "remote {name} serves a summary from {} older than one accepted before ({}): \
             refused as a replay",
            s.timestamp, state.summary_timestamp
        )));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    s.check_expiry(now).map_err(|e| {
        Error::Refused(format!(
            "remote {name}: {e}: the publisher has not renewed it, or a mirror serves an old \
             one; refused"
        ))
    })?;
    Ok(s)
}

/// An error of a request to the remote `name`, saying so.
fn in_remote(name: &str, e: Error) -> Error {
    match e {
        Error::Refused(m) => Error::Refused(format!("remote {name}: {m}")),
        e => e,
    }
}

/// Fetch and check a signature of `commit` by one of `keys`; keep it.
/// `Err(why)` when none checks: for each key, what was found.
fn fetch_signature(
    client: &Client,
    dest: &Repo,
    commit: &ObjectId,
    keys: &[PublicKey],
) -> Result<Result<String, String>, Error> {
    let mut why = Vec::new();
    for k in keys {
        let rel = Repo::signature_rel(commit, &k.key_id());
        let sig = match client.get(&rel, MAX_SIGNATURE) {
            Ok(s) => s,
            Err(Error::NotFound(..)) => {
                why.push(format!("{rel}: not on the remote"));
                continue;
            }
            Err(Error::Refused(m)) => {
                why.push(m);
                continue;
            }
            Err(e) => return Err(e),
        };
        if k.verify(&sign::commit_message(commit), &sig) {
            dest.store_signature(commit, &k.key_id(), &sig)
                .map_err(|e| Error::Fetch(e.to_string()))?;
            return Ok(Ok(k.key_id()));
        }
        why.push(format!("{rel}: does not check with key {}", k.key_id()));
    }
    Ok(Err(why.join("; ")))
}

/// The trees and files of the tree `root` that `dest` lacks, reading the
/// trees it lacks from the remote (a level at a time, fetched ahead).
fn missing(src: &HttpStore<'_>, dest: &Repo, root: &ObjectId) -> Result<walk::Lacking, Error> {
    walk::missing_from(src, dest, &[*root], &mut |ids| src.prefetch(ids))
}

/// The files of `tree` that `dest` lacks when it has all the trees;
/// `None` when a tree is missing too (the remote must be read).
fn complete_here(dest: &Repo, root: &ObjectId) -> Result<Option<Vec<ObjectId>>, Error> {
    let l = walk::missing_below(dest, &[*root])?;
    Ok(l.trees.is_empty().then_some(l.files))
}

/// Whether `new` (committed at `new_time`) is older than `current`: one
/// of its ancestors, or committed earlier.
fn older(dest: &Repo, new: &ObjectId, new_time: i64, current: &ObjectId) -> bool {
    let mut next = Some(*current);
    let mut first = true;
    for _ in 0..100_000 {
        let Some(c) = next else { break };
        let Ok(commit) = dest.read_commit(&c) else {
            break;
        };
        if first && new_time < commit.timestamp {
            return true;
        }
        first = false;
        if commit.parent == Some(*new) {
            return true;
        }
        next = commit.parent;
    }
    false
}

/// What the summary of remote `name` says of `remote_ref`: only the
/// summary (and its signature) is fetched, checked as a pull checks it;
/// nothing is stored, not even the summary's time.
pub fn check_ref(
    dest: &Repo,
    name: &str,
    remote_ref: &str,
    opts: &PullOptions,
) -> Result<slate_core::remotes::RefCheck, Error> {
    store::validate_ref_name(remote_ref)?;
    let cfg = config::get(dest, name)?;
    let state = config::state(dest, name);
    let client = Client::new(&cfg.urls, opts.stall)
        .with_retries(opts.retries, opts.backoff)
        .with_min_rate(opts.min_rate);
    let summary = fetch_summary(&client, &cfg, &state, name)?;
    let info = summary.refs.get(remote_ref).ok_or_else(|| {
        Error::Refused(format!(
            "remote {name} has no ref {remote_ref} (it has: {})",
            summary.refs.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let commit = ObjectId::from_hex(&info.commit)
        .map_err(|e| Error::Corrupt(format!("remote {name}: {SUMMARY}: {e}")))?;
    let to = commit.to_hex();
    let deltas = summary
        .deltas
        .iter()
        .filter(|d| d.to == to)
        .map(|d| {
            (
                d.from.as_deref().and_then(|f| ObjectId::from_hex(f).ok()),
                d.size,
            )
        })
        .collect();
    Ok(slate_core::remotes::RefCheck {
        commit,
        timestamp: info.timestamp,
        size: info.size,
        commit_object: info.inline_commit(),
        deltas,
    })
}

/// Pull `remote_ref` of the remote `name` into `dest`, setting
/// `remotes/NAME/REF`.
pub fn pull(
    dest: &Repo,
    name: &str,
    remote_ref: &str,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<Pulled, Error> {
    let cx = Ctx::open(dest, name, remote_ref, opts, progress)?;
    cx.refuse_downgrade(opts.allow_downgrade)?;
    let mut done = Done {
        local_ref: cx.local_ref.clone(),
        commit: cx.commit,
        previous: cx.previous,
        signed_by: cx.check_signature()?,
        method: "present",
        used_delta: None,
        delta_failed: None,
        stats: Default::default(),
    };
    if cx.store_summary_commit()? {
        done.method = "summary";
        done.stats.commits = 1;
        return cx.finish(done);
    }
    let from_delta = cx.try_delta(&mut done)?;
    done.stats = cx
        .fetch_objects(from_delta.as_ref(), &mut done.method)
        .map_err(|e| match &done.delta_failed {
            // Why the delta, which would have spared the rest, was not used.
            Some(why) => Error::Fetch(format!("{e} (the delta was not used: {why})")),
            None => e,
        })?;
    if let Some(a) = &from_delta {
        done.stats.commits += 1;
        done.stats.trees += a.trees as usize;
        done.stats.files += (a.files + a.patched) as usize;
        done.stats.content_bytes += a.content_bytes;
    }
    cx.finish(done)
}

/// A pull under way: the remote, its checked summary, and the commit its
/// ref names.
struct Ctx<'a> {
    dest: &'a Repo,
    name: &'a str,
    remote_ref: &'a str,
    cfg: RemoteConfig,
    state: RemoteState,
    client: Client,
    summary: Summary,
    /// `remotes/NAME/REF`, and its commit before.
    local_ref: String,
    previous: Option<ObjectId>,
    commit: ObjectId,
    /// What the summary says of the commit: its time, the bytes of its
    /// files, and the commit itself if it carries it.
    timestamp: i64,
    size: u64,
    inline: Option<slate_core::object::Commit>,
    cache: PathBuf,
    progress: &'a Progress,
}

impl<'a> Ctx<'a> {
    /// The names checked, the remote's summary fetched and checked, and
    /// the commit of its ref.
    fn open(
        dest: &'a Repo,
        name: &'a str,
        remote_ref: &'a str,
        opts: &PullOptions,
        progress: &'a Progress,
    ) -> Result<Ctx<'a>, Error> {
        // Nothing is asked of the remote for a ref that could not be stored.
        store::validate_ref_name(remote_ref)?;
        let local_ref = config::tracking_ref(name, remote_ref);
        store::validate_ref_name(&local_ref)?;
        let cfg = config::get(dest, name)?;
        let state = config::state(dest, name);
        let client = Client::new(&cfg.urls, opts.stall)
            .with_retries(opts.retries, opts.backoff)
            .with_min_rate(opts.min_rate);
        let summary = fetch_summary(&client, &cfg, &state, name)?;
        let info = summary.refs.get(remote_ref).ok_or_else(|| {
            Error::Refused(format!(
                "remote {name} has no ref {remote_ref} (it has: {})",
                summary.refs.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let commit = ObjectId::from_hex(&info.commit)
            .map_err(|e| Error::Corrupt(format!("remote {name}: {SUMMARY}: {e}")))?;
        let (timestamp, size, inline) = (info.timestamp, info.size, info.inline_commit());
        Ok(Ctx {
            dest,
            name,
            remote_ref,
            cfg,
            state,
            client,
            summary,
            previous: dest.read_ref(&local_ref)?,
            local_ref,
            commit,
            timestamp,
            size,
            inline,
            cache: config::cache_dir(dest, name),
            progress,
        })
    }

    /// Refuse a commit older than the one the tracking ref has, unless
    /// asked.
    fn refuse_downgrade(&self, allowed: bool) -> Result<(), Error> {
        let Some(prev) = self.previous else {
            return Ok(());
        };
        if prev != self.commit && !allowed && older(self.dest, &self.commit, self.timestamp, &prev)
        {
            return Err(Error::Refused(format!(
                "remote {}'s {} is {}, older than {} that {} has: \
                 refused as a downgrade (--allow-downgrade)",
                self.name,
                self.remote_ref,
                self.commit.short(12),
                prev.short(12),
                self.local_ref,
            )));
        }
        Ok(())
    }

    /// The key whose signature of the commit checks, where the remote
    /// requires one (the signature is kept).
    fn check_signature(&self) -> Result<Option<String>, Error> {
        if !self.cfg.verifies() {
            return Ok(None);
        }
        let keys = self.cfg.public_keys()?;
        match fetch_signature(&self.client, self.dest, &self.commit, &keys)? {
            Ok(k) => Ok(Some(k)),
            Err(why) => Err(Error::Refused(format!(
                "commit {} of remote {} has no valid signature by a trusted key ({why})",
                self.commit, self.name
            ))),
        }
    }

    /// The commit as the summary carries it: stored at once, with the
    /// ref's move, when its tree is here already (an image rebuilt with
    /// nothing changed). Whether it was.
    fn store_summary_commit(&self) -> Result<bool, Error> {
        let dest = self.dest;
        if dest.has_object(ObjectType::Commit, &self.commit)? {
            return Ok(false);
        }
        let Some(c) = &self.inline else {
            return Ok(false);
        };
        if !complete_here(dest, &c.tree)?.is_some_and(|f| f.is_empty()) {
            return Ok(false);
        }
        let mut tx = slate_core::store::Transaction::begin(dest)?;
        tx.write_commit(c)?;
        tx.set_ref(&self.local_ref, self.previous, self.commit)?;
        tx.commit()?;
        Ok(true)
    }

    /// The commit from a delta the summary lists, if one fits: then the
    /// commit is here (whole, or but for the files whose old versions
    /// were missing). A delta that fails is reported, not an error: the
    /// objects come another way.
    fn try_delta(&self, done: &mut Done) -> Result<Option<delta::Applied>, Error> {
        if self.dest.has_object(ObjectType::Commit, &self.commit)? {
            return Ok(None);
        }
        let Some(d) = pick_delta(
            self.dest,
            &self.summary,
            &self.commit,
            self.previous.as_ref(),
        )?
        else {
            return Ok(None);
        };
        let target = (&self.commit, self.size);
        match fetch_delta(
            &self.client,
            self.dest,
            &self.cache,
            d,
            target,
            self.progress,
        ) {
            Ok(a) => {
                done.method = "delta";
                done.used_delta = Some(d.path.clone());
                Ok(Some(a))
            }
            Err(e) => {
                done.delta_failed = Some(e.to_string());
                Ok(None)
            }
        }
    }

    /// The objects the repository still lacks, from the remote's packs
    /// (or loose), stored in one transaction with the ref's move.
    fn fetch_objects(
        &self,
        from_delta: Option<&delta::Applied>,
        method: &mut &'static str,
    ) -> Result<local_pull::PullStats, Error> {
        let (dest, commit) = (self.dest, self.commit);
        let mut plan = PullPlan::default();
        plan.refs.push(RefMove {
            name: self.local_ref.clone(),
            old: self.previous,
            new: commit,
        });
        // Opened (its pack indexes fetched) only when something is missing.
        let store_cell = std::cell::OnceCell::new();
        let store = || -> Result<&HttpStore<'_>, Error> {
            if let Some(s) = store_cell.get() {
                return Ok(s);
            }
            let s = HttpStore::open(&self.client, &self.cache, &self.summary)?
                .with_progress(self.progress);
            Ok(store_cell.get_or_init(|| s))
        };
        if from_delta.is_some_and(|a| a.skipped == 0) {
            // The delta held every object of the commit that its starting
            // commit, which is here whole, lacks: nothing else to fetch.
        } else if dest.has_object(ObjectType::Commit, &commit)? {
            let tree = dest.read_commit(&commit)?.tree;
            // A commit whose tree is incomplete (an interrupted pull, a
            // delta whose old files were missing) is completed.
            match complete_here(dest, &tree)? {
                Some(files) => plan.files = files,
                None => {
                    let l = missing(store()?, dest, &tree)?;
                    plan.trees = l.trees;
                    plan.files = l.files;
                }
            }
        } else {
            *method = "packs";
            let s = store()?;
            let c = s.read_commit(&commit).map_err(|e| match e {
                store::Error::Missing { .. } => Error::Corrupt(format!(
                    "remote {} lists {} as commit {commit}, which it does not have \
                     (neither in its packs nor loose)",
                    self.name, self.remote_ref
                )),
                e => e.into(),
            })?;
            let l = missing(s, dest, &c.tree)?;
            plan.commits.push(commit);
            plan.trees = l.trees;
            plan.files = l.files;
        }
        // The ref moves in the same transaction as the objects, and only
        // to a commit the repository then has, with its tree (the library
        // checks).
        if plan.files.is_empty() && plan.trees.is_empty() && plan.commits.is_empty() {
            // Only the ref to move.
            return Ok(local_pull::apply(dest, dest, &plan, self.progress)?);
        }
        let store = store()?;
        store.prefetch(&plan.files)?;
        // Files in storage order: each frame is decompressed once.
        plan.files.sort_by_key(|id| store.storage_key(id));
        let stats = local_pull::apply(store, dest, &plan, self.progress)?;
        store.clear_spans();
        Ok(stats)
    }

    /// The summary's time recorded (no older one is accepted after), and
    /// what the pull did.
    fn finish(&self, d: Done) -> Result<Pulled, Error> {
        config::set_state(
            self.dest,
            self.name,
            &RemoteState {
                summary_timestamp: self.summary.timestamp.max(self.state.summary_timestamp),
            },
        )?;
        let stats = d.stats;
        let client = &self.client;
        Ok(Pulled {
            remote: self.name.to_string(),
            remote_ref: self.remote_ref.to_string(),
            local_ref: d.local_ref,
            commit: d.commit.to_hex(),
            previous: d.previous.map(|p| p.to_hex()),
            signed_by: d.signed_by,
            method: d.method.to_string(),
            delta: d.used_delta,
            delta_failed: d.delta_failed,
            objects: stats.commits + stats.trees + stats.files,
            trees: stats.trees,
            files: stats.files,
            content_bytes: stats.content_bytes,
            requests: client.counters.requests.load(Ordering::Relaxed),
            bytes_fetched: client.counters.bytes.load(Ordering::Relaxed),
            redirects: client.redirects(),
        })
    }
}

/// What a pull did, gathered as it goes.
struct Done {
    local_ref: String,
    commit: ObjectId,
    previous: Option<ObjectId>,
    signed_by: Option<String>,
    method: &'static str,
    used_delta: Option<String>,
    delta_failed: Option<String>,
    stats: local_pull::PullStats,
}

/// The delta to use for `commit`: from the commit the tracking ref had,
/// else from any commit `dest` has, else (for a repository with no refs
/// at all) the full image.
fn pick_delta<'s>(
    dest: &Repo,
    summary: &'s Summary,
    commit: &ObjectId,
    previous: Option<&ObjectId>,
) -> Result<Option<&'s DeltaInfo>, Error> {
    let to = commit.to_hex();
    let candidates: Vec<&DeltaInfo> = summary.deltas.iter().filter(|d| d.to == to).collect();
    if let Some(p) = previous {
        let p = p.to_hex();
        if let Some(d) = candidates
            .iter()
            .find(|d| d.from.as_deref() == Some(p.as_str()))
        {
            return Ok(Some(d));
        }
    }
    for d in &candidates {
        if let Some(f) = d.from.as_deref().and_then(|f| ObjectId::from_hex(f).ok()) {
            if dest.has_object(ObjectType::Commit, &f)? {
                return Ok(Some(d));
            }
        }
    }
    if dest.list_refs()?.is_empty() {
        return Ok(candidates.into_iter().find(|d| d.from.is_none()));
    }
    Ok(None)
}

/// Download a delta into the cache (resuming a part fetched before),
/// check it against the summary (its digest; its header's ends, which
/// must be the ones the summary lists it under; the bytes of files it
/// would store, at most `cap`, what the summary announces for the
/// commit), and store its objects: then `commit` is in `dest`.
fn fetch_delta(
    client: &Client,
    dest: &Repo,
    cache: &Path,
    d: &DeltaInfo,
    (commit, cap): (&ObjectId, u64),
    progress: &Progress,
) -> Result<delta::Applied, Error> {
    std::fs::create_dir_all(cache).map_err(|e| Error::io(cache, e))?;
    let from = d
        .from
        .as_deref()
        .map(ObjectId::from_hex)
        .transpose()
        .map_err(|e| Error::Corrupt(format!("{SUMMARY}: {e}")))?;
    // Only the hex digits of checked ids reach a path.
    let local = cache.join(format!(
        "{}-{}.delta",
        commit.to_hex(),
        from.map(|f| f.to_hex()).unwrap_or_else(|| "empty".into())
    ));
    progress.add_fetch_total(d.size);
    let have = std::fs::metadata(&local).map(|m| m.len()).unwrap_or(0);
    progress.add_fetched(have.min(d.size));
    client.download(&d.path, 0, d.size, &local, &|n| progress.add_fetched(n))?;
    let r = check_and_apply(dest, &local, d, from, (commit, cap), progress);
    let _ = std::fs::remove_file(&local);
    r
}

fn check_and_apply(
    dest: &Repo,
    local: &Path,
    d: &DeltaInfo,
    from: Option<ObjectId>,
    (commit, cap): (&ObjectId, u64),
    progress: &Progress,
) -> Result<delta::Applied, Error> {
    let bytes_ok = {
        let mut f = std::fs::File::open(local).map_err(|e| Error::io(local, e))?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h).map_err(|e| Error::io(local, e))?;
        hex::encode(h.finalize()) == d.sha256
    };
    if !bytes_ok {
        return Err(Error::Corrupt(format!(
            "{} does not match the summary's digest",
            d.path
        )));
    }
    let bad = |e: delta::Error| Error::Corrupt(format!("{}: {e}", d.path));
    let h = delta::read_header(local).map_err(bad)?;
    if h.to != *commit || h.from != from {
        let show = |f: Option<ObjectId>| f.map(|f| f.to_hex()).unwrap_or_else(|| "nothing".into());
        return Err(Error::Corrupt(format!(
            "{} goes from {} to {}, not from {} to {} as the summary lists it",
            d.path,
            show(h.from),
            h.to,
            show(from),
            commit
        )));
    }
    let stores = delta::content_bytes(local, cap).map_err(bad)?;
    if stores > cap {
        return Err(Error::Corrupt(format!(
            "{} would store more than the {cap} bytes of files the summary announces for \
             commit {commit}",
            d.path
        )));
    }
    let a = delta::apply(dest, local, progress).map_err(bad)?;
    if a.to != *commit || !dest.has_object(ObjectType::Commit, commit)? {
        return Err(Error::Corrupt(format!(
            "{} did not store commit {commit}",
            d.path
        )));
    }
    Ok(a)
}
