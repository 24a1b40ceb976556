//! How an OS keeps `/etc` and `/var`: `os-init` without `--etc`/`--var`
//! leaves the choice to the OS's first image (its manifest's `[deploy]`,
//! in the commit's metadata); given modes stay; a later image asking for
//! others changes nothing (a warning names them).

use std::path::Path;
use std::process::Command;

use crate::common::{admin, is_root, ok, skip, slate_bin};

fn admin_ok(sr: &Path, args: &[&str]) -> String {
    let o = admin(sr, args);
    assert!(
        o.status.success(),
        "slate admin {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn os_toml(sr: &Path, os: &str) -> String {
    std::fs::read_to_string(sr.join(format!("slate/state/{os}/os.toml"))).expect("os.toml")
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn an_os_without_modes_takes_its_first_images() {
    if !is_root() {
        return skip("a sysroot's repository is bare (real owners): needs root");
    }
    let t = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| t.path().join(n).to_str().expect("utf-8").to_string();
    let (build, sr) = (p("build"), p("sysroot"));
    ok(
        Path::new(&build),
        &["init", "--repo", &build, "--mode", "bare-user"],
    );
    for (branch, etc, var) in [
        ("os/stateless", "stateless", "volatile"),
        ("os/persistent", "persistent", "persistent"),
    ] {
        let tree = t.path().join(branch.replace('/', "-"));
        std::fs::create_dir_all(tree.join("usr/bin")).expect("mkdir");
        std::fs::create_dir_all(tree.join("etc")).expect("mkdir");
        std::fs::write(tree.join("usr/bin/tool"), branch).expect("write");
        std::fs::write(tree.join("etc/motd"), "hello\n").expect("write");
        ok(
            Path::new(&build),
            &[
                "commit",
                "--repo",
                &build,
                "-b",
                branch,
                "--add-metadata",
                &format!("slate.deploy.etc={etc}"),
                "--add-metadata",
                &format!("slate.deploy.var={var}"),
                tree.to_str().expect("utf-8"),
            ],
        );
    }
    let o = Command::new(slate_bin())
        .args(["admin", "init-fs", &sr])
        .output()
        .expect("init-fs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sr = Path::new(&sr);

    // No modes given: the first image's.
    let said = admin_ok(sr, &["os-init", "a"]);
    assert!(said.contains("as its first image asks"), "{said}");
    assert!(os_toml(sr, "a").contains("from_image = true"));
    let said = admin_ok(
        sr,
        &["deploy", "--os", "a", "--from", &build, "os/stateless"],
    );
    assert!(
        said.contains("/etc stateless, /var volatile, as the image asks"),
        "{said}"
    );
    let cfg = os_toml(sr, "a");
    assert!(
        cfg.contains("etc = \"stateless\"")
            && cfg.contains("var = \"volatile\"")
            && cfg.contains("from_image = false"),
        "{cfg}"
    );
    // A second image asking for others changes nothing, and says so.
    let said = admin_ok(
        sr,
        &["deploy", "--os", "a", "--from", &build, "os/persistent"],
    );
    assert!(
        said.contains("the image asks for a persistent /etc; OS a keeps it stateless"),
        "{said}"
    );
    assert_eq!(os_toml(sr, "a"), cfg);
    // os-init again without modes keeps them; with one, changes only it.
    admin_ok(sr, &["os-init", "a"]);
    assert_eq!(os_toml(sr, "a"), cfg);
    admin_ok(sr, &["os-init", "a", "--var", "persistent"]);
    let cfg = os_toml(sr, "a");
    assert!(
        cfg.contains("etc = \"stateless\"") && cfg.contains("var = \"persistent\""),
        "{cfg}"
    );

    // Modes given: they stay, whatever the image asks.
    admin_ok(sr, &["os-init", "b", "--etc", "persistent"]);
    let said = admin_ok(
        sr,
        &["deploy", "--os", "b", "--from", &build, "os/stateless"],
    );
    assert!(
        said.contains("the image asks for a stateless /etc; OS b keeps it persistent"),
        "{said}"
    );
    let cfg = os_toml(sr, "b");
    assert!(
        cfg.contains("etc = \"persistent\"") && cfg.contains("var = \"persistent\""),
        "{cfg}"
    );
}
