//! A pull through the library from the in-process server: an archive
//! repository published (a commit, its signature, a signed summary),
//! served by `serve::start` on a free port, pulled by `pull::pull`.

use std::collections::BTreeMap;
use std::path::Path;

use slate_core::commit::{self, CommitOptions, ParentSpec, Source};
use slate_core::hash::ObjectId;
use slate_core::object::EntryKind;
use slate_core::progress::Progress;
use slate_core::sign::SecretKey;
use slate_core::store::{ObjectRead, Repo, RepoMode};
use slate_remote::config::{self, RemoteConfig};
use slate_remote::pull::{self, PullOptions};
use slate_remote::serve::{self, Serving};
use slate_remote::Error;

const HELLO: &[u8] = b"hello from the server\n";

/// An archive repository in `dir` with `os/main` (a small tree), the
/// commit signed by `key` and a summary signed by it.
fn publish(dir: &Path, key: &SecretKey) -> ObjectId {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).expect("mkdir");
    std::fs::write(tree.join("etc/hello"), HELLO).expect("write");
    std::fs::write(tree.join("os-release"), b"NAME=Slate\n").expect("write");
    let repo = Repo::init(&dir.join("pub"), RepoMode::Archive).expect("init archive");
    let opts = CommitOptions {
        branch: "os/main".into(),
        subject: "version 1".into(),
        body: String::new(),
        timestamp: 1_700_000_000,
        metadata: BTreeMap::new(),
        parent: ParentSpec::Auto,
        skip_if_unchanged: false,
    };
    let id = commit::commit(&repo, Source::Dir(&tree), &opts, &Progress::default())
        .expect("commit")
        .id;
    repo.sign_commit(&id, key).expect("sign commit");
    slate_core::summary::update(&repo, Some(key), 1_700_000_100, None).expect("summary");
    id
}

/// A fresh repository with the remote `origin` at `url`, trusting `key`.
fn client_repo(dir: &Path, url: &str, key: &SecretKey) -> Repo {
    let repo = Repo::init(dir, RepoMode::Archive).expect("init");
    let cfg = RemoteConfig {
        urls: vec![url.to_string()],
        keys: vec![key.public().to_pem()],
        no_sign_verify: false,
    };
    config::add(&repo, "origin", &cfg).expect("remote add");
    repo
}

fn quick() -> PullOptions {
    PullOptions {
        retries: 1,
        ..PullOptions::default()
    }
}

#[test]
fn a_signed_repository_is_pulled_from_the_server() {
    let t = tempfile::tempdir().expect("tempdir");
    let key = SecretKey::generate().expect("key");
    let id = publish(t.path(), &key);
    let server =
        serve::start(&t.path().join("pub"), "127.0.0.1:0", 2, Serving::Repository).expect("serve");
    let url = format!("http://{}/", server.addr);
    let dest = client_repo(&t.path().join("dest"), &url, &key);

    let pulled =
        pull::pull(&dest, "origin", "os/main", &quick(), &Progress::default()).expect("pull");
    server.stop();

    assert_eq!(pulled.commit, id.to_hex());
    assert_eq!(pulled.local_ref, "remotes/origin/os/main");
    assert_eq!(pulled.signed_by, Some(key.public().key_id()));
    assert_eq!(
        dest.read_ref("remotes/origin/os/main").expect("ref"),
        Some(id)
    );
    let commit = dest.read_commit(&id).expect("commit pulled");
    assert_eq!(commit.subject, "version 1");
    let root = dest.read_tree(&commit.tree).expect("root tree");
    let etc = root.get(b"etc").expect("etc in the tree");
    assert_eq!(etc.kind, EntryKind::Dir);
    let hello = dest
        .read_tree(&etc.id)
        .expect("etc tree")
        .get(b"hello")
        .expect("etc/hello")
        .id;
    let (_, content) = dest.read_file(&hello).expect("etc/hello pulled");
    assert_eq!(content, HELLO);
}

#[test]
fn a_summary_signed_by_another_key_is_refused() {
    let t = tempfile::tempdir().expect("tempdir");
    let publisher = SecretKey::generate().expect("key");
    let trusted = SecretKey::generate().expect("key");
    publish(t.path(), &publisher);
    let server =
        serve::start(&t.path().join("pub"), "127.0.0.1:0", 2, Serving::Repository).expect("serve");
    let url = format!("http://{}/", server.addr);
    let dest = client_repo(&t.path().join("dest"), &url, &trusted);

    let err = pull::pull(&dest, "origin", "os/main", &quick(), &Progress::default())
        .expect_err("a pull signed by an untrusted key");
    server.stop();

    assert!(matches!(err, Error::Refused(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("does not check with any trusted key"),
        "{err}"
    );
    assert_eq!(dest.read_ref("remotes/origin/os/main").expect("ref"), None);
    assert!(
        dest.list_objects().expect("list").is_empty(),
        "objects stored from an untrusted remote"
    );
}
