//! `slate fleet`: the server as a process, over TLS with a pinned CA, on
//! SQLite and PostgreSQL; its administration commands; a server killed
//! with SIGKILL while machines report restarts on a consistent database.

#[path = "../../../slate-fleet/tests/common/pg.rs"]
pub mod pg;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use slate_fleet::client::{Client, ClientError};
use slate_fleet::wire;

use crate::common::{self, slate_bin};

pub const TOKEN: &str = "fedcba9876543210fedcba9876543210";

pub fn fleet(db: &str, args: &[&str]) -> std::process::Output {
    Command::new(slate_bin())
        .arg("fleet")
        .args(args)
        .env("SLATE_FLEET_DB", db)
        .stdin(Stdio::null())
        .output()
        .expect("run slate fleet")
}

pub fn fleet_ok(db: &str, args: &[&str]) -> String {
    let o = fleet(db, args);
    assert!(
        o.status.success(),
        "slate fleet {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8")
}

/// A server process and its address.
pub struct Server {
    child: Child,
    pub url: String,
    log: tempfile::NamedTempFile,
}

impl Server {
    pub fn start(db: &str, extra: &[&str]) -> Server {
        let log = tempfile::NamedTempFile::new().expect("log");
        let child = Command::new(slate_bin())
            .args(["fleet", "serve", "--db", db, "--bind", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log"))
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        for _ in 0..200 {
            line.clear();
            BufReader::new(log.reopen().expect("log"))
                .read_line(&mut line)
                .expect("read its first line");
            if line.ends_with('\n') {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server { child, url, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

pub fn report(host: &str, commit: &str) -> wire::Report {
    wire::Report {
        agent_version: "0.1.0".into(),
        hostname: host.into(),
        uptime_secs: 1,
        deployments: vec![wire::Deployment {
            os: "debian".into(),
            id: "1".into(),
            commit: commit.into(),
            version: "1.0".into(),
            default: true,
            booted: true,
            pinned: false,
            state: Some(wire::State::Pending),
            tries_left: Some(2),
            etc_conflicts: vec![],
            created: 10,
        }],
        staged: vec![],
        bad_commits: vec![],
        drift: None,
    }
}

/// A CA, and a certificate for 127.0.0.1 it signed: (ca.pem, cert, key).
fn tls_files(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    let sh = format!(
        "set -e
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
           -subj /CN={name}-ca -keyout {cakey} -out {ca} 2>/dev/null
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
           -subj /CN=127.0.0.1 -keyout {key} -out {csr} 2>/dev/null
         printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > {ext}
         openssl x509 -req -in {csr} -CA {ca} -CAkey {cakey} -CAcreateserial -days 2 \
           -extfile {ext} -out {cert} 2>/dev/null",
        ca = p("ca.pem").display(),
        cakey = p("ca.key").display(),
        key = p("key.pem").display(),
        csr = p("csr.pem").display(),
        ext = p("ext").display(),
        cert = p("cert.pem").display(),
    );
    let st = Command::new("sh").arg("-c").arg(&sh).status().expect("sh");
    assert!(st.success(), "openssl made the certificates");
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

fn over_tls(db: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, tkey) = tls_files(dir.path(), "fleet");
    let (other_ca, _, _) = tls_files(dir.path(), "other");
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    fleet_ok(
        db,
        &[
            "group",
            "add",
            "web",
            "--ref",
            "origin:os/main",
            "--token-file",
            token.to_str().expect("utf-8"),
        ],
    );
    let server = Server::start(
        db,
        &[
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            tkey.to_str().expect("utf-8"),
        ],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);

    // Pinned to another CA: the server is not believed.
    let c = Client::new(&server.url, key(9), Some(&other_ca)).expect("client");
    match c.enroll("web", TOKEN, "x") {
        Err(ClientError::Transport { detail, .. }) => {
            assert!(
                detail.contains("certificate") || detail.contains("Unknown"),
                "{detail}"
            )
        }
        other => panic!("not refused by TLS: {other:?}"),
    }
    let c = Client::new(&server.url, key(1), Some(&ca)).expect("client");
    let e = c
        .enroll("web", "a-wrong-token-of-some-length", "x")
        .expect_err("bad token");
    assert!(matches!(e, ClientError::Refused { status: 403, .. }), "{e}");
    c.enroll("web", TOKEN, "x").expect("enrolls");
    c.report(&report("<b>host</b>", &"c".repeat(64)))
        .expect("reports");

    let out = fleet_ok(db, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["total"], 1);
    assert_eq!(v["machines"][0]["health"], "pending");
    assert_eq!(v["machines"][0]["hostname"], "<b>host</b>");
    let text = fleet_ok(db, &["status"]);
    assert!(
        text.contains(&c.machine_id()) && text.contains("pending"),
        "{text}"
    );
    // The page's session cookie is Secure under TLS.
    if common::have("curl") {
        let pw = dir.path().join("password");
        std::fs::write(&pw, "a password for the page\n").expect("password");
        fleet_ok(
            db,
            &[
                "operator",
                "add",
                "alice",
                "--password-file",
                pw.to_str().expect("utf-8"),
            ],
        );
        let out = Command::new("curl")
            .args(["-s", "-D", "-", "-o", "/dev/null", "--cacert"])
            .arg(&ca)
            .args(["--data", "name=alice&password=a password for the page"])
            .arg(format!("{}/login", server.url))
            .output()
            .expect("curl");
        let headers = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        let cookie = headers
            .lines()
            .find(|l| l.starts_with("set-cookie:"))
            .unwrap_or_else(|| panic!("no cookie: {headers}"));
        assert!(
            cookie.contains("httponly")
                && cookie.contains("samesite=strict")
                && cookie.contains("; secure"),
            "{cookie}"
        );
    }
    let one = fleet_ok(db, &["status", &c.machine_id()[..10]]);
    assert!(
        one.contains("hostname  <b>host</b>") && one.contains("cccccccccccc"),
        "{one}"
    );
}

#[test]
fn fleet_over_tls_on_sqlite() {
    if !common::have("openssl") {
        return common::skip("openssl is not installed");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    over_tls(dir.path().join("fleet.db").to_str().expect("utf-8"));
}

#[test]
fn fleet_over_tls_on_postgresql() {
    if !common::have("openssl") {
        return common::skip("openssl is not installed");
    }
    let pg = match pg::Postgres::start() {
        Ok(pg) => pg,
        Err(why) => return common::skip(&why),
    };
    over_tls(&pg.database("fleet"));
}

#[test]
fn fleet_group_add_prints_a_token_and_refuses_a_second_of_a_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("fleet.db");
    let db = db.to_str().expect("utf-8");
    let token = fleet_ok(db, &["group", "add", "web", "--ref", "origin:os/main"]);
    assert_eq!(token.trim().len(), 64, "{token}");
    let o = fleet(db, &["group", "add", "web", "--ref", "origin:os/main"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("group \"web\" exists"));
    let o = fleet(db, &["group", "add", "../x", "--ref", "origin:os/main"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("group name \"../x\""));
    let short = dir.path().join("short");
    std::fs::write(&short, "abc").expect("write");
    let o = fleet(
        db,
        &[
            "group",
            "add",
            "db",
            "--ref",
            "o:r",
            "--token-file",
            short.to_str().expect("utf-8"),
        ],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("16 to 256 characters"));
    let list = fleet_ok(db, &["group", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&list).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert_eq!(v[0]["follows"], "origin:os/main");
}

/// Machines report from several threads while the server is killed with
/// SIGKILL; after a restart every report the server acknowledged is there,
/// no report is half-stored, and every machine's latest report is its own.
fn killed_while_reporting(db: &str, check: impl Fn() -> (i64, i64)) {
    let token = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(token.path(), TOKEN).expect("token");
    fleet_ok(
        db,
        &[
            "group",
            "add",
            "web",
            "--ref",
            "o:r",
            "--token-file",
            token.path().to_str().expect("utf-8"),
        ],
    );
    let mut server = Server::start(db, &["--insecure-http"]);
    let acked = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..6u8)
        .map(|i| {
            let c = Client::new(&server.url, key(10 + i), None).expect("client");
            c.enroll("web", TOKEN, &format!("m{i}")).expect("enrolls");
            let acked = acked.clone();
            std::thread::spawn(move || {
                let commit = format!("{:064x}", i);
                loop {
                    match c.report(&report(&format!("m{i}"), &commit)) {
                        Ok(_) => acked.fetch_add(1, Ordering::SeqCst),
                        Err(e) => return e,
                    };
                }
            })
        })
        .collect();
    while acked.load(Ordering::SeqCst) < 300 {
        assert!(
            server.child.try_wait().ok().flatten().is_none(),
            "the server ended: {}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    server.kill();
    for t in threads {
        // Each ends at its first failure: the server is gone.
        let e = t.join().expect("thread");
        assert!(e.is_transient(), "{e}");
    }
    let acked = acked.load(Ordering::SeqCst) as i64;
    let mut server = Server::start(db, &["--insecure-http"]);
    let (reports, mismatched) = check();
    assert!(
        reports >= acked && reports <= acked + 6,
        "{reports} reports stored, {acked} acknowledged"
    );
    assert_eq!(
        mismatched, 0,
        "a machine's latest report is another's or missing"
    );
    let v: serde_json::Value =
        serde_json::from_str(&fleet_ok(db, &["status", "--json"])).expect("json");
    assert_eq!(v["total"], 6);
    // And it goes on.
    let c = Client::new(&server.url, key(10), None).expect("client");
    c.report(&report("m0", &format!("{:064x}", 0)))
        .expect("reports after the restart");
    server.kill();
}

const CONSISTENCY: &str = "SELECT (SELECT COUNT(*) FROM reports),
    (SELECT COUNT(*) FROM machines m LEFT JOIN reports r ON r.id = m.last_report
     WHERE r.id IS NULL OR r.machine <> m.id
        OR r.booted_commit <> (SELECT x.booted_commit FROM reports x WHERE x.machine = m.id ORDER BY x.id DESC LIMIT 1))";

#[test]
fn fleet_server_killed_while_reporting_restarts_consistent_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fleet.db");
    let db = path.to_str().expect("utf-8").to_string();
    killed_while_reporting(&db, || {
        let d = slate_fleet::Db::open(&slate_fleet::Target::Sqlite(path.clone())).expect("open");
        d.tx(|tx| -> Result<_, slate_fleet::DbError> {
            let r = tx.query_one(CONSISTENCY, &[])?.expect("a row");
            Ok((r.int(0)?, r.int(1)?))
        })
        .expect("query")
    });
}

#[test]
fn fleet_server_killed_while_reporting_restarts_consistent_postgresql() {
    let pg = match pg::Postgres::start() {
        Ok(pg) => pg,
        Err(why) => return common::skip(&why),
    };
    let url = pg.database("fleet");
    killed_while_reporting(&url, || {
        let d = slate_fleet::Db::open(&slate_fleet::Target::Postgres(url.clone())).expect("open");
        d.tx(|tx| -> Result<_, slate_fleet::DbError> {
            let r = tx.query_one(CONSISTENCY, &[])?.expect("a row");
            Ok((r.int(0)?, r.int(1)?))
        })
        .expect("query")
    });
}
