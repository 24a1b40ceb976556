//! The trust rule inside the library: a deploy or an upgrade of a commit
//! reached through a remote that requires signatures, without a trusted
//! signature, is refused whoever calls; a signed one passes.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::commit::{self, CommitOptions, ParentSpec, Source};
use crate::hash::ObjectId;
use crate::progress::Progress;
use crate::remotes::{self, config, Fetch, FetchError, Fetched, Origin, RemoteConfig};
use crate::sign::SecretKey;

struct Env {
    _dir: tempfile::TempDir,
    tree: PathBuf,
    s: Sysroot,
    key: SecretKey,
}

/// A sysroot with an OS `os`, and a remote `origin` of its repository
/// that requires signatures by `key`. `None` (with a printed reason)
/// when not root: a bare repository keeps real owners.
fn setup() -> Option<Env> {
    if !crate::fsutil::is_root() {
        eprintln!("SKIPPED: a sysroot's bare repository needs root");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("usr/lib")).expect("mkdir");
    std::fs::create_dir_all(tree.join("etc")).expect("mkdir");
    std::fs::write(tree.join("etc/hostname"), "box\n").expect("write");
    let s = Sysroot::init_fs(&dir.path().join("sysroot"), Some(Path::new("boot"))).expect("init");
    s.os_init(
        "os",
        &OsConfig::new(EtcMode::Persistent, VarMode::Persistent),
    )
    .expect("os-init");
    let key = SecretKey::generate().expect("key");
    config::add(
        s.repo(),
        "origin",
        &RemoteConfig {
            urls: vec!["http://127.0.0.1:9/".into()],
            keys: vec![key.public().to_pem()],
            no_sign_verify: false,
        },
    )
    .expect("remote add");
    Some(Env {
        _dir: dir,
        tree,
        s,
        key,
    })
}

/// Version `v` of the tree committed onto `branch` of `repo`.
fn commit_version(repo: &crate::store::Repo, tree: &Path, branch: &str, v: i64) -> ObjectId {
    std::fs::write(tree.join("usr/lib/os-release"), format!("VERSION_ID={v}\n")).expect("write");
    let opts = CommitOptions {
        branch: branch.into(),
        subject: format!("version {v}"),
        body: String::new(),
        timestamp: v,
        metadata: BTreeMap::new(),
        parent: ParentSpec::Auto,
        skip_if_unchanged: false,
    };
    commit::commit(repo, Source::Dir(tree), &opts, &Progress::default())
        .expect("commit")
        .id
}

fn opts(origin: Origin) -> DeployOptions {
    DeployOptions {
        os: Some("os".into()),
        origin: Some(origin),
        now: 1,
        ..DeployOptions::default()
    }
}

fn untrusted(e: &Error, commit: &ObjectId) -> bool {
    matches!(e, Error::Remotes(remotes::Error::Untrusted { commit: c, remote })
        if c == commit && remote == "origin")
}

/// A remote that publishes the next version of the tree each time it is
/// asked, signed or not: it commits straight into the tracking ref.
struct TestRemote<'a> {
    tree: &'a Path,
    sign: Option<&'a SecretKey>,
    version: Cell<i64>,
}

impl Fetch for TestRemote<'_> {
    fn fetch(
        &self,
        repo: &crate::store::Repo,
        remote: &str,
        r#ref: &str,
        _: &Progress,
    ) -> Result<Fetched, FetchError> {
        let v = self.version.get() + 1;
        self.version.set(v);
        let commit = commit_version(repo, self.tree, &config::tracking_ref(remote, r#ref), v);
        if let Some(k) = self.sign {
            repo.sign_commit(&commit, k)?;
        }
        Ok(Fetched {
            commit,
            method: "test".into(),
            objects: 1,
            bytes: 0,
            requests: 0,
            redirects: Vec::new(),
        })
    }
}

#[test]
#[cfg_attr(not(test_root), ignore = "needs root (a sysroot's bare repository)")]
fn an_unsigned_commit_of_a_remote_that_requires_signatures_is_not_deployed() {
    let Some(e) = setup() else { return };
    let s = &e.s;
    let c = commit_version(s.repo(), &e.tree, "remotes/origin/os/main", 1);
    for origin in [
        Origin::Ref("remotes/origin/os/main".into()),
        Origin::Remote {
            remote: "origin".into(),
            r#ref: "os/main".into(),
        },
    ] {
        let err = s
            .plan_deploy(&c, &opts(origin.clone()))
            .expect_err("refused");
        assert!(untrusted(&err, &c), "{origin}: {err}");
    }
    assert!(s.all_records().expect("records").is_empty());

    // Signed by the remote's key: planned and deployed.
    s.repo().sign_commit(&c, &e.key).expect("sign");
    let o = opts(Origin::Ref("remotes/origin/os/main".into()));
    let plan = s.plan_deploy(&c, &o).expect("plan");
    let done = s.deploy(plan, &o, &Progress::default()).expect("deploy");
    assert_eq!(done.record.commit, c.to_hex());
    assert_eq!(
        done.record.origin,
        Some(Origin::Ref("remotes/origin/os/main".into()))
    );

    // A plan is plain data: one made for the signed commit and pointed
    // at an unsigned one is refused when applied.
    let c2 = commit_version(s.repo(), &e.tree, "remotes/origin/os/main", 2);
    let mut plan = s.plan_deploy(&c, &o).expect("plan");
    plan.commit = c2;
    let err = s
        .deploy(plan, &o, &Progress::default())
        .expect_err("refused");
    assert!(untrusted(&err, &c2), "{err}");
    assert_eq!(s.all_records().expect("records").len(), 1);
}

#[test]
#[cfg_attr(not(test_root), ignore = "needs root (a sysroot's bare repository)")]
fn upgrade_refuses_an_unsigned_commit_and_takes_a_signed_one() {
    let Some(e) = setup() else { return };
    let s = &e.s;
    let signed = TestRemote {
        tree: &e.tree,
        sign: Some(&e.key),
        version: Cell::new(0),
    };
    let p = Progress::default();
    let r = s
        .resolve("origin:os/main", None, &signed, &p)
        .expect("resolve");
    assert_eq!(
        r.origin,
        Origin::Remote {
            remote: "origin".into(),
            r#ref: "os/main".into()
        }
    );
    let o = opts(r.origin.clone());
    let plan = s.plan_deploy(&r.commit, &o).expect("plan");
    s.deploy(plan, &o, &p).expect("deploy");
    let first = r.commit;

    // The remote publishes an unsigned version: the upgrade is refused,
    // the deployment stays.
    let unsigned = TestRemote {
        tree: &e.tree,
        sign: None,
        version: Cell::new(10),
    };
    let uo = UpgradeOptions {
        os: None,
        from: None,
        deploy: DeployOptions {
            now: 2,
            ..DeployOptions::default()
        },
    };
    let err = s.upgrade(&uo, &unsigned, &p).err().expect("refused");
    assert!(
        matches!(err, Error::Remotes(remotes::Error::Untrusted { .. })),
        "{err}"
    );
    let st = s.status().expect("status");
    assert_eq!(st.deployments.len(), 1);
    assert_eq!(st.deployments[0].commit, first.to_hex());

    // A signed one: planned, then deployed.
    signed.version.set(20);
    let up = s.upgrade(&uo, &signed, &p).expect("upgrade");
    let (plan, dopts) = up.plan.expect("a newer commit");
    assert_eq!(
        up.follows,
        st.deployments[0].os.clone() + "/" + &st.deployments[0].id
    );
    let done = s.deploy(plan, &dopts, &p).expect("deploy");
    drop(up.lock);
    assert_eq!(done.record.commit, up.resolved.commit.to_hex());
    let st = s.status().expect("status");
    assert_eq!(st.deployments[0].commit, up.resolved.commit.to_hex());
    assert_eq!(
        st.deployments[0].origin.as_ref().map(|o| o.to_string()),
        Some("origin:os/main".to_string())
    );
}

#[test]
#[cfg_attr(not(test_root), ignore = "needs root (a sysroot's bare repository)")]
fn a_record_written_before_origins_were_typed_reads_back() {
    let Some(e) = setup() else { return };
    let s = &e.s;
    let c = commit_version(s.repo(), &e.tree, "os/main", 1);
    let o = opts(Origin::Ref("os/main".into()));
    let plan = s.plan_deploy(&c, &o).expect("plan");
    let done = s.deploy(plan, &o, &Progress::default()).expect("deploy");
    // The record as the old code wrote it: the origin a plain string.
    let path = s
        .path()
        .join("slate/deploy/os")
        .join(format!("{}.toml", done.record.id));
    let text = std::fs::read_to_string(&path).expect("record");
    assert!(text.contains("origin = \"os/main\""), "{text}");
    let old = text.replace("origin = \"os/main\"", "origin = \"origin:os/main\"");
    std::fs::write(&path, old).expect("write");
    let r = s.records("os").expect("records");
    assert_eq!(
        r[0].origin,
        Some(Origin::Remote {
            remote: "origin".into(),
            r#ref: "os/main".into()
        })
    );
}
