//! Progress of a commit: a status line on a terminal, nothing otherwise.

use crate::common::*;

#[test]
fn a_commit_shows_progress_on_a_terminal_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = init(dir.path(), "bare-user");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    for i in 0..50 {
        std::fs::write(src.join(format!("f{i}")), vec![i as u8; 1000]).expect("write");
    }
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
    // script(1) runs the command on a pseudo-terminal and copies what it
    // writes there.
    let bin = slate_bin();
    let cmd = format!(
        "{} commit --repo {r} -b tty --timestamp 0 {s}",
        bin.to_str().expect("utf-8")
    );
    let typescript = dir.path().join("typescript");
    let out = std::process::Command::new("script")
        .args(["-qefc", &cmd])
        .arg(&typescript)
        .output()
        .expect("run script");
    assert!(out.status.success(), "{out:?}");
    let seen =
        String::from_utf8_lossy(&std::fs::read(&typescript).expect("typescript")).into_owned();
    assert!(
        seen.contains("files, ") && seen.contains("MB stored"),
        "no progress line: {seen}"
    );
    assert!(seen.contains("\x1b[2K"), "the line is not cleared: {seen}");
    let id = ok(&repo, &["rev-parse", "pipe"]);
    assert!(
        seen.contains(id.trim()),
        "the id still reaches stdout: {seen}"
    );
}
