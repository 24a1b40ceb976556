//! Hostile or unlucky file systems: bind mounts inside a root, writes
//! through a hard-linked checkout, output paths that are not regular
//! files, trees deeper than PATH_MAX, a checkout as a user who is not root.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use crate::common::*;

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8").to_owned()
}

#[test]
#[cfg_attr(
    not(all(test_root, test_have = "unshare", test_have = "mount")),
    ignore = "needs root, unshare and mount (a private mount namespace)"
)]
fn removal_stops_at_a_bind_mount() {
    if !is_root() || !have("unshare") || !have("mount") {
        skip("needs root, unshare(1) and mount(8) for a private mount namespace");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let outside = t.path().join("outside");
    std::fs::create_dir_all(outside.join("sub")).expect("mkdir");
    std::fs::write(outside.join("precious"), b"keep").expect("write");
    std::fs::write(outside.join("sub/also"), b"keep").expect("write");
    let root = t.path().join("root");
    for d in ["var/tmp/x/bind", "var/tmp/y/bind", "var/tmp/z"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::write(root.join("var/tmp/x/own"), b"mine").expect("write");
    let conf = t.path().join("r.conf");
    std::fs::write(&conf, "R /var/tmp/x\nD /var/tmp/y\nR /var/tmp/z/bind\n").expect("write");
    let script = format!(
        "set -e; mount --bind {out} {r}/var/tmp/x/bind; mount --bind {out} {r}/var/tmp/y/bind; \
         mkdir -p {r}/var/tmp/z/bind; mount --bind {out} {r}/var/tmp/z/bind; \
         {slate} tmpfiles --remove --root={r} {conf} || true",
        out = s(&outside),
        r = s(&root),
        slate = slate_bin().display(),
        conf = s(&conf),
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare");
    if !o.status.success() {
        skip(&format!(
            "no private mount namespace here: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
        return;
    }
    // What the bind mounts showed is untouched; the root's own files went.
    assert_eq!(
        std::fs::read(outside.join("precious")).expect("read"),
        b"keep"
    );
    assert_eq!(
        std::fs::read(outside.join("sub/also")).expect("read"),
        b"keep"
    );
    assert!(!root.join("var/tmp/x/own").exists());
}

#[test]
fn tmpfiles_on_a_checkout_never_changes_the_repository() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    for d in [
        "etc",
        "usr/bin",
        "usr/share/factory/etc",
        "usr/lib/tmpfiles.d",
    ] {
        std::fs::create_dir_all(src.join(d)).expect("mkdir");
    }
    std::fs::write(src.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").expect("write");
    std::fs::write(src.join("etc/motd"), b"welcome\n").expect("write");
    std::fs::write(src.join("usr/bin/tool"), b"\x7fELF tool").expect("write");
    std::fs::write(src.join("usr/share/factory/etc/issue"), b"factory issue\n").expect("write");
    // The same content in /usr and /etc: one object, two places.
    std::fs::write(src.join("usr/bin/motd-copy"), b"welcome\n").expect("write");
    std::fs::write(
        src.join("usr/lib/tmpfiles.d/image.conf"),
        "w /etc/passwd - - - - written\n\
         z /etc/passwd 0600\n\
         f+ /etc/motd 0644 - - - truncated\n\
         z /usr/bin/tool 0700\n\
         w /usr/bin/motd-copy - - - - X\n\
         t /usr/bin/tool - - - - user.tag=1\n\
         C /etc/issue\n",
    )
    .expect("write");
    for mode in ["bare-user", "bare"] {
        if mode == "bare" && !is_root() {
            skip("a bare repository needs root");
            continue;
        }
        let dir = t.path().join(mode);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let repo = init(&dir, mode);
        ok(&repo, &["commit", "-b", "main", &s(&src)]);
        let co = dir.join("co");
        ok(&repo, &["checkout", "main", &s(&co)]);
        // /usr is hard-linked to the repository; /etc is not.
        let nlink = |p: &str| {
            std::fs::symlink_metadata(co.join(p))
                .expect("lstat")
                .nlink()
        };
        assert!(
            nlink("usr/bin/tool") > 1,
            "{mode}: /usr was not hard-linked"
        );
        assert_eq!(
            nlink("etc/passwd"),
            1,
            "{mode}: /etc shares the repository's inode"
        );
        let o = Command::new(slate_bin())
            .args(["tmpfiles", "--create", &format!("--root={}", s(&co))])
            .output()
            .expect("tmpfiles");
        assert!(
            o.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            std::fs::read(co.join("etc/passwd")).expect("read"),
            b"written0:0::/root:/bin/sh\n"
        );
        assert_eq!(
            std::fs::read(co.join("usr/bin/motd-copy")).expect("read"),
            b"Xelcome\n"
        );
        // The repository is whole, and another checkout shows the image.
        let o = slate(&repo, &["fsck"]);
        assert!(
            o.status.success(),
            "{mode}: a write through the checkout reached the repository:\n{}",
            String::from_utf8_lossy(&o.stdout)
        );
        let again = dir.join("again");
        ok(&repo, &["checkout", "main", &s(&again)]);
        assert_same_tree(&src, &again, false);
    }
}

#[test]
fn export_writes_into_devices_and_fifos_and_through_symlinks() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = init(t.path(), "bare-user");
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("f"), b"content").expect("write");
    ok(&repo, &["commit", "-b", "main", &s(&src)]);
    // A fifo stays a fifo: a reader gets the archive.
    let fifo = t.path().join("fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .expect("mkfifo");
    // The reader is a process of its own, killed if nothing ever writes
    // into the fifo.
    let got = t.path().join("from-fifo");
    let mut reader = Command::new("sh")
        .arg("-c")
        .arg(format!("cat '{}' > '{}'", s(&fifo), s(&got)))
        .spawn()
        .expect("reader");
    ok(&repo, &["export", "main", "-o", &s(&fifo)]);
    let is_fifo = std::fs::symlink_metadata(&fifo)
        .expect("lstat")
        .file_type()
        .is_fifo();
    let start = std::time::Instant::now();
    while reader.try_wait().expect("wait").is_none() {
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = reader.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(is_fifo, "the fifo was replaced by a file");
    let archive = std::fs::read(&got).expect("read");
    assert!(archive.len() >= 1024 && archive.len() & 511 == 0);
    // A symlink: its target is replaced, the link stays.
    let target = t.path().join("real.tar");
    std::fs::write(&target, b"old").expect("write");
    let link = t.path().join("link.tar");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    ok(&repo, &["export", "main", "-o", &s(&link)]);
    assert!(std::fs::symlink_metadata(&link)
        .expect("lstat")
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&target).expect("read"), archive);
    // A dangling symlink and a directory are refused.
    let dangling = t.path().join("dangling");
    std::os::unix::fs::symlink(t.path().join("nothing"), &dangling).expect("symlink");
    assert!(fails(&repo, &["export", "main", "-o", &s(&dangling)]).contains("symlink to nothing"));
    assert!(fails(&repo, &["export", "main", "-o", &s(t.path())]).contains("is a directory"));
    // A character device stays one (a private null device, never the
    // system's own).
    if is_root() {
        let null = t.path().join("null");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &null,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .expect("mknod");
        ok(&repo, &["export", "main", "-o", &s(&null)]);
        assert!(std::fs::symlink_metadata(&null)
            .expect("lstat")
            .file_type()
            .is_char_device());
    } else {
        skip("not root: the device node case needs mknod");
    }
}

/// Make `depth` directories of 200-byte names below `root`; returns the
/// relative path of the deepest.
fn deep(root: &Path, depth: usize) -> Vec<u8> {
    let dir = rustix::fs::open(
        root,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .expect("open");
    let name = vec![b'd'; 200];
    let mut cur = dir;
    let mut rel = Vec::new();
    for _ in 0..depth {
        rustix::fs::mkdirat(
            &cur,
            name.as_slice(),
            rustix::fs::Mode::from_raw_mode(0o755),
        )
        .expect("mkdir");
        cur = rustix::fs::openat(
            &cur,
            name.as_slice(),
            rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .expect("open");
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&name);
    }
    rustix::fs::symlinkat("../target", &cur, "link").expect("symlink");
    rustix::fs::mkfifoat(&cur, "fifo", rustix::fs::Mode::from_raw_mode(0o600)).expect("mkfifo");
    let f = rustix::fs::openat(
        &cur,
        "file",
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CREATE,
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .expect("create");
    rustix::io::write(&f, b"deep").expect("write");
    rel
}

#[test]
fn trees_deeper_than_path_max_commit_check_out_and_export() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    // 30 levels of 200 bytes: 6 KiB of path, past PATH_MAX (4096).
    let rel = deep(&src, 30);
    assert!(rel.len() > 4096);
    let repo = init(t.path(), "bare-user");
    let id = ok(
        &repo,
        &["commit", "-b", "main", "--timestamp", "5", &s(&src)],
    );
    let co = t.path().join("co");
    ok(&repo, &["checkout", "main", &s(&co)]);
    // The deepest entries are there.
    let listed = ok(&repo, &["ls", "-R", "main"]);
    assert_eq!(listed.lines().filter(|l| l.ends_with("/file")).count(), 1);
    let deepest = rustix::fs::open(
        &co,
        rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .expect("open");
    let fd = slate_core::fsutil::open_dir_long(std::os::fd::AsFd::as_fd(&deepest), &rel)
        .expect("the deepest directory was checked out");
    let st = rustix::fs::statat(&fd, "fifo", rustix::fs::AtFlags::SYMLINK_NOFOLLOW).expect("stat");
    assert_eq!(st.st_mode & 0o170000, 0o010000);
    assert_eq!(
        rustix::fs::readlinkat(&fd, "link", Vec::new())
            .expect("readlink")
            .as_bytes(),
        b"../target"
    );
    // The export commits again to the same id.
    let tar = t.path().join("deep.tar");
    ok(&repo, &["export", "main", "-o", &s(&tar)]);
    let again = ok(
        &repo,
        &["commit", "-b", "tar", "--timestamp", "5", &s(&tar)],
    );
    assert_eq!(again, id);
    ok(&repo, &["fsck"]);
}

#[test]
#[cfg_attr(
    not(all(test_root, test_have = "setpriv")),
    ignore = "needs root and setpriv (to run as another user)"
)]
fn a_checkout_by_a_user_who_is_not_root_says_what_to_do() {
    if !is_root() || !have("setpriv") {
        skip("needs root and setpriv(1) to run as another user");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("owned-by-root"), b"x").expect("write");
    std::os::unix::fs::chown(src.join("owned-by-root"), Some(0), Some(0)).expect("chown");
    let repo = t.path().join("repo");
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(slate_bin())
            .args(args)
            .env("SLATE_REPO", &repo)
            .output()
            .expect("setpriv")
    };
    let o = as_nobody(&["init", "--repo", &s(&repo), "--mode", "bare-user"]);
    assert!(o.status.success(), "{o:?}");
    let o = as_nobody(&["commit", "-b", "main", &s(&src)]);
    assert!(o.status.success(), "{o:?}");
    let co = t.path().join("co");
    let o = as_nobody(&["checkout", "--copy", "main", &s(&co)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("owner 0:0") && err.contains("--user-mode"),
        "{err}"
    );
    let o = as_nobody(&["checkout", "--user-mode", "main", &s(&co)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
