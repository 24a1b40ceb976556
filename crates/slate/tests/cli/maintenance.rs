//! fsck (and the other commands that keep a repository healthy).

use slate_core::object::ObjectType;
use slate_core::store::Repo;

use crate::common::*;

/// A repository of `mode` with one commit of a small tree; returns the
/// repository, the commit id and the id of the object at `etc/os-release`.
fn setup(dir: &std::path::Path, mode: &str) -> (std::path::PathBuf, String, String) {
    let src = dir.join(format!("src-{mode}"));
    std::fs::create_dir_all(src.join("etc")).expect("mkdir");
    std::fs::write(src.join("etc/os-release"), b"NAME=Slate\n").expect("write");
    std::fs::write(src.join("etc/hostname"), b"slate\n").expect("write");
    let repo = init(dir, mode);
    let c = ok(
        &repo,
        &["commit", "-b", "os/main", src.to_str().expect("utf-8")],
    )
    .trim()
    .to_owned();
    let ls: serde_json::Value =
        serde_json::from_str(&ok(&repo, &["ls", "--json", "os/main", "/etc/os-release"]))
            .expect("json");
    let id = ls[0]["id"].as_str().expect("id").to_owned();
    (repo, c, id)
}

#[test]
fn fsck_names_corrupt_and_missing_objects_with_their_users() {
    let t = tempfile::tempdir().expect("tempdir");
    let (repo, commit, id) = setup(t.path(), "bare-user");
    assert!(
        slate(&repo, &["fsck"]).status.success(),
        "a sound repository passes"
    );
    let r = Repo::open(&repo).expect("open");
    let path = r.object_path(ObjectType::File, &id.parse().expect("id"));

    // One flipped byte.
    let mut b = std::fs::read(&path).expect("read");
    b[0] ^= 1;
    std::fs::write(&path, &b).expect("write");
    let o = slate(&repo, &["fsck"]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("corrupt file object {id}")), "{out}");
    assert!(
        out.contains(&format!("used by {}:/etc/os-release", &commit[..12])),
        "{out}"
    );
    let j: serde_json::Value = serde_json::from_str(&ok_or_fail_json(&repo)).expect("json");
    assert_eq!(j["problems"][0]["state"], "corrupt");

    // --delete-corrupt moves it aside; then it is missing.
    let o = slate(&repo, &["fsck", "--delete-corrupt"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("moved aside: {id}")));
    assert!(!path.exists() && repo.join("corrupt").join(format!("{id}.file")).exists());
    let o = slate(&repo, &["fsck"]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("missing file object {id}")) && out.contains("/etc/os-release"),
        "{out}"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("1 corrupt or missing"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn ok_or_fail_json(repo: &std::path::Path) -> String {
    String::from_utf8(slate(repo, &["fsck", "--json"]).stdout).expect("utf-8")
}

#[test]
fn fsck_finds_damage_in_packs_and_missing_trees() {
    let t = tempfile::tempdir().expect("tempdir");
    let (repo, _, id) = setup(t.path(), "archive");
    assert!(slate(&repo, &["fsck"]).status.success());
    let pack = std::fs::read_dir(repo.join("objects/pack"))
        .expect("packs")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "pack"))
        .expect("pack");
    let mut b = std::fs::read(&pack).expect("read");
    // The pack's first frame holds the files; damage a byte of it.
    b[20] ^= 0x40;
    std::fs::write(&pack, &b).expect("write");
    let o = slate(&repo, &["fsck"]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("corrupt file object"), "{out}");
    assert!(out.contains(&id) || out.contains("/etc/hostname"), "{out}");

    // A missing tree in a bare-user repository.
    let (repo, commit, _) = setup(&t.path().join("b"), "bare-user");
    let r = Repo::open(&repo).expect("open");
    let c = r.read_commit(&commit.parse().expect("id")).expect("commit");
    let root = r.read_tree(&c.tree).expect("tree");
    let etc = root.get(b"etc").expect("etc").id;
    std::fs::remove_file(r.object_path(ObjectType::Tree, &etc)).expect("rm");
    let o = slate(&repo, &["fsck"]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("missing tree object {etc}")) && out.contains(":/etc"),
        "{out}"
    );
}
