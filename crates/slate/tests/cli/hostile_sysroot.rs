//! A disk given as `--sysroot` is hostile: symlinks where the sysroot has
//! directories, a boot directory naming the host's, kernel arguments that
//! would add lines to a boot entry, records naming other paths. Nothing
//! outside the sysroot is written or removed, and bad input is refused.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use crate::admin::{
    admin_fails, admin_ok, commit_version, deployment_dir, fsck_clean, os_tree, s, setup, status,
    write, Env,
};
use crate::common::{admin, ok};

/// A directory outside the sysroot with a file that must stay.
fn outside(e: &Env, name: &str) -> std::path::PathBuf {
    let out = e._dir.path().join(name);
    write(&out, "precious/file", "keep me\n");
    write(&out, "top", "keep me too\n");
    out
}

fn intact(out: &Path) {
    assert_eq!(
        std::fs::read_to_string(out.join("precious/file")).expect("outside file"),
        "keep me\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("top")).expect("outside file"),
        "keep me too\n"
    );
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn factory_reset_never_empties_a_folder_outside_the_sysroot() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let state = e.sr.join("slate/state/test");
    // /var of the OS a symlink to a folder outside.
    let out = outside(&e, "out");
    std::fs::rename(state.join("var"), state.join("var.real")).expect("mv");
    symlink(&out, state.join("var")).expect("symlink");
    for args in [
        &["factory-reset", "--var", "--now"][..],
        &["factory-reset", "--now"],
        &["factory-reset", "--var"],
        &["factory-reset", "--var", "--dry-run"],
    ] {
        let err = admin_fails(&e.sr, args);
        assert!(err.contains("not a directory"), "{args:?}: {err}");
        intact(&out);
    }
    assert!(
        !state.join("factory-reset").exists(),
        "a refused reset was asked for"
    );
    std::fs::remove_file(state.join("var")).expect("rm");
    std::fs::rename(state.join("var.real"), state.join("var")).expect("mv back");

    // The OS's whole state directory a symlink to a folder outside (with
    // what an OS's state holds, so that it looks like one).
    let out2 = outside(&e, "out2");
    std::fs::copy(state.join("os.toml"), out2.join("os.toml")).expect("copy");
    write(&out2, "var/precious", "keep\n");
    std::fs::rename(&state, e.sr.join("slate/state/test.real")).expect("mv");
    symlink(&out2, &state).expect("symlink");
    let err = admin_fails(&e.sr, &["factory-reset", "--os", "test", "--now"]);
    assert!(err.contains("not a directory"), "{err}");
    intact(&out2);
    assert_eq!(
        std::fs::read_to_string(out2.join("var/precious")).expect("kept"),
        "keep\n"
    );
    std::fs::remove_file(&state).expect("rm");
    std::fs::rename(e.sr.join("slate/state/test.real"), &state).expect("mv back");

    // Put back, the reset works.
    write(&state.join("var"), "lib/collected", "x\n");
    admin_ok(&e.sr, &["factory-reset", "--var", "--now"]);
    assert_eq!(
        std::fs::read_dir(state.join("var")).expect("var").count(),
        0,
        "/var is emptied"
    );
    fsck_clean(&e);
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn cleanup_and_undeploy_never_remove_through_a_symlinked_folder() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    commit_version(&e.build, &e.trees, 2, true);
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    // The OS's deployments a symlink to a copy outside, holding a folder
    // that is no deployment (what cleanup removes in the real place).
    let deploy = e.sr.join("slate/deploy/test");
    let out = e._dir.path().join("deploy-out");
    std::fs::rename(&deploy, &out).expect("mv");
    write(&out, "precious/file", "keep me\n");
    write(&out, "top", "keep me too\n");
    symlink(&out, &deploy).expect("symlink");
    for args in [&["cleanup"][..], &["undeploy", "1"], &["status"]] {
        let err = admin_fails(&e.sr, args);
        assert!(err.contains("not a directory"), "{args:?}: {err}");
        intact(&out);
    }
    std::fs::remove_file(&deploy).expect("rm");
    std::fs::rename(&out, &deploy).expect("mv back");

    // A deployment's own folder a symlink: undeploy removes the link, not
    // what it names.
    let st = status(&e.sr);
    let old = deployment_dir(&e, &st["deployments"][1]);
    let out = outside(&e, "dep-out");
    std::fs::rename(&old, e._dir.path().join("old-real")).expect("mv");
    symlink(&out, &old).expect("symlink");
    admin_ok(&e.sr, &["undeploy", "1"]);
    intact(&out);
    assert!(std::fs::symlink_metadata(&old).is_err(), "the link is gone");

    // A record naming another OS's or another place's deployment.
    let rec = std::fs::read_dir(&deploy)
        .expect("ls")
        .map(|x| x.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "toml"))
        .expect("a record");
    let text = std::fs::read_to_string(&rec).expect("record");
    let id = rec
        .file_stem()
        .expect("stem")
        .to_string_lossy()
        .into_owned();
    std::fs::write(
        &rec,
        text.replace(&format!("id = \"{id}\""), "id = \"../../../../tmp\""),
    )
    .expect("write");
    let err = admin_fails(&e.sr, &["cleanup"]);
    assert!(err.contains("not a deployment record"), "{err}");
    std::fs::write(&rec, text).expect("put back");
    admin_ok(&e.sr, &["cleanup"]);
    fsck_clean(&e);
}

/// The entry files of the sysroot's boot directory, and their text.
fn entries_text(e: &Env) -> String {
    let mut all = String::new();
    for x in std::fs::read_dir(e.sr.join("boot/loader/entries")).expect("entries") {
        let p = x.expect("entry").path();
        all.push_str(&std::fs::read_to_string(&p).expect("read"));
    }
    all
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn kernel_arguments_are_one_word_each_and_never_slate() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let first = status(&e.sr)["deployments"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    commit_version(&e.build, &e.trees, 2, true);
    let pin = format!("x slate=/slate/deploy/test/{first}");
    for (karg, why) in [
        ("quiet\ninitrd /evil", "one word"),
        (pin.as_str(), "one word"),
        ("", "empty"),
        ("a\tb", "one word"),
        ("a\u{7}", "one word"),
        ("x=\"y", "no quotes"),
        ("\"slate=/slate/deploy/test/x\"", "no quotes"),
        ("slate=/x", "slate= is set by Slate"),
    ] {
        let err = admin_fails(
            &e.sr,
            &["deploy", "--from", s(&e.build), "--karg", karg, "os/main"],
        );
        assert!(err.contains(why), "{karg:?}: {err}");
    }
    assert_eq!(status(&e.sr)["deployments"].as_array().expect("d").len(), 1);
    let text = entries_text(&e);
    assert!(!text.contains("/evil"), "{text}");
    assert_eq!(text.matches("slate=").count(), 1, "{text}");

    // Kernel arguments read back from a hostile disk's record are checked
    // too: they would be inherited by every later deployment.
    let rec = e.sr.join(format!("slate/deploy/test/{first}.toml"));
    let good = std::fs::read_to_string(&rec).expect("record");
    for bad in [
        "kargs = [\"quiet\\ninitrd /evil\"]",
        "kargs = [\"x slate=/slate/deploy/test/old\"]",
        "kargs = [\"\"]",
    ] {
        std::fs::write(&rec, good.replace("kargs = []", bad)).expect("write");
        let err = admin_fails(&e.sr, &["upgrade", "--from", s(&e.build)]);
        assert!(
            err.contains(&format!("the record of test/{first}")),
            "{bad}: {err}"
        );
    }
    std::fs::write(&rec, &good).expect("put back");
    admin_ok(&e.sr, &["upgrade", "--from", s(&e.build)]);
    let text = entries_text(&e);
    assert_eq!(text.matches("slate=").count(), 2, "{text}");

    // An entry read back with a second slate= (or another deployment's)
    // is not made the default.
    let entry = std::fs::read_dir(e.sr.join("boot/loader/entries"))
        .expect("entries")
        .map(|x| x.expect("entry").path())
        .find(|p| p.to_string_lossy().contains(&first))
        .expect("the first deployment's entry");
    let good = std::fs::read_to_string(&entry).expect("entry");
    for bad in [
        "options slate=/slate/deploy/test/other slate=",
        "options x=\"y slate=",
    ] {
        std::fs::write(&entry, good.replace("options slate=", bad)).expect("write");
        let err = admin_fails(&e.sr, &["rollback"]);
        assert!(err.contains("the boot entry"), "{bad}: {err}");
    }
    std::fs::write(&entry, &good).expect("put back");
    admin_ok(&e.sr, &["rollback"]);
    fsck_clean(&e);
}

/// Point the sysroot's boot directory at `boot` (as `sysroot.toml` says).
fn set_boot(e: &Env, boot: &str) {
    std::fs::write(
        e.sr.join("slate/sysroot.toml"),
        format!("boot = {boot:?}\n"),
    )
    .expect("sysroot.toml");
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn the_boot_directory_of_a_sysroot_is_inside_it() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    // A boot directory of the host's (here a folder outside the sysroot)
    // with what cleanup removes: a stray entry of Slate's, an unused
    // kernel.
    let host = e._dir.path().join("hostboot");
    write(&host, "loader/entries/slate-test-abc.1+3.conf", "title x\n");
    write(&host, "slate/test/6.1-abcdef/linux", "host kernel\n");
    let host_files = || {
        (
            host.join("loader/entries/slate-test-abc.1+3.conf")
                .is_file(),
            host.join("slate/test/6.1-abcdef/linux").is_file(),
        )
    };
    // Named by an absolute path, by a symlink on the disk, by climbing.
    std::fs::rename(e.sr.join("boot"), e.sr.join("efi")).expect("mv");
    symlink(&host, e.sr.join("hostlink")).expect("symlink");
    let rel_climb = format!("../../../../../../../..{}", host.display());
    for boot in [s(&host), "/hostlink", rel_climb.as_str()] {
        set_boot(&e, boot);
        for args in [&["cleanup"][..], &["undeploy", "0"], &["status"]] {
            let o = admin(&e.sr, args);
            assert!(!o.status.success(), "{boot} {args:?}");
            assert_eq!(host_files(), (true, true), "{boot} {args:?}");
        }
        let err = admin_fails(&e.sr, &["cleanup"]);
        assert!(err.contains("the boot directory is not there"), "{err}");
    }
    // `install` writes /efi: the sysroot's own /efi.
    set_boot(&e, "/efi");
    let st = status(&e.sr);
    assert_eq!(st["boot"], s(&e.sr.join("efi")));
    assert_eq!(st["deployments"][0]["entry_state"], "pending");
    admin_ok(&e.sr, &["cleanup"]);
    commit_version(&e.build, &e.trees, 2, true);
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    assert_eq!(
        std::fs::read_dir(e.sr.join("efi/loader/entries"))
            .expect("entries")
            .count(),
        2
    );
    assert_eq!(host_files(), (true, true));
    fsck_clean(&e);
}

/// Commit a tree of version `v` with `extra` done to it.
fn commit_with(e: &Env, v: u32, extra: impl Fn(&Path)) -> String {
    let t = e.trees.join(format!("x{v}"));
    os_tree(&t, v, true);
    extra(&t);
    ok(
        &e.build,
        &[
            "commit",
            "--repo",
            s(&e.build),
            "-b",
            "os/main",
            "-s",
            "x",
            s(&t),
        ],
    )
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn etc_merge_keeps_a_folder_the_machine_made_a_symlink_and_says_what_happened() {
    let Some(e) = setup("persistent") else { return };
    commit_with(&e, 1, |t| {
        write(t, "etc/big/f1", "one\n");
        write(t, "etc/big/f2", "two\n");
        write(t, "etc/i.conf", "image\n");
    });
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let d1 = status(&e.sr)["deployments"][0].clone();
    let etc = deployment_dir(&e, &d1).join("etc");
    // The machine made /etc/big a symlink to a folder elsewhere, changed
    // i.conf, and changed the mode of the folder dir.
    let out = outside(&e, "big-out");
    std::fs::remove_dir_all(etc.join("big")).expect("rm");
    symlink(&out, etc.join("big")).expect("symlink");
    std::fs::write(etc.join("i.conf"), "local\n").expect("write");
    std::fs::set_permissions(etc.join("dir"), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    // The new image changes a file under /etc/big, removes i.conf and
    // changes the mode of dir too.
    commit_with(&e, 2, |t| {
        write(t, "etc/big/f1", "one, new\n");
        write(t, "etc/big/f2", "two\n");
        std::fs::set_permissions(t.join("etc/dir"), std::fs::Permissions::from_mode(0o750))
            .expect("chmod");
    });
    let o = admin(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    intact(&out);
    assert!(!out.join("f1").exists(), "written through the symlink");
    let d2 = status(&e.sr)["deployments"][0].clone();
    let new = deployment_dir(&e, &d2).join("etc");
    assert_eq!(std::fs::read_link(new.join("big")).expect("link"), out);
    assert_eq!(
        std::fs::read_to_string(new.join("i.conf")).expect("kept"),
        "local\n"
    );
    assert!(!new.join("i.conf.slate-new").exists());
    assert_eq!(
        d2["etc_conflicts"],
        serde_json::json!(["/etc/big", "/etc/dir", "/etc/i.conf"])
    );
    assert_eq!(
        d2["etc_merge"],
        serde_json::json!([
            {"path": "/etc/big", "image": "below", "saved": null},
            {"path": "/etc/dir", "image": "folder-metadata", "saved": null},
            {"path": "/etc/i.conf", "image": "removed", "saved": null},
        ])
    );
    // Each message says what happened, and names no .slate-new that was
    // not made.
    assert!(
        err.contains("conflict: /etc/big is a folder in the new image"),
        "{err}"
    );
    assert!(
        err.contains("conflict: /etc/i.conf was changed here and removed by the new image: kept this machine's\n"),
        "{err}"
    );
    assert!(
        err.contains("conflict: the folder /etc/dir had its owner, mode or xattrs changed"),
        "{err}"
    );
    assert!(!err.contains(".slate-new"), "{err}");
    let text = admin_ok(&e.sr, &["status"]);
    assert!(!text.contains(".slate-new"), "{text}");
    fsck_clean(&e);
}

#[test]
#[cfg_attr(
    not(all(test_root, test_have = "unshare")),
    ignore = "needs root (a bare sysroot) and unshare (a mount namespace)"
)]
fn cleanup_removes_the_temporary_files_of_killed_writers() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let d = status(&e.sr)["deployments"][0].clone();
    let id = d["id"].as_str().expect("id");
    let stale = [
        format!("slate/deploy/test/.{id}.toml.999999.0.1a2b3c"),
        "slate/state/test/.os.toml.999999.1.ff".to_string(),
        "slate/.sysroot.toml.999999.2.ab".to_string(),
        format!("boot/loader/entries/.slate-test-{id}+3.conf.999999.3.cd"),
    ];
    for p in &stale {
        write(&e.sr, p, "half written");
    }
    // Not Slate's, or not a temporary name: left alone.
    let other = [
        "boot/loader/entries/.other-loader.conf.1.2.ab".to_string(),
        format!("slate/deploy/test/{id}/etc/.keep.1.2.ab"),
    ];
    for p in &other {
        write(&e.sr, p, "not ours");
    }
    let o = admin(&e.sr, &["cleanup", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        rep["temporary"].as_array().expect("temporary").len(),
        4,
        "{rep}"
    );
    for p in &stale {
        assert!(!e.sr.join(p).exists(), "{p} left");
    }
    for p in &other {
        assert!(e.sr.join(p).exists(), "{p} removed");
    }
    assert_eq!(status(&e.sr)["deployments"].as_array().expect("d").len(), 1);
    fsck_clean(&e);
}

/// `prepare-root` of the default deployment in a private mount namespace,
/// into a folder beside the sysroot; `None` where mount namespaces are
/// not to be had.
fn prepare(e: &Env) -> Option<std::process::Output> {
    if !crate::common::have("unshare") {
        crate::common::skip("unshare is not installed: prepare-root is not tried");
        return None;
    }
    let d = status_of_records(e);
    let id = d.file_name().expect("id").to_string_lossy().into_owned();
    let cmdline = e._dir.path().join("cmdline");
    std::fs::write(&cmdline, format!("quiet slate=/slate/deploy/test/{id}\n")).expect("cmdline");
    let target = e._dir.path().join("newroot");
    std::fs::create_dir_all(&target).expect("mkdir");
    let o = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(crate::common::slate_bin())
        .args(["admin", "--sysroot", s(&e.sr), "--cmdline", s(&cmdline)])
        .args(["prepare-root", "--target", s(&target), "--json"])
        .output()
        .expect("unshare");
    if String::from_utf8_lossy(&o.stderr).contains("unshare failed") {
        crate::common::skip("no mount namespaces here: prepare-root is not tried");
        return None;
    }
    Some(o)
}

#[test]
#[cfg_attr(
    not(all(test_root, test_have = "unshare")),
    ignore = "needs root (a bare sysroot) and unshare (a mount namespace)"
)]
fn prepare_root_needs_no_boot_directory_and_writes_nothing_through_a_symlink() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    // In the initrd the ESP is not mounted: the deployment is found by
    // its record.
    set_boot(&e, "/efi");
    let Some(o) = prepare(&e) else { return };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The deployment's /etc a symlink to a folder outside: the machine id
    // is not written there.
    let d = status_of_records(&e);
    let etc = d.join("etc");
    let out = outside(&e, "etc-out");
    std::fs::rename(&etc, d.join("etc.real")).expect("mv");
    symlink(&out, &etc).expect("symlink");
    let o = prepare(&e).expect("ran before");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a directory"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    intact(&out);
    assert!(!out.join("machine-id").exists());
    std::fs::remove_file(&etc).expect("rm");
    std::fs::rename(d.join("etc.real"), &etc).expect("mv back");
    // A reset asked for at boot, /var a symlink to a folder outside.
    let state = e.sr.join("slate/state/test");
    std::fs::write(state.join("factory-reset"), "var\n").expect("request");
    std::fs::rename(state.join("var"), state.join("var.real")).expect("mv");
    let out = outside(&e, "var-out");
    symlink(&out, state.join("var")).expect("symlink");
    let o = prepare(&e).expect("ran before");
    assert!(!o.status.success());
    intact(&out);
}

/// The only deployment's folder (read from the sysroot, not `status`:
/// its boot directory may not be there).
fn status_of_records(e: &Env) -> std::path::PathBuf {
    let dir = e.sr.join("slate/deploy/test");
    std::fs::read_dir(&dir)
        .expect("ls")
        .map(|x| x.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("a deployment")
}
