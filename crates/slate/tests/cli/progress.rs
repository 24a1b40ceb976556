//! Progress of long work (commit, checkout, fsck, pull-local, export): a
//! status line on a terminal, nothing otherwise.

use crate::common::*;

/// Run `slate ARGS` on a pseudo-terminal (script(1)); what it wrote there.
fn on_terminal(dir: &std::path::Path, args: &str) -> String {
    let typescript = dir.join("typescript");
    let cmd = format!("{} {args}", slate_bin().to_str().expect("utf-8"));
    let out = std::process::Command::new("script")
        .args(["-qefc", &cmd])
        .arg(&typescript)
        .output()
        .expect("run script");
    assert!(out.status.success(), "{args}: {out:?}");
    String::from_utf8_lossy(&std::fs::read(&typescript).expect("typescript")).into_owned()
}

/// `DIR/src` holding `n` files `f0`... of `size` bytes each.
fn files(dir: &std::path::Path, n: usize, size: usize) -> std::path::PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    for i in 0..n {
        std::fs::write(src.join(format!("f{i}")), vec![i as u8; size]).expect("write");
    }
    src
}

#[test]
fn a_commit_shows_progress_on_a_terminal_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = init(dir.path(), "bare-user");
    let src = files(dir.path(), 50, 1000);
    let (r, s) = (repo.to_str().expect("utf-8"), src.to_str().expect("utf-8"));
    let quiet = slate(&repo, &["commit", "-b", "pipe", "--timestamp", "0", s]);
    assert!(quiet.status.success());
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(!stderr.contains("stored"), "progress on a pipe: {stderr}");
    assert!(stderr.contains("50 files"), "{stderr}");

    if !have("script") {
        skip("script(1) missing (util-linux): progress on a terminal untested");
        return;
    }
    let seen = on_terminal(
        dir.path(),
        &format!("commit --repo {r} -b tty --timestamp 0 {s}"),
    );
    assert!(
        seen.contains("files, ") && seen.contains("MB stored"),
        "no progress line: {seen}"
    );
    assert!(seen.contains("\x1b[2K"), "the line is not cleared: {seen}");
    let id = ok(&repo, &["rev-parse", "tty"]);
    assert!(
        seen.contains(id.trim()),
        "the id still reaches stdout: {seen}"
    );
}

#[test]
#[cfg_attr(
    not(test_have = "script"),
    ignore = "script(1) is not installed (util-linux)"
)]
fn checkout_fsck_pull_and_export_show_progress_on_a_terminal_only() {
    if !have("script") {
        skip("script(1) missing (util-linux): progress on a terminal untested");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = init(dir.path(), "bare-user");
    let src = files(dir.path(), 40, 500);
    let r = repo.to_str().expect("utf-8");
    ok(
        &repo,
        &[
            "commit",
            "-b",
            "main",
            "--timestamp",
            "0",
            src.to_str().expect("utf-8"),
        ],
    );
    let archive = init(dir.path(), "archive");
    let a = archive.to_str().expect("utf-8");

    let pulled = on_terminal(dir.path(), &format!("pull-local --repo {a} {r} main"));
    // The first line may come before the total is known: "copied 0
    // objects" or "copied N/42 objects".
    let line = |seen: &str, what: &str, unit: &str| {
        seen.split(what).skip(1).any(|rest| {
            let count = rest.split(' ').next().unwrap_or("");
            let (done, total) = count.split_once('/').unwrap_or((count, ""));
            done.parse::<u64>().is_ok()
                && (total.is_empty() || total.parse::<u64>().is_ok())
                && rest[count.len()..].starts_with(unit)
        }) && seen.contains("\x1b[2K")
    };
    assert!(line(&pulled, "copied ", " objects"), "{pulled}");
    let fsck = on_terminal(dir.path(), &format!("fsck --repo {a}"));
    assert!(line(&fsck, "checked ", " objects"), "{fsck}");
    let dest = dir.path().join("out");
    let co = on_terminal(
        dir.path(),
        &format!("checkout --repo {a} main {}", dest.display()),
    );
    assert!(line(&co, "placed ", " paths"), "{co}");
    assert!(dest.join("f39").exists());
    let tar = dir.path().join("out.tar");
    let ex = on_terminal(
        dir.path(),
        &format!("export --repo {a} main -o {}", tar.display()),
    );
    assert!(line(&ex, "wrote ", " entries"), "{ex}");
    assert!(std::fs::metadata(&tar).expect("tar").len() > 40 * 500);

    let dest2 = dir.path().join("out2");
    let dest2 = dest2.to_str().expect("utf-8");
    let tar2 = dir.path().join("out2.tar");
    let tar2 = tar2.to_str().expect("utf-8");
    for args in [
        &["fsck"][..],
        &["checkout", "main", dest2][..],
        &["export", "main", "-o", tar2][..],
    ] {
        let o = slate(&archive, args);
        assert!(o.status.success(), "{args:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!e.contains("\x1b[2K"), "status line on a pipe: {e}");
    }
}
