//! `config-diff` and `factory-reset`.

use super::*;

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn config_diff_and_factory_reset() {
    let Some(e) = setup("persistent") else { return };
    // The image declares /var/lib/app.
    let t = e.trees.join("v1");
    write(&t, "usr/lib/tmpfiles.d/app.conf", "d /var/lib/app 0755\n");
    ok(
        &e.build,
        &[
            "commit",
            "--repo",
            s(&e.build),
            "-b",
            "os/main",
            "-s",
            "v1+tmpfiles",
            s(&t),
        ],
    );
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let d = status(&e.sr)["deployments"][0].clone();
    let etc = deployment_dir(&e, &d).join("etc");
    std::fs::write(etc.join("motd"), "changed\n").expect("motd");
    std::fs::write(etc.join("local"), "added\n").expect("local");
    let var = e.sr.join("slate/state/test/var");
    write(&var, "lib/app/db", "collected\n");
    write(&var, "cache/thing", "collected\n");
    std::fs::write(
        e.sr.join("slate/state/test/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .expect("id");

    let drift: Value =
        serde_json::from_str(&admin_ok(&e.sr, &["config-diff", "--json"])).expect("json");
    let etc_paths: Vec<String> = drift["etc"]
        .as_array()
        .expect("etc")
        .iter()
        .map(|x| {
            format!(
                "{} {}",
                x["change"].as_str().expect("change"),
                x["path"].as_str().expect("path")
            )
        })
        .collect();
    assert_eq!(etc_paths, ["added /etc/local", "modified /etc/motd"]);
    assert_eq!(
        drift["var"],
        serde_json::json!(["/var/cache", "/var/lib/app/db", "/var/lib/app/state"])
    );
    let st = status(&e.sr);
    assert_eq!(
        st["deployments"][0]["drift"],
        serde_json::json!({"etc": 2, "var": 3})
    );
    let text = admin_ok(&e.sr, &["config-diff"]);
    assert_eq!(
        text,
        "A /etc/local\nM /etc/motd\n? /var/cache\n? /var/lib/app/db\n? /var/lib/app/state\n"
    );

    // Dry run: what would be lost, nothing changed.
    let o = admin(&e.sr, &["factory-reset", "--dry-run"]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("lost: 2 changed paths") && err.contains("lost: 3 files"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(etc.join("motd")).expect("motd"),
        "changed\n"
    );

    // The running OS is reset at its next boot only.
    let cmdline = e.sr.parent().expect("parent").join("cmdline");
    std::fs::write(
        &cmdline,
        format!(
            "slate=/slate/deploy/test/{}\n",
            d["id"].as_str().expect("id")
        ),
    )
    .expect("cmdline");
    let o = Command::new(slate_bin())
        .args([
            "admin",
            "--sysroot",
            s(&e.sr),
            "--cmdline",
            s(&cmdline),
            "factory-reset",
            "--now",
        ])
        .output()
        .expect("reset");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("happens at the next boot"));

    // /var alone, requested for the next boot.
    admin_ok(&e.sr, &["factory-reset", "--var"]);
    assert_eq!(
        std::fs::read_to_string(e.sr.join("slate/state/test/factory-reset")).expect("request"),
        "var\n"
    );
    // Both, now.
    admin_ok(&e.sr, &["factory-reset", "--now"]);
    assert_eq!(
        std::fs::read_to_string(etc.join("motd")).expect("motd"),
        "welcome\n"
    );
    assert!(!etc.join("local").exists());
    assert_eq!(std::fs::read_dir(&var).expect("var").count(), 0);
    assert!(!e.sr.join("slate/state/test/machine-id").exists());
    assert!(!e.sr.join("slate/state/test/factory-reset").exists());
    let drift: Value =
        serde_json::from_str(&admin_ok(&e.sr, &["config-diff", "--json"])).expect("json");
    assert_eq!(drift["etc"], serde_json::json!([]));
    assert_eq!(drift["var"], serde_json::json!([]));
    fsck_clean(&e);
}
