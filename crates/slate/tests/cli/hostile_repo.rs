//! A repository in a bad state, and commands used as an unlucky operator
//! uses them: nothing a ref protects is deleted, damage is reported and
//! never crashes a command, concurrent work is not taken for damage.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A repository with three commits on `main` (and the source tree).
fn three_commits(dir: &Path, mode: &str) -> (PathBuf, Vec<String>) {
    let repo = init(dir, mode);
    let src = dir.join("src");
    let mut ids = Vec::new();
    for i in 0..3 {
        std::fs::create_dir_all(src.join("etc")).expect("mkdir");
        std::fs::write(src.join("etc/version"), format!("{i}\n")).expect("write");
        std::fs::write(src.join(format!("file{i}")), vec![i as u8; 5000]).expect("write");
        let id = ok(
            &repo,
            &[
                "commit",
                "-b",
                "main",
                "--timestamp",
                &i.to_string(),
                src.to_str().expect("utf-8"),
            ],
        );
        ids.push(id.trim().to_owned());
    }
    (repo, ids)
}

fn object_file(repo: &Path, id: &str, kind: &str) -> PathBuf {
    repo.join("objects")
        .join(&id[..2])
        .join(format!("{}.{kind}", &id[2..]))
}

#[test]
fn prune_refuses_when_a_ref_names_no_commit() {
    let t = tempfile::tempdir().expect("tempdir");
    let (repo, ids) = three_commits(t.path(), "bare-user");
    // The head commit moved aside (as `fsck --delete-corrupt` does).
    let head = object_file(&repo, &ids[2], "commit");
    std::fs::rename(&head, t.path().join("aside")).expect("move aside");
    for args in [
        vec!["prune", "--depth", "0"],
        vec!["prune", "--refs-only"],
        vec!["prune", "--depth", "1", "--dry-run"],
    ] {
        let err = fails(&repo, &args);
        assert!(
            err.contains("ref main") && err.contains(&ids[2]) && err.contains("missing"),
            "{args:?}: {err}"
        );
    }
    // The parents the ref protected are all still here.
    for id in &ids[..2] {
        assert!(object_file(&repo, id, "commit").exists(), "{id} was pruned");
        ok(&repo, &["ls", "-R", id]);
    }
    // A ref that names a tree: fsck reports it, prune refuses.
    std::fs::rename(t.path().join("aside"), &head).expect("put back");
    let tree = ok(&repo, &["show", "--json", "main"]);
    let tree: serde_json::Value = serde_json::from_str(&tree).expect("json");
    let tree = tree["tree"].as_str().expect("tree").to_owned();
    std::fs::write(repo.join("refs/heads/evil"), format!("{tree}\n")).expect("write ref");
    let o = slate(&repo, &["fsck"]);
    assert!(!o.status.success(), "fsck passed a ref naming a tree");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&tree) && out.contains("ref evil"), "{out}");
    assert!(out.contains("it is a tree"), "{out}");
    let err = fails(&repo, &["prune", "--depth", "0"]);
    assert!(
        err.contains("ref evil") && err.contains("tree object"),
        "{err}"
    );
    assert!(object_file(&repo, &ids[0], "commit").exists());
}

#[test]
fn fsck_beside_prune_reports_no_damage() {
    let t = tempfile::tempdir().expect("tempdir");
    for round in 0..6 {
        let dir = t.path().join(format!("r{round}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let (repo, _) = three_commits(&dir, "bare-user");
        // Garbage for prune to delete while fsck reads: unreachable commits.
        let src = dir.join("src");
        for i in 0..4 {
            std::fs::write(src.join("garbage"), vec![i as u8; 300_000]).expect("write");
            ok(
                &repo,
                &["commit", "-b", "tmp", src.to_str().expect("utf-8")],
            );
        }
        ok(&repo, &["refs", "--delete", "tmp"]);
        let prune = Command::new(slate_bin())
            .env("SLATE_REPO", &repo)
            .args(["prune", "--depth", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prune");
        let o = slate(&repo, &["fsck"]);
        let mut prune = prune;
        assert!(prune.wait().expect("wait").success());
        assert!(
            o.status.success(),
            "round {round}: fsck beside prune reported damage:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        ok(&repo, &["fsck"]);
    }
}

#[test]
fn damaged_packs_are_reported_and_never_stop_a_command() {
    let t = tempfile::tempdir().expect("tempdir");
    let (repo, ids) = three_commits(t.path(), "archive");
    let packs = repo.join("objects/pack");
    let pack_names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&packs)
            .expect("ls")
            .filter_map(|e| {
                let n = e.expect("entry").file_name().into_string().expect("utf-8");
                n.strip_suffix(".idx").map(str::to_owned)
            })
            .collect();
        v.sort();
        v
    };
    let names = pack_names();
    assert_eq!(names.len(), 3, "{names:?}");
    ok(&repo, &["fsck"]);

    // A damaged index.
    let idx = packs.join(format!("{}.idx", names[0]));
    let bytes = std::fs::read(&idx).expect("read");
    std::fs::write(&idx, &bytes[..bytes.len() / 2]).expect("truncate");
    // An index whose pack is gone.
    std::fs::remove_file(packs.join(format!("{}.pack", names[1]))).expect("rm");
    // A pack with a damaged magic number.
    let pack = packs.join(format!("{}.pack", names[2]));
    let mut p = std::fs::read(&pack).expect("read");
    p[0] ^= 0xff;
    std::fs::write(&pack, &p).expect("write");

    let o = slate(&repo, &["fsck", "--json"]);
    assert!(!o.status.success(), "fsck passed damaged packs");
    assert_ne!(o.status.code(), Some(101));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("fsck still reports");
    let damaged: Vec<&str> = v["pack_problems"]
        .as_array()
        .expect("pack_problems")
        .iter()
        .map(|p| p["pack"].as_str().expect("pack"))
        .collect();
    assert_eq!(
        damaged,
        names.iter().map(String::as_str).collect::<Vec<_>>(),
        "{v}"
    );
    // Other commands start: the commits are loose; what the damaged packs
    // held reads as missing.
    let log = ok(&repo, &["log", "main"]);
    assert!(log.contains(&ids[0]), "{log}");
    let o = slate(
        &repo,
        &[
            "checkout",
            "main",
            t.path().join("co").to_str().expect("utf-8"),
        ],
    );
    assert!(!o.status.success());
    assert_ne!(o.status.code(), Some(101));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not found"),
        "{o:?}"
    );
}

#[test]
fn far_future_dates_and_full_disks_do_not_panic() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = init(t.path(), "bare-user");
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("file"), b"x").expect("write");
    // A timestamp in milliseconds: year 55840.
    ok(
        &repo,
        &[
            "commit",
            "-b",
            "main",
            "--timestamp",
            "1700000000000",
            src.to_str().expect("utf-8"),
        ],
    );
    let log = ok(&repo, &["log", "main"]);
    assert!(log.contains("Date:   +55840-"), "{log}");
    assert!(ok(&repo, &["show", "main"]).contains("+55840-"));
    if !Path::new("/dev/full").exists() {
        skip("no /dev/full: full standard output is untested");
        return;
    }
    for args in [
        vec!["log", "main"],
        vec!["show", "main"],
        vec!["refs"],
        vec!["rev-parse", "main"],
        vec!["ls", "-R", "main"],
        vec!["diff", "main", src.to_str().expect("utf-8")],
        vec!["log", "--json", "main"],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        let o = Command::new(slate_bin())
            .env("SLATE_REPO", &repo)
            .args(&args)
            .stdout(full)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() || args[0] == "diff",
            "{args:?} succeeded on a full disk"
        );
        assert_ne!(o.status.code(), Some(101), "{args:?} panicked: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_dry_run_prune_takes_no_lock() {
    let t = tempfile::tempdir().expect("tempdir");
    let (repo, _) = three_commits(t.path(), "bare-user");
    // Hold the writer lock, as a long commit would.
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(repo.join("lock"))
        .expect("open lock");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("flock");
    let mut child = Command::new(slate_bin())
        .env("SLATE_REPO", &repo)
        .args(["prune", "--dry-run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    let done = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        done.is_some_and(|s| s.success()),
        "prune --dry-run waited for the writer lock"
    );
}

#[test]
#[cfg_attr(not(test_root), ignore = "needs root: a bare repository")]
fn bare_repositories_keep_their_objects_private() {
    if !is_root() {
        skip("a bare repository needs root");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let repo = init(t.path(), "bare");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&repo.join("objects")), 0o700);
    assert_eq!(mode(&repo.join("tmp")), 0o700);
    // An older repository is tightened by its next write.
    std::fs::set_permissions(repo.join("objects"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("suid"), b"x").expect("write");
    std::fs::set_permissions(src.join("suid"), std::fs::Permissions::from_mode(0o4755))
        .expect("chmod");
    ok(
        &repo,
        &["commit", "-b", "main", src.to_str().expect("utf-8")],
    );
    assert_eq!(mode(&repo.join("objects")), 0o700);
}
