//! A hostile server or mirror against the HTTP client (redirects, a body
//! that trickles, a refused connection), and hostile requests and folders
//! against `slate serve` (symlinks, keys, folders that are not a
//! repository, Range headers).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{admin, fails, init, is_root, ok, sample_tree, skip, slate, slate_bin};
use crate::faultserve::{Fault, FaultServer};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// An archive repository with `os/main` (the sample tree) and a summary.
fn publish(dir: &Path) -> PathBuf {
    let repo = dir.join("pub");
    ok(&repo, &["init", "--repo", s(&repo), "--mode", "archive"]);
    let tree = dir.join("tree");
    sample_tree(&tree);
    ok(
        &repo,
        &["commit", "--repo", s(&repo), "-b", "os/main", s(&tree)],
    );
    ok(&repo, &["summary", "--repo", s(&repo), "--update"]);
    repo
}

/// A local repository with the remote `origin` at `urls` (unsigned).
fn local(dir: &Path, urls: &[&str]) -> PathBuf {
    let l = init(&dir.join("local"), "bare-user");
    let mut args = vec!["remote", "--repo", s(&l), "add", "origin"];
    args.extend(urls);
    args.push("--no-sign-verify");
    ok(&l, &args);
    l
}

/// A child process (started here) killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait for `c` at most `limit`: its exit status, or None (still running).
fn wait_for(c: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// `slate serve [extra] DIR` on a free port: the server, and its
/// address; or its error when it refuses to start.
fn serve(dir: &Path, extra: &[&str]) -> Result<(Killed, String), String> {
    let mut c = Command::new(slate_bin())
        .arg("serve")
        .args(extra)
        .args(["--bind", "127.0.0.1:0", s(dir)])
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    let mut err = BufReader::new(c.stderr.take().expect("stderr"));
    err.read_line(&mut line).expect("read");
    match line.split_whitespace().find(|w| w.starts_with("http://")) {
        Some(url) => Ok((Killed(c), url.trim_start_matches("http://").to_string())),
        None => {
            let mut rest = String::new();
            let _ = err.read_to_string(&mut rest);
            let _ = c.wait();
            Err(line + &rest)
        }
    }
}

/// A GET of `path` with extra header lines: the status code and the body.
fn get(addr: &str, path: &str, headers: &str) -> (u16, Vec<u8>) {
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut resp = Vec::new();
    let _ = c.read_to_end(&mut resp);
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response");
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    (code, resp[split + 4..].to_vec())
}

fn pull_json(l: &Path, extra: &[&str]) -> (std::process::Output, Option<Value>) {
    let mut args = vec!["pull", "--repo", s(l), "--json"];
    args.extend(extra);
    args.extend(["origin", "os/main"]);
    let o = slate(l, &args);
    let done = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "done");
    (o, done)
}

#[test]
fn redirects_are_followed_only_to_http_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = publish(dir.path());
    let server = FaultServer::start(repo.clone());
    let mirror = FaultServer::start(repo.clone());
    let l = local(dir.path(), &[&server.url]);

    // To a file: URL: refused, an error (not a crash), the summary not read.
    server.rule(
        "summary.json",
        Fault::Redirect("file:///etc/passwd".into()),
        1,
    );
    let (o, _) = pull_json(&l, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("file:///etc/passwd") && err.contains("not followed"),
        "{err}"
    );

    // Without end (to itself): given up after a few hops.
    let own = format!("{}/summary.json", server.url);
    server.rule("summary.json", Fault::Redirect(own), u64::MAX);
    let started = Instant::now();
    let (o, _) = pull_json(&l, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("redirects"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    server.clear();

    // A redirect without a Location: an error naming it.
    server.rule("summary.json", Fault::Status("302 Found".into()), 1);
    let (o, _) = pull_json(&l, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("302 without a Location"), "{err}");
    // Where a redirect leads is checked like any server: bad bytes there
    // are refused.
    mirror.rule(
        "summary.json",
        Fault::Replace(b"{\"format\": 99}".to_vec()),
        1,
    );
    server.rule(
        "summary.json",
        Fault::Redirect(format!("{}/summary.json", mirror.url)),
        1,
    );
    let (o, _) = pull_json(&l, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("summary.json"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // To another http server: followed, and the JSON says where to.
    let to = format!("{}/summary.json", mirror.url);
    server.rule("summary.json", Fault::Redirect(to.clone()), 1);
    let (o, done) = pull_json(&l, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let done = done.expect("a done line");
    let redirects = done["redirects"].as_array().expect("redirects listed");
    assert_eq!(redirects.len(), 1, "{done}");
    assert_eq!(redirects[0]["from"], format!("{}/summary.json", server.url));
    assert_eq!(redirects[0]["to"], to);
    assert_eq!(redirects[0]["status"], 302);
    assert!(mirror.counts().0 >= 1);
}

#[test]
fn a_trickling_server_is_given_up_at_the_minimum_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = publish(dir.path());
    let server = FaultServer::start(repo.clone());
    let l = local(dir.path(), &[&server.url]);
    // Five bytes a second, never a stall: the summary alone would take
    // minutes.
    server.rule("summary.json", Fault::Trickle(200), u64::MAX);
    let started = Instant::now();
    let (o, _) = pull_json(&l, &["--min-rate", "100/2"]);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        took < Duration::from_secs(30),
        "{took:?} to give up a trickle: {err}"
    );
    assert!(
        err.contains(&format!("{}/summary.json", server.url)) && err.contains("100 bytes/s"),
        "{err}"
    );
    // The same from the environment.
    let o = Command::new(slate_bin())
        .env("SLATE_MIN_RATE", "100/1")
        .args(["pull", "--repo", s(&l), "origin", "os/main"])
        .output()
        .expect("pull");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("100 bytes/s over 1 s"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A bad value is refused before anything is fetched.
    let err = fails(
        &l,
        &[
            "pull",
            "--repo",
            s(&l),
            "--min-rate",
            "fast",
            "origin",
            "os/main",
        ],
    );
    assert!(err.contains("BYTES/SECONDS"), "{err}");
    // A fast body without end is cut at the size a summary may have.
    server.clear();
    server.rule("summary.json", Fault::Endless(0), 1);
    let err = fails(&l, &["pull", "--repo", s(&l), "origin", "os/main"]);
    assert!(err.contains("larger than"), "{err}");
    // Fast enough: pulled.
    server.clear();
    let (o, done) = pull_json(&l, &["--min-rate", "100/2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(done.is_some());
}

#[test]
fn a_refused_connection_names_the_url_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let l = local(dir.path(), &[&url]);
    let err = fails(&l, &["pull", "--repo", s(&l), "origin", "os/main"]);
    let whole = format!("{url}/summary.json");
    assert_eq!(err.matches(&whole).count(), 1, "{err}");
    assert!(err.contains("refused") && err.contains("3 tries"), "{err}");
}

#[test]
fn serve_opens_no_symlink_no_key_and_nothing_a_pull_does_not_ask_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = publish(dir.path());
    let summary = std::fs::read(repo.join("summary.json")).expect("summary");
    let commit = ok(&repo, &["rev-parse", "--repo", s(&repo), "os/main"])
        .trim()
        .to_string();
    // Planted: symlinks to the configuration and out of the folder, under
    // names a pull would ask for, a private key, a hidden file.
    let sigdir = repo.join("signatures").join(&commit);
    std::fs::create_dir_all(&sigdir).expect("mkdir");
    std::os::unix::fs::symlink("../../config", sigdir.join("0123456789abcdef.sig"))
        .expect("symlink");
    std::os::unix::fs::symlink("../config", repo.join("signatures/cfg")).expect("symlink");
    std::os::unix::fs::symlink("/etc", repo.join("deltas")).expect("symlink");
    std::fs::write(repo.join("signing.pem"), "-----BEGIN PRIVATE KEY-----\n").expect("key");
    std::fs::write(repo.join(".secret"), "hidden\n").expect("hidden");
    let (_server, addr) = serve(&repo, &[]).expect("serves an archive repository");
    assert_eq!(get(&addr, "/summary.json", ""), (200, summary.clone()));
    let passwd_delta = format!("/deltas/{commit}/empty.delta");
    for path in [
        format!("/signatures/{commit}/0123456789abcdef.sig"),
        "/signatures/cfg".to_string(),
        passwd_delta,
        "/deltas/passwd".into(),
        "/config".into(),
        "/signing.pem".into(),
        "/.secret".into(),
        "/refs/heads/os/main".to_string(),
        "/objects/../config".into(),
        "/%2e%2e/%2e%2e/etc/passwd".into(),
    ] {
        let (code, body) = get(&addr, &path, "");
        assert_eq!(
            code,
            404,
            "{path} served: {}",
            String::from_utf8_lossy(&body)
        );
    }

    // A folder that is not an archive repository is refused, and says
    // how to serve it anyway.
    let err = match serve(Path::new("/etc"), &[]) {
        Ok(_) => panic!("/etc is served"),
        Err(e) => e,
    };
    assert!(err.contains("--any-folder"), "{err}");
    let build = init(&dir.path().join("build"), "bare-user");
    assert!(
        serve(&build, &[]).is_err(),
        "a bare-user repository is served"
    );

    // --any-folder: its files, but no key, hidden file, symlink or FIFO.
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("sub")).expect("mkdir");
    std::fs::write(www.join("action"), "report\n").expect("write");
    std::fs::write(www.join("sub/key.PEM"), "key\n").expect("write");
    std::fs::write(www.join(".env"), "secret\n").expect("write");
    std::os::unix::fs::symlink("/etc/passwd", www.join("passwd")).expect("symlink");
    std::os::unix::fs::symlink("/etc", www.join("etc")).expect("symlink");
    let fifo = www.join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
    let (_www, addr) = serve(&www, &["--any-folder"]).expect("serves a folder");
    assert_eq!(get(&addr, "/action", ""), (200, b"report\n".to_vec()));
    for path in ["/sub/key.PEM", "/.env", "/passwd", "/etc/passwd", "/fifo"] {
        assert_eq!(get(&addr, path, "").0, 404, "{path} served");
    }
}

#[test]
fn serve_ignores_ranges_it_does_not_understand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = publish(dir.path());
    let summary = std::fs::read(repo.join("summary.json")).expect("summary");
    let len = summary.len();
    let (_server, addr) = serve(&repo, &[]).expect("serve");
    let range = |v: &str| get(&addr, "/summary.json", &format!("Range: {v}\r\n"));
    assert_eq!(range("bytes=0-9"), (206, summary[..10].to_vec()));
    assert_eq!(range("bytes=-5"), (206, summary[len - 5..].to_vec()));
    // Another unit, several ranges, bad syntax: the whole file.
    for v in [
        "items=0-1",
        "bytes=0-1,4-5",
        "bytes=9-3",
        "bytes=abc",
        "pages=1",
    ] {
        assert_eq!(range(v), (200, summary.clone()), "{v}");
    }
    // Valid but past the end: 416.
    assert_eq!(range(&format!("bytes={len}-")).0, 416);
    assert_eq!(range("bytes=-0").0, 416);
    // An If-Range that cannot match (no validators are sent): the whole file.
    let (code, body) = get(
        &addr,
        "/summary.json",
        "Range: bytes=0-9\r\nIf-Range: \"x\"\r\n",
    );
    assert_eq!((code, body), (200, summary));
}

/// An OS tree of version `v` with a kernel (what a deployment needs).
fn os_tree(root: &Path, v: u32) {
    for (p, c) in [
        (
            "usr/lib/modules/6.1.0-slate/vmlinuz",
            "kernel image\n".to_string(),
        ),
        (
            "usr/lib/modules/6.1.0-slate/initrd",
            "initrd image\n".into(),
        ),
        ("usr/lib/os-release", format!("VERSION_ID={v}\n")),
        (
            "usr/bin/tool",
            format!("tool v{v}\n{}", "x".repeat(4000 * v as usize)),
        ),
        ("etc/motd", "welcome\n".into()),
    ] {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, c).expect("write");
    }
}

fn admin_ok(sr: &Path, args: &[&str]) {
    let o = admin(sr, args);
    assert!(
        o.status.success(),
        "slate admin {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn an_upgrade_pulling_from_a_slow_server_does_not_hold_the_sysroot() {
    if !is_root() {
        skip("a sysroot's repository is bare (real owners): the admin tests need root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let build = init(&d.join("build"), "bare-user");
    let pubrepo = d.join("pub");
    ok(
        &pubrepo,
        &["init", "--repo", s(&pubrepo), "--mode", "archive"],
    );
    let release = |v: u32| {
        let t = d.join(format!("v{v}"));
        os_tree(&t, v);
        ok(
            &build,
            &["commit", "--repo", s(&build), "-b", "os/main", s(&t)],
        );
        ok(
            &pubrepo,
            &["pull-local", "--repo", s(&pubrepo), s(&build), "os/main"],
        );
        ok(&pubrepo, &["summary", "--repo", s(&pubrepo), "--update"]);
    };
    release(1);
    let server = FaultServer::start(pubrepo.clone());
    let sr = d.join("sysroot");
    let o = Command::new(slate_bin())
        .args(["admin", "init-fs", s(&sr)])
        .output()
        .expect("init-fs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    admin_ok(&sr, &["os-init", "test", "--etc", "persistent"]);
    let r = sr.join("slate/repo");
    ok(
        &r,
        &[
            "remote",
            "--repo",
            s(&r),
            "add",
            "origin",
            &server.url,
            "--no-sign-verify",
        ],
    );
    admin_ok(&sr, &["deploy", "origin:os/main"]);

    // A new version, served a byte at a time (20 bytes/s: slower than the
    // default minimum, which takes 30 s to tell).
    release(2);
    server.rule("objects/pack/", Fault::Trickle(50), u64::MAX);
    let bytes_before = server.counts().1;
    let mut up = Killed(
        Command::new(slate_bin())
            .args(["admin", "--sysroot", s(&sr), "upgrade"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("upgrade"),
    );
    // Until the pack trickles in.
    let t = Instant::now();
    while server.counts().1 < bytes_before + 20 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        up.0.try_wait().expect("wait").is_none(),
        "the upgrade ended before the test could look"
    );
    // Meanwhile, a command that takes the sysroot's lock goes through.
    let mut pin = Killed(
        Command::new(slate_bin())
            .args(["admin", "--sysroot", s(&sr), "pin", "0"])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pin"),
    );
    let st = wait_for(&mut pin.0, Duration::from_secs(10));
    assert!(
        st.is_some_and(|s| s.success()),
        "pin was held up while the upgrade pulled: {st:?}"
    );
    assert!(
        up.0.try_wait().expect("wait").is_none(),
        "the upgrade ended"
    );
}
