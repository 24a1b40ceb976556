//! Machines' kept state end to end, on SQLite and on PostgreSQL: uploads
//! within the limits and the group's list, sealed at rest (the database
//! file holds no plaintext), each machine reaching only its own, replayed
//! or cut requests changing nothing, replacements (approved in advance by
//! hardware id, of one enrolled machine by another, automatic where the
//! group allows it), forgetting (logged), and rekeying while the server
//! serves. Then the agent's side: a new disk gets the old one's files
//! back through the image's links, and a file changed on both sides is
//! left as it is.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use ed25519_dalek::SigningKey;
use slate_fleet::client::{Client, ClientError};
use slate_fleet::state::operator;
use slate_fleet::state::wire::{File, Limits, Upload};
use slate_fleet::state::{KeyRing, Service};
use slate_fleet::{auth, records, server, Db, Target};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const SECRET: &[u8] = b"-----BEGIN OPENSSH PRIVATE KEY----- plaintext-marker-7f3a9c";
const HW_NEW: &str = "4c4c4544-0000-1000-8000-00000000000a";
const HW_D: &str = "4c4c4544-0000-1000-8000-00000000000d";
const HOST_KEY: &str = "/etc/ssh/ssh_host_ed25519_key";

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn limits() -> Limits {
    Limits {
        file_bytes: 4096,
        files: 4,
        total_bytes: 8192,
    }
}

fn start(db: Arc<Db>, key_file: &Path) -> server::Running {
    let svc = Service {
        keys: KeyRing::open(key_file).expect("key file"),
        limits: limits(),
    };
    server::start(
        db,
        &server::Options {
            bind: "127.0.0.1:0".into(),
            tls: None,
            threads: 4,
            state: Some(Arc::new(svc)),
        },
    )
    .expect("server starts")
}

fn status(e: ClientError) -> u16 {
    match e {
        ClientError::Refused { status, .. } => status,
        other => panic!("not a refusal: {other}"),
    }
}

fn file(path: &str, content: &[u8]) -> File {
    File {
        path: path.into(),
        mode: 0o600,
        uid: 0,
        gid: 0,
        content: base64::engine::general_purpose::STANDARD.encode(content),
        version: None,
    }
}

fn upload(c: &Client, files: Vec<File>) -> Result<Vec<String>, ClientError> {
    c.state_upload(&Upload { files })
        .map(|s| s.files.into_iter().map(|m| m.path).collect())
}

fn content_of(c: &Client, path: &str) -> Option<Vec<u8>> {
    let files = c.state_files().expect("files");
    files.files.iter().find(|f| f.path == path).map(|f| {
        base64::engine::general_purpose::STANDARD
            .decode(&f.content)
            .expect("base64")
    })
}

/// Every row of the state table, as (machine row, path, version, sealed).
fn rows(db: &Db) -> Vec<(i64, String, String, Vec<u8>)> {
    db.tx(|tx| -> Result<_, slate_fleet::DbError> {
        tx.query(
            "SELECT machine, path, version, sealed FROM state_files ORDER BY machine, path",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.int(0)?, r.text(1)?, r.text(2)?, r.bytes(3)?)))
        .collect()
    })
    .expect("rows")
}

/// A raw signed request: (status, answer).
fn raw(base: &str, k: &SigningKey, method: &str, path: &str, body: &[u8], nonce: &str) -> u16 {
    let mut req = ureq::request(method, &format!("{base}{path}"));
    for (n, v) in auth::sign(k, method, path, body, slate_fleet::now(), nonce) {
        req = req.set(n, &v);
    }
    let r = if method == "GET" {
        req.call()
    } else {
        req.send_bytes(body)
    };
    match r {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(s, _)) => s,
        Err(e) => panic!("{e}"),
    }
}

fn scenario(db: Arc<Db>, dir: &Path, db_files: &[&Path]) {
    records::add_group(&db, "web", "origin:os/main", TOKEN, 1).expect("group");
    let key_file = dir.join("state.key");
    let running = start(db.clone(), &key_file);
    assert_eq!(
        std::fs::metadata(&key_file).expect("key file").mode() & 0o777,
        0o600
    );
    let base = format!("http://{}", running.addr);
    let a = Client::new(&base, key(1), None).expect("client");
    a.enroll_as(
        "web",
        TOKEN,
        "a",
        Some("4C4C4544-0000-1000-8000-00000000000A"),
    )
    .expect("enrolls");
    let index = a.state_index().expect("index");
    assert_eq!(index.keep, vec!["/etc/ssh/ssh_host_*".to_string()]);
    assert!(index.files.is_empty());
    assert_eq!(
        upload(&a, vec![file(HOST_KEY, SECRET)]).expect("stored"),
        vec![HOST_KEY]
    );
    assert_eq!(content_of(&a, HOST_KEY).as_deref(), Some(SECRET));
    let index = a.state_index().expect("index");
    assert_eq!(index.files[0].size, SECRET.len() as u64);

    // Sealed at rest: neither the database nor its journal holds the
    // plaintext.
    for f in db_files {
        let bytes = std::fs::read(f).unwrap_or_default();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET),
            "{} holds the plaintext",
            f.display()
        );
    }
    for (.., sealed) in rows(&db) {
        assert!(!sealed.windows(16).any(|w| w == &SECRET[..16]));
    }

    // Another machine reaches only its own; paths outside the list, or
    // climbing, too large, too many: refused, nothing changed.
    let b = Client::new(&base, key(2), None).expect("client");
    b.enroll("web", TOKEN, "b").expect("enrolls");
    assert!(b.state_files().expect("files").files.is_empty());
    let before = rows(&db);
    for (files, want) in [
        (vec![file("/etc/passwd", b"x")], 400),
        (vec![file("/etc/ssh/../shadow", b"x")], 400),
        (vec![file("/usr/bin/sh", b"x")], 400),
        (vec![file("/etc/ssh/ssh_host_rsa_key", &[7u8; 5000])], 400),
        (
            (0..5)
                .map(|i| file(&format!("/etc/ssh/ssh_host_{i}"), b"x"))
                .collect(),
            413,
        ),
        (
            (0..3)
                .map(|i| file(&format!("/etc/ssh/ssh_host_{i}"), &[1u8; 4000]))
                .collect(),
            413,
        ),
        (
            vec![
                file("/etc/ssh/ssh_host_a", b"x"),
                file("/etc/ssh/ssh_host_a", b"y"),
            ],
            400,
        ),
    ] {
        let e = upload(&b, files).expect_err("refused");
        assert_eq!(status(e), want);
    }
    assert_eq!(rows(&db), before);

    // A replayed upload, and one signed by another machine's key over A's
    // request: refused, nothing changed.
    let body = serde_json::to_vec(&Upload {
        files: vec![file(HOST_KEY, b"replayed")],
    })
    .expect("json");
    assert_eq!(
        raw(
            &base,
            &key(1),
            "POST",
            "/api/v1/state",
            &body,
            "bbbb0000bbbb0001"
        ),
        200
    );
    let after_first = rows(&db);
    assert_eq!(
        raw(
            &base,
            &key(1),
            "POST",
            "/api/v1/state",
            &body,
            "bbbb0000bbbb0001"
        ),
        409
    );
    assert_eq!(rows(&db), after_first);
    upload(&a, vec![file(HOST_KEY, SECRET)]).expect("stored again");
    let before = rows(&db);
    let mut req = ureq::post(&format!("{base}/api/v1/state"));
    let signed_by_b = auth::sign(
        &key(2),
        "POST",
        "/api/v1/state",
        &body,
        slate_fleet::now(),
        "cccc0000cccc0001",
    );
    let signed_by_a = auth::sign(
        &key(1),
        "POST",
        "/api/v1/state",
        &body,
        slate_fleet::now(),
        "cccc0000cccc0001",
    );
    for ((n, v), (_, va)) in signed_by_b.iter().zip(signed_by_a.iter()) {
        // A's key, B's signature.
        req = req.set(n, if *n == auth::HEADER_KEY { va } else { v });
    }
    match req.send_bytes(&body) {
        Err(ureq::Error::Status(s, _)) => assert_eq!(s, 401),
        other => panic!("not refused: {:?}", other.map(|r| r.status())),
    }
    assert_eq!(rows(&db), before);

    // An upload cut short: its connection closed before the body's end.
    let mut sock = std::net::TcpStream::connect(running.addr).expect("connect");
    let headers = auth::sign(
        &key(1),
        "POST",
        "/api/v1/state",
        &body,
        slate_fleet::now(),
        "dddd0000dddd0001",
    );
    let mut head = format!(
        "POST /api/v1/state HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in &headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).expect("send");
    sock.write_all(&body[..body.len() / 2]).expect("send");
    sock.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut answer = String::new();
    let _ = sock.read_to_string(&mut answer);
    assert!(!answer.contains(" 200 "), "{answer}");
    assert_eq!(rows(&db), before);

    // Approved in advance: the first machine of the group to enroll with
    // that hardware id takes A's state; A no longer reaches it.
    operator::replace_by_hardware(&db, &a.machine_id(), HW_NEW, "test", 10).expect("approved");
    let listed = operator::list(&db, &a.machine_id()).expect("listed");
    assert_eq!(listed.pending_hardware.as_deref(), Some(HW_NEW));
    let c = Client::new(&base, key(3), None).expect("client");
    let e = c
        .enroll_as("web", TOKEN, "c", Some(HW_NEW))
        .expect("enrolls");
    assert_eq!(e.replaces.as_deref(), Some(a.machine_id().as_str()));
    assert_eq!(content_of(&c, HOST_KEY).as_deref(), Some(SECRET));
    assert_eq!(status(a.state_files().expect_err("replaced")), 409);
    assert_eq!(status(a.state_index().expect_err("replaced")), 409);

    // One enrolled machine replaced by another: D's own files dropped,
    // C's moved with new versions.
    let d = Client::new(&base, key(4), None).expect("client");
    d.enroll_as("web", TOKEN, "d", Some(HW_D)).expect("enrolls");
    upload(&d, vec![file(HOST_KEY, b"d's own")]).expect("stored");
    let v_before = c.state_index().expect("index").files[0].version.clone();
    assert_eq!(
        operator::replace(&db, &c.machine_id(), &d.machine_id(), "test", 11).expect("replaced"),
        1
    );
    assert_eq!(content_of(&d, HOST_KEY).as_deref(), Some(SECRET));
    assert_ne!(d.state_index().expect("index").files[0].version, v_before);
    let e = operator::replace(&db, &c.machine_id(), &b.machine_id(), "test", 12);
    assert!(matches!(e, Err(records::Error::Refused(_))), "{e:?}");

    // Without the group's leave, the same hardware id alone takes nothing;
    // with it, it does.
    let e1 = Client::new(&base, key(5), None).expect("client");
    let got = e1
        .enroll_as("web", TOKEN, "e1", Some(HW_D))
        .expect("enrolls");
    assert_eq!(got.replaces, None);
    assert!(e1.state_files().expect("files").files.is_empty());
    let p = operator::set_policy(&db, "web", None, Some(true)).expect("policy");
    assert!(p.auto_replace);
    let e2 = Client::new(&base, key(6), None).expect("client");
    let got = e2
        .enroll_as("web", TOKEN, "e2", Some(HW_D))
        .expect("enrolls");
    assert!(got.replaces.is_some());
    assert_eq!(content_of(&e2, HOST_KEY).as_deref(), Some(SECRET));

    // Rekey while the server serves: every row sealed by the new key, the
    // old one retired, the content still served.
    let r = operator::rekey(&db, &key_file, false).expect("rekeyed");
    assert!(r.rows >= 1);
    assert_eq!(content_of(&e2, HOST_KEY).as_deref(), Some(SECRET));
    let r2 = operator::rekey(&db, &key_file, true).expect("rekeyed and retired");
    assert_eq!(r2.retired.len(), 2);
    let text = std::fs::read_to_string(&key_file).expect("key file");
    assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 1);
    assert_eq!(content_of(&e2, HOST_KEY).as_deref(), Some(SECRET));

    // Forgetting: gone, and logged.
    assert_eq!(
        operator::forget(&db, &e2.machine_id(), None, "operator alice", 20).expect("forgot"),
        1
    );
    assert!(e2.state_files().expect("files").files.is_empty());
    let l = operator::list(&db, &e2.machine_id()).expect("listed");
    assert!(l
        .log
        .iter()
        .any(|e| e.event == "forget" && e.detail.contains("alice")));
    running.stop();
}

#[test]
fn state_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fleet.db");
    let db = Arc::new(Db::open(&Target::Sqlite(path.clone())).expect("open"));
    let wal = dir.path().join("fleet.db-wal");
    scenario(db, dir.path(), &[&path, &wal]);
}

#[test]
fn state_on_postgresql() {
    let pg = match common::pg::Postgres::start() {
        Ok(pg) => pg,
        Err(why) => return common::skip(&why),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::Postgres(pg.database("fleet"));
    scenario(Arc::new(Db::open(&target).expect("open")), dir.path(), &[]);
}

#[test]
fn a_server_without_a_state_key_refuses_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(&Target::Sqlite(dir.path().join("f.db"))).expect("open"));
    records::add_group(&db, "web", "origin:os/main", TOKEN, 1).expect("group");
    let running = server::start(
        db,
        &server::Options {
            bind: "127.0.0.1:0".into(),
            tls: None,
            threads: 1,
            state: None,
        },
    )
    .expect("starts");
    let a = Client::new(&format!("http://{}", running.addr), key(1), None).expect("client");
    a.enroll("web", TOKEN, "a").expect("enrolls");
    assert_eq!(status(a.state_index().expect_err("no state")), 503);
    running.stop();
}

#[allow(dead_code)]
fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}
