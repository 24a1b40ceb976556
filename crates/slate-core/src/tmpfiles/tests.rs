//! The engine as a library, on a plain temporary directory: no root
//! needed. (The command line is compared with systemd-tmpfiles in the
//! integration tests.)

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;
use crate::confd::Credentials;

/// Run `lines` (given on standard input) with `ops` on `root`.
fn run_lines(root: &Path, lines: &str, host: &mut Host, dry_run: bool) -> (Outcome, Log) {
    host.stdin = Some(lines.as_bytes().to_vec());
    let opts = Options {
        root: Some(root.to_path_buf()),
        create: true,
        remove: true,
        args: vec!["-".into()],
        dry_run,
        ..Options::default()
    };
    let mut log = Log::default();
    let o = run(&opts, host, &mut log).expect("the run starts");
    (o, log)
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).expect("lstat").mode() & 0o7777
}

fn umask_now() -> String {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find(|l| l.starts_with("Umask:"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn creates_plans_and_reports_without_touching_the_umask() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path();
    let lines = "d /srv/web 0750 - - -\n\
                 f /srv/web/index.html 0640 - - - hello\n\
                 L /srv/link - - - - /srv/web\n\
                 p /srv/fifo 0600\n\
                 d /srv/sticky 1777\n";
    let umask = umask_now();
    let mut host = Host::for_image();
    // A dry run plans every step and changes nothing.
    let (o, _) = run_lines(root, lines, &mut host, true);
    assert!(!o.invalid_config && !o.failed);
    let effects: Vec<(&str, Effect)> = o.plan.iter().map(|s| (s.path.as_str(), s.effect)).collect();
    assert!(
        effects.contains(&("/srv/web", Effect::Create)),
        "{effects:?}"
    );
    assert!(
        effects.contains(&("/srv/fifo", Effect::Create)),
        "{effects:?}"
    );
    assert!(!root.join("srv").exists(), "a dry run created something");

    let (o, log) = run_lines(root, lines, &mut host, false);
    assert!(!o.invalid_config && !o.failed, "{:?}", log.events);
    assert_eq!(mode(&root.join("srv/web")), 0o750);
    assert_eq!(mode(&root.join("srv/web/index.html")), 0o640);
    assert_eq!(
        std::fs::read(root.join("srv/web/index.html")).expect("read"),
        b"hello"
    );
    assert_eq!(mode(&root.join("srv/sticky")), 0o1777);
    assert_eq!(mode(&root.join("srv/fifo")), 0o600);
    assert_eq!(
        std::fs::read_link(root.join("srv/link")).expect("readlink"),
        Path::new("/srv/web")
    );
    let created: Vec<&str> = log
        .events
        .iter()
        .filter(|e| e.kind == Kind::Created)
        .filter_map(|e| e.path.as_deref())
        .collect();
    for p in ["/srv/web", "/srv/web/index.html", "/srv/link", "/srv/fifo"] {
        assert!(
            created.contains(&p),
            "{p} not reported created: {created:?}"
        );
    }
    assert_eq!(umask_now(), umask, "the process umask changed");
    // A second plan finds everything there.
    let (o, _) = run_lines(root, lines, &mut host, true);
    assert!(
        o.plan.iter().all(|s| s.effect != Effect::Create),
        "{:?}",
        o.plan
    );
}

#[test]
fn a_file_with_several_links_is_copied_before_it_changes() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path();
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::create_dir_all(root.join("store")).expect("mkdir");
    for n in ["passwd", "motd", "issue", "hosts"] {
        let obj = root.join("store").join(n);
        std::fs::write(&obj, format!("object {n}\n")).expect("write");
        std::fs::set_permissions(&obj, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::hard_link(&obj, root.join("etc").join(n)).expect("link");
    }
    let lines = "w /etc/passwd - - - - written\n\
                 z /etc/motd 0600\n\
                 F /etc/issue 0644 - - - new\n\
                 t /etc/hosts - - - - user.x=1\n";
    let mut host = Host::for_image();
    let (o, log) = run_lines(root, lines, &mut host, false);
    assert!(!o.failed, "{:?}", log.events);
    // `w` writes over the start, as systemd's does.
    assert_eq!(
        std::fs::read(root.join("etc/passwd")).expect("read"),
        b"writtenpasswd\n"
    );
    assert_eq!(mode(&root.join("etc/motd")), 0o600);
    assert_eq!(std::fs::read(root.join("etc/issue")).expect("read"), b"new");
    // The other links keep what they had.
    for n in ["passwd", "motd", "issue", "hosts"] {
        let obj = root.join("store").join(n);
        assert_eq!(
            std::fs::read(&obj).expect("read"),
            format!("object {n}\n").into_bytes(),
            "{n}'s other link changed"
        );
        assert_eq!(mode(&obj), 0o644, "{n}'s other link changed mode");
        assert_eq!(std::fs::metadata(&obj).expect("stat").nlink(), 1);
        assert_eq!(
            std::fs::metadata(root.join("etc").join(n))
                .expect("stat")
                .nlink(),
            1
        );
    }
    if rustix::fs::getxattr(root.join("etc/hosts").as_path(), "user.x", &mut [0u8; 8]).is_ok() {
        assert!(
            rustix::fs::getxattr(root.join("store/hosts").as_path(), "user.x", &mut [0u8; 8])
                .is_err(),
            "the xattr reached the other link"
        );
    }
    assert!(log.has(Kind::Replaced), "{:?}", log.events);
}

#[test]
fn bad_escapes_host_facts_and_credentials() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path();
    let mut host = Host::for_image();
    host.home = Some("/home/builder".into());
    let mut creds = BTreeMap::new();
    creds.insert("motd".to_string(), b"from a credential".to_vec());
    creds.insert("tmpfiles.extra".to_string(), b"d /extra 0700\n".to_vec());
    host.credentials = Credentials::Map(creds);
    let lines = "f /a - - - - x\\qy\n\
                 f /b - - - - end\\\n\
                 f /c - - - - ok\\tz\n\
                 f /home.txt - - - - %h\n\
                 f^ /motd - - - - motd\n";
    let (o, log) = run_lines(root, lines, &mut host, false);
    assert!(o.invalid_config, "{:?}", log.events);
    assert!(!root.join("a").exists() && !root.join("b").exists());
    assert_eq!(std::fs::read(root.join("c")).expect("read"), b"ok\tz");
    assert_eq!(
        std::fs::read(root.join("home.txt")).expect("read"),
        b"/home/builder"
    );
    assert_eq!(
        std::fs::read(root.join("motd")).expect("read"),
        b"from a credential"
    );
    assert!(root.join("extra").is_dir(), "tmpfiles.extra was not read");
    let texts: Vec<&str> = log.printed().map(|e| e.text.as_str()).collect();
    assert!(
        texts.contains(&"Failed to unescape parameter to write: end\\"),
        "{texts:?}"
    );
    assert!(log.has(Kind::InvalidLine));
}

#[test]
fn a_host_without_a_boot_id_gives_none() {
    let t = tempfile::tempdir().expect("tempdir");
    let mut host = Host::for_image();
    host.stdin = Some(b"f /boot - - - - %b\n".to_vec());
    let opts = Options {
        root: Some(t.path().to_path_buf()),
        create: true,
        args: vec!["-".into()],
        ..Options::default()
    };
    let mut log = Log::default();
    // A failed line of a CONFIG argument ends the run, as in systemd.
    assert!(run(&opts, &host, &mut log).is_err());
    assert!(!t.path().join("boot").exists());
    host.boot_id = Some("0123456789abcdef0123456789abcdef".into());
    assert!(run(&opts, &host, &mut Log::default()).is_ok());
    assert_eq!(
        std::fs::read(t.path().join("boot")).expect("read"),
        b"0123456789abcdef0123456789abcdef"
    );
}

#[test]
fn removal_reports_what_it_removed() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path();
    std::fs::create_dir_all(root.join("var/tmp/x/y")).expect("mkdir");
    std::fs::write(root.join("var/tmp/x/y/f"), b"f").expect("write");
    std::fs::write(root.join("var/tmp/gone"), b"g").expect("write");
    let mut host = Host::for_image();
    let (o, log) = run_lines(root, "R /var/tmp/x\nr /var/tmp/gone\n", &mut host, false);
    assert!(!o.failed, "{:?}", log.events);
    assert!(!root.join("var/tmp/x").exists() && !root.join("var/tmp/gone").exists());
    let removed: Vec<&str> = log
        .events
        .iter()
        .filter(|e| e.kind == Kind::Removed)
        .filter_map(|e| e.path.as_deref())
        .collect();
    assert_eq!(removed, ["/var/tmp/x", "/var/tmp/gone"]);
}
