//! A real Debian image (mmdebstrap, a mirror): composed from the mirror,
//! again from the package cache alone and from the tree cache to the same
//! commit, and booted stateless in a container (systemd-nspawn).

use super::*;

const DEBIAN: &str = r#"[image]
name = "Debian test"
version = "1"
ref = "debian/test"

[[input]]
type = "mmdebstrap"
suite = "bookworm"
variant = "minbase"
packages = ["systemd", "systemd-sysv", "dbus", "openssh-server"]

[[input]]
type = "files"
source = "motd"
target = "/etc/motd"

[units]
enable = ["ssh.service"]

[deploy]
etc = "stateless"
"#;

/// A booted container, ended whatever happens: its init killed (which
/// ends every process of its PID namespace), then nspawn.
pub(crate) struct Container {
    pub(crate) child: std::process::Child,
    pub(crate) init: Option<u32>,
}

impl Drop for Container {
    fn drop(&mut self) {
        // Still the container's init (its parent is nspawn), not a
        // process that took its number since.
        let parent = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
        };
        if let Some(pid) = self.init.filter(|p| parent(*p) == Some(self.child.id())) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The PID (as the host sees it) of the container's init: the child of
/// systemd-nspawn.
pub(crate) fn container_init(nspawn: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

pub(crate) fn nsenter(pid: u32, args: &[&str]) -> (bool, String) {
    let o = Command::new("timeout")
        .arg("120")
        .arg("nsenter")
        .args(["-t", &pid.to_string(), "-a"])
        .args(args)
        .output()
        .expect("nsenter");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
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
fn debian_image_composes_reproducibly_and_boots_stateless() {
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
    write(t.path(), "motd", "a stateless Debian\n");
    let m = t.path().join("image.toml");
    std::fs::write(&m, DEBIAN).expect("manifest");
    let mpath = m.to_str().expect("utf-8");
    let cache = t.path().join("cache");
    let repo = init(t.path(), "bare");

    // 1. From the mirror: the lockfile is written, packages cached.
    let id = id_of(&compose(&repo, &cache, &[mpath]));
    let lock = std::fs::read_to_string(t.path().join("image.lock")).expect("lockfile");
    assert!(lock.contains("name = \"systemd\""), "{lock}");
    // 2. Again, --locked, no tree cache: mmdebstrap from the package
    // cache alone, an independent build of the same commit; in a network
    // namespace of its own (no network at all) when `unshare` can make
    // one, which shows that no mirror is needed.
    let repo2 = t.path().join("repo2");
    fresh_repo(&repo2);
    let offline = Command::new("unshare")
        .args(["--net", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let o = if offline {
        Command::new("unshare")
            .arg("--net")
            .arg(slate_bin())
            .env("SLATE_REPO", &repo2)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("SLATE_CACHE_DIR", &cache)
            .args(["compose", "--locked", "--no-tree-cache", "--json", mpath])
            .output()
            .expect("run slate compose")
    } else {
        eprintln!("note: unshare --net does not work here; the locked build has the network");
        compose(
            &repo2,
            &cache,
            &["--locked", "--no-tree-cache", "--json", mpath],
        )
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["base"], "cache");
    assert_eq!(v["id"].as_str(), Some(id.as_str()), "two builds differ");
    assert_eq!(
        v["lint"]["unaccounted"].as_array().map(Vec::len),
        Some(0),
        "{}",
        v["lint"]
    );
    // 3. Warm: the tree cache, the same commit.
    let repo3 = t.path().join("repo3");
    fresh_repo(&repo3);
    let o = compose(&repo3, &cache, &["--json", mpath]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        (v["base"].as_str(), v["id"].as_str()),
        (Some("cached-tree"), Some(id.as_str()))
    );
    let show = ok(&repo, &["show", &id]);
    assert!(show.contains("    systemd 252."), "{show}");
    // 3b. Another SOURCE_DATE_EPOCH: the tree cache still serves it (the
    // base is made with a fixed epoch), and the image's tree is the same;
    // only the commit's date differs.
    let repo5 = t.path().join("repo5");
    fresh_repo(&repo5);
    let o = Command::new(slate_bin())
        .env("SLATE_REPO", &repo5)
        .env("SOURCE_DATE_EPOCH", "1800000000")
        .env("SLATE_CACHE_DIR", &cache)
        .args(["compose", "--json", mpath])
        .output()
        .expect("run slate compose");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        v["base"].as_str(),
        Some("cached-tree"),
        "another epoch missed the tree cache"
    );
    let later = v["id"].as_str().expect("id").to_string();
    assert_ne!(later, id);
    let tree_of = |repo: &Path, c: &str| -> String {
        let j: serde_json::Value =
            serde_json::from_str(&ok(repo, &["show", "--json", c])).expect("show --json");
        j["tree"].as_str().expect("tree").to_string()
    };
    assert_eq!(
        tree_of(&repo5, &later),
        tree_of(&repo, &id),
        "another epoch, another tree"
    );

    // 4. A package that does not exist: named, nothing committed.
    let bad = t.path().join("bad.toml");
    std::fs::write(&bad, DEBIAN.replace("\"dbus\"", "\"no-such-package-x\"")).expect("write");
    let repo4 = t.path().join("repo4");
    fresh_repo(&repo4);
    let o = compose(&repo4, &cache, &[bad.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("mmdebstrap") && err.contains("no-such-package-x"),
        "{err}"
    );
    assert!(fails(&repo4, &["rev-parse", "debian/test"]).contains("debian/test"));

    // 5. Boot it on nspawn with an empty /etc and /var.
    let runcache = t.path().join("run");
    let mut container = Container {
        child: Command::new(slate_bin())
            .env("SLATE_REPO", &repo)
            .args([
                "run",
                "--boot",
                "--volatile=yes",
                "--private-network",
                "--cache-dir",
            ])
            .arg(&runcache)
            .arg(&id)
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
            .args(["-f", &format!("systemd-nspawn.*{id}")])
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
    // PID 1 answers once its private socket is up; until then systemctl
    // fails at once, with nothing on its output.
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
    let (_, target) = nsenter(
        init_pid,
        &["systemctl", "is-active", "multi-user.target", "ssh.service"],
    );
    let (_, motd) = nsenter(init_pid, &["cat", "/etc/motd"]);
    let (_, etc) = nsenter(init_pid, &["ls", "/etc"]);
    let (_, keys) = nsenter(init_pid, &["ls", "/var/lib/slate/ssh/etc/ssh"]);
    // /etc and /var stamped with /usr's time (Debian's systemd has no
    // systemd-update-done: the image's own unit does its job).
    let (stamped, _) = nsenter(
        init_pid,
        &["test", "-e", "/var/.updated", "-a", "-e", "/etc/.updated"],
    );
    let _ = nsenter(init_pid, &["systemctl", "poweroff"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while container.child.try_wait().ok().flatten().is_none()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(container);
    eprintln!(
        "booted to {:?} in {:.1} s; /etc has {} entries",
        state.trim(),
        started.elapsed().as_secs_f64(),
        etc.lines().count()
    );
    assert_eq!(state.trim(), "running", "failed units: {failed}");
    assert_eq!(failed.trim(), "", "failed units");
    assert_eq!(
        target.split_whitespace().collect::<Vec<_>>(),
        ["active", "active"]
    );
    assert_eq!(motd, "a stateless Debian\n");
    assert!(stamped, "/etc/.updated or /var/.updated is missing");
    assert!(etc.lines().count() > 40, "/etc was not rebuilt: {etc}");
    assert!(
        keys.contains("ssh_host_ed25519_key"),
        "no host keys: {keys}"
    );

    // The other modes, running a command: with --volatile=no the
    // container writes to its own copy, kept between runs; with state,
    // /var is a fresh tmpfs each time; the image in the repository is
    // untouched.
    let run = |mode: &str, cmd: &str| -> String {
        let o = Command::new(slate_bin())
            .env("SLATE_REPO", &repo)
            .args(["run", &format!("--volatile={mode}"), "--cache-dir"])
            .arg(&runcache)
            .args([id.as_str(), "--", "/bin/sh", "-c", cmd])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("slate run");
        assert!(
            o.status.success(),
            "run --volatile={mode} {cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Slate is in the image, and runs there.
    assert!(run("yes", "/usr/bin/slate --version").starts_with("slate "));
    run("no", "echo kept > /var/mark");
    assert_eq!(run("no", "cat /var/mark"), "kept\n");
    assert_eq!(run("state", "echo x > /var/x && cat /var/x"), "x\n");
    assert_eq!(
        run("state", "test -e /var/x && echo there || echo absent"),
        "absent\n",
        "/var is not fresh under --volatile=state"
    );
    assert_eq!(
        run("yes", "test -e /var/mark && echo there || echo absent"),
        "absent\n"
    );
    let co_mark = runcache.join("run").join(&id).join("var/mark");
    assert!(
        !co_mark.exists(),
        "--volatile=no wrote into the shared checkout"
    );
}
