//! `slate fleet rollout` on SQLite and PostgreSQL: waves open as the
//! machines of the open ones come up blessed on the target, a failure
//! pauses the rollout, and abort sends the open waves back.

use slate_fleet::client::Client;
use slate_fleet::rollout::Waves;
use slate_fleet::wire;

use crate::common;
use crate::fleet::{fleet, fleet_ok, key, pg, report, Server, TOKEN};

const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn blessed(host: &str, commit: &str) -> wire::Report {
    let mut r = report(host, commit);
    r.deployments[0].state = Some(wire::State::Good);
    r.deployments[0].tries_left = None;
    r
}

fn json(db: &str, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&fleet_ok(db, args)).expect("json")
}

fn rollouts(db: &str) {
    let token = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(token.path(), TOKEN).expect("token");
    let tf = token.path().to_str().expect("utf-8");
    fleet_ok(
        db,
        &[
            "group",
            "add",
            "web",
            "--ref",
            "origin:os/main",
            "--token-file",
            tf,
        ],
    );
    let server = Server::start(db, &["--insecure-http"]);
    let waves = Waves::parse("25,100").expect("waves");
    let machines: Vec<Client> = (0..20u8)
        .map(|i| {
            let c = Client::new(&server.url, key(40 + i), None).expect("client");
            c.enroll("web", TOKEN, &format!("m{i}")).expect("enrolls");
            let r = c.report(&blessed(&format!("m{i}"), OLD)).expect("reports");
            assert_eq!(r.target, None, "no rollout yet");
            c
        })
        .collect();
    let (first, second): (Vec<&Client>, Vec<&Client>) = machines
        .iter()
        .partition(|c| waves.of(&c.machine_id()) == 0);
    assert!(
        !first.is_empty() && !second.is_empty(),
        "both waves have machines"
    );

    let o = fleet(db, &["rollout", "start", "web", "not-a-commit"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a commit id"));
    let r = json(
        db,
        &[
            "rollout",
            "start",
            "web",
            NEW,
            "--waves",
            "25,100",
            "--max-failures",
            "1",
            "--json",
        ],
    );
    assert_eq!(r["state"], "running");
    assert_eq!(r["previous"], OLD);
    assert_eq!(r["opened"], 1);
    assert_eq!(r["counts"][0]["machines"], first.len());
    assert_eq!(r["counts"][1]["machines"], second.len());
    let o = fleet(db, &["rollout", "start", "web", NEW]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is running: abort it first"));

    // The first wave is sent the new commit, the second nothing yet.
    for c in &second {
        assert_eq!(c.report(&blessed("x", OLD)).expect("reports").target, None);
    }
    for c in &first {
        let t = c
            .report(&blessed("x", OLD))
            .expect("reports")
            .target
            .expect("a target");
        assert_eq!(
            (t.commit.as_str(), t.reason.as_str(), t.follows.as_str()),
            (NEW, "rollout", "origin:os/main")
        );
    }
    // Pending on the new commit is not yet done.
    first[0].report(&report("x", NEW)).expect("reports");
    assert_eq!(
        json(db, &["rollout", "status", "web", "--json"])["opened"],
        1
    );
    for c in &first {
        c.report(&blessed("x", NEW)).expect("reports");
    }
    let r = json(db, &["rollout", "status", "web", "--json"]);
    assert_eq!(r["opened"], 2, "{r}");
    assert_eq!(r["counts"][0]["done"], first.len());
    let t = second[0]
        .report(&blessed("x", OLD))
        .expect("reports")
        .target
        .expect("a target");
    assert_eq!(t.commit, NEW);

    // The new commit goes bad on a machine: the rollout pauses itself.
    let mut bad = blessed("x", OLD);
    bad.bad_commits.push(wire::BadCommit {
        os: "debian".into(),
        commit: NEW.into(),
        version: "2".into(),
        since: 20,
    });
    second[0].report(&bad).expect("reports");
    let r = json(db, &["rollout", "status", "web", "--json"]);
    assert_eq!(
        (r["state"].as_str(), r["failures"].as_u64()),
        (Some("paused"), Some(1)),
        "{r}"
    );
    let text = fleet_ok(db, &["rollout", "status", "web"]);
    assert!(
        text.contains("paused") && text.contains("wave 2 (100%) open"),
        "{text}"
    );
    // Resumed with the same limit, it pauses again; with a higher one it runs.
    assert_eq!(
        json(db, &["rollout", "resume", "web", "--json"])["state"],
        "paused"
    );
    assert_eq!(
        json(
            db,
            &["rollout", "resume", "web", "--max-failures", "3", "--json"]
        )["state"],
        "running"
    );
    assert_eq!(
        json(db, &["rollout", "pause", "web", "--json"])["state"],
        "paused"
    );

    // Abort: the open waves go back to the commit before.
    assert_eq!(
        json(db, &["rollout", "abort", "web", "--json"])["state"],
        "aborted"
    );
    let t = first[0]
        .report(&blessed("x", NEW))
        .expect("reports")
        .target
        .expect("a target");
    assert_eq!((t.commit.as_str(), t.reason.as_str()), (OLD, "abort"));
    let o = fleet(db, &["rollout", "pause", "web"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no running or paused rollout"));
    // A new rollout may start after an abort.
    assert_eq!(
        json(db, &["rollout", "start", "web", NEW, "--json"])["state"],
        "running"
    );
}

#[test]
fn fleet_rollout_in_waves_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    rollouts(dir.path().join("fleet.db").to_str().expect("utf-8"));
}

#[test]
fn fleet_rollout_in_waves_on_postgresql() {
    let pg = match pg::Postgres::start() {
        Ok(pg) => pg,
        Err(why) => return common::skip(&why),
    };
    rollouts(&pg.database("fleet"));
}

/// `--window`: a wave opens only in a minute of the calendar event.
#[test]
#[cfg_attr(
    not(test_have = "systemd-analyze"),
    ignore = "needs systemd-analyze (systemd) to read calendar events"
)]
fn fleet_rollout_waves_open_only_in_their_window() {
    if !common::have("systemd-analyze") {
        return common::skip("systemd-analyze is not installed");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("fleet.db");
    let db = db.to_str().expect("utf-8");
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).expect("token");
    fleet_ok(
        db,
        &[
            "group",
            "add",
            "web",
            "--ref",
            "o:r",
            "--token-file",
            token.to_str().expect("utf-8"),
        ],
    );
    let o = fleet(db, &["rollout", "start", "web", NEW, "--window", "bogus"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--window \"bogus\""),
        "{o:?}"
    );
    let server = Server::start(db, &["--insecure-http"]);
    let waves = Waves::parse("50,100").expect("waves");
    let machines: Vec<Client> = (0..12u8)
        .map(|i| {
            let c = Client::new(&server.url, key(90 + i), None).expect("client");
            c.enroll("web", TOKEN, "m").expect("enrolls");
            c.report(&blessed("m", OLD)).expect("reports");
            c
        })
        .collect();
    // A window in the past: the first wave settles, the second stays shut.
    let r = json(
        db,
        &[
            "rollout",
            "start",
            "web",
            NEW,
            "--waves",
            "50,100",
            "--window",
            "2001-01-01 00:00:00",
            "--json",
        ],
    );
    assert_eq!(r["window"], "2001-01-01 00:00:00");
    for c in machines.iter().filter(|c| waves.of(&c.machine_id()) == 0) {
        c.report(&blessed("m", NEW)).expect("reports");
    }
    let r = json(db, &["rollout", "status", "web", "--json"]);
    assert_eq!(
        (r["opened"].as_u64(), r["state"].as_str()),
        (Some(1), Some("running")),
        "{r}"
    );
    // Every minute: it opens.
    fleet_ok(db, &["rollout", "abort", "web"]);
    json(
        db,
        &[
            "rollout",
            "start",
            "web",
            NEW,
            "--waves",
            "50,100",
            "--window",
            "*-*-* *:*:00",
            "--json",
        ],
    );
    let r = json(db, &["rollout", "status", "web", "--json"]);
    assert_eq!(r["opened"], 2, "{r}");
}
