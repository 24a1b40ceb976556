use std::path::Path;

use super::manifest::{Input, Loaded};
use crate::image_meta::{EtcMode, VarMode};

const GOOD: &str = r#"
[image]
name = "Slate Debian"
version = "12.1"
ref = "debian/12/x86_64"

[[input]]
type = "mmdebstrap"
suite = "bookworm"
packages = ["systemd", "udev", "libc6=2.36-9+deb12u10"]

[[input]]
type = "packages"
names = ["openssh-server"]

[[input]]
type = "files"
source = "overlay"
target = "/usr/share/slate-example"

[sysusers]
lines = ["u web - \"Web server\" /var/lib/web"]

[tmpfiles]
lines = ["d /var/lib/web 0750 web web -"]

[units]
enable = ["ssh.service"]
disable = ["apt-daily.timer"]

[kernel]
args = ["quiet"]

[deploy]
etc = "stateless"
var = "persistent"

[lint]
exclude = ["/var/cache/"]
"#;

fn with_overlay() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(d.path().join("overlay")).expect("mkdir");
    d
}

fn parse(dir: &Path, text: &str) -> Result<Loaded, super::manifest::Error> {
    Loaded::parse(&dir.join("image.toml"), text)
}

#[test]
fn a_manifest_reads_with_its_inputs_in_order_and_paths_made_absolute() {
    let d = with_overlay();
    let l = parse(d.path(), GOOD).expect("good manifest");
    let m = &l.manifest;
    assert_eq!(m.image.branch.get_ref(), "debian/12/x86_64");
    let kinds: Vec<&str> = m.inputs.iter().map(|i| i.get_ref().kind()).collect();
    assert_eq!(kinds, ["mmdebstrap", "packages", "files"]);
    match m.inputs[0].get_ref() {
        Input::Mmdebstrap { variant, .. } => assert_eq!(variant, "minbase"),
        other => panic!("{other:?}"),
    }
    match m.inputs[2].get_ref() {
        Input::Files { source, .. } => assert_eq!(source, &d.path().join("overlay")),
        other => panic!("{other:?}"),
    }
    assert_eq!(m.deploy.etc, EtcMode::Stateless);
    assert_eq!(m.deploy.var, VarMode::Persistent);
    assert_eq!(m.units.enable[0].get_ref(), "ssh.service");
}

/// Each bad manifest fails at the line (and with the words) given.
#[test]
fn bad_manifests_fail_naming_the_line() {
    let d = with_overlay();
    // (what, text replaced, by, line of the error, words in it); an error
    // inside an input is at its `[[input]]` line.
    let cases: &[(&str, &str, &str, usize, &str)] = &[
        (
            "unknown key",
            "ref = \"debian/12/x86_64\"\n",
            "ref = \"debian/12/x86_64\"\ncolour = \"blue\"\n",
            6,
            "unknown field `colour`",
        ),
        (
            "unknown input type",
            "type = \"mmdebstrap\"",
            "type = \"debootstrap\"",
            8,
            "debootstrap",
        ),
        (
            "unknown input key",
            "suite = \"bookworm\"",
            "suite = \"bookworm\"\nmirror = \"x\"",
            7,
            "mirror",
        ),
        (
            "missing source",
            "source = \"overlay\"",
            "source = \"missing\"",
            16,
            "No such file",
        ),
        (
            "bad package",
            "names = [\"openssh-server\"]",
            "names = [\"Open SSH\"]",
            12,
            "is not a package name",
        ),
        (
            "bad unit",
            "enable = [\"ssh.service\"]",
            "enable = [\"ssh\"]",
            28,
            "is not a unit name",
        ),
        (
            "bad mode",
            "etc = \"stateless\"",
            "etc = \"sometimes\"",
            35,
            "sometimes",
        ),
        (
            "relative target",
            "target = \"/usr/share/slate-example\"",
            "target = \"usr/share\"",
            16,
            "absolute path",
        ),
        (
            "bad ref",
            "ref = \"debian/12/x86_64\"",
            "ref = \"debian//12\"",
            5,
            "debian//12",
        ),
        (
            "bad exclude",
            "exclude = [\"/var/cache/\"]",
            "exclude = [\"/usr/lib\"]",
            39,
            "only looks at /etc and /var",
        ),
        ("not TOML", "[lint]", "[lint", 38, ""),
    ];
    for (name, find, replace, line, words) in cases {
        let text = GOOD.replacen(find, replace, 1);
        assert_ne!(text, GOOD, "{name}: the case changes nothing");
        let e = parse(d.path(), &text).expect_err(name);
        let msg = e.to_string();
        let file = format!("{}:{line}:", d.path().join("image.toml").display());
        assert!(msg.starts_with(&file), "{name}: {msg} (expected {file})");
        assert!(msg.contains(words), "{name}: {msg}");
    }
}

#[test]
fn the_first_input_makes_the_tree_and_only_the_first() {
    let d = with_overlay();
    let no_base = GOOD.replacen(
        "type = \"mmdebstrap\"\nsuite = \"bookworm\"\npackages = [\"systemd\", \"udev\", \"libc6=2.36-9+deb12u10\"]",
        "type = \"packages\"\nnames = [\"systemd\"]",
        1,
    );
    let e = parse(d.path(), &no_base).expect_err("no base");
    assert!(e.to_string().contains("it must make the tree"), "{e}");
    let two_bases = format!("{GOOD}\n[[input]]\ntype = \"directory\"\npath = \"overlay\"\n");
    let e = parse(d.path(), &two_bases).expect_err("two bases");
    assert!(e.to_string().contains("only the first input"), "{e}");
    let tarball =
        format!("{GOOD}\n[[input]]\ntype = \"deb\"\npath = \"overlay\"\nsha256 = \"ABC\"\n");
    let e = parse(d.path(), &tarball).expect_err("bad digest");
    assert!(e.to_string().contains("64 lowercase hex digits"), "{e}");
}

/// A tree's /etc moved to the factory comes back, as it was but for what
/// is made per machine, when the tmpfiles lines are applied to the tree
/// with an empty /etc.
#[test]
fn etc_moved_to_the_factory_is_rebuilt_by_tmpfiles() {
    use crate::compose::etc;
    let d = tempfile::tempdir().expect("tmp");
    let root = d.path().join("tree");
    let w = |p: &str, s: &str| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, s).expect("write");
    };
    w("etc/os-release.d/x", "nested\n");
    w("etc/motd", "welcome\n");
    w("etc/with space", "odd name\n");
    w("etc/ssh/sshd_config", "Port 22\n");
    w("etc/ssh/ssh_host_ed25519_key", "secret\n");
    w("etc/machine-id", "0123\n");
    w("etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    w("usr/lib/os-release", "ID=test\n");
    std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release"))
        .expect("symlink");
    let m = etc::move_etc(&root).expect("move");
    assert_eq!(
        m.left_out,
        [
            "/etc/machine-id",
            "/etc/passwd",
            "/etc/ssh/ssh_host_ed25519_key"
        ]
    );
    assert_eq!(
        m.lines,
        [
            "C /etc/motd - - - -",
            "L /etc/os-release - - - - ../usr/lib/os-release",
            "C /etc/os-release.d - - - -",
            "C /etc/ssh - - - -",
            "C \"/etc/with space\" - - - -",
        ]
    );
    assert_eq!(std::fs::read_dir(root.join("etc")).expect("etc").count(), 0);
    assert!(root.join("usr/share/factory/etc/ssh/sshd_config").exists());
    assert!(!root
        .join("usr/share/factory/etc/ssh/ssh_host_ed25519_key")
        .exists());
    // Twice is an error, not a second move.
    assert!(etc::move_etc(&root).is_err());

    let opts = crate::tmpfiles::Options {
        root: Some(root.clone()),
        create: true,
        ..Default::default()
    };
    let mut log = crate::tmpfiles::Log::default();
    crate::tmpfiles::run(&opts, &crate::tmpfiles::Host::for_image(), &mut log)
        .unwrap_or_else(|_| panic!("tmpfiles failed: {log:?}"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).expect(p);
    assert_eq!(read("etc/motd"), "welcome\n");
    assert_eq!(read("etc/with space"), "odd name\n");
    assert_eq!(read("etc/os-release.d/x"), "nested\n");
    assert_eq!(read("etc/ssh/sshd_config"), "Port 22\n");
    assert_eq!(read("etc/os-release"), "ID=test\n");
    assert!(!root.join("etc/machine-id").exists());
    assert!(!root.join("etc/ssh/ssh_host_ed25519_key").exists());
}

#[test]
fn units_enabled_in_etc_move_into_usr() {
    use crate::compose::units::{self, Error};
    use std::os::unix::fs::symlink;
    let d = tempfile::tempdir().expect("tmp");
    let root = d.path().join("tree");
    let etc = root.join("etc/systemd/system");
    let usr = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(etc.join("multi-user.target.wants")).expect("mkdir");
    std::fs::create_dir_all(etc.join("foo.service.d")).expect("mkdir");
    std::fs::create_dir_all(usr.join("multi-user.target.wants")).expect("mkdir");
    symlink(
        "/lib/systemd/system/ssh.service",
        etc.join("multi-user.target.wants/ssh.service"),
    )
    .expect("link");
    // Already in /usr the same: fine.
    for dir in [&etc, &usr] {
        symlink(
            "/lib/systemd/system/cron.service",
            dir.join("multi-user.target.wants/cron.service"),
        )
        .expect("link");
    }
    symlink("/lib/systemd/system/ssh.service", etc.join("sshd.service")).expect("alias");
    symlink("/dev/null", etc.join("apt-daily.timer")).expect("mask");
    std::fs::write(etc.join("foo.service.d/x.conf"), "[Service]\nNice=5\n").expect("write");
    let m = units::move_units(&root).expect("move");
    assert_eq!(m.moved.len(), 5, "{m:?}");
    assert!(!root.join("etc/systemd/system").exists());
    assert_eq!(
        std::fs::read_link(usr.join("multi-user.target.wants/ssh.service")).expect("link"),
        Path::new("/lib/systemd/system/ssh.service")
    );
    assert_eq!(
        std::fs::read_link(usr.join("apt-daily.timer")).expect("mask"),
        Path::new("/dev/null")
    );
    assert!(usr.join("foo.service.d/x.conf").is_file());

    // A link in /etc that differs from the one in /usr is a conflict,
    // named, and nothing is lost.
    std::fs::create_dir_all(etc.join("multi-user.target.wants")).expect("mkdir");
    symlink(
        "/lib/systemd/system/other.service",
        etc.join("multi-user.target.wants/cron.service"),
    )
    .expect("link");
    match units::move_units(&root) {
        Err(Error::Conflict { etc: e, usr: u }) => {
            assert!(e.ends_with("etc/systemd/system/multi-user.target.wants/cron.service"));
            assert!(u.ends_with("usr/lib/systemd/system/multi-user.target.wants/cron.service"));
        }
        other => panic!("{other:?}"),
    }
    assert!(etc
        .join("multi-user.target.wants/cron.service")
        .is_symlink());
}

/// Users and groups the tree has but no sysusers.d file declares get
/// lines; systemd's rules then make the same ones on an empty /etc.
#[test]
fn undeclared_users_and_groups_get_sysusers_lines() {
    use crate::compose::users;
    let d = tempfile::tempdir().expect("tmp");
    let root = d.path().join("tree");
    let w = |p: &str, s: &str| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, s).expect("write");
    };
    w(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\n\
         daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
         messagebus:x:100:101::/nonexistent:/usr/sbin/nologin\n\
         sshd:x:101:65534:OpenSSH server:/run/sshd:/usr/sbin/nologin\n",
    );
    w(
        "etc/group",
        "root:x:0:\ndaemon:x:1:\nadm:x:4:daemon\nmessagebus:x:101:\nnogroup:x:65534:\n",
    );
    w(
        "usr/lib/sysusers.d/basic.conf",
        "u root 0 \"Super User\" /root\ng nogroup 65534\n",
    );
    let got = users::declare(&root).expect("declare");
    assert_eq!(
        got.lines,
        [
            "g adm 4",
            "g messagebus 101",
            "u daemon 1 daemon /usr/sbin /usr/sbin/nologin",
            "u messagebus 100:101 - /nonexistent /usr/sbin/nologin",
            "u sshd 101:65534 \"OpenSSH server\" /run/sshd /usr/sbin/nologin",
            "m daemon adm",
        ]
    );
    // The machine's /etc starts empty; sysusers makes the same accounts.
    std::fs::remove_file(root.join("etc/passwd")).expect("rm");
    std::fs::remove_file(root.join("etc/group")).expect("rm");
    let opts = crate::sysusers::Options {
        root: Some(root.clone()),
        ..Default::default()
    };
    let mut log = crate::confd::Log::default();
    crate::sysusers::run(&opts, &crate::confd::Host::for_image(), &mut log)
        .unwrap_or_else(|_| panic!("sysusers failed: {log:?}"));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    let group = std::fs::read_to_string(root.join("etc/group")).expect("group");
    for l in [
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
        "messagebus:x:100:101::/nonexistent:/usr/sbin/nologin",
        "sshd:x:101:65534:OpenSSH server:/run/sshd:/usr/sbin/nologin",
    ] {
        assert!(passwd.lines().any(|x| x == l), "{l} not in:\n{passwd}");
    }
    for l in ["adm:x:4:daemon", "messagebus:x:101:", "daemon:x:1:"] {
        assert!(group.lines().any(|x| x == l), "{l} not in:\n{group}");
    }
}

/// Names are bytes: a name that is not UTF-8 is moved like any other
/// below /etc, and refused (named) where a text line must carry it.
#[test]
fn names_that_are_not_utf8_are_kept_or_refused_never_mangled() {
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().expect("tmp");
    let root = d.path().join("tree");
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9");
    std::fs::create_dir_all(root.join("etc/dir")).expect("mkdir");
    std::fs::write(root.join("etc/dir").join(odd), "x").expect("write");
    std::fs::write(root.join("etc/passwd"), b"caf\xe9:x:5:5::/:/bin/sh\n").expect("write");
    let e = crate::compose::users::declare(&root).expect_err("not UTF-8");
    assert!(e.to_string().contains("caf\\xe9"), "{e}");
    let m = crate::compose::etc::move_etc(&root).expect("move");
    assert_eq!(m.lines, ["C /etc/dir - - - -"]);
    assert!(root.join("usr/share/factory/etc/dir").join(odd).is_file());
    // At the top of /etc it has no line: the move stops, naming it.
    let root2 = d.path().join("tree2");
    std::fs::create_dir_all(root2.join("etc")).expect("mkdir");
    std::fs::write(root2.join("etc").join(odd), "x").expect("write");
    let e = crate::compose::etc::move_etc(&root2).expect_err("no line for it");
    assert!(e.to_string().contains("no tmpfiles.d line"), "{e}");
}

#[test]
#[cfg_attr(not(test_root), ignore = "needs root (mounts a tmpfs)")]
fn a_work_dir_is_removed_without_reaching_into_mounts() {
    if !crate::fsutil::is_root() {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let cache = super::cache::Cache::open(t.path()).expect("cache");
    let work = cache.work_dir().expect("work dir");
    let path = work.path().to_path_buf();
    // What a killed mmdebstrap leaves: a mount inside the tree, here a
    // tmpfs holding a file that must survive the removal's walk.
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::write(outside.join("keep"), "keep\n").expect("write");
    let inner = path.join("tree/proc");
    std::fs::create_dir_all(&inner).expect("mkdir");
    rustix::mount::mount_bind(&outside, &inner).expect("bind mount");
    assert_eq!(crate::fsutil::mounts_below(&path).len(), 1);
    drop(work);
    assert!(!path.exists(), "the work dir is still there");
    assert_eq!(
        std::fs::read_to_string(outside.join("keep")).expect("kept"),
        "keep\n"
    );
}

#[test]
fn the_work_dir_of_a_killed_compose_is_removed_by_the_next() {
    let t = tempfile::tempdir().expect("tempdir");
    let cache = super::cache::Cache::open(t.path()).expect("cache");
    let live = cache.work_dir().expect("work dir");
    // A killed compose: its folder is there, its lock is not held.
    let dead = t.path().join("work/compose-dead");
    std::fs::create_dir_all(dead.join("tree/etc")).expect("mkdir");
    std::fs::write(dead.join(".lock"), "").expect("lock file");
    // A folder without a lock file is not ours to judge.
    let other = t.path().join("work/compose-starting");
    std::fs::create_dir_all(&other).expect("mkdir");
    assert_eq!(cache.remove_stale(), 1);
    assert!(!dead.exists());
    assert!(live.path().is_dir(), "a live compose's folder was removed");
    assert!(other.is_dir());
    let p = live.path().to_path_buf();
    drop(live);
    assert!(!p.exists());
}

/// The project's own manifests read, their `files` sources below their
/// folders (the end-to-end test appends broken.toml to image.toml in the
/// same folder).
#[test]
fn the_example_and_end_to_end_manifests_read() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let e2e = top.join("tests/e2e");
    let text = std::fs::read_to_string(e2e.join("image.toml")).expect("e2e manifest")
        + &std::fs::read_to_string(e2e.join("broken.toml")).expect("broken.toml");
    // As tests/e2e/run.sh lays it out: a copy, with the key, the version
    // and the files it damages in verity images.
    let t = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(t.path().join("files")).expect("mkdir");
    for e in std::fs::read_dir(e2e.join("files")).expect("ls").flatten() {
        std::fs::copy(e.path(), t.path().join("files").join(e.file_name())).expect("cp");
    }
    let key = crate::sign::SecretKey::generate().expect("a key");
    std::fs::write(t.path().join("files/key.pub"), key.public().to_pem()).expect("write");
    std::fs::write(t.path().join("files/version"), "x\n").expect("write");
    for f in ["probe", "needed"] {
        std::fs::write(t.path().join("files").join(f), "x\n").expect("write");
    }
    let l = Loaded::parse(&t.path().join("v3.toml"), &text).expect("e2e manifest reads");
    assert!(l.manifest.inputs.len() > 3);
    Loaded::read(&top.join("examples/debian/image.toml")).expect("example reads");
}

/// Each `files` input that reaches outside its folder, is no regular
/// file or folder, or climbs out of the image is refused at its line.
#[test]
fn files_inputs_outside_their_folder_or_the_image_are_refused() {
    let d = with_overlay();
    std::fs::write(d.path().join("overlay/f"), "f").expect("write");
    std::os::unix::fs::symlink("/etc", d.path().join("overlay/etc")).expect("symlink");
    let cases: &[(&str, &str, &str)] = &[
        ("/etc/passwd", "/usr/share/x", "outside"),
        ("overlay/etc/passwd", "/usr/share/x", "outside"),
        ("..", "/usr/share/x", "outside"),
        ("/dev/zero", "/usr/share/x", "outside"),
        ("overlay/f", "/usr/../../tmp/x", "climbs"),
    ];
    for (source, target, words) in cases {
        let text = GOOD
            .replace("source = \"overlay\"", &format!("source = {source:?}"))
            .replace(
                "target = \"/usr/share/slate-example\"",
                &format!("target = {target:?}"),
            );
        let e = parse(d.path(), &text).expect_err(source);
        assert_eq!(e.line, 16, "{source}: {e}");
        assert!(e.message.contains(words), "{source}: {e}");
    }
    // A target is kept normalized.
    let text = GOOD.replace(
        "target = \"/usr/share/slate-example\"",
        "target = \"/usr//share/./x/\"",
    );
    let l = parse(d.path(), &text).expect("reads");
    match l.manifest.inputs[2].get_ref() {
        Input::Files { target, .. } => assert_eq!(target, "/usr/share/x"),
        other => panic!("{other:?}"),
    }
}

/// Compose sits beside `sysroot`, not above it: what both need (the
/// deploy modes, version order) lives lower down.
#[test]
fn compose_does_not_import_sysroot() {
    let sources = [
        ("base.rs", include_str!("base.rs")),
        ("build.rs", include_str!("build.rs")),
        ("cache.rs", include_str!("cache.rs")),
        ("etc.rs", include_str!("etc.rs")),
        ("files.rs", include_str!("files.rs")),
        ("image.rs", include_str!("image.rs")),
        ("lint.rs", include_str!("lint.rs")),
        ("lock.rs", include_str!("lock.rs")),
        ("manifest.rs", include_str!("manifest.rs")),
        ("mod.rs", include_str!("mod.rs")),
        ("packages.rs", include_str!("packages.rs")),
        ("run.rs", include_str!("run.rs")),
        ("units.rs", include_str!("units.rs")),
        ("users.rs", include_str!("users.rs")),
        ("var.rs", include_str!("var.rs")),
        ("sysext/mod.rs", include_str!("sysext/mod.rs")),
        ("sysext/confine.rs", include_str!("sysext/confine.rs")),
        ("sysext/packages.rs", include_str!("sysext/packages.rs")),
    ];
    for (name, src) in sources {
        assert!(
            !src.contains("crate::sysroot") && !src.contains("super::super::sysroot"),
            "compose/{name} imports sysroot"
        );
    }
}
