//! fsck and diff.

use slate_core::object::ObjectType;
use slate_core::store::{ObjectRead, Repo};

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
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
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
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn fsck_finds_damage_in_packs_and_missing_trees() {
    let t = tempfile::tempdir().expect("tempdir");
    let (repo, _, id) = setup(t.path(), "archive");
    assert!(slate(&repo, &["fsck"]).status.success());
    let sound = t.path().join("sound");
    assert!(std::process::Command::new("cp")
        .args([
            "-a",
            repo.to_str().expect("utf-8"),
            sound.to_str().expect("utf-8")
        ])
        .status()
        .expect("cp")
        .success());
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
    // --delete-corrupt: the pack's sound objects become loose, the pack
    // goes aside, and a pull from a sound copy repairs the repository.
    let o = slate(&repo, &["fsck", "--delete-corrupt"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("moved aside"));
    let o = slate(&repo, &["fsck"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("missing file object"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(
        ok(&repo, &["ls", "os/main", "/"]),
        "/etc\n",
        "the trees were kept"
    );
    ok(
        &repo,
        &["pull-local", sound.to_str().expect("utf-8"), "os/main"],
    );
    let o = slate(&repo, &["fsck"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        ok(&repo, &["cat", "os/main", "/etc/os-release"]),
        "NAME=Slate\n"
    );

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

#[test]
fn diff_between_commits_and_against_a_directory() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    sample_tree(&src);
    let repo = init(t.path(), "bare-user");
    let s = src.to_str().expect("utf-8");
    let c1 = ok(&repo, &["commit", "-b", "main", s]).trim().to_owned();
    // Changes of every kind.
    std::fs::write(src.join("etc/os-release"), b"NAME=Other\n").expect("write");
    std::fs::set_permissions(
        src.join("usr/share/dup1"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    std::fs::remove_file(src.join("usr/lib/empty")).expect("rm");
    std::fs::create_dir_all(src.join("opt/new")).expect("mkdir");
    std::fs::write(src.join("opt/new/file"), b"n").expect("write");
    let c2 = ok(&repo, &["commit", "-b", "main", s]).trim().to_owned();

    let out = ok(&repo, &["diff", &c1, &c2]);
    let want = [
        "M    /etc/os-release",
        "A    /opt/",
        "A    /opt/new/",
        "A    /opt/new/file",
        "D    /usr/lib/empty",
        "m    /usr/share/dup1",
    ];
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got, want, "{out}");
    assert_eq!(
        ok(&repo, &["diff", "--stat", "main^", "main"]).trim(),
        "3 added, 1 removed, 1 modified, 1 metadata only"
    );
    let j: serde_json::Value =
        serde_json::from_str(&ok(&repo, &["diff", "--json", "main^", "main", "/usr"]))
            .expect("json");
    assert_eq!(j.as_array().expect("array").len(), 2);
    assert_eq!(j[1]["change"], "metadata");
    assert_eq!(j[1]["path"], "/usr/share/dup1");
    // Against the directory itself: nothing; against the old commit: the same list.
    assert_eq!(ok(&repo, &["diff", "main", s]), "");
    assert_eq!(ok(&repo, &["diff", &c1, s]), out);
    assert_eq!(
        ok(&repo, &["refs"]),
        "main\n",
        "diffing a directory writes nothing"
    );

    // Identical subtrees are skipped without being read: damage one that
    // both commits share, and the diff still succeeds.
    let r = Repo::open(&repo).expect("open");
    let root = r
        .read_tree(
            &r.read_commit(&c2.parse().expect("id"))
                .expect("commit")
                .tree,
        )
        .expect("tree");
    let var = root.get(b"var").expect("var").id;
    std::fs::write(r.object_path(ObjectType::Tree, &var), b"garbage").expect("write");
    assert_eq!(ok(&repo, &["diff", &c1, &c2]), out);
    assert!(fails(&repo, &["diff", &c1, "nosuch"]).contains("unknown revision"));
}

/// The "N new file objects" figure of a commit's summary line.
fn new_objects(stderr: &str) -> usize {
    let line = stderr
        .lines()
        .find(|l| l.contains(" new file objects;"))
        .unwrap_or_else(|| panic!("no summary line in {stderr}"));
    let before = line.split(" new file objects;").next().expect("split");
    before
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"))
}

#[test]
fn commits_into_a_full_repository_write_only_what_is_new() {
    // Enough files that every fan-out directory is asked about more often
    // than the threshold after which a commit lists it instead of stat'ing.
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    for i in 0..3000 {
        let p = src.join(format!("d{}/f{i}", i % 7));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, format!("content {i}\n")).expect("write");
    }
    let repo = init(t.path(), "bare-user");
    let commit = |ts: &str| {
        let o = slate(
            &repo,
            &[
                "commit",
                "-b",
                "main",
                "--timestamp",
                ts,
                src.to_str().expect("utf-8"),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        new_objects(&String::from_utf8_lossy(&o.stderr))
    };
    assert_eq!(commit("1"), 3000);
    assert_eq!(commit("2"), 0, "unchanged tree");
    for i in [5, 700, 1400, 2999] {
        std::fs::write(
            src.join(format!("d{}/f{i}", i % 7)),
            format!("changed {i}\n"),
        )
        .expect("w");
    }
    // Same content as an existing file: present, not new.
    std::fs::write(src.join("d0/copy"), "content 17\n").expect("write");
    assert_eq!(commit("3"), 4, "four changed files");
    ok(&repo, &["fsck"]);
    let dest = t.path().join("co");
    ok(&repo, &["checkout", "main", dest.to_str().expect("utf-8")]);
    assert_eq!(
        std::fs::read_to_string(dest.join("d0/f700")).expect("read"),
        "changed 700\n"
    );
}
