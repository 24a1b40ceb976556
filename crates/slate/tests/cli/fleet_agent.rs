//! `slate agent` against a fleet server and a served repository, on a
//! test sysroot: it enrolls once with a key kept 0600, reports what the
//! library's status knows, stages the rollout's commit once its wave has
//! come and the booted deployment is blessed, and gives up on an
//! unreachable server after its attempts, changing nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::admin::{admin_ok, commit_version, s, setup, status};
use crate::common::{ok, slate_bin};
use crate::faultserve::FaultServer;
use crate::fleet::{fleet_ok, Server, TOKEN};

fn agent(dir: &Path, sr: &Path, server: &str, extra: &[&str]) -> Output {
    Command::new(slate_bin())
        .args([
            "agent",
            "--server",
            server,
            "--group",
            "web",
            "--sysroot",
            s(sr),
        ])
        .args([
            "--cmdline",
            s(&dir.join("cmdline")),
            "--state-dir",
            s(&dir.join("agent")),
        ])
        .args([
            "--token-file",
            s(&dir.join("token")),
            "--config",
            s(&dir.join("none.toml")),
        ])
        .args(extra)
        .output()
        .expect("run slate agent")
}

fn agent_json(dir: &Path, sr: &Path, server: &str) -> serde_json::Value {
    let o = agent(dir, sr, server, &["--json"]);
    assert!(
        o.status.success(),
        "slate agent: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("json")
}

/// Bless the default deployment's entry (boot counting done).
fn bless(sr: &Path) {
    let st = status(sr);
    let file = st["deployments"][0]["entry"]
        .as_str()
        .expect("entry")
        .to_string();
    let stem = file
        .split('+')
        .next()
        .expect("stem")
        .trim_end_matches(".conf");
    let dir = sr.join("boot/loader/entries");
    std::fs::rename(dir.join(&file), dir.join(format!("{stem}.conf"))).expect("rename");
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn agent_enrolls_reports_and_stages_the_rollouts_commit() {
    let Some(e) = setup("persistent") else { return };
    let dir = e._dir.path();
    // The published repository, served over HTTP.
    let publ = dir.join("publ");
    ok(&publ, &["init", "--repo", s(&publ), "--mode", "archive"]);
    let v1 = commit_version(&publ, &e.trees, 1, true);
    ok(&publ, &["summary", "--repo", s(&publ), "--update"]);
    let served = FaultServer::start(publ.clone());
    let repo = e.sr.join("slate/repo");
    ok(
        &repo,
        &[
            "remote",
            "add",
            "--repo",
            s(&repo),
            "origin",
            &served.url,
            "--no-sign-verify",
        ],
    );
    admin_ok(&e.sr, &["deploy", "origin:os/main"]);
    let booted = status(&e.sr)["deployments"][0].clone();
    assert_eq!(booted["commit"], v1.as_str());
    std::fs::write(
        dir.join("cmdline"),
        format!(
            "root=/dev/vda2 slate=/slate/deploy/{}/{}\n",
            s_(&booted["os"]),
            s_(&booted["id"])
        ),
    )
    .expect("cmdline");

    let db = dir.join("fleet.db");
    let db = s(&db);
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).expect("token");
    fleet_ok(
        db,
        &[
            "group",
            "add",
            "web",
            "--ref",
            "origin:os/main",
            "--token-file",
            s(&dir.join("token")),
        ],
    );
    let server = Server::start(db, &["--insecure-http"]);

    // First run: a key made, enrolled, reported; no rollout, nothing done.
    let r = agent_json(dir, &e.sr, &server.url);
    assert_eq!(r["enrolled_now"], true, "{r}");
    assert_eq!(r["outcome"]["outcome"], "no_target");
    let key = dir.join("agent/machine.key");
    assert_eq!(
        std::fs::metadata(&key).expect("key").permissions().mode() & 0o777,
        0o600
    );
    let machine = r["machine"].as_str().expect("machine").to_string();
    let r = agent_json(dir, &e.sr, &server.url);
    assert_eq!(r["enrolled_now"], false, "enrolled once");
    assert_eq!(r["machine"], machine.as_str(), "the same key");
    let st = serde_json::from_str::<serde_json::Value>(&fleet_ok(db, &["status", "--json"]))
        .expect("json");
    assert_eq!(st["machines"][0]["booted_commit"], v1.as_str());
    assert_eq!(st["machines"][0]["health"], "pending", "{st}");

    // A rollout of v2: the booted deployment is not blessed yet, so the
    // agent waits; blessed, it stages v2 (the default until shutdown unchanged).
    let v2 = commit_version(&publ, &e.trees, 2, true);
    ok(&publ, &["summary", "--repo", s(&publ), "--update"]);
    // The commit: the head of the group's ref in the publishing repository.
    let started: serde_json::Value = serde_json::from_str(&fleet_ok(
        db,
        &[
            "rollout",
            "start",
            "web",
            "--repo",
            s(&publ),
            "--waves",
            "100",
            "--json",
        ],
    ))
    .expect("json");
    assert_eq!(started["commit"], v2.as_str());
    let r = agent_json(dir, &e.sr, &server.url);
    assert_eq!(r["target"]["commit"], v2.as_str());
    assert_eq!(r["outcome"]["outcome"], "not_blessed", "{r}");
    assert_eq!(status(&e.sr)["staged"].as_array().map(Vec::len), Some(0));
    bless(&e.sr);
    let r = agent_json(dir, &e.sr, &server.url);
    assert_eq!(r["outcome"]["outcome"], "staged", "{r}");
    let st = status(&e.sr);
    assert_eq!(st["staged"][0]["commit"], v2.as_str());
    assert_eq!(st["deployments"][0]["commit"], v1.as_str());
    let r = agent_json(dir, &e.sr, &server.url);
    assert_eq!(r["outcome"]["outcome"], "staged_already", "{r}");
    let st = serde_json::from_str::<serde_json::Value>(&fleet_ok(db, &["status", "--json"]))
        .expect("json");
    assert_eq!(st["machines"][0]["staged_commit"], v2.as_str(), "{st}");
    assert_eq!(st["machines"][0]["health"], "blessed", "{st}");

    // An unreachable server: tried again, given up, nothing changed.
    let before = status(&e.sr);
    let o = agent(
        dir,
        &e.sr,
        "http://127.0.0.1:1",
        &["--attempts", "3", "--backoff-ms", "10"],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    assert_eq!(err.matches("again in").count(), 2, "{err}");
    assert_eq!(status(&e.sr)["staged"], before["staged"]);
}

fn s_(v: &serde_json::Value) -> &str {
    v.as_str().expect("a string")
}

#[test]
#[cfg_attr(
    not(test_have = "systemd-analyze"),
    ignore = "needs systemd-analyze (systemd) to check the units"
)]
fn the_agent_units_are_ones_systemd_accepts() {
    if !crate::common::have("systemd-analyze") {
        return crate::common::skip("systemd-analyze is not installed: the units are not checked");
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/systemd");
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = slate_bin();
    let mut units = Vec::new();
    for name in [
        "slate-agent.service",
        "slate-agent.timer",
        "slate-state-restore.service",
    ] {
        let text = std::fs::read_to_string(src.join(name)).expect("the unit");
        let unit = dir.path().join(name);
        std::fs::write(&unit, text.replace("/usr/bin/slate", s(&bin))).expect("write");
        units.push(unit);
    }
    let service = std::fs::read_to_string(&units[0]).expect("unit");
    assert!(service.contains(&format!("ExecStart={} agent\n", s(&bin))));
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}
