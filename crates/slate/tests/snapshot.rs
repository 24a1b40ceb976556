//! Snapshots (insta) of what Slate computes and prints about a sysroot: a
//! deploy plan as the library computes it before anything is applied, and
//! `slate admin status --json`. The trees, modes and commit times are fixed,
//! so the commit ids are too; the sysroot's temporary path and the deploy
//! times are replaced by placeholders. A changed value fails the test
//! (`cargo insta review`, or `INSTA_UPDATE=always`, writes the new one).

#[path = "cli/common.rs"]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use slate_core::hash::ObjectId;
use slate_core::sysroot::{DeployOptions, Sysroot};

use common::{admin, ok};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A file with a fixed mode; folders on the way 0755.
fn write(root: &Path, p: &str, content: &str, mode: u32) {
    let path = root.join(p);
    let mut dir = path.parent().expect("parent");
    std::fs::create_dir_all(dir).expect("mkdir");
    while dir.starts_with(root) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        dir = dir.parent().expect("parent");
    }
    std::fs::write(&path, content).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Commit version `v` of a small OS (a kernel, an initrd, os-release, a
/// binary, /etc defaults) at a fixed time onto `os/main` of `build`.
fn commit_version(build: &Path, trees: &Path, v: u32) -> String {
    let t = trees.join(format!("v{v}"));
    write(
        &t,
        "usr/lib/modules/6.1.0-slate/vmlinuz",
        "kernel image\n",
        0o644,
    );
    write(
        &t,
        "usr/lib/modules/6.1.0-slate/initrd",
        "initrd image\n",
        0o644,
    );
    write(
        &t,
        "usr/lib/os-release",
        &format!("PRETTY_NAME=\"Slate Test {v}\"\nVERSION_ID={v}\n"),
        0o644,
    );
    write(&t, "usr/bin/tool", &format!("tool v{v}\n"), 0o755);
    write(&t, "etc/motd", "welcome\n", 0o644);
    write(&t, "etc/conf", &format!("setting={v}\n"), 0o600);
    write(&t, "var/lib/app/state", "factory state\n", 0o644);
    let time = (1_700_000_000 + 100 * v).to_string();
    let subject = format!("v{v}");
    ok(
        build,
        &[
            "commit",
            "--repo",
            s(build),
            "-b",
            "os/main",
            "-s",
            &subject,
            "--timestamp",
            &time,
            s(&t),
        ],
    );
    ok(build, &["rev-parse", "--repo", s(build), "os/main"])
        .trim()
        .to_string()
}

fn admin_ok(sr: &Path, args: &[&str]) -> String {
    let o = admin(sr, args);
    assert!(
        o.status.success(),
        "slate admin {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8")
}

/// A sysroot with the OS `test` (`/etc` persistent) and version 1 of
/// `os/main` deployed; version 2 committed in the build repository.
struct Env {
    dir: tempfile::TempDir,
    build: PathBuf,
    sr: PathBuf,
    v2: String,
}

fn setup() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let build = dir.path().join("build");
    let sr = dir.path().join("sysroot");
    let trees = dir.path().join("trees");
    ok(
        &build,
        &["init", "--repo", s(&build), "--mode", "bare-user"],
    );
    commit_version(&build, &trees, 1);
    let o = std::process::Command::new(common::slate_bin())
        .args(["admin", "init-fs", s(&sr)])
        .output()
        .expect("init-fs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    admin_ok(&sr, &["os-init", "test", "--etc", "persistent"]);
    admin_ok(&sr, &["deploy", "--from", s(&build), "os/main"]);
    let v2 = commit_version(&build, &trees, 2);
    Env { dir, build, sr, v2 }
}

/// The value with the temporary folder's path written `[TMP]`, and the
/// numbers under `keys` (times of the day the test ran) written `[time]`.
fn redact(v: &mut Value, tmp: &str, keys: &[&str]) {
    match v {
        Value::String(text) => *text = text.replace(tmp, "[TMP]"),
        Value::Array(items) => items.iter_mut().for_each(|i| redact(i, tmp, keys)),
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                if keys.contains(&k.as_str()) && item.is_number() {
                    *item = Value::String("[time]".into());
                } else {
                    redact(item, tmp, keys);
                }
            }
        }
        _ => {}
    }
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn a_deploy_plan_of_a_second_version() {
    let e = setup();
    // The commit into the sysroot's repository, as `deploy --from` brings it.
    let repo = e.sr.join("slate/repo");
    ok(
        &repo,
        &["pull-local", "--repo", s(&repo), s(&e.build), "os/main"],
    );
    let sysroot = Sysroot::open(&e.sr, None).expect("open the sysroot");
    let commit = ObjectId::from_hex(&e.v2).expect("commit id");
    let opts = DeployOptions {
        origin: Some("os/main".parse().expect("a ref origin")),
        kargs: vec!["quiet".into()],
        now: 1_700_000_500,
        ..DeployOptions::default()
    };
    let plan = sysroot.plan_deploy(&commit, &opts).expect("plan");
    let mut v = serde_json::to_value(&plan).expect("plan as JSON");
    redact(&mut v, s(e.dir.path()), &[]);
    insta::assert_json_snapshot!(v);
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn admin_status_json_of_two_deployments() {
    let e = setup();
    admin_ok(
        &e.sr,
        &[
            "deploy",
            "--from",
            s(&e.build),
            "os/main",
            "--karg",
            "quiet",
        ],
    );
    let mut v: Value =
        serde_json::from_str(&admin_ok(&e.sr, &["status", "--json"])).expect("status JSON");
    redact(&mut v, s(e.dir.path()), &["created"]);
    insta::assert_json_snapshot!(v);
}
