//! `[remote]` and `[update]` of a manifest, and what compose writes of
//! them and of the image's version.

use std::path::Path;

use super::image::Added;
use super::manifest::Loaded;
use super::updates;
use crate::remotes::image as remote_image;
use crate::update_policy::{Policy, PolicyFile, Reboot};

const BASE: &str = r#"[image]
name = "Slate Test OS"
version = "2.1"
ref = "os/main"

[[input]]
type = "directory"
path = "base"
"#;

fn dir_with_key() -> (tempfile::TempDir, String) {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(d.path().join("base")).expect("mkdir");
    std::fs::create_dir_all(d.path().join("files")).expect("mkdir");
    let k = crate::sign::SecretKey::generate().expect("random").public();
    std::fs::write(d.path().join("files/slate.pub"), k.to_pem()).expect("write");
    (d, k.key_id())
}

fn parse(dir: &Path, text: &str) -> Result<Loaded, super::manifest::Error> {
    Loaded::parse(&dir.join("image.toml"), text)
}

const GOOD: &str = r#"
[remote]
name = "origin"
urls = ["https://updates.example.org/os", "https://mirror.example.org/os"]
keys = ["files/slate.pub", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="]

[update]
policy = "apply"
schedule = "Mon..Fri 03:00"
randomized-delay = "30min"
reboot = "window"
window = "Sun 04:00"
"#;

#[test]
fn remote_and_update_sections_read_with_their_keys() {
    let (d, key_id) = dir_with_key();
    let l = parse(d.path(), &format!("{BASE}{GOOD}")).expect("good manifest");
    let r = l.manifest.remote.as_ref().expect("[remote]").get_ref();
    let cfg = r.config.as_ref().expect("checked");
    assert_eq!(cfg.urls.len(), 2);
    let ids: Vec<String> = cfg
        .public_keys()
        .expect("keys")
        .iter()
        .map(|k| k.key_id())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], key_id);
    let u = l.manifest.update.as_ref().expect("[update]").get_ref();
    assert_eq!(u.policy, Policy::Apply);
    let f = u.file();
    assert_eq!(f.reboot, Some(Reboot::Window));
    assert_eq!(f.window.as_deref(), Some("Sun 04:00"));
    assert_eq!(PolicyFile::parse("f", &f.render()).expect("reads back"), f);
}

/// Each bad section fails at the line given (the section's, or the
/// value's), with the words given.
#[test]
fn bad_sections_fail_naming_the_line() {
    let (d, _) = dir_with_key();
    let cases: &[(&str, &str, &str, usize, &str)] = &[
        (
            "unknown policy",
            "policy = \"apply\"",
            "policy = \"sometimes\"",
            16,
            "sometimes",
        ),
        (
            "bad calendar",
            "schedule = \"Mon..Fri 03:00\"",
            "schedule = \"at three; reboot\"",
            17,
            "calendar",
        ),
        (
            "bad window",
            "window = \"Sun 04:00\"",
            "window = \"\"",
            20,
            "calendar",
        ),
        (
            "bad delay",
            "randomized-delay = \"30min\"",
            "randomized-delay = \"soon\"",
            18,
            "time span",
        ),
        (
            "window without reboot window",
            "reboot = \"window\"",
            "reboot = \"now\"",
            20,
            "reboot = \"window\"",
        ),
        (
            "unknown key",
            "policy = \"apply\"",
            "policy = \"apply\"\ncolour = 1",
            17,
            "colour",
        ),
        (
            "bad remote name",
            "name = \"origin\"",
            "name = \"../x\"",
            11,
            "not a remote name",
        ),
        (
            "bad url",
            "\"https://mirror.example.org/os\"",
            "\"file:///etc\"",
            10,
            "http://",
        ),
        (
            "key outside",
            "\"files/slate.pub\"",
            "\"/etc/ssl/x.pub\"",
            13,
            "key",
        ),
        (
            "bad inline key",
            "\"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"",
            "\"AAAA\"",
            13,
            "key",
        ),
        (
            "url and urls",
            "name = \"origin\"",
            "name = \"origin\"\nurl = \"https://x\"",
            10,
            "one of them",
        ),
    ];
    for (name, find, replace, line, words) in cases {
        let body = GOOD.replacen(find, replace, 1);
        assert_ne!(body, GOOD, "{name}: the case changes nothing");
        let e = parse(d.path(), &format!("{BASE}{body}")).expect_err(name);
        let msg = e.to_string();
        let file = format!("{}:{line}:", d.path().join("image.toml").display());
        assert!(msg.starts_with(&file), "{name}: {msg} (expected {file})");
        assert!(msg.contains(words), "{name}: {msg}");
    }
    // A calendar of the right characters that systemd refuses, where it
    // can be asked.
    if crate::update_policy::check_calendar_with_systemd("daily") == Ok(true) {
        let body = GOOD.replacen("Mon..Fri 03:00", "Mon..Fri 25:00", 1);
        let e = parse(d.path(), &format!("{BASE}{body}")).expect_err("25:00");
        let msg = e.to_string();
        assert!(
            msg.contains(":17:") && msg.contains("systemd-analyze"),
            "{msg}"
        );
    } else {
        eprintln!("SKIPPED: systemd-analyze is not installed (calendar checked by shape only)");
    }
    let no_slate = format!(
        "{}{GOOD}",
        BASE.replace(
            "ref = \"os/main\"",
            "ref = \"os/main\"\ninstall-slate = false"
        )
    );
    let e = parse(d.path(), &no_slate).expect_err("no slate");
    assert!(e.to_string().contains("install-slate"), "{e}");
    let unsigned = GOOD.replacen(
        "keys = [\"files/slate.pub\", \"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"]",
        "",
        1,
    );
    let e = parse(d.path(), &format!("{BASE}{unsigned}")).expect_err("no keys");
    assert!(e.to_string().contains("no-sign-verify = true"), "{e}");
}

#[test]
fn os_release_gets_the_image_id_and_version_and_keeps_its_fields() {
    let (d, _) = dir_with_key();
    let l = parse(d.path(), &format!("{BASE}{GOOD}")).expect("good manifest");
    let root = d.path().join("tree");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::write(
        root.join("etc/os-release"),
        "PRETTY_NAME=\"Debian 12\"\nID=debian\nIMAGE_VERSION=old\n",
    )
    .expect("write");
    let mut added = Added::default();
    updates::os_release(&root, &l.manifest, &mut added).expect("os-release");
    let text = std::fs::read_to_string(root.join("usr/lib/os-release")).expect("read");
    assert_eq!(
        text,
        "PRETTY_NAME=\"Debian 12\"\nID=debian\nIMAGE_ID=slate-test-os\nIMAGE_VERSION=2.1\n"
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/os-release")).expect("a link"),
        Path::new("../usr/lib/os-release")
    );
    // Again (a tree that has them already): the same file.
    updates::os_release(&root, &l.manifest, &mut added).expect("again");
    assert_eq!(
        std::fs::read_to_string(root.join("usr/lib/os-release")).expect("read"),
        text
    );
    assert_eq!(updates::image_id(" Slate/Test OS! "), "slate-test-os");
}

#[test]
fn remotes_d_the_policy_and_the_timer_are_written_and_enabled() {
    let (d, _) = dir_with_key();
    let l = parse(d.path(), &format!("{BASE}{GOOD}")).expect("good manifest");
    let root = d.path().join("tree");
    std::fs::create_dir_all(&root).expect("mkdir");
    let mut added = Added::default();
    updates::update_and_remote(&root, &l.manifest, &mut added).expect("written");
    let remote = std::fs::read(root.join("usr/lib/slate/remotes.d/origin.toml")).expect("remote");
    let cfg = remote_image::parse_file("origin.toml", &remote).expect("reads as a remote");
    assert_eq!(cfg.urls[0], "https://updates.example.org/os");
    assert_eq!(cfg.keys.len(), 2);
    let policy = std::fs::read_to_string(root.join("usr/lib/slate/update.toml")).expect("policy");
    let f = PolicyFile::parse("update.toml", &policy).expect("policy reads");
    assert_eq!(f.policy, Some(Policy::Apply));
    assert_eq!(f.window.as_deref(), Some("Sun 04:00"));
    let dropin = std::fs::read_to_string(root.join(updates::TIMER_DROPIN)).expect("drop-in");
    assert!(
        dropin.contains(
            "[Timer]\nOnCalendar=\nOnCalendar=Mon..Fri 03:00\nRandomizedDelaySec=30min\n"
        ),
        "{dropin}"
    );
    assert_eq!(
        std::fs::read_link(root.join(updates::TIMER_WANTS)).expect("enabled"),
        Path::new("../slate-upgrade.timer")
    );
    assert!(root.join(updates::UPGRADE_SERVICE).is_file());
    assert!(added.enabled.contains(&"slate-upgrade.timer".to_string()));
    // The drop-in's calendar as systemd reads it, where it can be asked.
    let cal = dropin
        .lines()
        .filter_map(|l| l.strip_prefix("OnCalendar="))
        .find(|c| !c.is_empty())
        .expect("a calendar");
    match crate::update_policy::check_calendar_with_systemd(cal) {
        Ok(true) => {}
        Ok(false) => eprintln!("SKIPPED: systemd-analyze is not installed"),
        Err(e) => panic!("{e}"),
    }
}
