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

/// Run `lines` with the operations of `opts` (its args and root set here).
fn run_with(root: &Path, lines: &str, mut opts: Options) -> (Outcome, Log) {
    let mut host = Host::for_image();
    host.stdin = Some(lines.as_bytes().to_vec());
    opts.root = Some(root.to_path_buf());
    opts.args = vec!["-".into()];
    let mut log = Log::default();
    let o = run(&opts, &host, &mut log).expect("the run starts");
    (o, log)
}

#[test]
fn cleaning_by_age_keeps_what_is_young_or_excluded() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path();
    let cache = root.join("var/cache/app");
    std::fs::create_dir_all(cache.join("old-dir")).expect("mkdir");
    for (name, age_days) in [
        ("old", 30),
        ("young", 0),
        ("keep.me", 30),
        ("old-dir/f", 30),
    ] {
        let p = cache.join(name);
        std::fs::write(&p, b"x").expect("write");
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age_days * 86_400);
        let f = std::fs::File::options().write(true).open(&p).expect("open");
        f.set_times(
            std::fs::FileTimes::new()
                .set_accessed(when)
                .set_modified(when),
        )
        .expect("times");
    }
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86_400);
    std::fs::File::open(cache.join("old-dir"))
        .expect("open")
        .set_times(
            std::fs::FileTimes::new()
                .set_accessed(old)
                .set_modified(old),
        )
        .expect("times");
    let opts = Options {
        clean: true,
        ..Options::default()
    };
    let (o, log) = run_with(
        root,
        "d /var/cache/app - - - mM:10d\nx /var/cache/app/keep.*\n",
        opts,
    );
    assert!(!o.failed, "{:?}", log.events);
    assert!(!cache.join("old").exists());
    assert!(!cache.join("old-dir/f").exists());
    assert!(cache.join("young").exists());
    assert!(
        cache.join("keep.me").exists(),
        "an x line's path was cleaned"
    );
    let cleaned: Vec<&str> = log
        .events
        .iter()
        .filter(|e| e.kind == Kind::Cleaned)
        .filter_map(|e| e.path.as_deref())
        .collect();
    assert!(cleaned.contains(&"/var/cache/app/old"), "{cleaned:?}");
    // The plan said the directory would be cleaned.
    assert!(o
        .plan
        .iter()
        .any(|s| s.path == "/var/cache/app" && s.effect == Effect::Clean));
}

#[test]
fn copies_globs_and_replacements() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path();
    let factory = root.join("usr/share/factory/etc/app");
    std::fs::create_dir_all(factory.join("conf.d")).expect("mkdir");
    std::fs::write(factory.join("main.conf"), b"main").expect("write");
    std::fs::write(factory.join("conf.d/10.conf"), b"ten").expect("write");
    std::fs::create_dir_all(root.join("srv/logs")).expect("mkdir");
    for n in ["a.log", "b.log", "c.txt"] {
        std::fs::write(root.join("srv/logs").join(n), b"log").expect("write");
    }
    std::fs::write(root.join("srv/not-a-link"), b"file").expect("write");
    let lines = "C /etc/app\n\
                 z /srv/logs/*.log 0600\n\
                 L+ /srv/not-a-link - - - - /etc/app\n\
                 e /srv/logs 0700\n";
    let opts = Options {
        create: true,
        ..Options::default()
    };
    let (o, log) = run_with(root, lines, opts);
    assert!(!o.failed && !o.invalid_config, "{:?}", log.events);
    assert_eq!(
        std::fs::read(root.join("etc/app/conf.d/10.conf")).expect("read"),
        b"ten"
    );
    assert_eq!(mode(&root.join("srv/logs/a.log")), 0o600);
    assert_eq!(mode(&root.join("srv/logs/b.log")), 0o600);
    assert_eq!(
        mode(&root.join("srv/logs/c.txt")),
        0o644,
        "the glob matched too much"
    );
    assert_eq!(mode(&root.join("srv/logs")), 0o700);
    assert_eq!(
        std::fs::read_link(root.join("srv/not-a-link")).expect("readlink"),
        Path::new("/etc/app")
    );
    let glob = o.plan.iter().find(|s| s.kind == "z").expect("the z step");
    assert_eq!(glob.matches, ["/srv/logs/a.log", "/srv/logs/b.log"]);
    assert!(log.has(Kind::Copied) && log.has(Kind::Replaced));
    // A second copy finds the directory there and leaves it alone.
    std::fs::write(root.join("etc/app/main.conf"), b"edited").expect("write");
    let (o, _) = run_with(
        root,
        "C /etc/app\n",
        Options {
            create: true,
            ..Options::default()
        },
    );
    assert!(!o.failed);
    assert_eq!(
        std::fs::read(root.join("etc/app/main.conf")).expect("read"),
        b"edited"
    );
}

#[test]
fn paths_never_leave_the_root() {
    let outer = tempfile::tempdir().expect("tempdir");
    let root = outer.path().join("root");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::write(outer.path().join("secret"), b"outside").expect("write");
    // Symlinks inside the root that point out of it, absolute and climbing.
    std::os::unix::fs::symlink(outer.path().join("secret"), root.join("etc/abs")).expect("ln");
    std::os::unix::fs::symlink("../../secret", root.join("etc/climb")).expect("ln");
    std::os::unix::fs::symlink(outer.path(), root.join("out")).expect("ln");
    let lines = "w /etc/abs - - - - overwritten\n\
                 w /etc/climb - - - - overwritten\n\
                 R /out/secret\n\
                 f /out/new - - - - made\n";
    let (_, log) = run_with(
        &root,
        lines,
        Options {
            create: true,
            remove: true,
            ..Options::default()
        },
    );
    assert_eq!(
        std::fs::read(outer.path().join("secret")).expect("read"),
        b"outside",
        "{:?}",
        log.events
    );
    assert!(!outer.path().join("new").exists());
}
