//! The operator's page on SQLite and PostgreSQL: sign-in, the session
//! cookie's attributes, hostile hostnames escaped, pagination, a machine's
//! history and kept files (never their contents), and the rollout buttons,
//! the replacement form and the state API's changes that need the
//! session's CSRF token.

mod common;

use std::sync::Arc;

use base64::Engine;
use ed25519_dalek::SigningKey;
use slate_fleet::records::{self, Caller};
use slate_fleet::state::store;
use slate_fleet::state::wire::{File, Upload};
use slate_fleet::state::{KeyRing, Limits, Service};
use slate_fleet::{operators, rollout, server, wire, Db, Target};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const PASSWORD: &str = "correct horse battery staple";

/// (status, headers of interest, body) of a request, redirects not followed.
fn req(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, Option<String>, Option<String>, String) {
    let mut r = agent.request(method, url);
    if let Some(c) = cookie {
        r = r.set("Cookie", &format!("slate_session={c}"));
    }
    let out = if method == "POST" {
        r.send_form(form)
    } else {
        r.call()
    };
    let resp = match out {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = resp.status();
    let loc = resp.header("Location").map(str::to_string);
    let set = resp.header("Set-Cookie").map(str::to_string);
    (status, loc, set, resp.into_string().unwrap_or_default())
}

fn enroll(db: &Db, n: u32, hostname: &str) -> String {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    let key = SigningKey::from_bytes(&seed);
    let public = *key.verifying_key().as_bytes();
    let id = slate_fleet::auth::key_id(&public);
    let nonce = format!("{:032x}", n);
    let who = Caller {
        public: &public,
        key_id: &id,
        nonce: &nonce,
    };
    let e = wire::Enroll {
        group: "web".into(),
        token: TOKEN.into(),
        hostname: hostname.into(),
        hardware: None,
    };
    records::enroll(db, &who, &e, slate_fleet::now()).expect("enrolls");
    let nonce = format!("{:032x}", u64::from(n) + (1 << 40));
    let who = Caller {
        public: &public,
        key_id: &id,
        nonce: &nonce,
    };
    records::report(db, &who, &common::report(hostname), slate_fleet::now()).expect("reports");
    id
}

const KEPT: &[u8] = b"kept-content-never-shown-31c9";

/// Machine `n` keeps a host key on the server.
fn keep(db: &Db, n: u32) {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    let key = SigningKey::from_bytes(&seed);
    let public = *key.verifying_key().as_bytes();
    let id = slate_fleet::auth::key_id(&public);
    let nonce = format!("{:032x}", u64::from(n) + (2 << 40));
    let who = Caller {
        public: &public,
        key_id: &id,
        nonce: &nonce,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service {
        keys: KeyRing::open(&dir.path().join("k")).expect("keys"),
        limits: Limits::default(),
    };
    let up = Upload {
        files: vec![File {
            path: "/etc/ssh/ssh_host_ed25519_key".into(),
            mode: 0o600,
            uid: 0,
            gid: 0,
            content: base64::engine::general_purpose::STANDARD.encode(KEPT),
            version: None,
        }],
    };
    store::upload(db, &svc, &who, &up, slate_fleet::now()).expect("kept");
}

/// A JSON POST of the operator's API: its status and answer.
fn api_post(
    agent: &ureq::Agent,
    url: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut r = agent
        .post(url)
        .set("Cookie", &format!("slate_session={cookie}"));
    if let Some(t) = csrf {
        r = r.set("X-Slate-CSRF", t);
    }
    match r.send_string(body) {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{e}"),
    }
}

fn scenario(db: Arc<Db>) {
    records::add_group(&db, "web", "origin:os/main", TOKEN, 1).expect("group");
    operators::set(&db, "alice", PASSWORD, 1).expect("operator");
    assert!(
        operators::set(&db, "bob", "short", 1).is_err(),
        "a short password is refused"
    );
    let hostile = enroll(&db, 0, "<script>alert('x')</script>");
    for n in 1..150 {
        enroll(&db, n, &format!("host-{n}"));
    }
    keep(&db, 0);
    rollout::start(
        &db,
        "web",
        common::COMMIT_B,
        &rollout::Waves::parse("50,100").expect("w"),
        1,
        None,
        2,
    )
    .expect("rollout");
    let running = server::start(
        db.clone(),
        &server::Options {
            bind: "127.0.0.1:0".into(),
            tls: None,
            threads: 2,
            state: None,
        },
    )
    .expect("server");
    let base = format!("http://{}", running.addr);
    let agent = ureq::AgentBuilder::new().redirects(0).build();

    // Not signed in: sent to the sign-in page; a POST refused.
    let (s, loc, _, _) = req(&agent, "GET", &format!("{base}/"), None, &[]);
    assert_eq!((s, loc.as_deref()), (303, Some("/login")));
    let (s, _, _, _) = req(
        &agent,
        "POST",
        &format!("{base}/rollout/web/pause"),
        None,
        &[],
    );
    assert_eq!(s, 403);
    let (s, _, set, body) = req(
        &agent,
        "POST",
        &format!("{base}/login"),
        None,
        &[("name", "alice"), ("password", "wrong password!")],
    );
    assert_eq!((s, set), (403, None));
    assert!(body.contains("Wrong name or password"), "{body}");
    let (s, loc, set, _) = req(
        &agent,
        "POST",
        &format!("{base}/login"),
        None,
        &[("name", "alice"), ("password", PASSWORD)],
    );
    assert_eq!((s, loc.as_deref()), (303, Some("/")));
    let set = set.expect("a cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "no Secure over plain HTTP: {set}");
    let cookie = set
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_string())
        .expect("value");
    // A forged cookie is no session.
    let (s, _, _, _) = req(
        &agent,
        "GET",
        &format!("{base}/"),
        Some(&"0".repeat(64)),
        &[],
    );
    assert_eq!(s, 303);

    // The operator's JSON API: the same session.
    let (s, _, _, _) = req(&agent, "GET", &format!("{base}/api/v1/machines"), None, &[]);
    assert_eq!(s, 401);
    let (s, _, _, j) = req(
        &agent,
        "GET",
        &format!("{base}/api/v1/machines?page=1"),
        Some(&cookie),
        &[],
    );
    assert_eq!(s, 200);
    let j: serde_json::Value = serde_json::from_str(&j).expect("json");
    assert_eq!(
        (j["total"].as_u64(), j["machines"].as_array().map(Vec::len)),
        (Some(150), Some(50))
    );
    let (_, _, _, g) = req(
        &agent,
        "GET",
        &format!("{base}/api/v1/groups"),
        Some(&cookie),
        &[],
    );
    let g: serde_json::Value = serde_json::from_str(&g).expect("json");
    assert_eq!(g[0]["rollout"]["state"], "running", "{g}");

    let (s, _, _, page) = req(&agent, "GET", &format!("{base}/"), Some(&cookie), &[]);
    assert_eq!(s, 200);
    assert!(page.contains("150 machines; page 1 of 2"), "{page}");
    assert!(
        !page.contains("<script>"),
        "a hostname's markup reached the page"
    );
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(page.contains("id=\"state-web\">running"), "{page}");
    assert!(page.contains("<progress"));
    assert_eq!(page.matches("<tr><td><a href=\"/machine/").count(), 100);
    let (_, _, _, page2) = req(
        &agent,
        "GET",
        &format!("{base}/?page=1"),
        Some(&cookie),
        &[],
    );
    assert_eq!(page2.matches("<tr><td><a href=\"/machine/").count(), 50);
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF token")
        .to_string();

    let (s, _, _, m) = req(
        &agent,
        "GET",
        &format!("{base}/machine/{hostile}"),
        Some(&cookie),
        &[],
    );
    assert_eq!(s, 200);
    assert!(m.contains("id=\"history\"") && m.contains("blessed") && !m.contains("<script>"));
    let (s, _, _, _) = req(
        &agent,
        "GET",
        &format!("{base}/machine/zz"),
        Some(&cookie),
        &[],
    );
    assert_eq!(s, 404);

    // The machine's kept files: path, size and mode, never the content.
    assert!(m.contains("id=\"state\""), "{m}");
    assert!(
        m.contains("<code>/etc/ssh/ssh_host_ed25519_key</code>"),
        "{m}"
    );
    assert!(
        m.contains(&format!("{} B", KEPT.len())) && m.contains("0600"),
        "{m}"
    );
    assert!(!m.contains("kept-content"), "{m}");
    // The replacement form: refused without the token, or with a bad id.
    let replace = format!("{base}/machine/{hostile}/replace");
    let hw = "4c4c4544-0000-1000-8000-0000000000e1";
    let (s, _, _, _) = req(&agent, "POST", &replace, Some(&cookie), &[("hardware", hw)]);
    assert_eq!(s, 403);
    let (s, _, _, _) = req(
        &agent,
        "POST",
        &replace,
        Some(&cookie),
        &[("csrf", &csrf), ("hardware", "../x")],
    );
    assert_eq!(s, 409);
    let (s, _, _, _) = req(
        &agent,
        "POST",
        &replace,
        Some(&cookie),
        &[("csrf", &csrf), ("hardware", hw)],
    );
    assert_eq!(s, 303);
    let listed = slate_fleet::state::operator::list(&db, &hostile).expect("listed");
    assert_eq!(listed.pending_hardware.as_deref(), Some(hw));
    assert!(listed
        .log
        .iter()
        .any(|e| e.detail.contains("operator alice")));
    // The same in the JSON API; forgetting needs the session's token.
    let (s, _, _, j) = req(
        &agent,
        "GET",
        &format!("{base}/api/v1/machines/{hostile}/state"),
        Some(&cookie),
        &[],
    );
    assert_eq!(s, 200);
    let j: serde_json::Value = serde_json::from_str(&j).expect("json");
    assert_eq!(j["files"][0]["size"], KEPT.len(), "{j}");
    assert!(j["files"][0].get("content").is_none(), "{j}");
    let forget = format!("{base}/api/v1/machines/{hostile}/state/forget");
    let (s, _) = api_post(&agent, &forget, &cookie, None, "{}");
    assert_eq!(s, 403);
    let (s, _) = api_post(&agent, &forget, &cookie, Some(&"0".repeat(64)), "{}");
    assert_eq!(s, 403);
    assert_eq!(
        slate_fleet::state::operator::list(&db, &hostile)
            .expect("l")
            .files
            .len(),
        1
    );
    let (s, a) = api_post(&agent, &forget, &cookie, Some(&csrf), "{\"path\": null}");
    assert_eq!(s, 200, "{a}");
    assert!(a.contains("\"forgotten\":1"), "{a}");
    let l = slate_fleet::state::operator::list(&db, &hostile).expect("l");
    assert!(l.files.is_empty());
    assert!(l
        .log
        .iter()
        .any(|e| e.event == "forget" && e.detail.contains("alice")));

    // The pause button: refused without the token or with another one.
    for bad in [vec![], vec![("csrf", "f".repeat(64))]] {
        let form: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, _, _, _) = req(
            &agent,
            "POST",
            &format!("{base}/rollout/web/pause"),
            Some(&cookie),
            &form,
        );
        assert_eq!(s, 403);
    }
    let state = |db: &Db| {
        rollout::status(db, "web", slate_fleet::now())
            .expect("s")
            .expect("r")
            .state
    };
    assert_eq!(state(&db), "running");
    let (s, loc, _, _) = req(
        &agent,
        "POST",
        &format!("{base}/rollout/web/pause"),
        Some(&cookie),
        &[("csrf", &csrf)],
    );
    assert_eq!((s, loc.as_deref()), (303, Some("/")));
    assert_eq!(state(&db), "paused");

    let (s, _, _, _) = req(
        &agent,
        "POST",
        &format!("{base}/logout"),
        Some(&cookie),
        &[("csrf", &csrf)],
    );
    assert_eq!(s, 303);
    let (s, _, _, _) = req(&agent, "GET", &format!("{base}/"), Some(&cookie), &[]);
    assert_eq!(s, 303, "signed out");
    running.stop();
}

#[test]
fn page_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    scenario(Arc::new(
        Db::open(&Target::Sqlite(dir.path().join("f.db"))).expect("open"),
    ));
}

#[test]
fn page_on_postgresql() {
    let pg = match common::pg::Postgres::start() {
        Ok(pg) => pg,
        Err(why) => return common::skip(&why),
    };
    scenario(Arc::new(
        Db::open(&Target::Postgres(pg.database("fleet"))).expect("open"),
    ));
}
