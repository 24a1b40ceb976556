//! `slate compose` of a manifest with `[remote]` and `[update]`: the
//! image's os-release, its remote in `remotes.d`, the update timer
//! enabled with its calendar, the origin in the commit's metadata; a bad
//! section refused naming the manifest's line.

use super::{cat, compose, debian_like, id_of, manifest};
use crate::common::{have, init, is_root, ok, skip};

const SECTIONS: &str = r#"
[remote]
name = "origin"
url = "https://updates.example.org/folder"
no-sign-verify = true

[update]
policy = "stage"
schedule = "Sat 02:00"
randomized-delay = "15min"
"#;

#[test]
#[cfg_attr(
    not(all(test_root, test_have = "systemctl")),
    ignore = "needs root (file owners) and systemctl ([units])"
)]
fn compose_bakes_the_remote_the_policy_and_the_version_into_the_image() {
    if !is_root() {
        return skip("slate compose needs root (file owners)");
    }
    if !have("systemctl") {
        return skip("systemctl is not installed ([units] are enabled with it)");
    }
    let t = tempfile::tempdir().expect("tempdir");
    let base = t.path().join("base");
    debian_like(&base, "1.0");
    let m = manifest(t.path(), &base, SECTIONS);
    let cache = t.path().join("cache");
    let repo = init(t.path(), "bare");
    let id = id_of(&compose(&repo, &cache, &[m.to_str().expect("utf-8")]));

    let release = cat(&repo, &id, "/usr/lib/os-release");
    assert_eq!(release, "ID=test\nIMAGE_ID=folder\nIMAGE_VERSION=1.0\n");
    let remote = cat(&repo, &id, "/usr/lib/slate/remotes.d/origin.toml");
    assert!(
        remote.contains("urls = [\"https://updates.example.org/folder\"]")
            && remote.contains("no-sign-verify = true"),
        "{remote}"
    );
    let policy = cat(&repo, &id, "/usr/lib/slate/update.toml");
    assert!(policy.contains("policy = \"stage\""), "{policy}");
    let dropin = cat(
        &repo,
        &id,
        "/usr/lib/systemd/system/slate-upgrade.timer.d/slate-manifest.conf",
    );
    assert!(
        dropin.contains("OnCalendar=\nOnCalendar=Sat 02:00\nRandomizedDelaySec=15min\n"),
        "{dropin}"
    );
    let timers = ok(
        &repo,
        &["ls", &id, "/usr/lib/systemd/system/timers.target.wants"],
    );
    assert!(timers.contains("slate-upgrade.timer"), "{timers}");
    assert!(
        cat(&repo, &id, "/usr/lib/systemd/system/slate-upgrade.service")
            .contains("ExecStart=/usr/bin/slate admin upgrade --auto")
    );
    let show = ok(
        &repo,
        &[
            "show",
            "--repo",
            repo.to_str().expect("utf-8"),
            "--json",
            &id,
        ],
    );
    assert!(
        show.contains("\"slate.image.origin\": \"origin:folder/main\""),
        "{show}"
    );
    if have("systemd-analyze") {
        let o = std::process::Command::new("systemd-analyze")
            .args(["calendar", "Sat 02:00"])
            .output()
            .expect("systemd-analyze");
        assert!(o.status.success());
    } else {
        eprintln!("SKIPPED: systemd-analyze is not installed (the drop-in's calendar unchecked)");
    }

    // An unknown policy: refused at its line, nothing committed.
    let bad = manifest(
        t.path(),
        &base,
        &SECTIONS.replace("\"stage\"", "\"always\""),
    );
    let o = compose(&repo, &cache, &[bad.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    let text = std::fs::read_to_string(&bad).expect("manifest");
    let line = 1 + text[..text.find("policy").expect("policy")]
        .matches('\n')
        .count();
    assert!(
        err.contains(&format!("image.toml:{line}:")) && err.contains("always"),
        "{err}"
    );
}
