//! prune.

use crate::common::*;

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
        if mode == "archive" {
            // A pack without its index (an interrupted writer's) goes too.
            let packs = repo.join("objects/pack");
            let any = std::fs::read_dir(&packs)
                .expect("packs")
                .map(|e| e.expect("entry").path())
                .find(|p| p.extension().is_some_and(|x| x == "pack"))
                .expect("a pack");
            let orphan = packs.join(format!("{}.pack", "0".repeat(64)));
            std::fs::copy(&any, &orphan).expect("copy");
            let dry = ok(&repo, &["prune", "--dry-run"]);
            assert!(dry.contains(&format!("pack {}", "0".repeat(64))), "{dry}");
            ok(&repo, &["prune"]);
            assert!(!orphan.exists());
            assert!(slate(&repo, &["fsck"]).status.success());
        }
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

/// With --depth, a commit beyond one ref's depth that another ref names
/// is that ref's head, and stays, whatever order the refs are read in.
#[test]
fn prune_depth_keeps_a_head_that_is_another_refs_ancestor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = init(dir.path(), "bare-user");
    let tree = dir.path().join("t");
    std::fs::create_dir_all(&tree).expect("mkdir");
    let mut ids = Vec::new();
    for v in 1..=3 {
        std::fs::write(tree.join("f"), format!("v{v}")).expect("write");
        ok(
            &repo,
            &[
                "commit",
                "-b",
                "main",
                "-s",
                &format!("v{v}"),
                tree.to_str().expect("utf-8"),
            ],
        );
        ids.push(ok(&repo, &["rev-parse", "main"]).trim().to_string());
    }
    // "a-old" sorts before "main", "z-old" after it: both orders are tried.
    ok(&repo, &["refs", "--create", "a-old", &ids[0]]);
    ok(&repo, &["refs", "--create", "z-old", &ids[1]]);
    ok(&repo, &["prune", "--depth", "0"]);
    for id in &ids {
        ok(&repo, &["show", id]);
    }
    let fsck = fails_or_ok_fsck(&repo);
    assert!(fsck, "fsck after prune");
}

fn fails_or_ok_fsck(repo: &std::path::Path) -> bool {
    crate::common::slate(repo, &["fsck"]).status.success()
}
