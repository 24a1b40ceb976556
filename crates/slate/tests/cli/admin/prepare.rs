//! `prepare-root`: the root the initrd builds from a deployment, in a
//! private mount namespace; `ConditionNeedsUpdate=` after each deploy.

use super::*;

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
#[cfg_attr(
    not(all(test_root, test_have = "unshare")),
    ignore = "needs root (a bare sysroot) and unshare (a mount namespace)"
)]
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
#[cfg_attr(
    not(all(test_root, test_have = "unshare")),
    ignore = "needs root (a bare sysroot) and unshare (a mount namespace)"
)]
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
#[cfg_attr(
    not(all(test_root, test_have = "systemd-analyze", test_have = "unshare")),
    ignore = "needs root (a bare sysroot), systemd-analyze and unshare"
)]
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

/// As in an initrd: the sysroot is a mount point, every mount is shared,
/// and prepare-root builds the root over the sysroot itself (no
/// --target): made aside, then moved over it.
#[test]
#[cfg_attr(
    not(all(test_root, test_have = "unshare")),
    ignore = "needs root (a bare sysroot) and unshare (a mount namespace)"
)]
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
