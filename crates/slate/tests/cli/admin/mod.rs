//! `slate admin`: deployments in a sysroot in a directory. The sysroot's
//! repository is `bare` (real owners), so these tests need root.

mod auto;
pub(crate) mod crash;
mod ext;
mod prepare;
pub(crate) mod remote;
mod reset;
mod stage;
mod update;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::{admin, is_root, ok, skip, slate_bin, snapshot};

pub(crate) struct Env {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) build: PathBuf,
    pub(crate) sr: PathBuf,
    pub(crate) trees: PathBuf,
}

pub(crate) fn write(root: &Path, p: &str, content: &str) {
    let path = root.join(p);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, content).expect("write");
}

/// An OS tree of version `v`: a fake kernel, os-release, a binary, /etc
/// defaults and a /var file.
pub(crate) fn os_tree(root: &Path, v: u32, kernel: bool) {
    if kernel {
        write(
            root,
            "usr/lib/modules/6.1.0-slate/vmlinuz",
            "kernel image\n",
        );
        write(root, "usr/lib/modules/6.1.0-slate/initrd", "initrd image\n");
    }
    write(
        root,
        "usr/lib/os-release",
        &format!("PRETTY_NAME=\"Slate Test {v}\"\nVERSION_ID={v}\n"),
    );
    write(root, "usr/bin/tool", &format!("tool v{v}\n"));
    write(root, "etc/motd", "welcome\n");
    write(root, "etc/conf", &format!("setting={v}\n"));
    write(root, "etc/gone", "to be removed locally\n");
    write(root, "etc/perm", "mode changes locally\n");
    write(root, "etc/owned", "owner changes locally\n");
    write(root, "etc/untouched", &format!("image {v}\n"));
    write(root, "etc/dir/inner", "inner\n");
    if v >= 2 {
        write(root, "etc/image-new", "added by the image\n");
        // The image's own kernel arguments (what compose writes).
        write(
            root,
            "usr/lib/kernel/cmdline",
            "# image\nconsole=ttyS0 slate=ignored\n",
        );
    }
    let _ = std::fs::remove_file(root.join("etc/link"));
    std::os::unix::fs::symlink("motd", root.join("etc/link")).expect("symlink");
    write(root, "var/lib/app/state", "factory state\n");
}

pub(crate) fn admin_ok(sr: &Path, args: &[&str]) -> String {
    let o = admin(sr, args);
    assert!(
        o.status.success(),
        "slate admin {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8")
}

pub(crate) fn admin_fails(sr: &Path, args: &[&str]) -> String {
    let o = admin(sr, args);
    assert!(
        !o.status.success(),
        "slate admin {args:?} succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn status(sr: &Path) -> Value {
    serde_json::from_str(&admin_ok(sr, &["status", "--json"])).expect("status json")
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A build repository with version 1 on `os/main`, a sysroot with the OS
/// `test` (`etc` mode as given).
pub(crate) fn setup(etc: &str) -> Option<Env> {
    if !is_root() {
        skip("a sysroot's repository is bare (real owners): the admin tests need root");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let build = dir.path().join("build");
    let sr = dir.path().join("sysroot");
    let trees = dir.path().join("trees");
    ok(
        &build,
        &["init", "--repo", s(&build), "--mode", "bare-user"],
    );
    commit_version(&build, &trees, 1, true);
    let o = Command::new(slate_bin())
        .args(["admin", "init-fs", s(&sr)])
        .output()
        .expect("init-fs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    admin_ok(&sr, &["os-init", "test", "--etc", etc]);
    Some(Env {
        _dir: dir,
        build,
        sr,
        trees,
    })
}

pub(crate) fn commit_version(build: &Path, trees: &Path, v: u32, kernel: bool) -> String {
    let t = trees.join(format!("v{v}"));
    os_tree(&t, v, kernel);
    ok(
        build,
        &[
            "commit",
            "--repo",
            s(build),
            "-b",
            "os/main",
            "-s",
            &format!("v{v}"),
            s(&t),
        ],
    );
    ok(build, &["rev-parse", "--repo", s(build), "os/main"])
        .trim()
        .to_string()
}

pub(crate) fn deployment_dir(e: &Env, d: &Value) -> PathBuf {
    e.sr.join("slate/deploy")
        .join(d["os"].as_str().expect("os"))
        .join(d["id"].as_str().expect("id"))
}

pub(crate) fn repo(e: &Env) -> PathBuf {
    e.sr.join("slate/repo")
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn two_versions_side_by_side_with_rollback() {
    let Some(e) = setup("persistent") else { return };
    let c1 = ok(&e.build, &["rev-parse", "--repo", s(&e.build), "os/main"])
        .trim()
        .to_string();
    let first = admin_ok(
        &e.sr,
        &[
            "deploy",
            "--from",
            s(&e.build),
            "--karg",
            "root=/dev/vda2",
            "os/main",
        ],
    );
    assert_eq!(first.trim(), format!("test/{}.1", &c1[..12]));
    let c2 = commit_version(&e.build, &e.trees, 2, true);
    admin_ok(
        &e.sr,
        &[
            "deploy",
            "--from",
            s(&e.build),
            "--karg",
            "quiet",
            "os/main",
        ],
    );

    let st = status(&e.sr);
    let d = st["deployments"].as_array().expect("deployments");
    assert_eq!(d.len(), 2);
    assert_eq!(d[0]["commit"], c2.as_str());
    assert_eq!(d[0]["default"], true);
    assert_eq!(d[0]["entry_state"], "pending");
    assert_eq!(d[0]["tries_left"], 3);
    assert_eq!(d[0]["origin"], "os/main");
    assert_eq!(d[0]["version"], "2");
    // Kernel arguments follow the previous deployment; --karg adds.
    assert_eq!(
        d[0]["kargs"],
        serde_json::json!(["root=/dev/vda2", "quiet"])
    );
    assert_eq!(d[1]["commit"], c1.as_str());

    // The entries, as the boot loader reads them.
    let entries: Vec<String> = std::fs::read_dir(e.sr.join("boot/loader/entries"))
        .expect("entries")
        .map(|x| x.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let new_entry = std::fs::read_to_string(
        e.sr.join("boot/loader/entries")
            .join(d[0]["entry"].as_str().expect("entry")),
    )
    .expect("read entry");
    assert!(new_entry.contains("sort-key slate\n"), "{new_entry}");
    assert!(
        new_entry.contains(&format!(
            "options console=ttyS0 root=/dev/vda2 quiet slate=/slate/deploy/test/{}",
            d[0]["id"].as_str().expect("id")
        )),
        "{new_entry}"
    );
    let linux = new_entry
        .lines()
        .find_map(|l| l.strip_prefix("linux "))
        .expect("linux line");
    assert_eq!(
        std::fs::read_to_string(e.sr.join("boot").join(linux.trim_start_matches('/')))
            .expect("kernel"),
        "kernel image\n"
    );
    // One kernel directory serves both deployments.
    assert_eq!(
        std::fs::read_dir(e.sr.join("boot/slate/test"))
            .expect("kernels")
            .count(),
        1
    );

    // /usr is hard-linked from the repository, /etc is a copy, /var the
    // OS's state (seeded with the image's by the first deployment).
    let state = e.sr.join("slate/state/test/var/lib/app/state");
    assert_eq!(
        std::fs::read_to_string(&state).expect("seeded /var"),
        "factory state\n"
    );
    assert_eq!(std::fs::metadata(&state).expect("var").nlink(), 1);
    for dep in d {
        let dir = deployment_dir(&e, dep);
        assert!(
            std::fs::metadata(dir.join("usr/bin/tool"))
                .expect("tool")
                .nlink()
                > 1
        );
        assert_eq!(
            std::fs::metadata(dir.join("etc/motd"))
                .expect("motd")
                .nlink(),
            1
        );
        assert_eq!(
            std::fs::read_dir(dir.join("var")).expect("var").count(),
            0,
            "a deployment's /var is a mount point"
        );
        let commit = dep["commit"].as_str().expect("commit");
        let diff = ok(
            &repo(&e),
            &["diff", "--repo", s(&repo(&e)), commit, s(&dir), "/usr"],
        );
        assert!(
            diff.is_empty(),
            "deployment differs from its commit:\n{diff}"
        );
    }

    // Rollback: the previous deployment is the default, by one entry.
    let back = admin_ok(&e.sr, &["rollback"]);
    assert_eq!(
        back.trim(),
        format!("test/{}", d[1]["id"].as_str().expect("id"))
    );
    let st = status(&e.sr);
    assert_eq!(st["deployments"][0]["commit"], c1.as_str());
    assert_eq!(st["deployments"][1]["commit"], c2.as_str());
    // And back again by index.
    admin_ok(&e.sr, &["set-default", "1"]);
    assert_eq!(status(&e.sr)["deployments"][0]["commit"], c2.as_str());

    let fsck = ok(&repo(&e), &["fsck", "--repo", s(&repo(&e))]);
    assert!(fsck.is_empty() || !fsck.contains("corrupt"), "{fsck}");
    fsck_clean(&e);
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn etc_changes_are_carried_over_by_a_three_way_merge() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let d1 = status(&e.sr)["deployments"][0].clone();
    let etc = deployment_dir(&e, &d1).join("etc");
    // Local changes of every kind.
    std::fs::write(etc.join("motd"), "our motd\n").expect("motd");
    std::fs::write(etc.join("conf"), "setting=local\n").expect("conf");
    std::fs::remove_file(etc.join("gone")).expect("rm");
    std::fs::write(etc.join("local-new"), "ours\n").expect("new");
    std::fs::set_permissions(etc.join("perm"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    std::os::unix::fs::lchown(etc.join("owned"), Some(1), Some(1)).expect("chown");
    std::fs::remove_file(etc.join("link")).expect("rm link");
    std::os::unix::fs::symlink("conf", etc.join("link")).expect("symlink");
    std::fs::write(etc.join("dir/extra"), "extra\n").expect("extra");
    rustix::fs::lsetxattr(
        etc.join("untouched"),
        "user.tag",
        b"x",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("setxattr");
    // Version 2 changes conf (a conflict), untouched, and adds image-new.
    commit_version(&e.build, &e.trees, 2, true);
    let out = admin(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("conflict: /etc/conf"),
        "conflicts are never silent:\n{stderr}"
    );

    let d2 = status(&e.sr)["deployments"][0].clone();
    // untouched: the image changed its content, the machine its xattrs.
    assert_eq!(
        d2["etc_conflicts"],
        serde_json::json!(["/etc/conf", "/etc/untouched"])
    );
    let new = deployment_dir(&e, &d2).join("etc");
    let read =
        |p: &str| std::fs::read_to_string(new.join(p)).unwrap_or_else(|_| "<missing>".into());
    assert_eq!(read("motd"), "our motd\n");
    assert_eq!(read("conf"), "setting=local\n");
    assert_eq!(read("conf.slate-new"), "setting=2\n");
    assert!(!new.join("gone").exists());
    assert_eq!(read("local-new"), "ours\n");
    assert_eq!(
        std::fs::metadata(new.join("perm")).expect("perm").mode() & 0o7777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(new.join("owned")).expect("owned").uid(),
        1
    );
    assert_eq!(
        std::fs::read_link(new.join("link")).expect("link"),
        Path::new("conf")
    );
    assert_eq!(read("dir/extra"), "extra\n");
    assert_eq!(read("image-new"), "added by the image\n");
    // The image changed it, the machine only added an xattr: a conflict
    // too (metadata counts), the machine's kept, the image's beside it.
    let tag = rustix::fs::lgetxattr(new.join("untouched"), "user.tag", &mut [0u8; 8]);
    assert!(tag.is_ok(), "the local xattr was carried over");
    assert_eq!(read("untouched"), "image 1\n");
    assert_eq!(read("untouched.slate-new"), "image 2\n");
    // The older deployment's /etc is as the machine left it.
    assert_eq!(
        std::fs::read_to_string(etc.join("motd")).expect("old motd"),
        "our motd\n"
    );
    fsck_clean(&e);
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn a_stateless_etc_is_the_images() {
    let Some(e) = setup("stateless") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let d1 = status(&e.sr)["deployments"][0].clone();
    std::fs::write(deployment_dir(&e, &d1).join("etc/motd"), "local\n").expect("write");
    commit_version(&e.build, &e.trees, 2, true);
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let d2 = status(&e.sr)["deployments"][0].clone();
    assert_eq!(
        std::fs::read_to_string(deployment_dir(&e, &d2).join("etc/motd")).expect("motd"),
        "welcome\n"
    );
    assert_eq!(d2["etc_conflicts"], serde_json::json!([]));
    fsck_clean(&e);
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn a_tree_without_a_kernel_deploys_without_an_entry() {
    let Some(e) = setup("persistent") else { return };
    let c = commit_version(&e.build, &e.trees, 7, false);
    let o = admin(&e.sr, &["deploy", "--from", s(&e.build), &c]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning: commit"));
    let st = status(&e.sr);
    assert_eq!(st["deployments"][0]["entry"], Value::Null);
    assert_eq!(st["deployments"][0]["origin"], Value::Null);
    assert_eq!(
        std::fs::read_dir(e.sr.join("boot/loader/entries"))
            .expect("dir")
            .count(),
        0
    );
    fsck_clean(&e);
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn bad_input_changes_nothing() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let before = snapshot(&e.sr, true);
    let same = |what: &str| {
        let after = snapshot(&e.sr, true);
        let ka: Vec<_> = before.inodes.keys().collect();
        let kb: Vec<_> = after.inodes.keys().collect();
        assert_eq!(ka, kb, "{what} changed the sysroot's paths");
        for (k, v) in &before.inodes {
            assert_eq!(Some(v), after.inodes.get(k), "{what} changed {k}");
        }
    };
    let err = admin_fails(&e.sr, &["deploy", "no/such/ref"]);
    assert!(err.contains("\"no/such/ref\" names no commit"), "{err}");
    same("an unknown ref");
    // REMOTE:REF of a remote that is not there: the remote is named, and
    // how to add one.
    let err = admin_fails(&e.sr, &["deploy", "origin:os/main"]);
    assert!(
        err.contains("no remote origin in")
            && err.contains("slate remote add")
            && !err.contains("names no commit"),
        "{err}"
    );
    same("a missing remote");
    for bad in ["a/b", "..", ".x", ""] {
        let err = admin_fails(&e.sr, &["os-init", bad]);
        assert!(err.contains("is not an OS name"), "{err}");
    }
    same("bad OS names");
    let err = admin_fails(&e.sr, &["deploy", "--os", "other", "os/main"]);
    assert!(err.contains("OS \"other\" is not set up"), "{err}");
    let err = admin_fails(&e.sr, &["deploy", "--karg", "slate=/x", "os/main"]);
    assert!(err.contains("slate= is set by Slate"), "{err}");
    let err = admin_fails(&e.sr, &["undeploy", "0"]);
    assert!(err.contains("is the only deployment"), "{err}");
    let err = admin_fails(&e.sr, &["undeploy", "5"]);
    assert!(err.contains("no deployment 5"), "{err}");
    same("refused deploys and undeploys");

    // Not a sysroot.
    let plain = tempfile::tempdir().expect("tempdir");
    let err = admin_fails(plain.path(), &["status"]);
    assert!(err.contains("not a sysroot"), "{err}");

    // The booted deployment is not removed.
    commit_version(&e.build, &e.trees, 2, true);
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let st = status(&e.sr);
    let booted = format!("test/{}", st["deployments"][1]["id"].as_str().expect("id"));
    let cmdline = e.sr.parent().expect("parent").join("cmdline");
    std::fs::write(
        &cmdline,
        format!("root=/dev/vda2 slate=/slate/deploy/{booted} quiet\n"),
    )
    .expect("cmdline");
    let o = Command::new(slate_bin())
        .args([
            "admin",
            "--sysroot",
            s(&e.sr),
            "--cmdline",
            s(&cmdline),
            "undeploy",
            &booted,
        ])
        .output()
        .expect("undeploy");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is the booted deployment"));
    let o = Command::new(slate_bin())
        .args([
            "admin",
            "--sysroot",
            s(&e.sr),
            "--cmdline",
            s(&cmdline),
            "status",
            "--json",
        ])
        .output()
        .expect("status");
    let st: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(st["booted"], booted.as_str());
    assert_eq!(st["deployments"][1]["booted"], true);

    // A corrupt object is refused before anything is written.
    let c3 = commit_version(&e.build, &e.trees, 3, true);
    let r = repo(&e);
    ok(&r, &["pull-local", "--repo", s(&r), s(&e.build), "os/main"]);
    let id = ok(&r, &["ls", "--repo", s(&r), "--json", &c3, "/usr/bin/tool"]);
    let id: Value = serde_json::from_str(&id).expect("ls json");
    let obj = id
        .as_array()
        .and_then(|a| a.first())
        .and_then(|x| x["id"].as_str())
        .expect("object id")
        .to_string();
    let path = r
        .join("objects")
        .join(&obj[..2])
        .join(format!("{}.file", &obj[2..]));
    let mut perms = std::fs::metadata(&path).expect("object").permissions();
    perms.set_mode(0o644);
    std::fs::set_permissions(&path, perms).expect("chmod");
    std::fs::write(&path, "tool v3, damaged\n").expect("corrupt");
    let before_deploys = std::fs::read_dir(e.sr.join("slate/deploy/test"))
        .expect("dir")
        .count();
    let entries_before = std::fs::read_dir(e.sr.join("boot/loader/entries"))
        .expect("dir")
        .count();
    let err = admin_fails(&e.sr, &["deploy", "os/main"]);
    assert!(
        err.contains("/usr/bin/tool"),
        "the error names the path: {err}"
    );
    assert!(err.contains("nothing was deployed"), "{err}");
    assert_eq!(
        std::fs::read_dir(e.sr.join("slate/deploy/test"))
            .expect("dir")
            .count(),
        before_deploys
    );
    assert_eq!(
        std::fs::read_dir(e.sr.join("boot/loader/entries"))
            .expect("dir")
            .count(),
        entries_before
    );
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn boot_counting_states_and_set_default_on_a_bad_entry() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    commit_version(&e.build, &e.trees, 2, true);
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let st = status(&e.sr);
    let new_id = st["deployments"][0]["id"].as_str().expect("id").to_string();
    let old_entry = st["deployments"][1]["entry"]
        .as_str()
        .expect("entry")
        .to_string();
    let entries = e.sr.join("boot/loader/entries");
    // systemd-bless-boot marked the old one good; the new one failed every try.
    let good = old_entry.split('+').next().expect("name").to_string() + ".conf";
    std::fs::rename(entries.join(&old_entry), entries.join(&good)).expect("bless");
    let new_entry = st["deployments"][0]["entry"]
        .as_str()
        .expect("entry")
        .to_string();
    let bad = new_entry.replace("+3.conf", "+0-3.conf");
    std::fs::rename(entries.join(&new_entry), entries.join(&bad)).expect("fail");
    let st = status(&e.sr);
    // A bad entry is never the default.
    assert_eq!(st["deployments"][0]["entry_state"], "good");
    assert_eq!(st["deployments"][1]["entry_state"], "bad");
    assert_eq!(st["deployments"][1]["tries_left"], 0);
    assert_eq!(st["deployments"][1]["id"], new_id.as_str());
    // set-default works whatever the counter says: counted again.
    admin_ok(&e.sr, &["set-default", &new_id]);
    let st = status(&e.sr);
    assert_eq!(st["deployments"][0]["id"], new_id.as_str());
    assert_eq!(st["deployments"][0]["entry_state"], "pending");
    assert_eq!(st["deployments"][0]["tries_left"], 3);
    assert!(!entries.join(&bad).exists(), "the exhausted entry is gone");
    fsck_clean(&e);
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn prune_keeps_what_deployments_use() {
    let Some(e) = setup("persistent") else { return };
    let c1 = ok(&e.build, &["rev-parse", "--repo", s(&e.build), "os/main"])
        .trim()
        .to_string();
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    commit_version(&e.build, &e.trees, 2, true);
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let r = repo(&e);
    ok(
        &r,
        &["prune", "--repo", s(&r), "--refs-only", "--depth", "0"],
    );
    // Version 1 is reached only through its deployment's ref.
    ok(&r, &["show", "--repo", s(&r), &c1]);
    let fsck = slate_fsck(&r);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
}

/// The sysroot's repository is intact: no deployment changed an object.
pub(crate) fn fsck_clean(e: &Env) {
    let o = slate_fsck(&repo(e));
    assert!(
        o.status.success(),
        "fsck of the sysroot's repository: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

pub(crate) fn slate_fsck(r: &Path) -> Output {
    Command::new(slate_bin())
        .args(["fsck", "--repo", s(r)])
        .output()
        .expect("fsck")
}

#[test]
#[cfg_attr(
    not(all(test_root, test_have = "unshare")),
    ignore = "needs root and unshare (a small tmpfs as the sysroot's file system)"
)]
fn space_is_checked_before_anything_is_written() {
    if !is_root() || !crate::common::have("unshare") {
        skip("needs root and unshare (a small tmpfs as the sysroot's file system)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let build = dir.path().join("build");
    let trees = dir.path().join("trees");
    ok(
        &build,
        &["init", "--repo", s(&build), "--mode", "bare-user"],
    );
    // 1.5 MB of /etc: each deployment has its own copy.
    let big: String = (0..150_000)
        .map(|i| format!("{:09}\n", i))
        .collect::<String>()[..1_500_000]
        .to_string();
    for v in [1, 2] {
        let t = trees.join(format!("v{v}"));
        os_tree(&t, v, true);
        write(&t, "etc/big", &big);
        ok(
            &build,
            &[
                "commit",
                "--repo",
                s(&build),
                "-b",
                "os/main",
                "-s",
                "v",
                s(&t),
            ],
        );
    }
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).expect("mkdir");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let bin = slate_bin().display().to_string();
    let script = format!(
        "set -u\n\
         mount -t tmpfs -o size=6000k tmpfs '{small}' || exit 99\n\
         sr='{small}/sr'\n\
         '{bin}' admin init-fs \"$sr\" >/dev/null 2>&1\n\
         '{bin}' admin --sysroot \"$sr\" os-init test >/dev/null 2>&1\n\
         '{bin}' admin --sysroot \"$sr\" deploy --from '{build}' os/main~1 > '{out}/d1' 2>&1; echo $? > '{out}/d1.rc'\n\
         '{bin}' admin --sysroot \"$sr\" deploy --retain --from '{build}' os/main~1 >> '{out}/d1' 2>&1 || echo 1 > '{out}/d1.rc'\n\
         '{bin}' pull-local --repo \"$sr/slate/repo\" '{build}' os/main >/dev/null 2>&1\n\
         ls \"$sr/slate/deploy/test\" > '{out}/before'\n\
         '{bin}' admin --sysroot \"$sr\" deploy os/main > '{out}/d2' 2>&1; echo $? > '{out}/d2.rc'\n\
         ls \"$sr/slate/deploy/test\" > '{out}/after-refused'\n\
         '{bin}' admin --sysroot \"$sr\" deploy --auto-prune os/main > '{out}/d3' 2>&1; echo $? > '{out}/d3.rc'\n\
         '{bin}' admin --sysroot \"$sr\" status --json > '{out}/status'\n",
        small = small.display(),
        build = build.display(),
        out = out.display(),
    );
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-c", &script])
        .output()
        .expect("unshare");
    if o.status.code() == Some(99) {
        skip("cannot mount a tmpfs here");
        return;
    }
    let read = |n: &str| std::fs::read_to_string(out.join(n)).unwrap_or_default();
    assert_eq!(read("d1.rc").trim(), "0", "{}", read("d1"));
    assert_ne!(
        read("d2.rc").trim(),
        "0",
        "the second deploy fit: {}",
        read("d2")
    );
    assert!(
        read("d2").contains("free and the deployment needs"),
        "{}",
        read("d2")
    );
    assert_eq!(
        read("before"),
        read("after-refused"),
        "a refused deploy wrote something"
    );
    assert_eq!(read("d3.rc").trim(), "0", "{}", read("d3"));
    let st: Value = serde_json::from_str(&read("status")).expect("status");
    let d = st["deployments"].as_array().expect("d");
    assert_eq!(d.len(), 2, "the oldest one made room: {st}");
    assert!(read("d3").contains("removed test/"), "{}", read("d3"));
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn two_admin_commands_run_one_after_the_other() {
    let Some(e) = setup("persistent") else { return };
    ok(
        &repo(&e),
        &["pull-local", "--repo", s(&repo(&e)), s(&e.build), "os/main"],
    );
    let spawn = || {
        Command::new(slate_bin())
            .args([
                "admin",
                "--sysroot",
                s(&e.sr),
                "deploy",
                "--retain",
                "os/main",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let children: Vec<_> = (0..4).map(|_| spawn()).collect();
    let mut names = Vec::new();
    for c in children {
        let o = c.wait_with_output().expect("wait");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        names.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 4, "four deployments, four names: {names:?}");
    let st = status(&e.sr);
    assert_eq!(st["deployments"].as_array().expect("d").len(), 4);
    let entries = std::fs::read_dir(e.sr.join("boot/loader/entries"))
        .expect("dir")
        .count();
    assert_eq!(entries, 4);
    let versions: std::collections::HashSet<String> =
        std::fs::read_dir(e.sr.join("boot/loader/entries"))
            .expect("dir")
            .map(|x| std::fs::read_to_string(x.expect("e").path()).expect("read"))
            .filter_map(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("version ").map(String::from))
            })
            .collect();
    assert_eq!(
        versions.len(),
        4,
        "every entry has its own place in the order"
    );
    fsck_clean(&e);
}
