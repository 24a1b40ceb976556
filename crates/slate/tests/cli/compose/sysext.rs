//! A system extension composed over a real Debian image and merged by the
//! image's own systemd-sysext when it boots in a container
//! (`slate run --extension`): the tool it adds runs, `/usr` stays
//! read-only, `systemd-sysext status` lists it.

use super::debian::{container_init, nsenter, Container};
use super::*;

const OS: &str = r#"[image]
name = "Debian sysext test"
version = "1"
vendor = "test"
arch = "x86-64"

[[input]]
type = "mmdebstrap"
suite = "bookworm"
variant = "minbase"
packages = ["systemd", "systemd-sysv", "dbus"]

[units]
enable = ["systemd-sysext.service"]

[deploy]
etc = "stateless"
"#;

fn ext(target: &str, extra: &str) -> String {
    format!(
        r#"[image]
name = "hello"
version = "1"
vendor = "test"
arch = "x86-64"
kind = "sysext"
base = "usr/test/x86-64"

[[input]]
type = "files"
source = "hello"
target = "{target}"
{extra}"#
    )
}

fn compose_in(repo: &Path, cache: &Path, manifest: &Path) -> std::process::Output {
    Command::new(slate_bin())
        .env("SLATE_REPO", repo)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("SLATE_CACHE_DIR", cache)
        .args(["compose", "--json"])
        .arg(manifest)
        .output()
        .expect("run slate compose")
}

fn id(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "compose failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    v["id"].as_str().expect("id").to_string()
}

#[test]
#[cfg_attr(
    not(all(
        test_root,
        test_have = "mmdebstrap",
        test_have = "systemd-nspawn",
        test_have = "nsenter",
        not(test_no_mirror)
    )),
    ignore = "needs root, mmdebstrap, systemd-nspawn, nsenter and a Debian mirror (SLATE_TEST_NO_MIRROR unset)"
)]
fn an_extension_is_merged_by_systemd_sysext_when_the_image_boots() {
    if !is_root() {
        return skip("compose and nspawn need root");
    }
    for tool in ["mmdebstrap", "systemd-nspawn", "nsenter"] {
        if !have(tool) {
            return skip(&format!("{tool} is not installed (.ci/run installs it)"));
        }
    }
    if std::env::var_os("SLATE_TEST_NO_MIRROR").is_some() {
        return skip("SLATE_TEST_NO_MIRROR is set: no Debian mirror to bootstrap from");
    }
    let t = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let cache = t.path().join("cache");
    let repo = init(t.path(), "bare");
    write(t.path(), "image.toml", OS);
    let os = id(&compose_in(&repo, &cache, &t.path().join("image.toml")));
    let shown = ok(&repo, &["show", &os]);
    assert!(shown.contains("Name:   usr:test:x86-64:1"), "{shown}");

    // The extension: one tool; its name and only its own files.
    write(
        t.path(),
        "hello",
        "#!/bin/sh\necho hello from the extension\n",
    );
    std::fs::set_permissions(
        t.path().join("hello"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    // And a package, resolved against the image: what it needs that the
    // image has (libc6) is not in the extension.
    write(
        t.path(),
        "ext.toml",
        &ext(
            "/usr/bin/hello-ext",
            "\n[[input]]\ntype = \"packages\"\nnames = [\"hello\"]\n",
        ),
    );
    let x = id(&compose_in(&repo, &cache, &t.path().join("ext.toml")));
    let listed = ok(&repo, &["ls", "-R", "ext/test/hello/x86-64"]);
    let paths: Vec<&str> = listed.lines().collect();
    for p in [
        "/usr/bin/hello-ext",
        "/usr/bin/hello",
        "/usr/lib/extension-release.d/extension-release.hello",
    ] {
        assert!(paths.contains(&p), "{p} is not in the extension:\n{listed}");
    }
    assert!(
        paths.iter().all(|p| p.starts_with("/usr")
            && !p.contains("libc.so")
            && !p.starts_with("/usr/lib/x86_64")),
        "{listed}"
    );
    let lock = std::fs::read_to_string(t.path().join("ext.lock")).expect("lockfile");
    assert!(
        lock.contains("name = \"hello\"") && !lock.contains("name = \"libc6\""),
        "{lock}"
    );
    let release = ok(
        &repo,
        &[
            "cat",
            "ext/test/hello/x86-64",
            "/usr/lib/extension-release.d/extension-release.hello",
        ],
    );
    assert_eq!(release, "ID=debian\nVERSION_ID=12\n");
    // One that replaces a file of the image is refused.
    write(
        t.path(),
        "bad.toml",
        &ext("/usr/bin/sh", "").replace("hello\"\nversion", "bad\"\nversion"),
    );
    let o = compose_in(&repo, &cache, &t.path().join("bad.toml"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("/usr/bin/sh: changes a file of the base"),
        "{err}"
    );

    // Booted with the extension.
    let runcache = t.path().join("run");
    let mut container = Container {
        child: Command::new(slate_bin())
            .env("SLATE_REPO", &repo)
            .args(["run", "--boot", "--volatile=yes", "--cache-dir"])
            .arg(&runcache)
            .args(["--extension", &x, &os])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("slate run"),
        init: None,
    };
    let started = std::time::Instant::now();
    let init_pid = loop {
        let nspawn = Command::new("pgrep")
            .args(["-f", &format!("systemd-nspawn.*{os}")])
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<u32>().ok())
            });
        if let Some(pid) = nspawn.and_then(container_init) {
            if std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "systemd")
            {
                container.init = Some(pid);
                break pid;
            }
        }
        assert!(
            started.elapsed().as_secs() < 120,
            "the container did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let state = loop {
        let (_, state) = nsenter(init_pid, &["systemctl", "is-system-running", "--wait"]);
        let state = state.trim().to_string();
        if !state.is_empty() && state != "offline" && state != "unknown" {
            break state;
        }
        assert!(
            started.elapsed().as_secs() < 240,
            "PID 1 of the container never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let (_, failed) = nsenter(
        init_pid,
        &["systemctl", "--failed", "--no-legend", "--plain"],
    );
    let (ran, tool) = nsenter(init_pid, &["hello-ext"]);
    let (_, sysext) = nsenter(init_pid, &["systemd-sysext", "status"]);
    let (wrote, _) = nsenter(init_pid, &["touch", "/usr/slate-test"]);
    let (_, usr) = nsenter(init_pid, &["findmnt", "-n", "-o", "FSTYPE,OPTIONS", "/usr"]);
    let _ = nsenter(init_pid, &["systemctl", "poweroff"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while container.child.try_wait().ok().flatten().is_none()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(container);
    eprintln!(
        "booted with the extension to {state:?} in {:.1} s; /usr: {}",
        started.elapsed().as_secs_f64(),
        usr.trim()
    );
    assert_eq!(state, "running", "failed units: {failed}");
    assert!(ran, "hello-ext did not run");
    assert_eq!(tool, "hello from the extension\n");
    assert!(
        sysext
            .lines()
            .any(|l| l.starts_with("/usr") && l.contains("hello")),
        "{sysext}"
    );
    assert!(!wrote, "/usr is writable with the extension merged");
    assert!(usr.contains("overlay") && usr.contains("ro"), "{usr}");
}
