//! A hostile server or publisher against `slate pull`: a summary (signed
//! with the publisher's key, standing for a hostile publisher or any
//! server of a `--no-sign-verify` remote) whose names would be paths,
//! whose delta is another commit's, whose sizes lie; an index without
//! end; oversized summaries and signatures; a summary kept past its
//! expiry.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{ok, skip, slate, slate_bin};
use crate::faultserve::{Fault, FaultServer};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

struct Pub {
    dir: tempfile::TempDir,
    repo: PathBuf,
    key: PathBuf,
}

/// Bytes that do not compress.
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

/// An archive repository with `os/main` (about 200 kB in 8 files),
/// signed, with its full-image delta when `delta`, summarised.
fn publish(delta: bool) -> Pub {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("pub");
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("usr/lib")).expect("mkdir");
    for i in 0..8 {
        std::fs::write(tree.join(format!("usr/lib/blob{i}")), noise(i, 25_000)).expect("write");
    }
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
    if delta {
        ok(
            &repo,
            &[
                "delta",
                "generate",
                "--repo",
                s(&repo),
                "--ref",
                "os/main",
                "--previous",
                "0",
                "--empty",
            ],
        );
    }
    ok(
        &repo,
        &["summary", "--repo", s(&repo), "--update", "--sign", s(&key)],
    );
    Pub { dir, repo, key }
}

impl Pub {
    /// The published summary, as JSON.
    fn summary(&self) -> Value {
        let b = std::fs::read(self.repo.join("summary.json")).expect("summary");
        serde_json::from_slice(&b).expect("json")
    }

    fn commit(&self) -> String {
        ok(
            &self.repo,
            &["rev-parse", "--repo", s(&self.repo), "os/main"],
        )
        .trim()
        .to_string()
    }
}

/// Serve `summary` in place of the published one, signed with the
/// publisher's key as `slate summary --update --sign` signs it (the 64
/// bytes of an Ed25519 signature over the file's bytes, in summary.sig).
fn serve_summary(fs: &FaultServer, p: &Pub, summary: &Value) {
    let mut bytes = serde_json::to_vec_pretty(summary).expect("json");
    bytes.push(b'\n');
    let key = slate_core::sign::load_secret(&p.key).expect("key");
    fs.rule(
        "summary.sig",
        Fault::Replace(key.sign(&bytes).to_vec()),
        u64::MAX,
    );
    fs.rule("summary.json", Fault::Replace(bytes), u64::MAX);
}

/// A bare-user repository with the remote `origin` at `url`, checking
/// signatures with the publisher's key (or not).
fn local(p: &Pub, url: &str, verify: bool) -> PathBuf {
    let l = p.dir.path().join("local");
    let _ = std::fs::remove_dir_all(&l);
    ok(&l, &["init", "--repo", s(&l), "--mode", "bare-user"]);
    let pubkey = format!("{}.pub", s(&p.key));
    let mut args = vec!["remote", "--repo", s(&l), "add", "origin", url];
    if verify {
        args.extend(["--sign-verify", &pubkey]);
    } else {
        args.push("--no-sign-verify");
    }
    ok(&l, &args);
    l
}

fn pull(l: &Path, r: &str) -> Output {
    slate(l, &["pull", "--repo", s(l), "--json", "origin", r])
}

fn pull_err(l: &Path) -> String {
    let o = pull(l, "os/main");
    assert!(
        !o.status.success(),
        "pull succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The result line of a pull that succeeded.
fn pull_done(l: &Path) -> Value {
    let o = pull(l, "os/main");
    assert!(
        o.status.success(),
        "pull failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let last = text.lines().rfind(|l| !l.trim().is_empty());
    serde_json::from_str(last.expect("a result line")).expect("json")
}

fn local_ref(l: &Path) -> Option<String> {
    let o = slate(l, &["rev-parse", "--repo", s(l), "remotes/origin/os/main"]);
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn sha256_hex(b: &[u8]) -> String {
    slate_core::hash::ObjectId::digest(b).to_hex()
}

/// Every file below `dir`, with its content.
fn files_below(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            if e.file_type().expect("type").is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_pack_name_from_the_server_never_becomes_a_path() {
    let p = publish(false);
    let fs = FaultServer::start(p.repo.clone());
    let l = local(&p, &fs.url, true);
    // Where a hostile name aims: a folder beside the repository, with a
    // file in it that must keep its content.
    let target = p.dir.path().join("x");
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::write(target.join("PWNED.idx"), "sentinel").expect("write");
    let before = files_below(&target);
    // The index's bytes the server sends for that name, and their digest
    // (in the signed summary), so that only the name stands between them
    // and the disk.
    let evil = b"bytes of the server's choosing".to_vec();
    let cache = l.join("remotes/origin/cache");
    let climb = "../".repeat(cache.components().count());
    let names = [
        format!("{}/PWNED", s(&target)),
        format!("{climb}{}/PWNED", s(&target).trim_start_matches('/')),
    ];
    for name in names {
        let mut sm = p.summary();
        sm["packs"][0]["name"] = name.clone().into();
        sm["packs"][0]["idx_sha256"] = sha256_hex(&evil).into();
        sm["packs"][0]["idx_size"] = (evil.len() as u64).into();
        fs.clear();
        fs.rule("PWNED", Fault::Replace(evil.clone()), u64::MAX);
        serve_summary(&fs, &p, &sm);
        let err = pull_err(&l);
        assert_eq!(
            files_below(&target),
            before,
            "{name}: written outside: {err}"
        );
        assert!(err.contains("packs[0].name"), "{name}: {err}");
        assert_eq!(local_ref(&l), None);
    }
}

#[test]
fn a_delta_of_another_commit_never_moves_the_ref() {
    let p = publish(true);
    let v1 = p.commit();
    let fs = FaultServer::start(p.repo.clone());
    // The summary says os/main is a commit X that exists nowhere, and
    // lists as its full image the one of v1 (its digest matches).
    let x = sha256_hex(b"a commit nobody has");
    let real = std::fs::read(p.repo.join(format!("deltas/{v1}/empty.delta"))).expect("delta");
    let mut sm = p.summary();
    sm["refs"]["os/main"]["commit"] = x.clone().into();
    sm["refs"]["os/main"]
        .as_object_mut()
        .expect("ref")
        .remove("object");
    sm["deltas"] = serde_json::json!([{
        "from": null, "to": x, "path": format!("deltas/{x}/empty.delta"),
        "size": real.len(), "sha256": sha256_hex(&real),
    }]);
    fs.rule(
        &format!("deltas/{x}/"),
        Fault::Replace(real.clone()),
        u64::MAX,
    );
    serve_summary(&fs, &p, &sm);
    // Any server of an unsigned remote could do this.
    let l = local(&p, &fs.url, false);
    let err = pull_err(&l);
    assert!(
        err.contains(&format!("not from nothing to {x}")),
        "the delta's header was not compared: {err}"
    );
    assert_eq!(local_ref(&l), None, "{err}");
    // With v1 there, the same delta listed as the one from v1 to X.
    fs.clear();
    let l = local(&p, &fs.url, false);
    pull_done(&l);
    assert_eq!(local_ref(&l).as_deref(), Some(v1.as_str()));
    sm["deltas"][0]["from"] = v1.clone().into();
    sm["deltas"][0]["path"] = format!("deltas/{x}/{v1}.delta").into();
    fs.rule(&format!("deltas/{x}/"), Fault::Replace(real), u64::MAX);
    serve_summary(&fs, &p, &sm);
    let err = pull_err(&l);
    assert!(
        err.contains(&format!("not from {v1} to {x}")),
        "the delta's header was not compared: {err}"
    );
    assert_eq!(local_ref(&l).as_deref(), Some(v1.as_str()), "{err}");
}

#[test]
fn a_summary_lists_deltas_by_their_headers() {
    let p = publish(true);
    let v1 = p.commit();
    // A delta copied to the place of another commit's is not listed
    // there: the summary is refused, naming both.
    let other = sha256_hex(b"another commit");
    let dir = p.repo.join(format!("deltas/{other}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(
        p.repo.join(format!("deltas/{v1}/empty.delta")),
        dir.join("empty.delta"),
    )
    .expect("copy");
    let o = slate(
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
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains(&format!("deltas/{other}/empty.delta"))
            && err.contains(&format!("deltas/{v1}/empty.delta")),
        "{err}"
    );
}

#[test]
#[cfg_attr(
    not(test_have = "gnu-time"),
    ignore = "GNU time (/usr/bin/time) is not installed"
)]
fn a_huge_index_is_never_read_into_memory() {
    if !Path::new("/usr/bin/time").exists() {
        return skip("GNU time (/usr/bin/time) is not installed");
    }
    let p = publish(false);
    let fs = FaultServer::start(p.repo.clone());
    let l = local(&p, &fs.url, true);
    // 2 GB announced, and bytes without end (the index's own first, one
    // of them changed, so that they do not check).
    let idx = std::fs::read_dir(p.repo.join("objects/pack"))
        .expect("packs")
        .flatten()
        .map(|e| e.path())
        .find(|f| f.extension().is_some_and(|x| x == "idx"))
        .expect("an index");
    let orig = std::fs::read(&idx).expect("index");
    let mut b = orig.clone();
    b[20] ^= 1;
    std::fs::write(&idx, b).expect("write");
    fs.rule(".idx", Fault::Endless(2_000_000_000), u64::MAX);
    let (o, kb) = pull_peak_kb(&l);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(kb < 100 << 10, "peak memory {kb} KiB: {err}");
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("does not match the summary's digest"), "{err}");
    assert_eq!(local_ref(&l), None);
    // The commit, which an archive repository keeps loose, likewise: no
    // more than a commit can be is read.
    std::fs::write(&idx, orig).expect("write");
    fs.clear();
    fs.rule(".commit", Fault::Endless(2_000_000_000), u64::MAX);
    let (o, kb) = pull_peak_kb(&l);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(kb < 100 << 10, "peak memory {kb} KiB: {err}");
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains(".commit on the remote is larger than 1048576 bytes"),
        "{err}"
    );
    assert_eq!(local_ref(&l), None);
}

/// A pull, and its peak resident memory in KiB (by GNU time).
fn pull_peak_kb(l: &Path) -> (Output, u64) {
    let out = tempfile::NamedTempFile::new().expect("tempfile");
    let o = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(out.path())
        .arg(slate_bin())
        .args(["pull", "--repo", s(l), "origin", "os/main"])
        .output()
        .expect("time");
    let kb = std::fs::read_to_string(out.path())
        .expect("time's output")
        .lines()
        .last()
        .expect("a line")
        .trim()
        .parse()
        .expect("KiB");
    (o, kb)
}

#[test]
fn oversized_summaries_and_signatures_are_named_as_such() {
    let p = publish(false);
    let fs = FaultServer::start(p.repo.clone());
    let l = local(&p, &fs.url, true);
    for (path, said) in [
        ("summary.json", "summary.json on the remote is larger than"),
        ("summary.sig", "summary.sig on the remote is larger than"),
        ("signatures/", "larger than 1024 bytes"),
    ] {
        fs.clear();
        fs.rule(path, Fault::Endless(2_000_000_000), u64::MAX);
        let err = pull_err(&l);
        assert!(err.contains(said), "{path}: {err}");
        assert!(!err.contains("not on the remote"), "{path}: {err}");
    }
}

#[test]
fn a_bad_ref_name_is_refused_before_any_request() {
    let p = publish(false);
    let fs = FaultServer::start(p.repo.clone());
    let l = local(&p, &fs.url, true);
    for r in ["../../x", "a b", "os/main/", "x\ny"] {
        let o = pull(&l, r);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{r:?}: {err}");
        assert!(err.contains("ref"), "{r:?}: {err}");
    }
    assert_eq!(fs.counts().0, 0, "the server was asked");
}

#[test]
fn a_delta_that_would_store_more_than_announced_is_refused() {
    let p = publish(true);
    let fs = FaultServer::start(p.repo.clone());
    // The summary announces 1000 bytes of files for os/main; its delta
    // carries 200 kB.
    let mut sm = p.summary();
    sm["refs"]["os/main"]["size"] = 1000.into();
    serve_summary(&fs, &p, &sm);
    let l = local(&p, &fs.url, true);
    let r = pull_done(&l);
    assert_eq!(r["method"], "packs", "{r}");
    let why = r["delta_failed"]
        .as_str()
        .expect("why the delta was not used");
    assert!(
        why.contains("would store more than the 1000 bytes of files the summary announces"),
        "{why}"
    );
    // The honest summary's delta is used.
    fs.clear();
    let l = local(&p, &fs.url, true);
    let r = pull_done(&l);
    assert_eq!(r["method"], "delta", "{r}");
}

#[test]
fn an_expired_summary_is_refused() {
    let p = publish(false);
    let fs = FaultServer::start(p.repo.clone());
    let l = local(&p, &fs.url, true);
    ok(
        &p.repo,
        &[
            "summary",
            "--repo",
            s(&p.repo),
            "--update",
            "--sign",
            s(&p.key),
            "--expires",
            "7d",
        ],
    );
    let sm = p.summary();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let expires = sm["expires"].as_i64().expect("an expiry");
    assert!((expires - now - 7 * 86_400).abs() <= 5, "{sm}");
    pull_done(&l);
    // Inside the signed summary: a mirror cannot remove it.
    let mut stripped = sm.clone();
    stripped.as_object_mut().expect("object").remove("expires");
    let mut bytes = serde_json::to_vec_pretty(&stripped).expect("json");
    bytes.push(b'\n');
    fs.rule("summary.json", Fault::Replace(bytes), u64::MAX);
    let err = pull_err(&l);
    assert!(err.contains("signature does not check"), "{err}");
    fs.clear();
    // One that expires in a second, a few seconds later.
    ok(
        &p.repo,
        &[
            "summary",
            "--repo",
            s(&p.repo),
            "--update",
            "--sign",
            s(&p.key),
            "--expires",
            "1s",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let err = pull_err(&l);
    assert!(
        err.contains("remote origin: its summary expired at ") && err.contains(" (now "),
        "{err}"
    );
    // Zero is no validity.
    let o = slate(
        &p.repo,
        &[
            "summary",
            "--repo",
            s(&p.repo),
            "--update",
            "--expires",
            "0s",
        ],
    );
    assert!(!o.status.success());
}

#[test]
fn a_summary_of_an_older_version_is_still_pulled() {
    let p = publish(false);
    let fs = FaultServer::start(p.repo.clone());
    // Without the fields this version adds (idx_size, expires).
    let mut sm = p.summary();
    for pack in sm["packs"].as_array_mut().expect("packs") {
        pack.as_object_mut().expect("pack").remove("idx_size");
    }
    serve_summary(&fs, &p, &sm);
    let l = local(&p, &fs.url, true);
    let r = pull_done(&l);
    assert_eq!(r["method"], "packs", "{r}");
    assert_eq!(local_ref(&l).as_deref(), Some(p.commit().as_str()));
    // Its indexes are fetched whole, up to 64 MiB: no more.
    let l = local(&p, &fs.url, true);
    fs.rule(".idx", Fault::Endless(2_000_000_000), u64::MAX);
    let err = pull_err(&l);
    assert!(
        err.contains(".idx on the remote is larger than 67108864 bytes"),
        "{err}"
    );
}
