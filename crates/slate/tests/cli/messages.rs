//! Messages a newcomer meets: a non-root `admin status`, a refused
//! connection.

use std::process::Command;

use super::common::*;

/// A port of loopback where nothing listens: a connection is refused.
fn refused_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}/pub")
}

#[test]
fn a_refused_connection_names_the_url_once() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = init(t.path(), "bare-user");
    let url = refused_url();
    ok(
        &repo,
        &["remote", "add", "origin", &url, "--no-sign-verify"],
    );
    let err = fails(&repo, &["pull", "origin", "os/main"]);
    assert_eq!(err.matches(&url).count(), 1, "{err}");
    assert!(err.contains("refused"), "{err}");
}

#[test]
#[cfg_attr(not(test_root), ignore = "needs root")]
#[cfg_attr(not(test_have = "setpriv"), ignore = "needs setpriv")]
fn admin_status_as_another_user_says_it_needs_root() {
    if !is_root() || !have("setpriv") {
        return skip("needs root (to make a sysroot) and setpriv (to run as nobody)");
    }
    let t = tempfile::tempdir().expect("tempdir");
    // nobody must reach the sysroot's folder to meet its repository.
    std::fs::set_permissions(
        t.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let sr = t.path().join("sr");
    let o = Command::new(slate_bin())
        .args(["admin", "init-fs"])
        .arg(&sr)
        .output()
        .expect("init-fs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(slate_bin())
        .args(["admin", "--sysroot"])
        .arg(&sr)
        .arg("status")
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("Permission denied") && err.contains("needs root"),
        "{err}"
    );
}

#[test]
#[cfg_attr(not(test_root), ignore = "needs root")]
fn a_deploy_from_a_refused_remote_names_the_url_once() {
    if !is_root() {
        return skip("needs root (a sysroot)");
    }
    let t = tempfile::tempdir().expect("tempdir");
    let sr = t.path().join("sr");
    let o = Command::new(slate_bin())
        .args(["admin", "init-fs"])
        .arg(&sr)
        .output()
        .expect("init-fs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let url = refused_url();
    let repo = sr.join("slate/repo");
    ok(
        &repo,
        &["remote", "add", "origin", &url, "--no-sign-verify"],
    );
    let o = admin(&sr, &["deploy", "origin:os/main"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert_eq!(err.matches(&url).count(), 1, "{err}");
}
