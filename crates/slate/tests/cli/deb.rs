//! The Debian package (`dist/deb/build.sh`): what it holds, and, where
//! this machine can (root, mmdebstrap, systemd-nspawn, a Debian mirror),
//! that `apt install ./slate_VERSION_ARCH.deb` installs it on a clean
//! Debian 12 and a booted container has it all: `slate --version`, `man
//! slate`, the completions, and systemd knowing the units
//! (`systemctl cat`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use crate::compose::debian::{container_init, nsenter, Container};

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The units `dist/systemd/` holds (file names).
fn units() -> Vec<String> {
    let mut u: Vec<String> = std::fs::read_dir(source_root().join("dist/systemd"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    u.sort();
    u
}

/// Build the package of the tests' binary into `out`: its path.
fn build_deb(out: &Path) -> PathBuf {
    let o = Command::new(source_root().join("dist/deb/build.sh"))
        .env("SLATE_BIN", slate_bin())
        .env("SLATE_DEB_COMPRESSION", "none")
        .arg(out)
        .output()
        .expect("run dist/deb/build.sh");
    assert!(
        o.status.success(),
        "build.sh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

#[test]
#[cfg_attr(not(test_have = "dpkg-deb"), ignore = "needs dpkg-deb")]
fn the_package_holds_the_binary_man_pages_completions_dracut_module_and_units() {
    if !have("dpkg-deb") {
        return skip("dpkg-deb is not installed");
    }
    let d = tempfile::tempdir().expect("tmp");
    let deb = build_deb(d.path());
    let version = ok(Path::new("."), &["--version"]);
    let version = version.split_whitespace().nth(1).expect("a version");
    let arch = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .expect("dpkg");
    let arch = String::from_utf8_lossy(&arch.stdout).trim().to_string();
    assert_eq!(
        deb.file_name().expect("name").to_string_lossy(),
        format!("slate_{version}_{arch}.deb")
    );
    let o = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .expect("dpkg-deb -c");
    let list = String::from_utf8_lossy(&o.stdout);
    let has = |p: &str| list.lines().any(|l| l.ends_with(&format!(" ./{p}")));
    let mut want = vec![
        "usr/bin/slate".to_string(),
        "usr/share/man/man1/slate.1.gz".into(),
        "usr/share/man/man1/slate-completions.1.gz".into(),
        "usr/share/bash-completion/completions/slate".into(),
        "usr/share/zsh/vendor-completions/_slate".into(),
        "usr/share/fish/vendor_completions.d/slate.fish".into(),
        "usr/lib/dracut/modules.d/50slate/module-setup.sh".into(),
    ];
    for page in std::fs::read_dir(source_root().join("docs/man")).expect("docs/man") {
        let name = page
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        want.push(format!("usr/share/man/man1/{name}.gz"));
    }
    for u in units() {
        want.push(format!("usr/lib/systemd/system/{u}"));
    }
    for p in &want {
        assert!(has(p), "{p} is not in the package:\n{list}");
    }
    assert!(
        list.lines()
            .any(|l| l.starts_with("-rwxr-xr-x root/root") && l.ends_with(" ./usr/bin/slate")),
        "{list}"
    );
    // The same binary and tree give the same package.
    let again = build_deb(&d.path().join("again"));
    assert_eq!(
        std::fs::read(&deb).expect("read"),
        std::fs::read(&again).expect("read")
    );
}

#[test]
#[cfg_attr(
    not(all(
        test_root,
        test_have = "mmdebstrap",
        test_have = "systemd-nspawn",
        test_have = "nsenter",
        test_have = "dpkg-deb",
        not(test_no_mirror)
    )),
    ignore = "needs root, mmdebstrap, systemd-nspawn, nsenter, dpkg-deb and a Debian mirror \
              (SLATE_TEST_NO_MIRROR unset)"
)]
fn apt_installs_the_package_on_a_clean_debian_12() {
    if !is_root() {
        return skip("mmdebstrap and nspawn need root");
    }
    for tool in ["mmdebstrap", "systemd-nspawn", "nsenter", "dpkg-deb"] {
        if !have(tool) {
            return skip(&format!("{tool} is not installed (.ci/run installs it)"));
        }
    }
    if std::env::var_os("SLATE_TEST_NO_MIRROR").is_some() {
        return skip("SLATE_TEST_NO_MIRROR is set: no Debian mirror to bootstrap from");
    }
    let d = tempfile::tempdir().expect("tmp");
    let deb = build_deb(&d.path().join("deb"));
    let tree = d.path().join("debian");
    // A clean Debian 12 with man-db (for `man`) and systemd (to boot).
    let o = Command::new("mmdebstrap")
        .args([
            "--variant=minbase",
            "--include=systemd,systemd-sysv,man-db",
            "--quiet",
            "bookworm",
        ])
        .arg(&tree)
        .output()
        .expect("mmdebstrap");
    if !o.status.success() {
        return skip(&format!(
            "mmdebstrap could not bootstrap bookworm (no mirror?): {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let name = deb
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    std::fs::copy(&deb, tree.join("root").join(&name)).expect("copy the package");
    let nspawn = || {
        let mut c = Command::new("systemd-nspawn");
        c.args(["--quiet", "--private-network", "-D"]).arg(&tree);
        // Without systemd on the host, no machined to register with.
        if !Path::new("/run/systemd/system").is_dir() {
            c.args(["--register=no", "--keep-unit"]);
        }
        c
    };
    let inside = |script: &str| {
        nspawn()
            .args(["--pipe", "/bin/sh", "-c", script])
            .output()
            .expect("systemd-nspawn")
    };
    let o = inside(&format!(
        "cd /root && DEBIAN_FRONTEND=noninteractive apt-get install -y ./{name} 2>&1 && \
         slate --version && man -P cat slate | head -n 5 && \
         test -s /usr/share/bash-completion/completions/slate && echo completion-ok"
    ));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "apt install ./{name}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("slate 0."), "{out}");
    assert!(out.to_lowercase().contains("slate"), "{out}");
    assert!(out.contains("completion-ok"), "{out}");
    assert!(out.contains("NAME"), "man slate printed no page: {out}");

    let units = units();
    if units.is_empty() {
        return skip("dist/systemd/ holds no unit: systemctl cat has nothing to show");
    }
    // Boot it: `systemctl cat` asks the running manager.
    let mut container = Container {
        child: nspawn()
            .arg("-b")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("systemd-nspawn -b"),
        init: None,
    };
    let started = std::time::Instant::now();
    let init_pid = loop {
        if let Some(pid) = container_init(container.child.id()) {
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
    loop {
        let (_, state) = nsenter(init_pid, &["systemctl", "is-system-running", "--wait"]);
        let state = state.trim();
        if !state.is_empty() && state != "offline" && state != "unknown" {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 240,
            "PID 1 of the container never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    for u in &units {
        let (known, text) = nsenter(init_pid, &["systemctl", "cat", u]);
        assert!(known, "systemd does not know {u}: {text}");
        assert!(
            // Debian 12's systemd names the path through /lib.
            text.contains(&format!("lib/systemd/system/{u}")),
            "{u}: {text}"
        );
    }
    let _ = nsenter(init_pid, &["systemctl", "poweroff"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while container.child.try_wait().ok().flatten().is_none()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
