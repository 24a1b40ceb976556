//! Bad input, corruption, concurrent writers and SIGKILL at random moments.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slate_core::hash::ObjectId;
use slate_core::object::ObjectType;
use slate_core::store::{ObjectRead, ObjectWrite, Repo, Transaction};

use crate::common::*;

/// A tar archive built member by member with fixed owners and modes.
fn tar_of(members: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, link) in members {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        // Write the name bytes directly so that `..` is not refused here.
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        if !link.is_empty() {
            h.set_link_name(link).expect("link name");
        }
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("finish")
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write");
    p.to_str().expect("utf-8").to_owned()
}

#[test]
fn golden_commit_id_of_a_known_tree() {
    use tar::EntryType as T;
    let t = tempfile::tempdir().expect("tempdir");
    let repo = init(t.path(), "bare-user");
    let archive = tar_of(&[
        ("./", T::Directory, b"", ""),
        ("etc/", T::Directory, b"", ""),
        ("etc/hostname", T::Regular, b"slate\n", ""),
        ("etc/localtime", T::Symlink, b"", "/usr/share/zoneinfo/UTC"),
        ("usr/bin/true", T::Regular, b"\x7fELF", ""),
        ("usr/bin/also-true", T::Link, b"", "usr/bin/true"),
    ]);
    let f = write(t.path(), "golden.tar", &archive);
    let id = ok(
        &repo,
        &[
            "commit",
            "-b",
            "g",
            "--timestamp",
            "1700000000",
            "-s",
            "golden",
            "--parent",
            "none",
            &f,
        ],
    );
    // Pinned (and computed independently by docs/format/golden.py): if this
    // changes, the object or commit encoding changed.
    assert_eq!(
        id.trim(),
        "7c847afd0fc0224c57589b95867f59afe57597e07fe70eb3a7b81714aede3aee"
    );
}

#[test]
fn bad_tar_members_are_refused_and_change_nothing() {
    use tar::EntryType as T;
    let t = tempfile::tempdir().expect("tempdir");
    let repo = init(t.path(), "bare-user");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "climb",
            tar_of(&[("a/../../etc/passwd", T::Regular, b"x", "")]),
            "climbs out",
        ),
        (
            "dotdot",
            tar_of(&[("../x", T::Regular, b"x", "")]),
            "climbs out",
        ),
        (
            "hardlink-out",
            tar_of(&[("a", T::Link, b"", "../../etc/shadow")]),
            "climbs out",
        ),
        (
            "hardlink-missing",
            tar_of(&[("a", T::Link, b"", "not/listed")]),
            "not a file listed earlier",
        ),
    ];
    for (name, data, want) in cases {
        let f = write(t.path(), &format!("{name}.tar"), &data);
        let err = fails(&repo, &["commit", "-b", "main", &f]);
        assert!(
            err.contains(want) && err.contains(&format!("{name}.tar")),
            "{name}: {err}"
        );
    }
    assert_eq!(
        ok(&repo, &["refs"]),
        "",
        "a refused archive must not create a branch"
    );
    // A leading '/' is stripped, and symlink targets are kept as they are.
    let f = write(
        t.path(),
        "abs.tar",
        &tar_of(&[
            ("/etc/x", T::Regular, b"1", ""),
            ("l", T::Symlink, b"", "../../../outside"),
        ]),
    );
    ok(&repo, &["commit", "-b", "main", &f]);
    assert_eq!(ok(&repo, &["cat", "main", "etc/x"]), "1");
    assert!(ok(&repo, &["ls", "-l", "main", "/l"]).contains("-> ../../../outside"));
}

#[test]
fn bad_arguments_get_clear_errors() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = init(t.path(), "bare-user");
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("f"), b"x").expect("write");
    let s = src.to_str().expect("utf-8");
    let missing = t.path().join("missing");
    let err = fails(
        &repo,
        &["commit", "-b", "main", missing.to_str().expect("utf-8")],
    );
    assert!(
        err.contains("missing") && err.contains("No such file"),
        "{err}"
    );
    for bad in ["a..b", "has space", "/lead", "ctl\u{7}x", "trail/"] {
        let err = fails(&repo, &["commit", "-b", bad, s]);
        assert!(err.contains("invalid ref name"), "{bad:?}: {err}");
    }
    assert_eq!(ok(&repo, &["refs"]), "");
    if !is_root() {
        let unreadable = src.join("secret");
        std::fs::write(&unreadable, b"x").expect("write");
        std::fs::set_permissions(
            &unreadable,
            std::os::unix::fs::PermissionsExt::from_mode(0o000),
        )
        .expect("chmod");
        let err = fails(&repo, &["commit", "-b", "main", s]);
        assert!(
            err.contains("secret") && err.contains("ermission denied"),
            "{err}"
        );
        std::fs::remove_file(&unreadable).expect("rm");
    } else {
        skip("unreadable-source case needs a non-root user");
    }
    let err = fails(&t.path().join("norepo"), &["log", "main"]);
    assert!(err.contains("norepo") && err.contains("hint:"), "{err}");
    let err = fails(&repo, &["init", "--repo", repo.to_str().expect("utf-8")]);
    assert!(err.contains("not empty"), "{err}");

    // Ambiguous and unknown prefixes: write commit objects until two ids
    // share their first 4 hex digits (birthday bound: a few hundred).
    let head = ok(&repo, &["commit", "-b", "main", s]).trim().to_owned();
    let r = Repo::open(&repo).expect("open");
    let mut c = r
        .read_commit(&ObjectId::from_hex(&head).expect("id"))
        .expect("commit");
    let mut seen = std::collections::HashMap::new();
    let tx = Transaction::begin(&r).expect("begin");
    let prefix = (0..100_000i64)
        .find_map(|ts| {
            c.timestamp = ts;
            let id = tx.write_commit(&c).expect("write").to_hex();
            seen.insert(id[..4].to_owned(), id.clone())
                .filter(|old| *old != id)
                .map(|_| id[..4].to_owned())
        })
        .expect("a shared prefix");
    tx.commit().expect("commit");
    let err = fails(&repo, &["rev-parse", &prefix]);
    assert!(
        err.contains("ambiguous id prefix") && err.contains(&prefix) && err.contains("hint:"),
        "{err}"
    );
    let err = fails(&repo, &["rev-parse", "ffffffffff"]);
    assert!(err.contains("unknown revision"), "{err}");
    let unique = &head[..12];
    assert_eq!(ok(&repo, &["rev-parse", unique]).trim(), head);
}

#[test]
fn corrupt_objects_are_detected_when_read() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("f"), b"precious content").expect("write");
    for mode in ["bare-user", "archive"] {
        let repo = init(t.path(), mode);
        ok(
            &repo,
            &["commit", "-b", "main", src.to_str().expect("utf-8")],
        );
        let r = Repo::open(&repo).expect("open");
        let (kind, id) = r
            .list_objects()
            .expect("list")
            .into_iter()
            .find(|(k, _)| *k == ObjectType::File)
            .expect("a file object");
        let loose = r.object_path(kind, &id);
        // Archive repositories pack small files: the pack's first frame
        // holds this one, so damage a byte inside it.
        let (path, at) = if loose.exists() {
            let n = std::fs::metadata(&loose).expect("stat").len() as usize;
            (loose, n - 1)
        } else {
            let pack = std::fs::read_dir(repo.join("objects/pack"))
                .expect("packs")
                .map(|e| e.expect("entry").path())
                .find(|p| p.extension().is_some_and(|x| x == "pack"))
                .expect("a pack");
            (pack, 20)
        };
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[at] ^= 0x20;
        std::fs::write(&path, &bytes).expect("write");
        let err = fails(&repo, &["cat", "main", "f"]);
        assert!(
            err.contains(&id.to_hex())
                && (err.contains("corrupt") || err.contains("does not decode")),
            "{mode}: {err}"
        );
        let dest = t.path().join(format!("co-{mode}"));
        if mode == "archive" {
            let err = fails(&repo, &["checkout", "main", dest.to_str().expect("utf-8")]);
            assert!(err.contains(&id.to_hex()), "{err}");
            assert!(!dest.exists(), "a failed checkout leaves nothing at DEST");
        }
        if mode == "archive" {
            continue; // trees are packed there; the loose case is enough
        }
        // A corrupt tree is caught too.
        let (tk, tid) = r
            .list_objects()
            .expect("list")
            .into_iter()
            .find(|(k, _)| *k == ObjectType::Tree)
            .expect("tree");
        let tp = r.object_path(tk, &tid);
        let mut tb = std::fs::read(&tp).expect("read");
        tb[10] ^= 1;
        std::fs::write(&tp, &tb).expect("write");
        let err = fails(&repo, &["ls", "main"]);
        assert!(err.contains(&tid.to_hex()), "{err}");
    }
}

/// Every object under its final name decodes and matches its id.
fn verify_repo(repo: &Path) {
    let r = Repo::open(repo).expect("open");
    for (kind, id) in r.list_objects().expect("list") {
        match kind {
            ObjectType::File => drop(r.read_file(&id).unwrap_or_else(|e| panic!("{e}"))),
            ObjectType::Tree => drop(r.read_tree(&id).unwrap_or_else(|e| panic!("{e}"))),
            ObjectType::Commit => drop(r.read_commit(&id).unwrap_or_else(|e| panic!("{e}"))),
        }
    }
}

fn many_files(root: &Path, n: usize, salt: &str) {
    for i in 0..n {
        let d = root.join(format!("d{}", i % 37));
        std::fs::create_dir_all(&d).expect("mkdir");
        let size = (i * 7919) % 40_000 + if i % 50 == 0 { 5_000_000 } else { 0 };
        let data: Vec<u8> = format!("{salt}-{i}-").bytes().cycle().take(size).collect();
        std::fs::write(d.join(format!("f{i}")), data).expect("write");
    }
}

#[test]
fn sigkill_at_random_moments_leaves_a_valid_repository() {
    sigkill_rounds("bare-user", 16);
}

#[test]
fn sigkill_during_an_archive_commit_never_exposes_a_partial_pack() {
    sigkill_rounds("archive", 12);
}

fn sigkill_rounds(mode: &str, rounds: usize) {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = init(t.path(), mode);
    let src = t.path().join("src");
    many_files(&src, 600, "base");
    let base = ok(
        &repo,
        &["commit", "-b", "main", src.to_str().expect("utf-8")],
    )
    .trim()
    .to_owned();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    eprintln!("sigkill test ({mode}) seed {seed}");
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut killed = 0;
    for round in 0..rounds {
        let src = t.path().join(format!("src{round}"));
        many_files(&src, 600, &format!("r{round}"));
        let mut child = Command::new(slate_bin())
            .env("SLATE_REPO", &repo)
            .args(["commit", "-b", "main", src.to_str().expect("utf-8")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_micros(next() % 400_000));
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait");
        if !out.status.success() {
            killed += 1;
        }
        let head = ok(&repo, &["rev-parse", "main"]).trim().to_owned();
        let new = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // The branch names the old commit or the new one: the printed id,
        // or (killed between moving the ref and printing) a child of `base`.
        let is_new = if new.is_empty() {
            head != base && ok(&repo, &["rev-parse", "main^"]).trim() == base
        } else {
            head == new
        };
        assert!(
            head == base || is_new,
            "round {round}: branch names {head}, neither {base} nor a new commit"
        );
        verify_repo(&repo);
        // Whatever happened, the branch's tree is complete.
        let co = t.path().join(format!("co{round}"));
        ok(&repo, &["checkout", "main", co.to_str().expect("utf-8")]);
        std::fs::remove_dir_all(&co).expect("rm");
        std::fs::remove_dir_all(&src).expect("rm");
        // Reset for the next round so that "old" is always `base`.
        ok(&repo, &["reset", "main", &base]);
    }
    eprintln!("{mode}: {killed} of {rounds} commits were killed before finishing");
    assert!(
        killed > 0,
        "no commit was interrupted: the test did not test anything"
    );
}

#[test]
fn concurrent_commits_both_succeed_in_turn() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = init(t.path(), "bare-user");
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    many_files(&a, 300, "a");
    many_files(&b, 300, "b");
    let spawn = |src: &Path| {
        Command::new(slate_bin())
            .env("SLATE_REPO", &repo)
            .args(["commit", "-b", "main", src.to_str().expect("utf-8")])
            .output()
    };
    let started = Instant::now();
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| spawn(&a));
        let hb = s.spawn(|| spawn(&b));
        (
            ha.join().expect("join").expect("run"),
            hb.join().expect("join").expect("run"),
        )
    });
    assert!(
        ra.status.success() && rb.status.success(),
        "{} {}",
        String::from_utf8_lossy(&ra.stderr),
        String::from_utf8_lossy(&rb.stderr)
    );
    let (ia, ib) = (
        String::from_utf8_lossy(&ra.stdout).trim().to_owned(),
        String::from_utf8_lossy(&rb.stdout).trim().to_owned(),
    );
    let head = ok(&repo, &["rev-parse", "main"]).trim().to_owned();
    let parent = ok(&repo, &["rev-parse", "main^"]).trim().to_owned();
    // One after the other: the later commit's parent is the earlier one.
    assert!(
        (head == ia && parent == ib) || (head == ib && parent == ia),
        "head {head} parent {parent}; a {ia} b {ib}"
    );
    eprintln!("two concurrent commits took {:?}", started.elapsed());
    verify_repo(&repo);
}
