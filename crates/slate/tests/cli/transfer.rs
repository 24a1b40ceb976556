//! Images leaving a repository: export, pull-local.

use slate_core::object::ObjectType;
use slate_core::store::Repo;

use crate::common::*;

#[test]
#[cfg_attr(not(test_have = "tar"), ignore = "GNU tar is not installed")]
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
