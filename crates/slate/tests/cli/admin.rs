//! `slate admin`: deployments in a sysroot in a directory. The sysroot's
//! repository is `bare` (real owners), so these tests need root.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::{admin, is_root, ok, skip, slate_bin, snapshot};

struct Env {
    _dir: tempfile::TempDir,
    build: PathBuf,
    sr: PathBuf,
    trees: PathBuf,
}

fn write(root: &Path, p: &str, content: &str) {
    let path = root.join(p);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, content).expect("write");
}

/// An OS tree of version `v`: a fake kernel, os-release, a binary, /etc
/// defaults and a /var file.
fn os_tree(root: &Path, v: u32, kernel: bool) {
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

fn admin_ok(sr: &Path, args: &[&str]) -> String {
    let o = admin(sr, args);
    assert!(
        o.status.success(),
        "slate admin {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8")
}

fn admin_fails(sr: &Path, args: &[&str]) -> String {
    let o = admin(sr, args);
    assert!(
        !o.status.success(),
        "slate admin {args:?} succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn status(sr: &Path) -> Value {
    serde_json::from_str(&admin_ok(sr, &["status", "--json"])).expect("status json")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A build repository with version 1 on `os/main`, a sysroot with the OS
/// `test` (`etc` mode as given).
fn setup(etc: &str) -> Option<Env> {
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

fn commit_version(build: &Path, trees: &Path, v: u32, kernel: bool) -> String {
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

fn deployment_dir(e: &Env, d: &Value) -> PathBuf {
    e.sr.join("slate/deploy")
        .join(d["os"].as_str().expect("os"))
        .join(d["id"].as_str().expect("id"))
}

fn repo(e: &Env) -> PathBuf {
    e.sr.join("slate/repo")
}

#[test]
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
fn fsck_clean(e: &Env) {
    let o = slate_fsck(&repo(e));
    assert!(
        o.status.success(),
        "fsck of the sysroot's repository: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn slate_fsck(r: &Path) -> Output {
    Command::new(slate_bin())
        .args(["fsck", "--repo", s(r)])
        .output()
        .expect("fsck")
}

/// The default entry as systemd-boot picks it, with everything it names
/// present and complete; returns the deployment's `OS/ID`.
fn boot_loader_default(sr: &Path) -> String {
    let dir = sr.join("boot/loader/entries");
    let mut entries: Vec<slate_core::sysroot::BootEntry> = std::fs::read_dir(&dir)
        .expect("entries")
        .filter_map(|x| {
            let x = x.expect("entry");
            let name = x.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".conf") {
                return None;
            }
            let text = std::fs::read_to_string(x.path()).expect("read entry");
            slate_core::sysroot::BootEntry::parse(&name, &text)
        })
        .collect();
    entries.sort_by(slate_core::sysroot::boot_order);
    let first = entries.first().expect("a default entry");
    for f in std::iter::once(&first.linux).chain(&first.initrd) {
        let p = sr.join("boot").join(f.trim_start_matches('/'));
        assert!(p.is_file(), "{} names {f}, which is missing", first.file);
    }
    let dep = first.option("slate").expect("slate= option");
    let dep_dir = sr.join(dep.trim_start_matches('/'));
    assert!(
        dep_dir.join("usr/bin/tool").is_file(),
        "{} names {dep}, which is incomplete",
        first.file
    );
    dep.trim_start_matches("/slate/deploy/").to_string()
}

#[test]
fn killed_at_any_moment_the_default_is_the_old_or_the_new() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    commit_version(&e.build, &e.trees, 2, true);
    ok(
        &repo(&e),
        &["pull-local", "--repo", s(&repo(&e)), s(&e.build), "os/main"],
    );
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let ops: [&[&str]; 4] = [
        &["deploy", "os/main"],
        &["rollback"],
        &["undeploy", "1"],
        &["cleanup"],
    ];
    let mut killed = 0;
    // How long each command took when it ran to the end: kills are aimed
    // inside that span.
    let mut took: std::collections::HashMap<&str, u64> =
        ops.iter().map(|o| (o[0], 20_000)).collect();
    for i in 0..64 {
        let before = boot_loader_default(&e.sr);
        let order: Vec<String> = status(&e.sr)["deployments"]
            .as_array()
            .expect("deployments")
            .iter()
            .map(|d| {
                format!(
                    "{}/{}",
                    d["os"].as_str().expect("os"),
                    d["id"].as_str().expect("id")
                )
            })
            .collect();
        let op = ops[i % ops.len()];
        if op[0] == "undeploy" && order.len() < 2 {
            continue;
        }
        let started = std::time::Instant::now();
        let mut child = Command::new(slate_bin())
            .args(["admin", "--sysroot", s(&e.sr)])
            .args(op)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let delay = next() % (took[op[0]] + 1);
        std::thread::sleep(std::time::Duration::from_micros(delay));
        let was_killed = child.try_wait().expect("wait").is_none();
        if was_killed {
            let _ = child.kill();
            killed += 1;
        }
        let out = child.wait_with_output().expect("wait");
        if !was_killed {
            took.insert(op[0], started.elapsed().as_micros() as u64);
        }
        let after = boot_loader_default(&e.sr);
        let allowed: Vec<String> = match op[0] {
            "deploy" => {
                // The new deployment's name is printed only when done; any
                // deployment of this sysroot that is newer than all others
                // is the new one.
                let st = status(&e.sr);
                let mut v = vec![before.clone()];
                v.extend(
                    st["deployments"]
                        .as_array()
                        .expect("d")
                        .iter()
                        .map(|d| {
                            format!(
                                "{}/{}",
                                d["os"].as_str().expect("os"),
                                d["id"].as_str().expect("id")
                            )
                        })
                        .filter(|n| !order.contains(n)),
                );
                if out.status.success() {
                    v = vec![String::from_utf8_lossy(&out.stdout).trim().to_string()];
                }
                v
            }
            "rollback" => vec![before.clone(), order.get(1).cloned().unwrap_or_default()],
            _ => vec![before.clone()],
        };
        assert!(
            allowed.contains(&after),
            "after {op:?} (killed: {}), the default is {after}; allowed {allowed:?}",
            !out.status.success()
        );
        // Whatever was left, cleanup repairs and status reads it.
        admin_ok(&e.sr, &["cleanup"]);
        status(&e.sr);
    }
    eprintln!("{killed} of 64 commands killed midway");
    assert!(
        killed >= 8,
        "only {killed} commands were killed: the test proved little"
    );
    let fsck = slate_fsck(&repo(&e));
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
}

#[test]
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

/// `/proc/self/mountinfo` lines as (mount point, root, options, fstype).
fn mountinfo(text: &str) -> Vec<(String, String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(" - ")?;
            let f: Vec<&str> = a.split(' ').collect();
            let fstype = b.split(' ').next()?.to_string();
            Some((
                f.get(4)?.to_string(),
                f.get(3)?.to_string(),
                f.get(5)?.to_string(),
                fstype,
            ))
        })
        .collect()
}

/// Run prepare-root in a private mount namespace; return its JSON and
/// what the namespace saw (mountinfo, whether /usr took a write, the
/// machine id).
fn prepare_in_namespace(
    e: &Env,
    cmdline: &Path,
    target: &Path,
) -> Option<(Value, String, bool, String)> {
    if !crate::common::have("unshare") {
        skip("unshare is not installed: prepare-root is not tried");
        return None;
    }
    let out = e.sr.parent().expect("parent").join("ns-out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::create_dir_all(target).expect("mkdir target");
    let script = format!(
        "set -e\n\
         '{bin}' admin --sysroot '{sr}' --cmdline '{cl}' prepare-root --target '{t}' --json > '{o}/prepared.json'\n\
         cat /proc/self/mountinfo > '{o}/mountinfo'\n\
         if touch '{t}/usr/written' 2>/dev/null; then echo yes > '{o}/usr-written'; else echo no > '{o}/usr-written'; fi\n\
         cat '{t}/etc/machine-id' > '{o}/machine-id'\n",
        bin = slate_bin().display(),
        sr = e.sr.display(),
        cl = cmdline.display(),
        t = target.display(),
        o = out.display()
    );
    let st = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-c", &script])
        .output()
        .expect("unshare");
    if !st.status.success() && String::from_utf8_lossy(&st.stderr).contains("unshare failed") {
        skip("no mount namespaces here: prepare-root is not tried");
        return None;
    }
    assert!(
        st.status.success(),
        "prepare-root failed: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let read = |n: &str| std::fs::read_to_string(out.join(n)).expect(n);
    Some((
        serde_json::from_str(&read("prepared.json")).expect("json"),
        read("mountinfo"),
        read("usr-written").trim() == "yes",
        read("machine-id").trim().to_string(),
    ))
}

#[test]
fn prepare_root_builds_the_root_in_a_mount_namespace() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let d = status(&e.sr)["deployments"][0].clone();
    let id = d["id"].as_str().expect("id").to_string();
    let cmdline = e.sr.parent().expect("parent").join("cmdline");
    std::fs::write(
        &cmdline,
        format!("root=/dev/vda2 slate=/slate/deploy/test/{id} quiet\n"),
    )
    .expect("cmdline");
    let target = e.sr.parent().expect("parent").join("newroot");
    // A /var reset requested before this boot.
    write(&e.sr.join("slate/state/test/var"), "old/state", "x\n");
    admin_ok(&e.sr, &["factory-reset", "--var"]);

    let Some((prep, mi, usr_written, id1)) = prepare_in_namespace(&e, &cmdline, &target) else {
        return;
    };
    assert_eq!(prep["deployment"], format!("test/{id}"));
    assert_eq!(prep["first_boot"], true);
    assert_eq!(prep["reset"], serde_json::json!([false, true]));
    assert!(
        !e.sr.join("slate/state/test/var/old").exists(),
        "the reset ran before the mounts"
    );
    assert!(!usr_written, "/usr took a write");
    let mounts = mountinfo(&mi);
    let at = |p: &Path| {
        mounts
            .iter()
            .rev()
            .find(|m| m.0 == p.to_str().expect("utf-8"))
            .unwrap_or_else(|| panic!("nothing mounted at {}:\n{mi}", p.display()))
            .clone()
    };
    let root = at(&target);
    assert!(
        root.1.ends_with(&format!("slate/deploy/test/{id}")),
        "{root:?}"
    );
    let usr = at(&target.join("usr"));
    assert!(
        usr.1.ends_with(&format!("slate/deploy/test/{id}/usr")),
        "{usr:?}"
    );
    assert!(
        usr.2.split(',').any(|o| o == "ro"),
        "/usr is not read-only: {usr:?}"
    );
    let var = at(&target.join("var"));
    assert!(var.1.ends_with("slate/state/test/var"), "{var:?}");
    assert!(var.2.split(',').any(|o| o == "rw"), "{var:?}");
    let sysroot = at(&target.join("sysroot"));
    assert!(sysroot.1.ends_with("sysroot"), "{sysroot:?}");
    assert!(
        !mounts
            .iter()
            .any(|m| m.0 == target.join("etc").to_str().expect("utf-8")),
        "a persistent /etc is the deployment's own, not a mount"
    );
    let kept = std::fs::read_to_string(e.sr.join("slate/state/test/machine-id")).expect("kept id");
    assert_eq!(id1, kept.trim());
    assert_eq!(id1.len(), 32);
    // The next boot is not a first boot: the same id.
    let Some((prep2, _, _, id2)) = prepare_in_namespace(&e, &cmdline, &target) else {
        return;
    };
    assert_eq!(prep2["first_boot"], false);
    assert_eq!(id2, id1);
    fsck_clean(&e);
}

#[test]
fn prepare_root_of_a_stateless_volatile_os() {
    let Some(e) = setup("stateless") else { return };
    admin_ok(
        &e.sr,
        &["os-init", "test", "--etc", "stateless", "--var", "volatile"],
    );
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let id = status(&e.sr)["deployments"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let cmdline = e.sr.parent().expect("parent").join("cmdline");
    std::fs::write(&cmdline, format!("slate=/slate/deploy/test/{id}\n")).expect("cmdline");
    let target = e.sr.parent().expect("parent").join("newroot");
    let Some((_, mi, _, machine_id)) = prepare_in_namespace(&e, &cmdline, &target) else {
        return;
    };
    let mounts = mountinfo(&mi);
    let fstype = |p: &Path| {
        mounts
            .iter()
            .rev()
            .find(|m| m.0 == p.to_str().expect("utf-8"))
            .map(|m| m.3.clone())
            .unwrap_or_default()
    };
    assert_eq!(fstype(&target.join("etc")), "tmpfs", "{mi}");
    assert_eq!(fstype(&target.join("var")), "tmpfs", "{mi}");
    assert_eq!(
        machine_id.len(),
        32,
        "the machine id is written into the empty /etc"
    );
}

/// systemd's own test of `ConditionNeedsUpdate=`: `systemd-analyze
/// condition` in a mount namespace where `/etc` and `/var` are the
/// deployment's and `/usr` has its time (an overlay on the host's /usr,
/// whose upper directory carries the deployment's /usr times).
fn needs_update(e: &Env, dep: &Path, stamp: bool) -> Option<bool> {
    let out = e.sr.parent().expect("parent").join("cond");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(out.join("up")).expect("mkdir");
    std::fs::create_dir_all(out.join("work")).expect("mkdir");
    let usr = std::fs::metadata(dep.join("usr")).expect("usr");
    let nsec = usr.mtime() as i128 * 1_000_000_000 + usr.mtime_nsec() as i128;
    let script = format!(
        "set -e\n\
         touch -r '{dep}/usr' '{o}/up'\n\
         mount -t overlay overlay -o lowerdir=/usr,upperdir='{o}/up',workdir='{o}/work' /usr\n\
         mount --bind '{dep}/etc' /etc\n\
         mount --bind '{var}' /var\n\
         if [ {stamp} = 1 ]; then for d in /etc /var; do\n\
           printf '# systemd-update-done\\nTIMESTAMP_NSEC={nsec}\\n' > $d/.updated; touch -r /usr $d/.updated; done; fi\n\
         systemd-analyze condition ConditionNeedsUpdate=/etc ConditionNeedsUpdate=/var\n",
        dep = dep.display(),
        o = out.display(),
        var = e.sr.join("slate/state/test/var").display(),
        stamp = u8::from(stamp),
    );
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-c", &script])
        .output()
        .expect("unshare");
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    if text.contains("unknown filesystem type 'overlay'") || text.contains("unshare failed") {
        skip("no overlayfs or mount namespaces here: ConditionNeedsUpdate= is not tried");
        return None;
    }
    if text.contains("Conditions succeeded.") {
        Some(true)
    } else if text.contains("Conditions failed.") || text.contains("failed.") {
        Some(false)
    } else {
        panic!("systemd-analyze condition said neither: {text}");
    }
}

#[test]
fn needs_update_units_run_once_after_each_deploy() {
    let Some(e) = setup("persistent") else { return };
    if !crate::common::have("systemd-analyze") || !crate::common::have("unshare") {
        skip("systemd-analyze or unshare missing: ConditionNeedsUpdate= is not tried");
        return;
    }
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let d1 = deployment_dir(&e, &status(&e.sr)["deployments"][0]);
    let Some(first) = needs_update(&e, &d1, false) else {
        return;
    };
    assert!(
        first,
        "the first boot of a deployment runs the update units"
    );
    // systemd-update-done has run: not again.
    assert_eq!(needs_update(&e, &d1, true), Some(false));
    // The next deployment carries /etc/.updated over, and runs them again.
    commit_version(&e.build, &e.trees, 2, true);
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let d2 = deployment_dir(&e, &status(&e.sr)["deployments"][0]);
    assert!(
        d2.join("etc/.updated").exists(),
        "/etc/.updated is carried over"
    );
    assert_eq!(needs_update(&e, &d2, false), Some(true));
    fsck_clean(&e);
}

#[test]
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

#[test]
fn upgrade_follows_the_origin_and_pinned_deployments_stay() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let first = status(&e.sr)["deployments"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    admin_ok(&e.sr, &["pin", "0"]);
    // Nothing new on the ref: nothing to do.
    let o = admin(&e.sr, &["upgrade", "--from", s(&e.build)]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to do"));
    assert_eq!(status(&e.sr)["deployments"].as_array().expect("d").len(), 1);
    // Three new versions, each upgraded to: only the pinned first one, the
    // rollback and the newest stay.
    for v in 2..=4 {
        let c = commit_version(&e.build, &e.trees, v, true);
        admin_ok(&e.sr, &["upgrade", "--from", s(&e.build)]);
        assert_eq!(status(&e.sr)["deployments"][0]["commit"], c.as_str());
    }
    let st = status(&e.sr);
    let d = st["deployments"].as_array().expect("d");
    let ids: Vec<&str> = d.iter().map(|x| x["id"].as_str().expect("id")).collect();
    assert_eq!(d.len(), 3, "{ids:?}");
    assert!(
        ids.contains(&first.as_str()),
        "the pinned deployment was removed: {ids:?}"
    );
    assert!(d.iter().any(|x| x["pinned"] == true));
    // Unpinned, the next upgrade removes it.
    admin_ok(&e.sr, &["pin", "--unpin", &first]);
    commit_version(&e.build, &e.trees, 5, true);
    admin_ok(&e.sr, &["upgrade", "--from", s(&e.build)]);
    let st = status(&e.sr);
    let ids: Vec<&str> = st["deployments"]
        .as_array()
        .expect("d")
        .iter()
        .map(|x| x["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(!ids.contains(&first.as_str()));
    // A deployment made from a commit has no origin to follow.
    let c = commit_version(&e.build, &e.trees, 6, true);
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), &c]);
    let err = admin_fails(&e.sr, &["upgrade"]);
    assert!(
        err.contains("was deployed from a commit, not a ref"),
        "{err}"
    );
    fsck_clean(&e);
}

/// Publish the build repository's `os/main` into the archive `pub`,
/// signed with `key` (unless told not to), and update the summary.
fn publish(e: &Env, pubrepo: &Path, key: &Path, sign: bool) {
    ok(
        pubrepo,
        &["pull-local", "--repo", s(pubrepo), s(&e.build), "os/main"],
    );
    if sign {
        ok(
            pubrepo,
            &["sign", "--repo", s(pubrepo), "os/main", "--key", s(key)],
        );
    }
    ok(
        pubrepo,
        &[
            "summary",
            "--repo",
            s(pubrepo),
            "--update",
            "--sign",
            s(key),
        ],
    );
}

#[test]
fn deploy_and_upgrade_from_a_remote_that_requires_signatures() {
    let Some(e) = setup("persistent") else { return };
    let pubrepo = e._dir.path().join("pub");
    let key = e._dir.path().join("key.pem");
    ok(
        &pubrepo,
        &["init", "--repo", s(&pubrepo), "--mode", "archive"],
    );
    ok(&pubrepo, &["keygen", s(&key)]);
    publish(&e, &pubrepo, &key, true);
    let server = crate::faultserve::FaultServer::start(pubrepo.clone());
    let r = repo(&e);
    let pubkey = format!("{}.pub", s(&key));
    ok(
        &r,
        &[
            "remote",
            "--repo",
            s(&r),
            "add",
            "origin",
            &server.url,
            "--sign-verify",
            &pubkey,
        ],
    );
    let c1 = ok(&e.build, &["rev-parse", "--repo", s(&e.build), "os/main"])
        .trim()
        .to_string();
    admin_ok(&e.sr, &["deploy", "origin:os/main"]);
    let st = status(&e.sr);
    assert_eq!(st["deployments"][0]["commit"], c1.as_str());
    assert_eq!(st["deployments"][0]["origin"], "origin:os/main");

    // A new signed version: upgrade pulls it, then deploys it.
    let c2 = commit_version(&e.build, &e.trees, 2, true);
    publish(&e, &pubrepo, &key, true);
    admin_ok(&e.sr, &["upgrade"]);
    let st = status(&e.sr);
    assert_eq!(st["deployments"][0]["commit"], c2.as_str());
    assert_eq!(st["deployments"][0]["default"], true);
    assert_eq!(st["deployments"][0]["origin"], "origin:os/main");
    // Nothing new: nothing to do.
    let o = admin(&e.sr, &["upgrade"]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing to do"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // An unsigned version is refused; the default stays.
    commit_version(&e.build, &e.trees, 3, true);
    publish(&e, &pubrepo, &key, false);
    let err = admin_fails(&e.sr, &["upgrade"]);
    assert!(err.contains("no valid signature"), "{err}");
    assert_eq!(status(&e.sr)["deployments"][0]["commit"], c2.as_str());

    // The tracking ref deployed directly: its signature is checked too.
    std::fs::remove_dir_all(r.join("signatures").join(&c2)).expect("remove signature");
    let err = admin_fails(&e.sr, &["deploy", "remotes/origin/os/main"]);
    assert!(err.contains("no valid signature"), "{err}");
    assert_eq!(
        status(&e.sr)["deployments"].as_array().expect("list").len(),
        2
    );
    fsck_clean(&e);
}

/// As in an initrd: the sysroot is a mount point, every mount is shared,
/// and prepare-root builds the root over the sysroot itself (no
/// --target): made aside, then moved over it.
#[test]
fn prepare_root_in_place_under_shared_propagation() {
    let Some(e) = setup("stateless") else { return };
    if !crate::common::have("unshare") {
        return skip("unshare is not installed: prepare-root is not tried");
    }
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let id = status(&e.sr)["deployments"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let cmdline = e.sr.parent().expect("parent").join("cmdline");
    std::fs::write(&cmdline, format!("slate=/slate/deploy/test/{id}\n")).expect("cmdline");
    let out = e.sr.parent().expect("parent").join("in-place-out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let script = format!(
        "set -e\n\
         mount --bind '{sr}' '{sr}'\n\
         mount --make-shared '{sr}'\n\
         '{bin}' admin --sysroot '{sr}' --cmdline '{cl}' prepare-root --json > '{o}/prepared.json'\n\
         cat '{sr}/usr/bin/tool' > '{o}/tool'\n\
         cat /proc/self/mountinfo > '{o}/mountinfo'\n\
         ls '{sr}/sysroot/slate' > '{o}/physical' || true\n\
         findmnt -n -o FSTYPE '{sr}/etc' > '{o}/etc-fs'\n",
        bin = slate_bin().display(),
        sr = e.sr.display(),
        cl = cmdline.display(),
        o = out.display()
    );
    let st = Command::new("unshare")
        .args(["--mount", "--propagation", "shared", "bash", "-c", &script])
        .output()
        .expect("unshare");
    if !st.status.success() && String::from_utf8_lossy(&st.stderr).contains("unshare failed") {
        return skip("no mount namespaces here: prepare-root is not tried");
    }
    assert!(
        st.status.success(),
        "prepare-root in place failed: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let read = |n: &str| std::fs::read_to_string(out.join(n)).expect(n);
    let prep: Value = serde_json::from_str(&read("prepared.json")).expect("json");
    assert_eq!(
        prep["target"],
        e.sr.canonicalize().expect("sysroot").display().to_string()
    );
    assert!(
        read("tool").starts_with("tool v"),
        "the deployment is not at the sysroot"
    );
    assert!(
        read("physical").contains("deploy"),
        "the physical sysroot is not at /sysroot:\n{}",
        read("mountinfo")
    );
    let etc_fs = read("etc-fs");
    assert!(
        !etc_fs.trim().is_empty() && etc_fs.lines().all(|l| l.trim() == "tmpfs"),
        "stateless /etc: {etc_fs}"
    );
}
