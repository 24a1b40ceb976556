//! init, commit, checkout and the reading commands, in every mode.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

fn modes() -> Vec<&'static str> {
    if is_root() {
        vec!["bare", "bare-user", "archive"]
    } else {
        skip("bare mode needs root: testing bare-user and archive only");
        vec!["bare-user", "archive"]
    }
}

#[test]
fn commit_checkout_round_trip_every_mode() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    sample_tree(&src);
    let mut ids = Vec::new();
    for mode in modes() {
        let repo = init(t.path(), mode);
        let id = ok(
            &repo,
            &[
                "commit",
                "-b",
                "os/main",
                "--timestamp",
                "1700000000",
                "-s",
                "s",
                src.to_str().expect("utf-8"),
            ],
        );
        ids.push(id.trim().to_owned());
        let dest = t.path().join(format!("co-{mode}"));
        let out = slate(
            &repo,
            &["checkout", "os/main", dest.to_str().expect("utf-8")],
        );
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_tree(&src, &dest, is_root());
        // Every timestamp is the documented fixed value: the epoch.
        for (p, m) in snapshot(&dest, false).mtimes {
            assert_eq!(m, 0, "{mode}: mtime of {p:?}");
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if mode == "archive" {
            assert!(stderr.contains(" 0 hard links"), "{stderr}");
        } else {
            assert!(
                !stderr.contains(" 0 hard links"),
                "bare checkouts must hard-link: {stderr}"
            );
        }
    }
    // The same tree and timestamp give the same id in every mode.
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
}

#[test]
fn sockets_are_skipped_with_a_warning() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("run")).expect("mkdir");
    std::fs::write(src.join("file"), b"x").expect("write");
    let _sock = std::os::unix::net::UnixListener::bind(src.join("run/ctl.sock")).expect("bind");
    let repo = init(t.path(), "bare-user");
    let o = slate(
        &repo,
        &["commit", "-b", "main", src.to_str().expect("utf-8")],
    );
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("skipped 1 socket") && err.contains("run/ctl.sock"),
        "{err}"
    );
    let ls = ok(&repo, &["ls", "-R", "main"]);
    assert!(ls.contains("/run\n") && !ls.contains("ctl.sock"), "{ls}");
}

/// Set `path`'s access time to 2001 and its modification time to 2010, so
/// that a reader on a `relatime` filesystem would update the access time.
fn age(path: &Path) {
    let at = |secs| rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: at(978_307_200),
            last_modification: at(1_262_304_000),
        },
        rustix::fs::AtFlags::empty(),
    )
    .expect("utimensat");
}

fn atime(path: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("stat").atime()
}

#[test]
fn commit_leaves_the_sources_access_times_alone() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("etc")).expect("mkdir");
    std::fs::write(src.join("etc/hostname"), b"slate\n").expect("write");
    let control = t.path().join("control");
    std::fs::write(&control, b"x").expect("write");
    for p in [&control, &src.join("etc/hostname"), &src.join("etc")] {
        age(p);
    }
    std::fs::read(&control).expect("read");
    if atime(&control) == 978_307_200 {
        return skip("the test filesystem does not update access times (noatime)");
    }
    let repo = init(t.path(), "bare-user");
    ok(
        &repo,
        &["commit", "-b", "main", src.to_str().expect("utf-8")],
    );
    assert_eq!(atime(&src.join("etc/hostname")), 978_307_200, "file read");
    assert_eq!(atime(&src.join("etc")), 978_307_200, "directory listed");
}

#[test]
#[cfg_attr(
    not(all(test_have = "tar", test_have = "gzip", test_have = "zstd")),
    ignore = "needs tar, gzip and zstd"
)]
fn tar_gives_the_same_commit_as_the_directory() {
    if !have("tar") || !have("zstd") || !have("gzip") {
        return skip("tar, gzip or zstd missing");
    }
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    sample_tree(&src);
    for mode in ["bare-user", "archive"] {
        tar_round_trip(t.path(), &src, mode);
    }
}

/// Commit the sample tree as a directory and as tar archives into a fresh
/// repository of `mode`: one id; the tar's checkout equals the tree.
fn tar_round_trip(dir: &Path, src: &Path, mode: &str) {
    let t = tempfile::tempdir_in(dir).expect("tempdir");
    let repo = init(t.path(), mode);
    let meta = [
        "--timestamp",
        "1700000000",
        "-s",
        "same",
        "--add-metadata",
        "version=1",
        "--parent",
        "none",
    ];
    let commit = |source: &str| {
        let mut args = vec!["commit", "-b", "main"];
        args.extend_from_slice(&meta);
        args.push(source);
        ok(&repo, &args).trim().to_owned()
    };
    let mut from_dir = String::new();
    for (name, flag) in [("t.tar", ""), ("t.tar.gz", "-z"), ("t.tar.zst", "--zstd")] {
        let tarball = t.path().join(name);
        let mut cmd = Command::new("tar");
        cmd.args([
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-C",
            src.to_str().expect("utf-8"),
            "-cf",
            tarball.to_str().expect("utf-8"),
        ]);
        if !flag.is_empty() {
            cmd.arg(flag);
        }
        assert!(cmd.arg(".").status().expect("tar").success());
        let id = commit(tarball.to_str().expect("utf-8"));
        if from_dir.is_empty() {
            // The first archive goes into an empty repository: check out
            // what it stored, then commit the directory for comparison.
            let co = t.path().join("co-tar");
            ok(&repo, &["checkout", &id, co.to_str().expect("utf-8")]);
            assert_same_tree(src, &co, is_root());
            from_dir = commit(src.to_str().expect("utf-8"));
        }
        assert_eq!(id, from_dir, "{mode}: {name}");
    }
    // And from standard input.
    let tarball = std::fs::File::open(t.path().join("t.tar.zst")).expect("open");
    let o = Command::new(slate_bin())
        .env("SLATE_REPO", &repo)
        .args(["commit", "-b", "main"])
        .args(meta)
        .arg("-")
        .stdin(Stdio::from(tarball))
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), from_dir);
}

#[test]
fn reading_commands() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    sample_tree(&src);
    let repo = init(t.path(), "bare-user");
    let s = src.to_str().expect("utf-8");
    let c1 = ok(
        &repo,
        &[
            "commit",
            "-b",
            "main",
            "-s",
            "one",
            "--timestamp",
            "1700000000",
            s,
        ],
    )
    .trim()
    .to_owned();
    std::fs::write(src.join("etc/motd"), b"welcome\n").expect("write");
    let c2 = ok(
        &repo,
        &[
            "commit",
            "-b",
            "main",
            "-s",
            "two",
            "-m",
            "body line",
            "--add-metadata",
            "version=2",
            "--timestamp",
            "1700000100",
            s,
        ],
    )
    .trim()
    .to_owned();
    std::fs::write(src.join("etc/motd"), b"changed\n").expect("write");
    let c3 = ok(&repo, &["commit", "-b", "main", "-s", "three", s])
        .trim()
        .to_owned();

    assert_eq!(ok(&repo, &["rev-parse", "main"]).trim(), c3);
    assert_eq!(ok(&repo, &["rev-parse", "main^"]).trim(), c2);
    assert_eq!(ok(&repo, &["rev-parse", "main^^"]).trim(), c1);
    assert_eq!(ok(&repo, &["rev-parse", "main~2"]).trim(), c1);
    assert_eq!(ok(&repo, &["rev-parse", &c2[..10]]).trim(), c2);
    assert_eq!(ok(&repo, &["rev-parse", &c1]).trim(), c1);
    assert!(fails(&repo, &["rev-parse", "main^^^"]).contains("has no parent"));
    assert!(fails(&repo, &["rev-parse", "nosuch"]).contains("unknown revision \"nosuch\""));

    let log: serde_json::Value =
        serde_json::from_str(&ok(&repo, &["log", "--json", "main"])).expect("json");
    let subjects: Vec<_> = log
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["subject"].as_str().expect("str").to_owned())
        .collect();
    assert_eq!(subjects, ["three", "two", "one"]);
    let text = ok(&repo, &["log", "main"]);
    assert!(
        text.contains(&format!("commit {c1}")) && text.contains("    two"),
        "{text}"
    );

    let show: serde_json::Value =
        serde_json::from_str(&ok(&repo, &["show", "--json", &c2])).expect("json");
    assert_eq!(show["metadata"]["version"], "2");
    assert_eq!(show["body"], "body line");
    assert_eq!(show["parent"], c1.as_str());
    assert_eq!(show["date"], "2023-11-14T22:15:00Z");

    assert_eq!(ok(&repo, &["cat", "main", "/etc/motd"]), "changed\n");
    assert_eq!(ok(&repo, &["cat", "main^", "etc/motd"]), "welcome\n");
    assert!(fails(&repo, &["cat", "main", "/etc"]).contains("is a directory"));
    assert!(fails(&repo, &["cat", "main", "/etc/os-release-link"]).contains("is a symlink"));
    assert!(fails(&repo, &["cat", "main", "/nope"]).contains("no path"));

    let ls = ok(&repo, &["ls", "main", "/etc"]);
    assert!(ls.lines().any(|l| l == "/etc/motd"), "{ls}");
    let lsl = ok(&repo, &["ls", "-l", "main", "/usr/bin"]);
    assert!(
        lsl.lines()
            .any(|l| l.starts_with("-4755") && l.ends_with(" /usr/bin/su")),
        "{lsl}"
    );
    let lsr = ok(&repo, &["ls", "-R", "-l", "main"]);
    assert!(
        lsr.contains("/etc/os-release-link -> ../usr/lib/os-release"),
        "{lsr}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&ok(&repo, &["ls", "--json", "main", "/usr/lib/empty"]))
            .expect("json");
    assert_eq!(j[0]["type"], "file");
    assert_eq!(j[0]["xattrs"][0], "user.slate-test");

    ok(&repo, &["refs", "--create", "stable", "main^"]);
    let refs: serde_json::Value =
        serde_json::from_str(&ok(&repo, &["refs", "--json"])).expect("json");
    assert_eq!(refs[1]["name"], "stable");
    assert_eq!(refs[1]["commit"], c2.as_str());
    assert!(fails(&repo, &["refs", "--create", "stable", "main"]).contains("already exists"));
    assert_eq!(ok(&repo, &["reset", "main", "main^^"]).trim(), c1);
    assert_eq!(ok(&repo, &["rev-parse", "main"]).trim(), c1);
    ok(&repo, &["refs", "--delete", "stable"]);
    assert_eq!(ok(&repo, &["refs"]), "main\n");
    assert!(fails(&repo, &["refs", "--delete", "stable"]).contains("does not exist"));
}

#[test]
fn checkout_options() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    sample_tree(&src);
    let repo = init(t.path(), "bare-user");
    ok(
        &repo,
        &["commit", "-b", "main", src.to_str().expect("utf-8")],
    );
    let p = |n: &str| t.path().join(n).to_str().expect("utf-8").to_owned();

    // --subpath with a directory and with a file.
    ok(
        &repo,
        &["checkout", "--subpath", "/usr/bin", "main", &p("bin")],
    );
    assert_same_tree(&src.join("usr/bin"), &t.path().join("bin"), is_root());
    ok(
        &repo,
        &["checkout", "--subpath", "etc/os-release", "main", &p("osr")],
    );
    assert_eq!(
        std::fs::read(t.path().join("osr")).expect("read"),
        b"NAME=Slate\n"
    );
    assert!(
        fails(&repo, &["checkout", "--subpath", "/nope", "main", &p("x")])
            .contains("no path \"/nope\"")
    );

    // An existing DEST needs --union, which replaces files and keeps others.
    let err = fails(&repo, &["checkout", "main", &p("bin")]);
    assert!(
        err.contains("already exists\n") && err.contains("hint: use --union to check out over it"),
        "{err}"
    );
    let u = t.path().join("u");
    std::fs::create_dir_all(u.join("etc")).expect("mkdir");
    std::fs::write(u.join("etc/os-release"), b"old").expect("write");
    std::fs::write(u.join("keep"), b"mine").expect("write");
    ok(&repo, &["checkout", "--union", "main", &p("u")]);
    assert_eq!(
        std::fs::read(u.join("etc/os-release")).expect("read"),
        b"NAME=Slate\n"
    );
    assert_eq!(std::fs::read(u.join("keep")).expect("read"), b"mine");

    // --user-mode ignores owners.
    ok(&repo, &["checkout", "--user-mode", "main", &p("um")]);
    assert_eq!(
        std::fs::read(t.path().join("um/usr/share/dup1")).expect("read"),
        b"same content"
    );

    // Onto another filesystem, files are copied and still exact.
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && rustix::fs::stat(shm).map(|s| s.st_dev).ok()
            != rustix::fs::stat(t.path()).map(|s| s.st_dev).ok()
    {
        let other = tempfile::tempdir_in(shm).expect("tempdir in /dev/shm");
        let dest = other.path().join("co");
        let o = slate(&repo, &["checkout", "main", dest.to_str().expect("utf-8")]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stderr).contains(" 0 hard links"));
        if is_root() {
            assert_same_tree(&src, &dest, true);
        }
    } else {
        skip("/dev/shm is not a separate filesystem: cross-filesystem copy not tested");
    }
}

#[test]
fn help_has_examples() {
    for cmd in [
        "init",
        "commit",
        "log",
        "show",
        "ls",
        "cat",
        "refs",
        "rev-parse",
        "reset",
        "checkout",
        "diff",
        "fsck",
        "prune",
        "export",
        "pull-local",
    ] {
        let o = Command::new(slate_bin())
            .args([cmd, "--help"])
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && text.contains("Example"),
            "{cmd} --help: {text}"
        );
    }
}

/// Run slate as an unprivileged user (`nobody`) when we are root, or as
/// ourselves when we are not.
fn as_user(repo: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(slate_bin());
        c
    } else {
        Command::new(slate_bin())
    };
    cmd.env("SLATE_REPO", repo)
        .args(args)
        .output()
        .expect("run slate")
}

#[test]
#[cfg_attr(
    not(any(not(test_root), test_have = "setpriv")),
    ignore = "setpriv is not installed: root cannot run this as another user"
)]
fn a_user_who_is_not_root_commits_and_checks_out() {
    if is_root() && !have("setpriv") {
        return skip("setpriv missing: cannot run as an unprivileged user");
    }
    let t = tempfile::tempdir().expect("tempdir");
    let home = t.path().join("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    if is_root() {
        rustix::fs::chown(
            &home,
            Some(rustix::fs::Uid::from_raw(65534)),
            Some(rustix::fs::Gid::from_raw(65534)),
        )
        .expect("chown");
        std::fs::set_permissions(
            t.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
    }
    let run = |args: &[&str]| {
        let o = as_user(&home.join("repo"), args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let src = home.join("src");
    let src_s = src.to_str().expect("utf-8");
    run(&[
        "init",
        "--repo",
        home.join("repo").to_str().expect("utf-8"),
        "--mode",
        "bare-user",
    ]);
    // The user builds a tree of their own, with a setuid bit and an xattr.
    let sh = format!("mkdir -p {src_s}/bin && printf x > {src_s}/bin/tool && chmod 4755 {src_s}/bin/tool && ln -s tool {src_s}/bin/t");
    let o = if is_root() {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                &sh,
            ])
            .status()
    } else {
        Command::new("sh").args(["-c", &sh]).status()
    };
    assert!(o.expect("sh").success());
    run(&["commit", "-b", "main", src_s]);
    let dest = home.join("co");
    run(&[
        "checkout",
        "--user-mode",
        "main",
        dest.to_str().expect("utf-8"),
    ]);
    assert_same_tree(&src, &dest, true);
    assert_eq!(
        std::fs::read_link(dest.join("bin/t"))
            .expect("readlink")
            .to_str(),
        Some("tool")
    );
}
