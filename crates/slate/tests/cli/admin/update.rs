//! Unattended updates: an image that names its remote (`remotes.d`, the
//! commit's `slate.image.origin`) and its policy (`update.toml`), deployed
//! into a sysroot, then `upgrade --check` and `upgrade --auto` against a
//! served repository, with the reboot and systemd commands replaced by
//! scripts that write down how they were called.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::{admin_fails, admin_ok, os_tree, s, setup, status, write, Env};
use crate::common::{ok, slate_bin};
use crate::faultserve::FaultServer;

pub(super) struct Pub {
    pub(super) e: Env,
    pub(super) pubrepo: PathBuf,
    pub(super) key: PathBuf,
    pub(super) server: FaultServer,
    /// Where the fake reboot and systemd-run write their arguments.
    pub(super) calls: PathBuf,
    pub(super) script: PathBuf,
}

/// The remote's file an image of this server carries.
fn remote_file(url: &str, pubkey_pem: &str) -> String {
    format!("urls = [{url:?}]\nkeys = [{pubkey_pem:?}]\n")
}

/// Version `v` of the image: a tree naming the remote `origin` (the
/// served repository) and, when given, a policy; committed to `os/main`
/// of the build repository with the image's metadata.
pub(super) fn commit_image(p: &Pub, v: u32, policy: Option<&str>) -> String {
    let t = p.e.trees.join(format!("img{v}"));
    os_tree(&t, v, true);
    let pem = std::fs::read_to_string(format!("{}.pub", s(&p.key))).expect("public key");
    write(
        &t,
        "usr/lib/slate/remotes.d/origin.toml",
        &remote_file(&p.server.url, &pem),
    );
    if let Some(pol) = policy {
        write(
            &t,
            "usr/lib/slate/update.toml",
            &format!("policy = \"{pol}\"\n"),
        );
    }
    ok(
        &p.e.build,
        &[
            "commit",
            "--repo",
            s(&p.e.build),
            "-b",
            "os/main",
            "-s",
            &format!("v{v}: the changelog line"),
            "--add-metadata",
            "slate.image.origin=origin:os/main",
            "--add-metadata",
            &format!("slate.image.version=1.{v}"),
            s(&t),
        ],
    )
    .trim()
    .to_string()
}

/// A sysroot with version 1 of an image naming its remote and `policy`,
/// deployed from the build repository (its first deployment).
pub(super) fn env(policy: Option<&str>) -> Option<Pub> {
    let e = setup("persistent")?;
    let pubrepo = e._dir.path().join("pub");
    let key = e._dir.path().join("key.pem");
    ok(
        &pubrepo,
        &["init", "--repo", s(&pubrepo), "--mode", "archive"],
    );
    ok(&pubrepo, &["keygen", s(&key)]);
    let server = FaultServer::start(pubrepo.clone());
    let calls = e._dir.path().join("calls");
    let script = e._dir.path().join("record.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$*\" >> {}\n", s(&calls)),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let p = Pub {
        e,
        pubrepo,
        key,
        server,
        calls,
        script,
    };
    commit_image(&p, 1, policy);
    publish(&p, true);
    admin_ok(&p.e.sr, &["deploy", "--from", s(&p.e.build), "os/main"]);
    Some(p)
}

pub(super) fn publish(p: &Pub, sign: bool) {
    super::remote::publish(&p.e, &p.pubrepo, &p.key, sign);
}

/// `slate admin upgrade ARGS` with the reboot and systemd-run replaced.
pub(super) fn upgrade(p: &Pub, args: &[&str]) -> Output {
    Command::new(slate_bin())
        .args(["admin", "--sysroot", s(&p.e.sr), "upgrade"])
        .args(args)
        .env("SLATE_REBOOT_COMMAND", format!("{} reboot", s(&p.script)))
        .env("SLATE_SYSTEMD_RUN", format!("{} systemd-run", s(&p.script)))
        .stdin(Stdio::null())
        .output()
        .expect("slate admin upgrade")
}

pub(super) fn calls(p: &Pub) -> String {
    std::fs::read_to_string(&p.calls).unwrap_or_default()
}

pub(super) fn last_check(sr: &Path) -> Value {
    status(sr)["updates"][0]["last_check"].clone()
}

/// The deployment directory of the default deployment (its /etc).
pub(super) fn default_dir(sr: &Path) -> PathBuf {
    let st = status(sr);
    let id = st["deployments"][0]["id"].as_str().expect("id").to_string();
    sr.join("slate/deploy/test").join(id)
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn the_first_deploy_follows_the_image_remote_and_admin_remote_manages_it() {
    let Some(p) = env(None) else { return };
    let sr = &p.e.sr;
    let st = status(sr);
    let d = &st["deployments"][0];
    assert_eq!(d["origin"], "origin:os/main", "{st}");
    assert_eq!(d["image_version"], "1.1", "{st}");
    let entry = std::fs::read_dir(sr.join("boot/loader/entries"))
        .expect("entries")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).expect("entry"))
        .find(|t| t.contains("title"))
        .expect("an entry");
    assert!(entry.contains("title Slate Test 1 1.1 (test "), "{entry}");
    let text = admin_ok(sr, &["status"]);
    assert!(text.contains("version  1.1"), "{text}");

    // The image's remote, listed as such.
    let list = admin_ok(sr, &["remote", "list"]);
    assert_eq!(
        list.trim(),
        format!("origin image {}", p.server.url),
        "{list}"
    );
    let show: Value =
        serde_json::from_str(&admin_ok(sr, &["remote", "show", "origin", "--json"])).expect("json");
    assert_eq!(show["source"]["kind"], "image", "{show}");
    assert!(show["source"]["from"]
        .as_str()
        .expect("from")
        .ends_with("/usr/lib/slate/remotes.d/origin.toml"));
    let err = admin_fails(sr, &["remote", "remove", "origin"]);
    assert!(err.contains("provided by the image"), "{err}");
    // The sysroot's own remote of that name overrides it; removed, the
    // image's is back.
    admin_ok(
        sr,
        &[
            "remote",
            "add",
            "origin",
            "https://other.example.org/os",
            "--no-sign-verify",
        ],
    );
    let list = admin_ok(sr, &["remote", "list"]);
    assert_eq!(list.trim(), "origin sysroot https://other.example.org/os");
    admin_ok(
        sr,
        &[
            "remote",
            "add",
            "extra",
            "https://x.example.org",
            "--no-sign-verify",
        ],
    );
    admin_ok(sr, &["remote", "remove", "origin"]);
    admin_ok(sr, &["remote", "remove", "extra"]);
    let list = admin_ok(sr, &["remote", "list"]);
    assert_eq!(
        list.trim(),
        format!("origin image {}", p.server.url),
        "{list}"
    );

    // Upgrades follow it without `remote add`.
    let c2 = commit_image(&p, 2, None);
    publish(&p, true);
    admin_ok(sr, &["upgrade"]);
    assert_eq!(status(sr)["deployments"][0]["commit"], c2.as_str());

    // A hostile remotes.d in the next image: refused, naming the file.
    let t = p.e.trees.join("img3");
    os_tree(&t, 3, true);
    write(
        &t,
        "usr/lib/slate/remotes.d/origin.toml",
        "urls = [\"file:///etc\"]\nno-sign-verify = true\n",
    );
    ok(
        &p.e.build,
        &["commit", "--repo", s(&p.e.build), "-b", "os/main", s(&t)],
    );
    let c3 = ok(
        &p.e.build,
        &["rev-parse", "--repo", s(&p.e.build), "os/main"],
    );
    admin_ok(sr, &["deploy", "--from", s(&p.e.build), c3.trim()]);
    let err = admin_fails(sr, &["remote", "list"]);
    assert!(
        err.contains("remotes.d/origin.toml") && err.contains("http://"),
        "{err}"
    );
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn upgrade_check_reads_the_summary_alone_and_changes_nothing() {
    let Some(p) = env(None) else { return };
    let sr = &p.e.sr;
    let c1 = status(sr)["deployments"][0]["commit"]
        .as_str()
        .expect("c")
        .to_string();
    // Nothing new.
    let v: Value =
        serde_json::from_str(&admin_ok(sr, &["upgrade", "--check", "--json"])).expect("json");
    assert_eq!(v["update"], false, "{v}");
    assert_eq!(v["current_version"], "1.1");
    // A new version, with a delta from the deployed commit.
    let c2 = commit_image(&p, 2, None);
    ok(
        &p.pubrepo,
        &[
            "pull-local",
            "--repo",
            s(&p.pubrepo),
            s(&p.e.build),
            "os/main",
        ],
    );
    ok(
        &p.pubrepo,
        &[
            "sign",
            "--repo",
            s(&p.pubrepo),
            "os/main",
            "--key",
            s(&p.key),
        ],
    );
    ok(
        &p.pubrepo,
        &[
            "delta",
            "--repo",
            s(&p.pubrepo),
            "generate",
            "--from",
            &c1,
            "--to",
            &c2,
        ],
    );
    ok(
        &p.pubrepo,
        &[
            "summary",
            "--repo",
            s(&p.pubrepo),
            "--update",
            "--sign",
            s(&p.key),
        ],
    );
    let refs_before = ok(
        &p.e.sr.join("slate/repo"),
        &["refs", "--repo", s(&p.e.sr.join("slate/repo"))],
    );
    p.server.take_log();
    let v: Value =
        serde_json::from_str(&admin_ok(sr, &["upgrade", "--check", "--json"])).expect("json");
    assert_eq!(v["update"], true, "{v}");
    assert_eq!(v["commit"], c2.as_str());
    assert_eq!(v["version"], "1.2");
    assert_eq!(v["subject"], "v2: the changelog line");
    assert_eq!(v["download"], "delta", "{v}");
    assert!(v["download_bytes"].as_u64().expect("bytes") > 0);
    let asked = p.server.take_log();
    assert!(
        !asked.is_empty()
            && asked
                .iter()
                .all(|a| a == "/summary.json" || a == "/summary.sig"),
        "--check asked for more than the summary: {asked:?}"
    );
    let text = admin_ok(sr, &["upgrade", "--check"]);
    assert!(
        text.contains("version 1.2")
            && text.contains("(delta)")
            && text.contains("v2: the changelog line"),
        "{text}"
    );
    // Nothing changed: the same deployments, the same refs.
    assert_eq!(status(sr)["deployments"].as_array().expect("d").len(), 1);
    let refs_after = ok(
        &p.e.sr.join("slate/repo"),
        &["refs", "--repo", s(&p.e.sr.join("slate/repo"))],
    );
    assert_eq!(refs_before, refs_after);
    // Without a delta: the commit's files as the summary counts them.
    ok(
        &p.pubrepo,
        &[
            "delta",
            "--repo",
            s(&p.pubrepo),
            "delete",
            &format!("{c1}..{c2}"),
        ],
    );
    ok(
        &p.pubrepo,
        &[
            "summary",
            "--repo",
            s(&p.pubrepo),
            "--update",
            "--sign",
            s(&p.key),
        ],
    );
    let v: Value =
        serde_json::from_str(&admin_ok(sr, &["upgrade", "--check", "--json"])).expect("json");
    assert_eq!(v["download"], "objects", "{v}");
    // A summary signed by another key: refused.
    let other = p.e._dir.path().join("other.pem");
    ok(&p.pubrepo, &["keygen", s(&other)]);
    ok(
        &p.pubrepo,
        &[
            "summary",
            "--repo",
            s(&p.pubrepo),
            "--update",
            "--sign",
            s(&other),
        ],
    );
    let err = admin_fails(sr, &["upgrade", "--check"]);
    assert!(err.contains("signature"), "{err}");
}

#[test]
#[cfg_attr(
    not(test_have = "systemd-analyze"),
    ignore = "needs systemd-analyze (systemd) to check the units"
)]
fn the_update_units_are_ones_systemd_accepts() {
    if !crate::common::have("systemd-analyze") {
        return crate::common::skip("systemd-analyze is not installed: the units are not checked");
    }
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/systemd");
    let service = std::fs::read_to_string(dist.join("slate-upgrade.service")).expect("service");
    let timer = std::fs::read_to_string(dist.join("slate-upgrade.timer")).expect("timer");
    assert!(service.contains("ExecStart=/usr/bin/slate admin upgrade --auto\n"));
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = slate_bin();
    std::fs::write(
        dir.path().join("slate-upgrade.service"),
        service.replace("/usr/bin/slate", s(&bin)),
    )
    .expect("write");
    std::fs::write(dir.path().join("slate-upgrade.timer"), &timer).expect("write");
    let verify = |unit: &str| {
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.path().join(unit))
            .output()
            .expect("systemd-analyze")
    };
    for unit in ["slate-upgrade.service", "slate-upgrade.timer"] {
        let out = verify(unit);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.trim().is_empty(),
            "{unit}: {err}"
        );
    }
    // The check can fail: a bad calendar is reported.
    std::fs::write(
        dir.path().join("slate-upgrade.timer"),
        timer.replace("OnCalendar=daily", "OnCalendar=Mon..Fri 25:00"),
    )
    .expect("write");
    let out = verify("slate-upgrade.timer");
    assert!(!String::from_utf8_lossy(&out.stderr).trim().is_empty());
}
