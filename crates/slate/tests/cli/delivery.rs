//! Publishing over HTTP and pulling: slate serve, a real nginx, a server
//! that misbehaves on purpose; signatures (checked with OpenSSL too),
//! replays and downgrades.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::common::{have, ok, skip, slate, slate_bin};
use crate::faultserve::{Fault, FaultServer};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

struct Pub {
    dir: tempfile::TempDir,
    repo: PathBuf,
    tree: PathBuf,
    key: PathBuf,
}

/// Pseudo-random bytes that do not compress (so packs have many frames).
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An archive repository with `os/main` at version 1 (about `mb` MB in
/// 40 files, and some text), signed, summarised.
fn publish(mb: usize) -> Pub {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("pub");
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("usr/lib")).expect("mkdir");
    std::fs::create_dir_all(tree.join("etc")).expect("mkdir");
    for i in 0..40 {
        std::fs::write(tree.join(format!("usr/lib/blob{i}")), noise(i, mb * 25_000))
            .expect("write");
    }
    std::fs::write(tree.join("etc/os-release"), "VERSION_ID=1\n").expect("write");
    ok(&repo, &["init", "--repo", s(&repo), "--mode", "archive"]);
    ok(
        &repo,
        &[
            "commit",
            "--repo",
            s(&repo),
            "-b",
            "os/main",
            "-s",
            "v1",
            s(&tree),
        ],
    );
    let key = dir.path().join("key.pem");
    ok(&repo, &["keygen", s(&key)]);
    ok(
        &repo,
        &["sign", "--repo", s(&repo), "os/main", "--key", s(&key)],
    );
    ok(
        &repo,
        &["summary", "--repo", s(&repo), "--update", "--sign", s(&key)],
    );
    Pub {
        dir,
        repo,
        tree,
        key,
    }
}

/// Commit the tree again as the next version (one file changed), sign it
/// (unless told not to) and update the summary.
fn next_version(p: &Pub, v: u32, sign: bool) -> String {
    std::fs::write(p.tree.join("etc/os-release"), format!("VERSION_ID={v}\n")).expect("write");
    ok(
        &p.repo,
        &[
            "commit",
            "--repo",
            s(&p.repo),
            "-b",
            "os/main",
            "-s",
            &format!("v{v}"),
            s(&p.tree),
        ],
    );
    if sign {
        ok(
            &p.repo,
            &["sign", "--repo", s(&p.repo), "os/main", "--key", s(&p.key)],
        );
    }
    ok(
        &p.repo,
        &[
            "summary",
            "--repo",
            s(&p.repo),
            "--update",
            "--sign",
            s(&p.key),
        ],
    );
    ok(&p.repo, &["rev-parse", "--repo", s(&p.repo), "os/main"])
        .trim()
        .to_string()
}

/// A bare-user repository with the remote `origin` at `urls`, checking
/// signatures with the publisher's key.
fn local(p: &Pub, urls: &[&str]) -> PathBuf {
    let l = p.dir.path().join("local");
    let _ = std::fs::remove_dir_all(&l);
    ok(&l, &["init", "--repo", s(&l), "--mode", "bare-user"]);
    let mut args = vec!["remote", "--repo", s(&l), "add", "origin"];
    args.extend_from_slice(urls);
    let pubkey = format!("{}.pub", s(&p.key));
    args.extend(["--sign-verify", &pubkey]);
    ok(&l, &args);
    l
}

fn pull(l: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["pull", "--repo", s(l), "--json", "origin", "os/main"];
    args.extend_from_slice(extra);
    slate(l, &args)
}

fn pull_ok(l: &Path, extra: &[&str]) -> Value {
    let o = pull(l, extra);
    assert!(
        o.status.success(),
        "pull failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // JSON lines: progress objects, then the result.
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut last = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).expect("each line is JSON");
        assert!(v["type"] == "progress" || v["type"] == "done", "{line}");
        last = Some(v);
    }
    let v = last.expect("a result line");
    assert_eq!(v["type"], "done", "{text}");
    v
}

fn pull_err(l: &Path, extra: &[&str]) -> String {
    let o = pull(l, extra);
    assert!(
        !o.status.success(),
        "pull succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The pulled tree is the published one, and the repository is sound.
fn same_as_published(p: &Pub, l: &Path) {
    let d = ok(
        l,
        &["diff", "--repo", s(l), "remotes/origin/os/main", s(&p.tree)],
    );
    assert!(d.is_empty(), "the pulled tree differs:\n{d}");
    let f = slate(l, &["fsck", "--repo", s(l)]);
    assert!(f.status.success(), "{}", String::from_utf8_lossy(&f.stderr));
}

fn pack_bytes(p: &Pub) -> u64 {
    std::fs::read_dir(p.repo.join("objects/pack"))
        .expect("packs")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
        .map(|e| e.metadata().expect("meta").len())
        .sum()
}

/// A child process killed when dropped (a failing test leaves no server).
/// A server stopped when dropped: SIGTERM first (nginx's master then
/// ends its workers; a SIGKILL would leave them running), SIGKILL after
/// 5 s.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.0);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        for _ in 0..50 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `slate serve` on a free port; its address.
fn slate_serve(repo: &Path) -> (Killed, String) {
    let mut c = Command::new(slate_bin())
        .args(["serve", "--bind", "127.0.0.1:0", s(repo)])
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    BufReader::new(c.stderr.take().expect("stderr"))
        .read_line(&mut line)
        .expect("read");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("the address")
        .to_string();
    (Killed(c), url)
}

#[test]
fn pull_from_slate_serve_in_few_requests() {
    let p = publish(12);
    let (server, url) = slate_serve(&p.repo);
    let l = local(&p, &[&url]);
    let r = pull_ok(&l, &[]);
    drop(server);
    same_as_published(&p, &l);
    assert_eq!(r["method"], "packs");
    assert!(r["signed_by"].is_string());
    let requests = r["requests"].as_u64().expect("requests");
    assert!(requests <= 12, "{requests} requests for one commit");
    let fetched = r["bytes_fetched"].as_u64().expect("bytes");
    assert!(
        fetched <= pack_bytes(&p) + 200_000,
        "fetched {fetched} for a pack of {}",
        pack_bytes(&p)
    );
    // Path traversal and private files are not served.
    let (_server, url) = slate_serve(&p.repo);
    let addr = url.trim_start_matches("http://").to_string();
    for path in [
        "/../../etc/passwd",
        "/config",
        "/lock",
        "/tmp/x",
        "/objects/../config",
        "/%2e%2e/%2e%2e/etc/passwd",
    ] {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&addr).expect("connect");
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut resp = String::new();
        let _ = c.read_to_string(&mut resp);
        assert!(
            resp.starts_with("HTTP/1.1 404"),
            "{path} was served: {}",
            resp.lines().next().unwrap_or("")
        );
    }
    // A range request is answered with 206 and the bytes asked for.
    {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&addr).expect("connect");
        write!(c, "GET /summary.json HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n").expect("send");
        let mut resp = String::new();
        let _ = c.read_to_string(&mut resp);
        assert!(resp.starts_with("HTTP/1.1 206"), "{resp}");
        assert!(resp.ends_with(
            &std::fs::read_to_string(p.repo.join("summary.json")).expect("summary")[..10]
        ));
    }
}

#[test]
#[cfg_attr(not(test_have = "nginx"), ignore = "nginx is not installed")]
fn pull_from_nginx() {
    if !have("nginx") {
        skip("nginx is not installed: pulling from a real nginx is not tried");
        return;
    }
    let p = publish(6);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let conf = p.dir.path().join("nginx.conf");
    let prefix = p.dir.path().join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).expect("mkdir");
    std::fs::write(
        &conf,
        format!(
            "daemon off; worker_processes 1; pid {pre}/nginx.pid; error_log {pre}/logs/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log {pre}/logs/access.log; \
             client_body_temp_path {pre}/body; proxy_temp_path {pre}/proxy; fastcgi_temp_path {pre}/fcgi; \
             uwsgi_temp_path {pre}/uwsgi; scgi_temp_path {pre}/scgi; \
             server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n",
            pre = prefix.display(),
            root = p.repo.display()
        ),
    )
    .expect("conf");
    let nginx = Killed(
        Command::new("nginx")
            .args(["-c", s(&conf), "-p", s(&prefix)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx"),
    );
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let l = local(&p, &[&format!("http://127.0.0.1:{port}")]);
    let r = pull(&l, &[]);
    drop(nginx);
    assert!(
        r.status.success(),
        "pull from nginx: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    same_as_published(&p, &l);
    let log = std::fs::read_to_string(prefix.join("logs/access.log")).unwrap_or_default();
    assert!(
        log.contains(" 206 "),
        "nginx answered range requests:\n{log}"
    );
}

#[test]
fn failures_are_retried_skipped_or_reported() {
    let p = publish(6);
    let fs = FaultServer::start(p.repo.clone());

    // A mirror that is down is skipped; a response cut short is resumed.
    fs.rule(".pack", Fault::Truncate(100_000), 1);
    let l = local(&p, &["http://127.0.0.1:1", &fs.url]);
    let r = pull_ok(&l, &[]);
    same_as_published(&p, &l);
    assert!(r["requests"].as_u64().expect("n") > 3);

    // A stall is given up after the stall timeout, then retried.
    fs.clear();
    fs.rule(".pack", Fault::Stall, 1);
    let l = local(&p, &[&fs.url]);
    let started = std::time::Instant::now();
    pull_ok(&l, &["--stall-timeout", "2"]);
    assert!(started.elapsed().as_secs() < 20);
    same_as_published(&p, &l);

    // Corrupt bytes every time: an error, and no ref moves.
    fs.clear();
    fs.rule(".pack", Fault::Corrupt(100), u64::MAX);
    let l = local(&p, &[&fs.url]);
    let err = pull_err(&l, &[]);
    assert!(
        err.contains("corrupt") || err.contains("zstd") || err.contains("hash"),
        "{err}"
    );
    let refs = ok(&l, &["refs", "--repo", s(&l)]);
    assert!(
        !refs.contains("remotes/origin/os/main"),
        "a ref moved to an unchecked commit: {refs}"
    );

    // Every mirror down, or the summary missing: clear errors.
    fs.clear();
    let l = local(&p, &["http://127.0.0.1:1"]);
    let err = pull_err(&l, &[]);
    assert!(err.contains("could not fetch summary.json"), "{err}");
    fs.rule("summary.json", Fault::NotFound, u64::MAX);
    let l = local(&p, &[&fs.url]);
    let err = pull_err(&l, &[]);
    assert!(err.contains("summary.json: not on the remote"), "{err}");
}

#[test]
fn a_killed_pull_resumes_where_it_stopped() {
    let p = publish(20);
    let fs = FaultServer::start(p.repo.clone());
    let total = pack_bytes(&p);
    // The first request of the pack asks for one byte (whether ranges are
    // honoured), the second for its trees' frames; the third, for the
    // files, is cut in half; the retry stalls: the pull waits, and is
    // killed.
    fs.rule(".pack", Fault::Truncate(total / 2), 3);
    fs.rule(".pack", Fault::Stall, 1);
    let l = local(&p, &[&fs.url]);
    let child = Killed(
        Command::new(slate_bin())
            .args([
                "pull",
                "--repo",
                s(&l),
                "--stall-timeout",
                "60",
                "origin",
                "os/main",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pull"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while fs.counts().1 < total / 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(child);
    let before = fs.counts().1;
    fs.clear();
    pull_ok(&l, &[]);
    let again = fs.counts().1 - before;
    assert!(
        again < total * 3 / 4,
        "the rerun fetched {again} bytes of a {total}-byte pack: it did not resume"
    );
    same_as_published(&p, &l);
}

#[test]
fn replays_downgrades_and_bad_signatures_are_refused() {
    let p = publish(2);
    let fs = FaultServer::start(p.repo.clone());
    let l = local(&p, &[&fs.url]);
    let v1 = pull_ok(&l, &[])["commit"]
        .as_str()
        .expect("commit")
        .to_string();
    let old_summary = std::fs::read(p.repo.join("summary.json")).expect("summary");
    let old_sig = std::fs::read(p.repo.join("summary.sig")).expect("sig");

    let v2 = next_version(&p, 2, true);
    assert_eq!(pull_ok(&l, &[])["commit"], v2.as_str());

    // The old summary, served again: a replay.
    std::fs::write(p.repo.join("summary.json"), &old_summary).expect("write");
    std::fs::write(p.repo.join("summary.sig"), &old_sig).expect("write");
    let err = pull_err(&l, &[]);
    assert!(err.contains("refused as a replay"), "{err}");

    // A newer summary moving the ref back: a downgrade.
    ok(&p.repo, &["reset", "--repo", s(&p.repo), "os/main", &v1]);
    ok(
        &p.repo,
        &[
            "summary",
            "--repo",
            s(&p.repo),
            "--update",
            "--sign",
            s(&p.key),
        ],
    );
    let err = pull_err(&l, &[]);
    assert!(err.contains("refused as a downgrade"), "{err}");
    assert_eq!(pull_ok(&l, &["--allow-downgrade"])["commit"], v1.as_str());

    // An unsigned commit; a commit signed by another key; an unsigned summary.
    let v3 = next_version(&p, 3, false);
    let err = pull_err(&l, &[]);
    assert!(
        err.contains(&format!("commit {v3}")) && err.contains("no valid signature"),
        "{err}"
    );
    let other = p.dir.path().join("other.pem");
    ok(&p.repo, &["keygen", s(&other)]);
    ok(
        &p.repo,
        &["sign", "--repo", s(&p.repo), "os/main", "--key", s(&other)],
    );
    let err = pull_err(&l, &[]);
    assert!(err.contains("no valid signature"), "{err}");
    ok(&p.repo, &["summary", "--repo", s(&p.repo), "--update"]);
    let err = pull_err(&l, &[]);
    assert!(err.contains("has no summary signature"), "{err}");
    let refs = ok(
        &l,
        &["rev-parse", "--repo", s(&l), "remotes/origin/os/main"],
    );
    assert_eq!(refs.trim(), v1, "the ref never moved to an unsigned commit");
}

#[test]
fn a_rebuild_with_nothing_changed_fetches_almost_nothing() {
    let p = publish(6);
    let fs = FaultServer::start(p.repo.clone());
    let l = local(&p, &[&fs.url]);
    pull_ok(&l, &[]);
    // The same tree committed again: a new commit, no new object.
    ok(
        &p.repo,
        &[
            "commit",
            "--repo",
            s(&p.repo),
            "-b",
            "os/main",
            "-s",
            "rebuild",
            s(&p.tree),
        ],
    );
    ok(
        &p.repo,
        &["sign", "--repo", s(&p.repo), "os/main", "--key", s(&p.key)],
    );
    ok(
        &p.repo,
        &[
            "summary",
            "--repo",
            s(&p.repo),
            "--update",
            "--sign",
            s(&p.key),
        ],
    );
    let (r0, b0) = fs.counts();
    let r = pull_ok(&l, &[]);
    let (r1, b1) = fs.counts();
    assert_eq!(r["files"], 0);
    // The summary carries the commit: the summary, its signature and the
    // commit's signature are all there is to fetch.
    assert_eq!(r["method"], "summary", "{r}");
    assert_eq!(r1 - r0, 3, "requests");
    assert!(b1 - b0 < 8_000, "{} bytes", b1 - b0);
    same_as_published(&p, &l);
}

#[test]
#[cfg_attr(not(test_have = "openssl"), ignore = "openssl is not installed")]
fn openssl_makes_and_checks_what_slate_uses() {
    if !have("openssl") {
        skip("openssl is not installed: interoperability is not checked");
        return;
    }
    let p = publish(1);
    let id = ok(&p.repo, &["rev-parse", "--repo", s(&p.repo), "os/main"])
        .trim()
        .to_string();
    // A key made by OpenSSL signs with Slate; OpenSSL checks the signature.
    let okey = p.dir.path().join("openssl.pem");
    let st = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out", s(&okey)])
        .status()
        .expect("openssl");
    assert!(st.success());
    let sig = ok(
        &p.repo,
        &["sign", "--repo", s(&p.repo), &id, "--key", s(&okey)],
    );
    let opub = p.dir.path().join("openssl.pub");
    assert!(Command::new("openssl")
        .args(["pkey", "-in", s(&okey), "-pubout", "-out", s(&opub)])
        .status()
        .expect("openssl")
        .success());
    let msg = p.dir.path().join("msg");
    std::fs::write(&msg, &id).expect("write");
    let v = Command::new("openssl")
        .args([
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            s(&opub),
            "-rawin",
            "-in",
            s(&msg),
            "-sigfile",
            sig.trim(),
        ])
        .output()
        .expect("openssl");
    assert!(
        v.status.success(),
        "OpenSSL rejects Slate's signature: {}",
        String::from_utf8_lossy(&v.stdout)
    );
    // Slate's key is one OpenSSL reads, and a summary OpenSSL signs is one
    // a pull accepts.
    let derived = Command::new("openssl")
        .args(["pkey", "-in", s(&p.key), "-pubout"])
        .output()
        .expect("openssl");
    assert!(derived.status.success());
    let slate_pub = std::fs::read_to_string(format!("{}.pub", s(&p.key))).expect("pub");
    assert_eq!(String::from_utf8_lossy(&derived.stdout), slate_pub);
    let st = Command::new("openssl")
        .args(["pkeyutl", "-sign", "-inkey", s(&p.key), "-rawin", "-in"])
        .arg(p.repo.join("summary.json"))
        .arg("-out")
        .arg(p.repo.join("summary.sig"))
        .status()
        .expect("openssl");
    assert!(st.success());
    let fs = FaultServer::start(p.repo.clone());
    let l = local(&p, &[&fs.url]);
    pull_ok(&l, &[]);
    same_as_published(&p, &l);
}

/// Version 2: one blob changed a little, two new files; deltas to it from
/// version 1 and from nothing; the summary lists them.
fn publish_update_with_deltas(p: &Pub) -> String {
    let mut b = noise(3, 100_000);
    b[500..510].copy_from_slice(b"0123456789");
    std::fs::write(p.tree.join("usr/lib/blob3"), &b).expect("write");
    std::fs::write(p.tree.join("usr/lib/new-a"), noise(77, 30_000)).expect("write");
    std::fs::write(p.tree.join("usr/lib/new-b"), "text ".repeat(5000)).expect("write");
    let v2 = next_version(p, 2, true);
    let made = ok(
        &p.repo,
        &[
            "delta",
            "generate",
            "--repo",
            s(&p.repo),
            "--ref",
            "os/main",
            "--previous",
            "1",
            "--empty",
            "--json",
        ],
    );
    let made: Value = serde_json::from_str(&made).expect("json");
    assert_eq!(made.as_array().expect("list").len(), 2, "{made}");
    // blob3 and os-release patched; new-a and new-b whole.
    assert_eq!(made[0]["patched"], 2, "{made}");
    assert_eq!(made[0]["files"], 2, "{made}");
    ok(
        &p.repo,
        &[
            "summary",
            "--repo",
            s(&p.repo),
            "--update",
            "--sign",
            s(&p.key),
        ],
    );
    v2
}

#[test]
fn an_update_comes_as_one_small_delta() {
    // blob3 of version 1 is 100 kB of noise: the patch is tiny.
    let p = publish(4);
    let fs = FaultServer::start(p.repo.clone());
    let l = local(&p, &[&fs.url]);
    pull_ok(&l, &[]);
    let v2 = publish_update_with_deltas(&p);
    let (r0, b0) = fs.counts();
    let r = pull_ok(&l, &[]);
    let (r1, b1) = fs.counts();
    assert_eq!(r["commit"], v2.as_str());
    assert_eq!(r["method"], "delta", "{r}");
    assert!(
        r["delta"].as_str().expect("delta").ends_with(".delta"),
        "{r}"
    );
    // summary, its signature, the commit's signature, the delta.
    assert!(r1 - r0 <= 4, "{} requests", r1 - r0);
    // Far less than the 30 kB of new noise plus 100 kB of the changed blob.
    assert!(b1 - b0 < 45_000, "{} bytes", b1 - b0);
    same_as_published(&p, &l);
}

#[test]
fn a_first_pull_uses_the_full_image_delta() {
    let p = publish(2);
    let v2 = publish_update_with_deltas(&p);
    let fs = FaultServer::start(p.repo.clone());
    let l = local(&p, &[&fs.url]);
    let r = pull_ok(&l, &[]);
    assert_eq!(r["commit"], v2.as_str());
    assert!(
        r["delta"].as_str().expect("delta").ends_with("empty.delta"),
        "{r}"
    );
    same_as_published(&p, &l);
}

#[test]
fn a_delta_missing_cut_or_corrupt_falls_back_to_the_packs() {
    for fault in [Fault::NotFound, Fault::Corrupt(200), Fault::Truncate(100)] {
        let p = publish(2);
        let fs = FaultServer::start(p.repo.clone());
        let l = local(&p, &[&fs.url]);
        pull_ok(&l, &[]);
        let v2 = publish_update_with_deltas(&p);
        // Every try of the delta fails (retries included).
        fs.rule(".delta", fault.clone(), u64::MAX);
        let r = pull_ok(&l, &[]);
        assert_eq!(r["commit"], v2.as_str(), "{fault:?}");
        assert_eq!(r["method"], "packs", "{fault:?}: {r}");
        assert!(r["delta_failed"].is_string(), "{fault:?}: {r}");
        same_as_published(&p, &l);
    }
}

#[test]
fn delta_list_show_and_delete() {
    let p = publish(1);
    publish_update_with_deltas(&p);
    let repo = s(&p.repo);
    let list: Value =
        serde_json::from_str(&ok(&p.repo, &["delta", "list", "--repo", repo, "--json"]))
            .expect("json");
    assert_eq!(list.as_array().expect("list").len(), 2, "{list}");
    let shown: Value = serde_json::from_str(&ok(
        &p.repo,
        &[
            "delta",
            "show",
            "--repo",
            repo,
            "os/main^..os/main",
            "--json",
        ],
    ))
    .expect("json");
    assert_eq!(shown["patched"], 2, "{shown}");
    assert_eq!(shown["files"], 4, "{shown}");
    ok(
        &p.repo,
        &["delta", "delete", "--repo", repo, "os/main^..os/main"],
    );
    let o = slate(
        &p.repo,
        &["delta", "show", "--repo", repo, "os/main^..os/main"],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no delta"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = slate(
        &p.repo,
        &["delta", "generate", "--repo", repo, "--to", "os/main"],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing to make"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_server_without_range_requests_serves_whole_packs() {
    let p = publish(6);
    let fs = FaultServer::start(p.repo.clone());
    fs.rule("", Fault::NoRanges, u64::MAX);
    let l = local(&p, &[&fs.url]);
    let r = pull_ok(&l, &[]);
    same_as_published(&p, &l);
    // Each pack is fetched once, whole (plus at most the first part
    // asked for before the server showed it ignores ranges).
    let fetched = r["bytes_fetched"].as_u64().expect("bytes");
    assert!(fetched < 2 * pack_bytes(&p) + 100_000, "{fetched} bytes");
    assert!(r["requests"].as_u64().expect("requests") <= 12, "{r}");
}

#[test]
fn a_delta_cut_mid_way_is_resumed_not_fetched_again() {
    let p = publish(4);
    let fs = FaultServer::start(p.repo.clone());
    let l = local(&p, &[&fs.url]);
    pull_ok(&l, &[]);
    let v2 = publish_update_with_deltas(&p);
    let size = std::fs::read_dir(p.repo.join("deltas"))
        .expect("deltas")
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).expect("delta dir").flatten())
        .filter(|f| !f.file_name().to_string_lossy().starts_with("empty"))
        .map(|f| f.metadata().expect("meta").len())
        .next()
        .expect("a delta from v1");
    // The first answer for the delta stops half way; the retry asks for
    // the rest only.
    fs.rule(".delta", Fault::Truncate(size / 2), 1);
    let (r0, b0) = fs.counts();
    let r = pull_ok(&l, &[]);
    let (r1, b1) = fs.counts();
    assert_eq!(r["commit"], v2.as_str());
    assert_eq!(r["method"], "delta", "{r}");
    assert!(r["delta_failed"].is_null(), "{r}");
    // summary, signature, commit signature, the delta twice.
    assert_eq!(r1 - r0, 5, "requests");
    assert!(
        b1 - b0 < size + 8_000,
        "{} bytes for a {size}-byte delta",
        b1 - b0
    );
    same_as_published(&p, &l);
}
