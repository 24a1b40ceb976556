//! The fleet page in a real browser: headless Chromium driven over
//! WebDriver (chromedriver): an operator signs in, sees the machines,
//! pauses a rollout with its button and sees it paused. A screenshot is
//! kept under target/ (CARGO_TARGET_TMPDIR/fleet-page.png).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use slate_fleet::client::Client;

use crate::common;
use crate::fleet::{fleet_ok, key, report, Server, TOKEN};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const PASSWORD: &str = "a browser test password";

/// A WebDriver session of a chromedriver this test started.
struct Browser {
    driver: Child,
    base: String,
    session: String,
}

impl Browser {
    fn start() -> Result<Browser, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| e.to_string())?;
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("chromedriver: {e}"))?;
        let base = format!("http://127.0.0.1:{port}");
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
        };
        for _ in 0..100 {
            if ureq::get(&format!("{}/status", b.base)).call().is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"]
            }
        }}});
        let v = b.call("POST", "/session", Some(caps))?;
        b.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session: {v}"))?
            .to_string();
        // Element lookups wait for the page a click leads to.
        b.call(
            "POST",
            &b.s("/timeouts"),
            Some(json!({"implicit": 10_000, "pageLoad": 30_000})),
        )?;
        Ok(b)
    }

    /// A WebDriver command: its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let r = match body {
            Some(b) => ureq::request(method, &url)
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => ureq::request(method, &url).call(),
        };
        let text = match r {
            Ok(r) => r.into_string().map_err(|e| e.to_string())?,
            Err(ureq::Error::Status(s, r)) => {
                return Err(format!(
                    "{method} {path}: {s} {}",
                    r.into_string().unwrap_or_default()
                ))
            }
            Err(e) => return Err(format!("{method} {path}: {e}")),
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        Ok(v["value"].clone())
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    fn go(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })))
            .expect("navigate");
    }

    fn element(&self, css: &str) -> String {
        let v = self
            .call(
                "POST",
                &self.s("/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        v[ELEMENT].as_str().expect("an element id").to_string()
    }

    fn type_in(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{e}/value")),
            Some(json!({ "text": text })),
        )
        .expect("type");
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{e}/click")),
            Some(json!({})),
        )
        .expect("click");
    }

    fn text(&self, css: &str) -> String {
        let e = self.element(css);
        self.call("GET", &self.s(&format!("/element/{e}/text")), None)
            .expect("text")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn source(&self) -> String {
        self.call("GET", &self.s("/source"), None)
            .expect("source")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn screenshot(&self) -> Vec<u8> {
        let v = self
            .call("GET", &self.s("/screenshot"), None)
            .expect("screenshot");
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64"))
            .expect("png")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &self.s(""), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
#[cfg_attr(
    not(all(test_have = "chromium", test_have = "chromedriver")),
    ignore = "needs Debian's chromium and chromium-driver"
)]
fn fleet_page_in_a_browser_pauses_a_rollout() {
    if !common::have("chromium") || !common::have("chromedriver") {
        return common::skip("chromium or chromedriver is not installed");
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
            "origin:os/main",
            "--token-file",
            token.to_str().expect("utf-8"),
        ],
    );
    let mut add = Command::new(common::slate_bin())
        .args(["fleet", "operator", "add", "--db", db, "alice"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("operator add");
    writeln!(add.stdin.take().expect("stdin"), "{PASSWORD}").expect("password");
    assert!(add.wait().expect("wait").success());
    let server = Server::start(db, &["--insecure-http"]);
    for i in 0..3u8 {
        let c = Client::new(&server.url, key(70 + i), None).expect("client");
        c.enroll("web", TOKEN, &format!("browser-host-{i}"))
            .expect("enrolls");
        c.report(&report(&format!("browser-host-{i}"), &"a".repeat(64)))
            .expect("reports");
    }
    fleet_ok(
        db,
        &[
            "rollout",
            "start",
            "web",
            &"b".repeat(64),
            "--waves",
            "50,100",
        ],
    );

    let b = match Browser::start() {
        Ok(b) => b,
        Err(why) => return common::skip(&format!("the browser did not start: {why}")),
    };
    b.go(&format!("{}/", server.url));
    // Not signed in: the sign-in form.
    b.type_in("#name", "alice");
    b.type_in("#password", "not the password");
    b.click("#login");
    assert!(b.text("#error").contains("Wrong name or password"));
    b.type_in("#name", "alice");
    b.type_in("#password", PASSWORD);
    b.click("#login");
    b.element("#machines");
    let page = b.source();
    for i in 0..3 {
        assert!(
            page.contains(&format!("browser-host-{i}")),
            "machine {i} not listed: {page}"
        );
    }
    assert_eq!(b.text("#state-web"), "running");
    b.click("#pause-web");
    // The page after the button: it offers Resume instead of Pause.
    b.element("#resume-web");
    assert_eq!(b.text("#state-web"), "paused");
    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleet-page.png");
    std::fs::write(&kept, &png).expect("keep the screenshot");
    eprintln!("screenshot: {}", kept.display());
    let st: Value =
        serde_json::from_str(&fleet_ok(db, &["rollout", "status", "web", "--json"])).expect("json");
    assert_eq!(st["state"], "paused");
}
