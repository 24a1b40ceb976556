//! Staged deployments (`deploy --stage`, `upgrade --stage`,
//! `finalize-staged`, `unstage`) and the upgrade loop's rules (no upgrade
//! from a pending or bad boot, bad commits skipped).

use super::*;

/// The entry files of the sysroot's boot directory, sorted.
fn entry_files(e: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(e.sr.join("boot/loader/entries"))
        .expect("entries")
        .map(|x| x.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

/// `slate admin --cmdline FILE ARGS`: the booted deployment named.
fn admin_booted(e: &Env, booted: &str, args: &[&str]) -> Output {
    let cmdline = e._dir.path().join("cmdline");
    std::fs::write(
        &cmdline,
        format!("root=/dev/vda2 slate=/slate/deploy/{booted} quiet\n"),
    )
    .expect("cmdline");
    Command::new(slate_bin())
        .args(["admin", "--sysroot", s(&e.sr), "--cmdline", s(&cmdline)])
        .args(args)
        .output()
        .expect("run slate admin")
}

fn name(d: &Value) -> String {
    format!(
        "{}/{}",
        d["os"].as_str().expect("os"),
        d["id"].as_str().expect("id")
    )
}

/// Bless (no counter) or fail (no tries left) the entry of `dep` (OS/ID).
fn set_entry(e: &Env, dep: &str, bad: bool) {
    let st = status(&e.sr);
    let d = st["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .find(|d| name(d) == dep)
        .expect("the deployment");
    let file = d["entry"].as_str().expect("entry");
    let stem = file
        .split('+')
        .next()
        .expect("stem")
        .trim_end_matches(".conf");
    let new = if bad {
        format!("{stem}+0-3.conf")
    } else {
        format!("{stem}.conf")
    };
    let dir = e.sr.join("boot/loader/entries");
    std::fs::rename(dir.join(file), dir.join(new)).expect("rename entry");
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn an_etc_edit_made_after_the_stage_is_in_the_finalized_deployment() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let d1 = status(&e.sr)["deployments"][0].clone();
    let entries_before = entry_files(&e);
    let v2 = commit_version(&e.build, &e.trees, 2, true);
    let out = admin_ok(&e.sr, &["upgrade", "--stage", "--from", s(&e.build)]);
    let staged = out.trim().to_string();
    // Staged: checked out, kernel copied, no entry; the default unchanged.
    let st = status(&e.sr);
    assert_eq!(st["deployments"].as_array().expect("d").len(), 1);
    assert_eq!(st["deployments"][0]["commit"], d1["commit"]);
    assert_eq!(st["staged"].as_array().expect("staged").len(), 1);
    assert_eq!(st["staged"][0]["commit"], v2.as_str());
    assert_eq!(st["staged"][0]["version"], "2");
    assert!(st["staged"][0]["staged_at"].as_i64().expect("time") > 0);
    assert_eq!(st["staged"][0]["problem"], Value::Null);
    assert_eq!(name(&st["staged"][0]), staged);
    assert_eq!(entry_files(&e), entries_before, "no entry written");
    let text = admin_ok(&e.sr, &["status"]);
    assert!(text.contains(&format!("staged {staged}")), "{text}");
    assert!(e
        .sr
        .join("slate/deploy")
        .join(&staged)
        .join("usr/bin/tool")
        .is_file());
    // Staging the same commit again: nothing to do.
    let again = admin(&e.sr, &["upgrade", "--stage", "--from", s(&e.build)]);
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is staged already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // cleanup keeps a complete stage (its kernel too).
    admin_ok(&e.sr, &["cleanup"]);
    assert_eq!(status(&e.sr)["staged"][0]["problem"], Value::Null);

    // The machine changes /etc after the stage.
    let etc = deployment_dir(&e, &d1).join("etc");
    std::fs::write(etc.join("motd"), "edited after the stage\n").expect("motd");
    std::fs::write(etc.join("conf"), "setting=local\n").expect("conf");

    let out = admin(&e.sr, &["finalize-staged"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), staged);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("conflict: /etc/conf"), "{err}");
    let st = status(&e.sr);
    assert_eq!(st["staged"], serde_json::json!([]));
    assert_eq!(name(&st["deployments"][0]), staged);
    assert_eq!(st["deployments"][0]["entry_state"], "pending");
    assert_eq!(st["deployments"][0]["kargs"], serde_json::json!([]));
    let new_etc = deployment_dir(&e, &st["deployments"][0]).join("etc");
    let read = |p: &str| std::fs::read_to_string(new_etc.join(p)).expect(p);
    assert_eq!(read("motd"), "edited after the stage\n");
    assert_eq!(read("conf"), "setting=local\n");
    assert_eq!(read("conf.slate-new"), "setting=2\n");
    assert_eq!(read("image-new"), "added by the image\n");
    assert!(!deployment_dir(&e, &st["deployments"][0])
        .join(".finalize")
        .exists());
    assert_eq!(crash::boot_loader_default(&e.sr), staged);
    // Nothing is staged any more.
    let out = admin_ok(&e.sr, &["finalize-staged", "--json"]);
    let rep: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(rep["finalized"], serde_json::json!([]));
    fsck_clean(&e);
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn a_second_stage_replaces_the_first_and_unstage_drops_it() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    commit_version(&e.build, &e.trees, 2, true);
    let first = admin_ok(
        &e.sr,
        &["deploy", "--stage", "--from", s(&e.build), "os/main"],
    );
    let first = first.trim().to_string();
    let v3 = commit_version(&e.build, &e.trees, 3, true);
    let second = admin_ok(
        &e.sr,
        &["deploy", "--stage", "--from", s(&e.build), "os/main"],
    );
    let second = second.trim().to_string();
    assert_ne!(first, second);
    let st = status(&e.sr);
    assert_eq!(st["staged"].as_array().expect("staged").len(), 1);
    assert_eq!(st["staged"][0]["commit"], v3.as_str());
    assert!(!e.sr.join("slate/deploy").join(&first).exists());
    assert!(!e.sr.join(format!("slate/deploy/{first}.toml")).exists());
    let refs = ok(&repo(&e), &["refs", "--repo", s(&repo(&e))]);
    assert!(!refs.contains(&format!("deploy/{first}")), "{refs}");
    assert!(refs.contains(&format!("deploy/{second}")), "{refs}");

    // A rollback meanwhile: the stage would override it, and says so.
    let out = admin(&e.sr, &["set-default", "0"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("becomes the default at shutdown"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // unstage: the tree, record and ref go; the default is untouched.
    let before = crash::boot_loader_default(&e.sr);
    let out = admin_ok(&e.sr, &["unstage", "--os", "test"]);
    assert_eq!(out.trim(), second);
    assert_eq!(status(&e.sr)["staged"], serde_json::json!([]));
    assert!(!e.sr.join("slate/deploy").join(&second).exists());
    assert_eq!(crash::boot_loader_default(&e.sr), before);
    let err = admin_fails(&e.sr, &["unstage"]);
    assert!(err.contains("nothing staged for OS test"), "{err}");
    let err = admin_fails(&e.sr, &["finalize-staged", "--os", "test"]);
    assert!(err.contains("nothing staged for OS test"), "{err}");
    let out = admin(&e.sr, &["finalize-staged"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing staged"));

    // A plain deploy replaces what was staged.
    admin_ok(
        &e.sr,
        &["deploy", "--stage", "--from", s(&e.build), "os/main"],
    );
    let out = admin(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("dropped the staged deployment"));
    assert_eq!(status(&e.sr)["staged"], serde_json::json!([]));
    fsck_clean(&e);
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn at_boot_a_complete_stage_is_kept_and_an_incomplete_one_dropped() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    commit_version(&e.build, &e.trees, 2, true);
    let staged = admin_ok(&e.sr, &["upgrade", "--stage", "--from", s(&e.build)]);
    let staged = staged.trim().to_string();
    // The machine was not shut down cleanly: the unit's start finds it.
    let out = admin(&e.sr, &["finalize-staged", "--boot"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{staged} (")) && err.contains("kept"),
        "{err}"
    );
    let st = status(&e.sr);
    assert!(st["staged"][0]["kept_at_boot"].as_i64().is_some());
    let text = admin_ok(&e.sr, &["status"]);
    assert!(text.contains("did not finalize it"), "{text}");
    // Its tree damaged: dropped at the next boot, the default untouched.
    let before = crash::boot_loader_default(&e.sr);
    std::fs::remove_dir_all(e.sr.join("slate/deploy").join(&staged).join("usr")).expect("rm usr");
    assert!(status(&e.sr)["staged"][0]["problem"].is_string());
    let out = admin_ok(&e.sr, &["finalize-staged", "--boot", "--json"]);
    let checks: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(checks[0]["action"], "dropped");
    assert_eq!(checks[0]["deployment"], staged.as_str());
    assert_eq!(status(&e.sr)["staged"], serde_json::json!([]));
    assert_eq!(crash::boot_loader_default(&e.sr), before);
    fsck_clean(&e);
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn upgrade_waits_for_a_blessed_boot_and_skips_a_commit_that_went_bad() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let d1 = name(&status(&e.sr)["deployments"][0]);
    let v2 = commit_version(&e.build, &e.trees, 2, true);
    // Booted, not blessed yet: no upgrade from it, nothing pulled.
    let out = admin_booted(&e, &d1, &["upgrade", "--from", s(&e.build)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not blessed yet"), "{err}");
    assert_eq!(status(&e.sr)["deployments"].as_array().expect("d").len(), 1);
    // Blessed by systemd-bless-boot: the upgrade goes on.
    set_entry(&e, &d1, false);
    let out = admin_booted(&e, &d1, &["upgrade", "--from", s(&e.build)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d2 = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // The new one ran out of tries; the machine booted the old one again.
    set_entry(&e, &d2, true);
    let out = admin_booted(&e, &d1, &["upgrade", "--from", s(&e.build)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{v2} (2) went bad on this machine on "))
            && err.contains("; waiting for a newer one"),
        "{err}"
    );
    // DATE: when this upgrade found it bad.
    let date = err
        .split(" went bad on this machine on ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .expect("a date");
    let year = date.get(..4).expect("a year");
    assert!(
        year.bytes().all(|b| b.is_ascii_digit()) && year >= "2024" && date.get(4..5) == Some("-"),
        "{date}"
    );
    let before = status(&e.sr);
    let out = admin_booted(
        &e,
        &d1,
        &["upgrade", "--stage", "--json", "--from", s(&e.build)],
    );
    assert!(out.status.success());
    let j: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["upgraded"], false);
    assert_eq!(j["bad"]["commit"], v2.as_str());
    assert_eq!(j["bad"]["deployment"], d2.as_str());
    let after = status(&e.sr);
    assert_eq!(after["deployments"], before["deployments"]);
    assert_eq!(after["staged"], serde_json::json!([]));
    assert_eq!(after["bad_commits"][0]["commit"], v2.as_str());
    assert_eq!(after["bad_commits"][0]["os"], "test");
    assert!(e.sr.join("slate/state/test/bad-commits.toml").is_file());
    let text = admin_ok(&e.sr, &["status"]);
    assert!(text.contains("bad commit of test"), "{text}");
    // Booted into the bad one (chosen by hand): no upgrade from it.
    let out = admin_booted(&e, &d2, &["upgrade", "--from", s(&e.build)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is bad"));
    // A newer commit is published: the upgrade goes on.
    let v3 = commit_version(&e.build, &e.trees, 3, true);
    let out = admin_booted(&e, &d1, &["upgrade", "--from", s(&e.build)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status(&e.sr)["deployments"][0]["commit"], v3.as_str());
    // An explicit deploy of the bad commit still may.
    admin_ok(&e.sr, &["deploy", &v2]);
    assert_eq!(status(&e.sr)["deployments"][0]["commit"], v2.as_str());
    fsck_clean(&e);
}

#[test]
#[cfg_attr(
    not(test_have = "systemd-analyze"),
    ignore = "needs systemd-analyze (systemd) to check the unit"
)]
fn the_finalize_unit_is_one_systemd_accepts() {
    if !crate::common::have("systemd-analyze") {
        return skip("systemd-analyze is not installed: the unit is not checked");
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../dist/systemd/slate-finalize-staged.service");
    let text = std::fs::read_to_string(&src).expect("the unit");
    assert!(text.contains("ExecStop=/usr/bin/slate admin finalize-staged\n"));
    assert!(text.contains("ExecStart=-/usr/bin/slate admin finalize-staged --boot\n"));
    // As in an image, with this build of slate where the image has its own
    // (systemd-analyze checks that the command is there).
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("slate-finalize-staged.service");
    let bin = slate_bin();
    std::fs::write(&unit, text.replace("/usr/bin/slate", s(&bin))).expect("write");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", s(&unit)])
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
    // The check can fail: an unknown key is reported.
    let bad = dir.path().join("bad.service");
    std::fs::write(&bad, text.replace("/usr/bin/slate", s(&bin)) + "Bogus=1\n").expect("write");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", s(&bad)])
        .output()
        .expect("systemd-analyze");
    assert!(!String::from_utf8_lossy(&out.stderr).trim().is_empty());
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn a_hostile_staged_record_or_bad_commit_list_is_refused() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    commit_version(&e.build, &e.trees, 2, true);
    let staged = admin_ok(&e.sr, &["upgrade", "--stage", "--from", s(&e.build)]);
    let staged = staged.trim().to_string();
    // A kernel path leading out of the OS's kernel folder.
    let rec = e.sr.join(format!("slate/deploy/{staged}.toml"));
    let text = std::fs::read_to_string(&rec).expect("record");
    let (head, tail) = text.split_once("linux = ").expect("a linux line");
    let rest = tail.split_once('\n').expect("line end").1;
    std::fs::write(
        &rec,
        format!("{head}linux = \"/slate/test/../../x/linux\"\n{rest}"),
    )
    .expect("write");
    let st = status(&e.sr);
    let problem = st["staged"][0]["problem"].as_str().expect("a problem");
    assert!(problem.contains("not one Slate makes"), "{problem}");
    let before = crash::boot_loader_default(&e.sr);
    let out = admin(&e.sr, &["finalize-staged", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rep["dropped"][0]["deployment"], staged.as_str());
    assert_eq!(rep["finalized"], serde_json::json!([]));
    assert_eq!(crash::boot_loader_default(&e.sr), before);
    assert!(!e.sr.join("slate/deploy").join(&staged).exists());

    // A list of bad commits that is not one: refused, naming the file.
    let bad = e.sr.join("slate/state/test/bad-commits.toml");
    std::fs::write(
        &bad,
        "[[bad]]\ncommit = \"../../etc\"\ndeployment = \"x\"\nsince = 1\n",
    )
    .expect("write");
    let err = admin_fails(&e.sr, &["status"]);
    assert!(
        err.contains("bad-commits.toml") && err.contains("not a commit id"),
        "{err}"
    );
    // A deploy is refused before anything is written.
    let before = crash::boot_loader_default(&e.sr);
    let deploy_dir = std::fs::read_dir(e.sr.join("slate/deploy/test"))
        .expect("deploy dir")
        .count();
    let err = admin_fails(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    assert!(err.contains("not a commit id"), "{err}");
    assert_eq!(crash::boot_loader_default(&e.sr), before);
    assert_eq!(
        std::fs::read_dir(e.sr.join("slate/deploy/test"))
            .expect("deploy dir")
            .count(),
        deploy_dir
    );
    std::fs::write(&bad, vec![b'#'; 300 << 10]).expect("write");
    let err = admin_fails(&e.sr, &["status"]);
    assert!(
        err.contains("more than a list of bad commits holds"),
        "{err}"
    );
}
