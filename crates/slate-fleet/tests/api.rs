//! The API end to end, on SQLite and on PostgreSQL: enrollment, reports,
//! and every refusal (bad token, unknown key, wrong signature, stale time,
//! replayed nonce, oversized or unknown fields) leaving the database as it
//! was.

mod common;

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use slate_fleet::client::{Client, ClientError};
use slate_fleet::{auth, records, server, wire, Db, Target};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn start(db: Arc<Db>) -> server::Running {
    server::start(
        db,
        &server::Options {
            bind: "127.0.0.1:0".into(),
            tls: None,
            threads: 4,
            state: None,
        },
    )
    .expect("server starts")
}

/// (reports, machines, nonces) in the database.
fn counts(db: &Db) -> (i64, i64, i64) {
    db.tx(|tx| -> Result<_, slate_fleet::DbError> {
        let mut n = |t: &str| -> Result<i64, slate_fleet::DbError> {
            tx.query_one(&format!("SELECT COUNT(*) FROM {t}"), &[])
                .map(|r| r.expect("a count").int(0).expect("an integer"))
        };
        Ok((n("reports")?, n("machines")?, n("nonces")?))
    })
    .expect("counted")
}

fn status(e: ClientError) -> u16 {
    match e {
        ClientError::Refused { status, .. } => status,
        other => panic!("not a refusal: {other}"),
    }
}

/// A request signed by `key` over `signed_body` (and at `time`), sending
/// `body`: (status, answer).
fn raw(
    base: &str,
    key: &SigningKey,
    path: &str,
    signed_body: &[u8],
    body: &[u8],
    time: i64,
    nonce: &str,
) -> (u16, String) {
    let mut req = ureq::post(&format!("{base}{path}"));
    for (n, v) in auth::sign(key, "POST", path, signed_body, time, nonce) {
        req = req.set(n, &v);
    }
    match req.send_bytes(body) {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{e}"),
    }
}

fn scenario(db: Arc<Db>) {
    records::add_group(&db, "web", "origin:os/main", TOKEN, 1).expect("group");
    let running = start(db.clone());
    let base = format!("http://{}", running.addr);
    let a = Client::new(&base, key(1), None).expect("client");

    // A wrong token and an unknown group are refused alike; nothing stored.
    let e = a
        .enroll("web", "not-the-token-at-all", "a")
        .expect_err("bad token");
    assert_eq!(status(e), 403);
    let e = a.enroll("nosuch", TOKEN, "a").expect_err("no group");
    assert_eq!(status(e), 403);
    assert_eq!(counts(&db).1, 0);

    // A report before enrolling: an unknown key.
    let e = a.report(&common::report("a")).expect_err("unknown key");
    assert_eq!(status(e), 403);

    let enrolled = a.enroll("web", TOKEN, "a").expect("enrolls");
    assert_eq!(enrolled.machine, a.machine_id());
    // Again: the same machine, no second row.
    a.enroll("web", TOKEN, "a").expect("enrolls again");
    assert_eq!(counts(&db).1, 1);

    let r = a.report(&common::report("host-a")).expect("reports");
    assert_eq!(r.reports, 1);
    let own = a.own().expect("own record");
    assert_eq!(own.hostname, "host-a");
    assert_eq!(own.health, Some(wire::Health::Blessed));
    assert_eq!(own.booted_commit.as_deref(), Some(common::COMMIT_A));

    // Another machine sees only itself; there is no route to another's.
    let b = Client::new(&base, key(2), None).expect("client");
    b.enroll("web", TOKEN, "b").expect("enrolls");
    let own_b = b.own().expect("own record");
    assert_eq!(own_b.machine, b.machine_id());
    assert_eq!(own_b.reports, 0);

    let body = serde_json::to_vec(&common::report("host-a")).expect("json");
    let now = slate_fleet::now();
    let before = counts(&db);
    // A body other than the one signed.
    let mut other = common::report("host-a");
    other.uptime_secs = 7;
    let other = serde_json::to_vec(&other).expect("json");
    let (s, text) = raw(
        &base,
        &key(1),
        "/api/v1/report",
        &body,
        &other,
        now,
        "aaaa0000aaaa0001",
    );
    assert_eq!(s, 401, "{text}");
    assert!(text.contains("signature does not check"), "{text}");
    // A stale time.
    let (s, text) = raw(
        &base,
        &key(1),
        "/api/v1/report",
        &body,
        &body,
        now - 3600,
        "aaaa0000aaaa0002",
    );
    assert_eq!(s, 401, "{text}");
    assert!(text.contains("is 3600 s away"), "{text}");
    // Signed by a key that is not the one sent: B's signature with A's key
    // header fails as a wrong signature.
    let mut req = ureq::post(&format!("{base}/api/v1/report"));
    let b_headers = auth::sign(
        &key(2),
        "POST",
        "/api/v1/report",
        &body,
        now,
        "aaaa0000aaaa0003",
    );
    let a_headers = auth::sign(
        &key(1),
        "POST",
        "/api/v1/report",
        &body,
        now,
        "aaaa0000aaaa0003",
    );
    for (i, (n, v)) in b_headers.iter().enumerate() {
        let v = if i == 0 { &a_headers[0].1 } else { v };
        req = req.set(n, v);
    }
    let s = match req.send_bytes(&body) {
        Err(ureq::Error::Status(s, _)) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(s, 401);
    assert_eq!(counts(&db), before, "refusals changed nothing");

    // A good request, then the same again: the replay is refused.
    let (s, text) = raw(
        &base,
        &key(1),
        "/api/v1/report",
        &body,
        &body,
        now,
        "aaaa0000aaaa0004",
    );
    assert_eq!(s, 200, "{text}");
    let after_one = counts(&db);
    assert_eq!(after_one.0, before.0 + 1);
    let (s, text) = raw(
        &base,
        &key(1),
        "/api/v1/report",
        &body,
        &body,
        now,
        "aaaa0000aaaa0004",
    );
    assert_eq!(s, 409, "{text}");
    assert!(text.contains("replayed"), "{text}");
    assert_eq!(counts(&db), after_one);

    // Fields: unknown, hostile, oversized.
    let mut v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    v["extra"] = 1.into();
    let unknown = serde_json::to_vec(&v).expect("json");
    let (s, text) = raw(
        &base,
        &key(1),
        "/api/v1/report",
        &unknown,
        &unknown,
        now,
        "aaaa0000aaaa0005",
    );
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("unknown field `extra`"), "{text}");
    let mut bad = common::report("host-a");
    bad.deployments[0].commit = "../../etc/passwd".into();
    let bad = serde_json::to_vec(&bad).expect("json");
    let (s, text) = raw(
        &base,
        &key(1),
        "/api/v1/report",
        &bad,
        &bad,
        now,
        "aaaa0000aaaa0006",
    );
    assert_eq!(s, 400, "{text}");
    assert!(
        text.contains("deployments[0].commit: not a commit id"),
        "{text}"
    );
    let mut long = common::report(&"x".repeat(300));
    long.hostname = "x".repeat(300);
    let long = serde_json::to_vec(&long).expect("json");
    let (s, text) = raw(
        &base,
        &key(1),
        "/api/v1/report",
        &long,
        &long,
        now,
        "aaaa0000aaaa0007",
    );
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("hostname: 300 bytes"), "{text}");
    let huge = vec![b' '; wire::MAX_BODY + 1];
    let (s, _) = raw(
        &base,
        &key(1),
        "/api/v1/report",
        &huge,
        &huge,
        now,
        "aaaa0000aaaa0008",
    );
    assert_eq!(s, 413);
    assert_eq!(counts(&db).0, after_one.0, "refusals stored no report");

    // The operator's view, from the database.
    let (list, total) = records::machines(&db, 0, 10).expect("machines");
    assert_eq!(total, 2);
    let ma = list
        .iter()
        .find(|m| m.machine == a.machine_id())
        .expect("A listed");
    assert_eq!(ma.reports, 2);
    assert_eq!(ma.staged_commit.as_deref(), Some(common::COMMIT_B));
    assert_eq!((ma.drift_etc, ma.drift_var), (Some(2), Some(3)));
    let h = records::history(&db, &a.machine_id(), 10).expect("history");
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].report["hostname"], "host-a");
    running.stop();
}

#[test]
fn api_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::Sqlite(dir.path().join("fleet.db"));
    scenario(Arc::new(Db::open(&target).expect("open")));
    // Opened again: the migrations are not run twice.
    let db = Db::open(&target).expect("reopen");
    assert_eq!(records::machines(&db, 0, 10).expect("machines").1, 2);
}

#[test]
fn api_on_postgresql() {
    let pg = match common::pg::Postgres::start() {
        Ok(pg) => pg,
        Err(why) => return common::skip(&why),
    };
    let target = Target::Postgres(pg.database("fleet"));
    scenario(Arc::new(Db::open(&target).expect("open")));
    let db = Db::open(&target).expect("reopen");
    assert_eq!(records::machines(&db, 0, 10).expect("machines").1, 2);
}

#[test]
fn a_database_newer_than_this_slate_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::Sqlite(dir.path().join("fleet.db"));
    let db = Db::open(&target).expect("open");
    db.tx(|tx| {
        tx.exec(
            "INSERT INTO schema_migrations (version, applied) VALUES (999, 0)",
            &[],
        )
    })
    .expect("insert");
    drop(db);
    let e = Db::open(&target).err().expect("refused");
    assert!(e.to_string().contains("version 999, newer"), "{e}");
}
