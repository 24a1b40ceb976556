//! `upgrade --auto`, each update policy against a served repository, and
//! what `status` says of the last check and the next one.

use std::process::Command;

use serde_json::Value;

use super::update::{calls, commit_image, default_dir, env, last_check, publish, upgrade};
use super::{admin_ok, s, status};
use crate::common::slate_bin;

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn each_policy_against_a_served_repository() {
    let Some(p) = env(Some("check")) else { return };
    let sr = &p.e.sr;
    // No policy-changing update: up to date, nothing changes, no reboot.
    let o = upgrade(&p, &["--auto"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("slate-upgrade:"))
            .count(),
        1,
        "{err}"
    );
    assert!(err.contains("up to date"), "{err}");
    assert_eq!(last_check(sr)["result"], "up-to-date");
    assert_eq!(calls(&p), "");

    // check: a new version is reported and recorded, not deployed.
    let c2 = commit_image(&p, 2, Some("check"));
    publish(&p, true);
    let o = upgrade(&p, &["--auto"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lc = last_check(sr);
    assert_eq!(lc["result"], "available", "{lc}");
    assert_eq!(lc["commit"], c2.as_str());
    assert_eq!(lc["version"], "1.2");
    assert_eq!(lc["policy"], "check");
    assert!(lc["time"].as_i64().expect("time") > 0);
    let st = status(sr);
    assert_eq!(st["deployments"].as_array().expect("d").len(), 1);
    assert_eq!(calls(&p), "");
    let text = admin_ok(sr, &["status"]);
    assert!(
        text.contains("test last check") && text.contains("available, version 1.2"),
        "{text}"
    );

    // stage (the machine's /etc overrides the image): staged, no reboot.
    let etc = default_dir(sr).join("etc/slate");
    std::fs::create_dir_all(&etc).expect("mkdir");
    std::fs::write(etc.join("update.toml"), "policy = \"stage\"\n").expect("write");
    let o = upgrade(&p, &["--auto"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(last_check(sr)["result"], "staged");
    let st = status(sr);
    assert!(st.to_string().contains(&c2), "not staged: {st}");
    assert_eq!(calls(&p), "");

    // apply, reboot now: the reboot command is run.
    std::fs::write(etc.join("update.toml"), "policy = \"apply\"\n").expect("write");
    let o = upgrade(&p, &["--auto"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(calls(&p).trim(), "reboot");
    assert_eq!(last_check(sr)["result"], "reboot");

    // apply in a window: a transient timer at the window runs the reboot.
    std::fs::write(
        etc.join("update.toml"),
        "policy = \"apply\"\nreboot = \"window\"\nwindow = \"Sun 04:00\"\n",
    )
    .expect("write");
    std::fs::remove_file(&p.calls).expect("rm");
    let o = upgrade(&p, &["--auto"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = calls(&p);
    assert_eq!(
        c.trim(),
        format!(
            "systemd-run --unit=slate-upgrade-reboot --on-calendar=Sun 04:00 \
             --timer-property=AccuracySec=1min -- {} reboot",
            s(&p.script)
        )
    );
    assert!(
        !c.lines().any(|l| l.trim() == "reboot"),
        "rebooted now: {c}"
    );

    // A version without a valid signature: refused, reported, recorded,
    // no reboot.
    std::fs::write(etc.join("update.toml"), "policy = \"apply\"\n").expect("write");
    std::fs::remove_file(&p.calls).expect("rm");
    let c3 = commit_image(&p, 3, Some("check"));
    publish(&p, false);
    let o = upgrade(&p, &["--auto"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("signature") && err.contains("no reboot"),
        "{err}"
    );
    let lc = last_check(sr);
    assert_eq!(lc["result"], "error", "{lc}");
    assert_eq!(lc["commit"], c3.as_str(), "{lc}");
    assert!(
        lc["error"].as_str().expect("error").contains("signature"),
        "{lc}"
    );
    assert_eq!(calls(&p), "", "rebooted after a refused signature");
    let st = status(sr);
    assert!(
        !st["deployments"].to_string().contains(&c3) && !st["staged"].to_string().contains(&c3),
        "{st}"
    );
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn status_asks_systemd_for_the_next_check() {
    let Some(p) = env(Some("check")) else { return };
    let sr = &p.e.sr;
    let st = status(sr);
    assert_eq!(
        st["updates"][0]["next_check_unknown"],
        "not the running system's sysroot"
    );
    // Booted (by the kernel command line given), systemd is asked.
    let id = st["deployments"][0]["id"].as_str().expect("id").to_string();
    let cmdline = p.e._dir.path().join("cmdline");
    std::fs::write(&cmdline, format!("root=x slate=/slate/deploy/test/{id}\n")).expect("write");
    let systemctl = p.e._dir.path().join("systemctl.sh");
    std::fs::write(
        &systemctl,
        "#!/bin/sh\necho 'Tue 2026-12-08 03:12:00 UTC'\n",
    )
    .expect("w");
    std::fs::set_permissions(
        &systemctl,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let o = Command::new(slate_bin())
        .args([
            "admin",
            "--sysroot",
            s(sr),
            "--cmdline",
            s(&cmdline),
            "status",
            "--json",
        ])
        .env("SLATE_SYSTEMCTL", s(&systemctl))
        .output()
        .expect("status");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        v["updates"][0]["next_check"], "Tue 2026-12-08 03:12:00 UTC",
        "{v}"
    );
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn a_bad_policy_file_is_refused_naming_it_and_recorded() {
    let Some(p) = env(Some("apply")) else { return };
    let sr = &p.e.sr;
    let etc = default_dir(sr).join("etc/slate");
    std::fs::create_dir_all(&etc).expect("mkdir");
    std::fs::write(
        etc.join("update.toml"),
        "policy = \"apply\"\nreboot = \"later\"\n",
    )
    .expect("write");
    commit_image(&p, 2, Some("apply"));
    publish(&p, true);
    let o = upgrade(&p, &["--auto"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("etc/slate/update.toml:2:") && err.contains("later"),
        "{err}"
    );
    let lc = last_check(sr);
    assert_eq!(lc["result"], "error", "{lc}");
    assert!(
        lc["error"].as_str().expect("error").contains("update.toml"),
        "{lc}"
    );
    assert_eq!(calls(&p), "");
    assert_eq!(status(sr)["deployments"].as_array().expect("d").len(), 1);
}
