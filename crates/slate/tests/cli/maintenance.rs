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
fn export_is_reproducible_and_extracts_to_the_checkout() {
    if !have("tar") {
        return skip("GNU tar missing: export not checked against it");
    }
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    sample_tree(&src);
    // A name longer than ustar's 100 bytes, and a long symlink target.
    let long = "d".repeat(60);
    std::fs::create_dir_all(src.join(&long).join(&long)).expect("mkdir");
    std::fs::write(
        src.join(&long).join(&long).join("file-with-a-long-path"),
        b"deep",
    )
    .expect("write");
    std::os::unix::fs::symlink("t".repeat(150), src.join("long-link")).expect("symlink");
    let p = |n: &str| t.path().join(n).to_str().expect("utf-8").to_owned();
    let mut tars = Vec::new();
    for mode in ["bare-user", "archive"] {
        let repo = init(t.path(), mode);
        let c = ok(
            &repo,
            &[
                "commit",
                "-b",
                "main",
                "--timestamp",
                "1700000000",
                "-s",
                "x",
                src.to_str().expect("utf-8"),
            ],
        )
        .trim()
        .to_owned();
        let out = p(&format!("{mode}.tar"));
        ok(&repo, &["export", "main", "-o", &out]);
        let again = p(&format!("{mode}-again.tar"));
        ok(&repo, &["export", &c, "-o", &again]);
        let (a, b) = (
            std::fs::read(&out).expect("read"),
            std::fs::read(&again).expect("read"),
        );
        assert!(a == b, "{mode}: two exports differ");
        tars.push(a);
        // GNU tar extracts it to the same tree as a checkout.
        let co = t.path().join(format!("co-{mode}"));
        ok(&repo, &["checkout", "main", co.to_str().expect("utf-8")]);
        let x = t.path().join(format!("x-{mode}"));
        std::fs::create_dir_all(&x).expect("mkdir");
        let st = std::process::Command::new("tar")
            .args([
                "--xattrs",
                "--xattrs-include=*",
                "--numeric-owner",
                "-xpf",
                &out,
                "-C",
                x.to_str().expect("utf-8"),
            ])
            .status()
            .expect("tar");
        assert!(st.success());
        assert_same_tree(&co, &x, is_root());
        // Every mtime is the commit's timestamp.
        assert!(snapshot(&x, false)
            .mtimes
            .values()
            .all(|&m| m == 1_700_000_000));
        // Committing the archive gives back the same commit.
        let back = ok(
            &repo,
            &[
                "commit",
                "-b",
                "back",
                "--timestamp",
                "1700000000",
                "-s",
                "x",
                "--parent",
                "none",
                &out,
            ],
        )
        .trim()
        .to_owned();
        let tree_of = |rev: &str| -> String {
            let v: serde_json::Value =
                serde_json::from_str(&ok(&repo, &["show", "--json", rev])).expect("json");
            v["tree"].as_str().expect("tree").to_owned()
        };
        assert_eq!(
            tree_of(&back),
            tree_of(&c),
            "{mode}: export then commit changed the tree"
        );
        if have("bsdtar") {
            let o = std::process::Command::new("bsdtar")
                .args(["-tvf", &out])
                .output()
                .expect("bsdtar");
            assert!(
                o.status.success(),
                "bsdtar: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(String::from_utf8_lossy(&o.stdout).contains("file-with-a-long-path"));
        } else {
            skip("bsdtar missing: not checked that libarchive reads the export");
        }
        // zstd format and a subpath.
        let z = p(&format!("{mode}.tar.zst"));
        ok(
            &repo,
            &[
                "export",
                "--format",
                "tar.zst",
                "--subpath",
                "/etc",
                "main",
                "-o",
                &z,
            ],
        );
        let o = std::process::Command::new("tar")
            .args(["--zstd", "-tf", &z])
            .output()
            .expect("tar");
        let list = String::from_utf8_lossy(&o.stdout);
        assert!(
            list.lines().any(|l| l == "os-release") && !list.contains("usr/"),
            "{list}"
        );
    }
    assert!(
        tars[0] == tars[1],
        "the same commit exports to the same bytes from any repository mode"
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

#[test]
fn pull_local_between_modes_checks_every_object() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    sample_tree(&src);
    let a = init(t.path(), "bare-user");
    let s = src.to_str().expect("utf-8");
    ok(&a, &["commit", "-b", "os/main", "--timestamp", "1", s]);
    std::fs::write(src.join("etc/motd"), b"v2\n").expect("write");
    let head = ok(&a, &["commit", "-b", "os/main", "--timestamp", "2", s])
        .trim()
        .to_owned();
    let b = init(t.path(), "archive");
    let c = init(t.path(), if is_root() { "bare" } else { "bare-user" });
    let dry = ok(
        &b,
        &[
            "pull-local",
            "--dry-run",
            a.to_str().expect("utf-8"),
            "os/main",
        ],
    );
    assert!(
        dry.contains("would copy 2 commits")
            && dry.contains(&format!("would set os/main to {head}")),
        "{dry}"
    );
    assert_eq!(ok(&b, &["refs"]), "", "--dry-run copies nothing");
    ok(&b, &["pull-local", a.to_str().expect("utf-8"), "os/main"]);
    ok(&c, &["pull-local", b.to_str().expect("utf-8"), "os/main"]);
    for r in [&b, &c] {
        assert_eq!(ok(r, &["rev-parse", "os/main"]).trim(), head);
        assert_eq!(
            ok(r, &["rev-parse", "os/main^"]).trim(),
            ok(&a, &["rev-parse", "os/main^"]).trim()
        );
        assert!(slate(r, &["fsck"]).status.success());
    }
    let co = t.path().join("co");
    ok(&c, &["checkout", "os/main", co.to_str().expect("utf-8")]);
    assert_same_tree(&src, &co, is_root());
    // Nothing left to copy the second time.
    let again = String::from_utf8_lossy(
        &slate(&c, &["pull-local", b.to_str().expect("utf-8"), "os/main"]).stderr,
    )
    .into_owned();
    assert!(
        again.contains("copied 0 commits, 0 trees, 0 files"),
        "{again}"
    );

    // A damaged source object stops the pull, names the object, and the
    // destination's ref does not move.
    std::fs::write(src.join("etc/motd"), b"v3\n").expect("write");
    let v3 = ok(&a, &["commit", "-b", "os/main", s]).trim().to_owned();
    let ls: serde_json::Value =
        serde_json::from_str(&ok(&a, &["ls", "--json", &v3, "/etc/motd"])).expect("json");
    let id = ls[0]["id"].as_str().expect("id").to_owned();
    let r = Repo::open(&a).expect("open");
    std::fs::write(
        r.object_path(ObjectType::File, &id.parse().expect("id")),
        b"v4\n",
    )
    .expect("write");
    let err = fails(&b, &["pull-local", a.to_str().expect("utf-8"), "os/main"]);
    assert!(err.contains(&id), "{err}");
    assert_eq!(ok(&b, &["rev-parse", "os/main"]).trim(), head);
    assert!(slate(&b, &["fsck"]).status.success());
}

#[test]
fn prune_plans_then_deletes_only_what_nothing_reaches() {
    let t = tempfile::tempdir().expect("tempdir");
    for mode in ["bare-user", "archive"] {
        let src = t.path().join(format!("src-{mode}"));
        let repo = init(t.path(), mode);
        let s = src.to_str().expect("utf-8");
        let mut ids = Vec::new();
        for v in 0..4 {
            std::fs::create_dir_all(src.join("etc")).expect("mkdir");
            std::fs::write(
                src.join(format!("etc/v{v}")),
                format!("version {v}\n").repeat(100),
            )
            .expect("write");
            ids.push(
                ok(
                    &repo,
                    &[
                        "commit",
                        "-b",
                        "main",
                        "--timestamp",
                        &(v * 1000).to_string(),
                        s,
                    ],
                )
                .trim()
                .to_owned(),
            );
        }
        // Another branch whose only unique content goes away with it.
        std::fs::write(src.join("etc/side"), b"side branch\n").expect("write");
        ok(&repo, &["commit", "-b", "side", "--parent", "none", s]);
        std::fs::remove_file(src.join("etc/side")).expect("rm");

        // Without flags every commit is a root: nothing to delete.
        let out = slate(&repo, &["prune", "--dry-run"]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("would delete 0 objects"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // --keep-younger-than keeps young commits beyond the depth (these
        // were made at 1970 + seconds: a cutoff before 1970 keeps them all).
        let dry = ok(
            &repo,
            &[
                "prune",
                "--depth",
                "0",
                "--keep-younger-than",
                "100000days",
                "--dry-run",
            ],
        );
        assert!(!dry.contains("commit "), "{mode}: {dry}");
        // --depth 1 keeps main and main^; a dry run deletes nothing.
        let dry = ok(&repo, &["prune", "--depth", "1", "--dry-run"]);
        assert!(
            dry.contains(&format!("commit {}", ids[0]))
                && dry.contains(&format!("commit {}", ids[1])),
            "{mode}: {dry}"
        );
        assert!(!dry.contains(&ids[2]) && !dry.contains(&ids[3]));
        assert_eq!(
            ok(&repo, &["rev-parse", "main~3"]).trim(),
            ids[0],
            "dry run kept everything"
        );
        ok(&repo, &["prune", "--depth", "1"]);
        assert_eq!(ok(&repo, &["rev-parse", "main^"]).trim(), ids[2]);
        assert!(fails(&repo, &["rev-parse", "main~2"]).contains(&ids[1]));
        let fsck = slate(&repo, &["fsck"]);
        assert!(
            fsck.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&fsck.stdout)
        );
        assert!(String::from_utf8_lossy(&fsck.stdout).contains("history of main ends"));
        // Deleting a ref, then pruning by refs, frees its commit.
        ok(&repo, &["refs", "--delete", "side"]);
        let j: serde_json::Value =
            serde_json::from_str(&ok(&repo, &["prune", "--refs-only", "--json"])).expect("json");
        assert!(
            j["plan"]["delete"]
                .as_array()
                .expect("array")
                .iter()
                .any(|d| d[0] == "commit"),
            "{mode}: {j}"
        );
        assert!(slate(&repo, &["fsck"]).status.success());
        let co = t.path().join(format!("co-{mode}"));
        ok(&repo, &["checkout", "main", co.to_str().expect("utf-8")]);
        assert_eq!(
            std::fs::read_to_string(co.join("etc/v3")).expect("read"),
            "version 3\n".repeat(100)
        );
        assert!(fails(&repo, &["prune", "--keep-younger-than", "soon"]).contains("duration"));
    }
}

#[test]
fn prune_killed_at_random_moments_leaves_every_ref_complete() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = init(t.path(), "bare-user");
    let src = t.path().join("src");
    let mut killed = 0;
    for round in 0..8u64 {
        // Garbage to prune: commits that only the deleted branch reached.
        for i in 0..300 {
            std::fs::create_dir_all(src.join(format!("d{}", i % 10))).expect("mkdir");
            std::fs::write(
                src.join(format!("d{}/f{i}", i % 10)),
                format!("{round}-{i}"),
            )
            .expect("write");
        }
        ok(
            &repo,
            &["commit", "-b", "tmp", src.to_str().expect("utf-8")],
        );
        ok(
            &repo,
            &[
                "commit",
                "-b",
                "main",
                "--timestamp",
                &round.to_string(),
                src.to_str().expect("utf-8"),
            ],
        );
        ok(&repo, &["refs", "--delete", "tmp"]);
        let mut child = std::process::Command::new(slate_bin())
            .env("SLATE_REPO", &repo)
            .args(["prune", "--depth", "0"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_micros((round * 19_997) % 120_000));
        let _ = child.kill();
        if !child.wait().expect("wait").success() {
            killed += 1;
        }
        let o = slate(&repo, &["fsck"]);
        assert!(
            o.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    eprintln!("{killed} of 8 prunes were killed before finishing");
    assert!(
        killed > 0,
        "no prune was interrupted: the test did not test anything"
    );
}

#[test]
fn prune_beside_a_commit_never_takes_what_the_commit_needs() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = init(t.path(), "bare-user");
    for round in 0..6 {
        let src = t.path().join(format!("src{round}"));
        for i in 0..200 {
            std::fs::create_dir_all(src.join(format!("d{}", i % 8))).expect("mkdir");
            // Half the files repeat across rounds, so the commit reuses
            // objects that only a deleted branch held.
            let body = if i % 2 == 0 {
                format!("shared {i}")
            } else {
                format!("{round} {i}")
            };
            std::fs::write(src.join(format!("d{}/f{i}", i % 8)), body).expect("write");
        }
        ok(
            &repo,
            &["commit", "-b", "old", src.to_str().expect("utf-8")],
        );
        ok(&repo, &["refs", "--delete", "old"]);
        let s = src.to_str().expect("utf-8").to_owned();
        let (c, p) = std::thread::scope(|sc| {
            let c = sc.spawn(|| slate(&repo, &["commit", "-b", "main", &s]));
            let p = sc.spawn(|| slate(&repo, &["prune", "--refs-only"]));
            (c.join().expect("join"), p.join().expect("join"))
        });
        assert!(
            c.status.success() && p.status.success(),
            "{} {}",
            String::from_utf8_lossy(&c.stderr),
            String::from_utf8_lossy(&p.stderr)
        );
        let o = slate(&repo, &["fsck"]);
        assert!(
            o.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let co = t.path().join(format!("co{round}"));
        ok(&repo, &["checkout", "main", co.to_str().expect("utf-8")]);
        assert_same_tree(&src, &co, is_root());
    }
}
