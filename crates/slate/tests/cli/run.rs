//! `slate run`: the container's network and console login.

use std::path::Path;
use std::process::Command;

use super::common::*;

/// The nspawn command line `slate run --dry-run ARGS` prints, as words.
fn dry_run(cache: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["run", "--dry-run", "--cache-dir"];
    let cache = cache.to_str().expect("utf-8 path");
    all.push(cache);
    all.extend_from_slice(args);
    let out = ok(Path::new("/nonexistent"), &all);
    out.split_whitespace().map(String::from).collect()
}

const TARGET: &str = "/run/systemd/system/console-getty.service.d/50-slate-autologin.conf";

#[test]
fn a_container_gets_a_private_network_and_a_console_login_for_this_run_only() {
    let t = tempfile::tempdir().expect("tempdir");
    let tree = t.path().join("tree");
    std::fs::create_dir_all(tree.join("usr")).expect("mkdir");
    let tree_s = tree.to_str().expect("utf-8");
    let cache = t.path().join("cache");

    let boot = dry_run(&cache, &["--boot", tree_s]);
    assert_eq!(boot[0], "systemd-nspawn");
    assert!(boot.contains(&"--private-network".into()), "{boot:?}");
    assert!(boot.contains(&"--boot".into()), "{boot:?}");
    let bind = boot
        .iter()
        .find(|a| a.starts_with("--bind-ro=") && a.ends_with(&format!(":{TARGET}")))
        .unwrap_or_else(|| panic!("no autologin drop-in bound: {boot:?}"));
    let host_file = &bind["--bind-ro=".len()..bind.len() - TARGET.len() - 1];
    assert!(
        host_file.starts_with(cache.to_str().expect("utf-8")),
        "{bind}"
    );
    let text = std::fs::read_to_string(host_file).expect("drop-in");
    assert!(
        text.contains("--autologin root") && text.contains("ExecStart=\n"),
        "{text}"
    );
    // The image is not changed.
    assert_eq!(std::fs::read_dir(&tree).expect("ls").count(), 1);

    let host = dry_run(&cache, &["--boot", "--host-network", tree_s]);
    assert!(!host.contains(&"--private-network".into()), "{host:?}");
    let locked = dry_run(&cache, &["--boot", "--no-autologin", tree_s]);
    assert!(
        !locked.iter().any(|a| a.starts_with("--bind-ro=")),
        "{locked:?}"
    );
    let cmd = dry_run(&cache, &[tree_s, "--", "true"]);
    assert!(!cmd.iter().any(|a| a.starts_with("--bind-ro=")), "{cmd:?}");
    assert!(cmd.contains(&"--private-network".into()), "{cmd:?}");
    // The hostname is the folder's name (for an image, its name), never a commit id.
    assert!(cmd.contains(&"--machine=tree".into()), "{cmd:?}");
    let repo = init(t.path(), "bare-user");
    ok(&repo, &["commit", "-b", "os/main", "-s", "one", tree_s]);
    let o = slate(
        &repo,
        &[
            "run",
            "--dry-run",
            "--cache-dir",
            cache.to_str().expect("utf-8"),
            "os/main",
        ],
    );
    let line = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(line.contains(" --machine=os-main "), "{line}");
}

/// A tree holding `cat` and the libraries it loads, from the host.
fn tree_with_cat(root: &Path) -> bool {
    let Ok(o) = Command::new("ldd").arg("/usr/bin/cat").output() else {
        return false;
    };
    let mut files = vec!["/usr/bin/cat".to_string()];
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        if let Some(p) = line.split_whitespace().find(|w| w.starts_with('/')) {
            files.push(p.to_string());
        }
    }
    for f in files {
        let real = std::fs::canonicalize(&f).expect("canonicalize");
        for p in [Path::new(&f), real.as_path()] {
            let dest = root.join(p.strip_prefix("/").expect("absolute"));
            std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
            std::fs::copy(&real, &dest).expect("copy");
        }
    }
    std::fs::create_dir_all(root.join("etc")).expect("etc");
    std::fs::copy("/etc/os-release", root.join("etc/os-release")).is_ok()
}

/// In a real container: only loopback by default, the host's interfaces
/// with --host-network, and the autologin drop-in where the console
/// getty finds it, in the container's /run.
#[test]
#[cfg_attr(not(test_root), ignore = "needs root")]
#[cfg_attr(not(test_have = "systemd-nspawn"), ignore = "needs systemd-nspawn")]
fn the_network_and_the_dropin_are_as_planned_inside_a_container() {
    if !is_root() || !have("systemd-nspawn") || !have("ldd") {
        return skip("needs root, systemd-nspawn and ldd");
    }
    let t = tempfile::tempdir().expect("tempdir");
    let tree = t.path().join("tree");
    if !tree_with_cat(&tree) {
        return skip("cannot copy cat and its libraries into a tree");
    }
    let tree_s = tree.to_str().expect("utf-8");
    let cache = t.path().join("cache");
    let cache_s = cache.to_str().expect("utf-8");
    let interfaces = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["run", "--volatile=no", "--cache-dir", cache_s];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[tree_s, "--", "/usr/bin/cat", "/proc/net/dev"]);
        let out = ok(Path::new("/nonexistent"), &args);
        out.lines()
            .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
            .collect()
    };
    assert_eq!(interfaces(&[]), vec!["lo".to_string()]);
    let host: Vec<String> = std::fs::read_to_string("/proc/net/dev")
        .expect("host interfaces")
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .collect();
    assert_eq!(interfaces(&["--host-network"]), host);

    // The boot's command line, with `cat` of the drop-in instead of init.
    let mut args = dry_run(&cache, &["--volatile=no", "--boot", tree_s]);
    args.retain(|a| a != "--boot" && a != "systemd-nspawn");
    args.extend(["--".into(), "/usr/bin/cat".into(), TARGET.into()]);
    let o = Command::new("systemd-nspawn")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("nspawn");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("--autologin root"),
        "{args:?}: {text} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!tree.join(TARGET.trim_start_matches('/')).exists());
}
