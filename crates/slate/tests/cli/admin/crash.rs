//! Deploy, rollback, undeploy and cleanup killed at random moments: the
//! boot loader's default is always the old deployment or the new one.

use super::*;

/// The default entry as systemd-boot picks it, with everything it names
/// present and complete; returns the deployment's `OS/ID`.
pub(crate) fn boot_loader_default(sr: &Path) -> String {
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
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
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

/// A generator of kill moments (xorshift: the same moments every run).
pub(crate) fn moments(seed: u64) -> impl FnMut() -> u64 {
    let mut rng = seed;
    move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    }
}

/// Run `slate admin --sysroot SR ARGS`, killed after `delay` µs if it is
/// still running; returns whether it was killed, and its output.
pub(crate) fn run_killed(sr: &Path, args: &[&str], delay: u64) -> (bool, Output) {
    let mut child = Command::new(slate_bin())
        .args(["admin", "--sysroot", s(sr)])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_micros(delay));
    let was_killed = child.try_wait().expect("wait").is_none();
    if was_killed {
        let _ = child.kill();
    }
    (was_killed, child.wait_with_output().expect("wait"))
}

fn deployment_names(sr: &Path) -> Vec<String> {
    status(sr)["deployments"]
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
        .collect()
}

pub(crate) fn assert_fsck(sr: &Path) {
    let fsck = slate_fsck(&sr.join("slate/repo"));
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn factory_reset_killed_at_any_moment_leaves_every_deployment_whole() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    commit_version(&e.build, &e.trees, 2, true);
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let deps: Vec<PathBuf> = deployment_names(&e.sr)
        .iter()
        .map(|n| e.sr.join("slate/deploy").join(n))
        .collect();
    let var = e.sr.join("slate/state/test/var");
    let mut next = moments(0x9e37_79b9_7f4a_7c15);
    let kinds: [&[&str]; 3] = [&["--now"], &["--var", "--now"], &["--etc", "--now"]];
    let mut took = 20_000u64;
    let mut killed = 0;
    let mut finished = 0;
    let runs = 40;
    for i in 0..runs {
        // What a reset takes away: local changes to /etc, a /var full of
        // files, a machine id.
        for d in &deps {
            std::fs::write(d.join("etc/motd"), format!("changed {i}\n")).expect("motd");
            write(d, "etc/local/added", "local\n");
        }
        for n in 0..200 {
            write(&var, &format!("lib/app/d{}/f{n}", n % 10), "collected\n");
        }
        std::fs::write(
            e.sr.join("slate/state/test/machine-id"),
            "0123456789abcdef0123456789abcdef\n",
        )
        .expect("id");
        let before = boot_loader_default(&e.sr);
        let args: Vec<&str> = std::iter::once("factory-reset")
            .chain(kinds[i % kinds.len()].iter().copied())
            .collect();
        // Kills aimed over the whole run of a reset, and a little past it.
        let (was_killed, out) = run_killed(&e.sr, &args, next() % (took * 5 / 4 + 1));
        if was_killed {
            killed += 1;
        } else {
            finished += 1;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The boot loader's default is untouched, every deployment has a
        // whole /etc (the machine's or the image's), and a reset cut
        // short is done again by the next.
        assert_eq!(boot_loader_default(&e.sr), before);
        for d in &deps {
            let motd = std::fs::read_to_string(d.join("etc/motd")).expect("a whole /etc");
            assert!(
                motd == "welcome\n" || motd == format!("changed {i}\n"),
                "{motd}"
            );
            assert!(d.join("etc/conf").is_file(), "a whole /etc");
        }
        let started = std::time::Instant::now();
        admin_ok(&e.sr, &["factory-reset", "--now"]);
        took = started.elapsed().as_micros() as u64;
        for d in &deps {
            assert_eq!(
                std::fs::read_to_string(d.join("etc/motd")).expect("motd"),
                "welcome\n"
            );
            assert!(!d.join("etc/local").exists());
            assert!(!d.join(".etc-factory").exists());
        }
        assert_eq!(std::fs::read_dir(&var).expect("var").count(), 0);
        assert!(!e.sr.join("slate/state/test/machine-id").exists());
        admin_ok(&e.sr, &["cleanup"]);
        assert_fsck(&e.sr);
    }
    eprintln!("{killed} of {runs} resets killed midway");
    assert!(
        killed >= 8 && finished >= 2,
        "{killed} resets were killed, {finished} finished: the test proved little"
    );
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn upgrade_from_a_served_repository_killed_at_any_moment() {
    let Some(e) = setup("persistent") else { return };
    let pubrepo = e._dir.path().join("pub");
    let key = e._dir.path().join("key.pem");
    ok(
        &pubrepo,
        &["init", "--repo", s(&pubrepo), "--mode", "archive"],
    );
    ok(&pubrepo, &["keygen", s(&key)]);
    super::remote::publish(&e, &pubrepo, &key, true);
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
    admin_ok(&e.sr, &["deploy", "origin:os/main"]);
    // How long an upgrade takes when let run: kills are aimed inside it.
    commit_version(&e.build, &e.trees, 2, true);
    super::remote::publish(&e, &pubrepo, &key, true);
    let started = std::time::Instant::now();
    admin_ok(&e.sr, &["upgrade"]);
    let mut took = started.elapsed().as_micros() as u64;
    let mut next = moments(0x2545_f491_4f6c_dd1d);
    let mut killed = 0;
    let runs = 24;
    for i in 0..runs {
        // A new version published (a killed upgrade's is followed by the
        // next one's).
        commit_version(&e.build, &e.trees, 3 + i as u32, true);
        super::remote::publish(&e, &pubrepo, &key, true);
        let before = boot_loader_default(&e.sr);
        let order = deployment_names(&e.sr);
        let started = std::time::Instant::now();
        let (was_killed, out) = run_killed(&e.sr, &["upgrade"], next() % (took * 5 / 4 + 1));
        let after = boot_loader_default(&e.sr);
        let allowed: Vec<String> = if was_killed {
            let mut v = vec![before.clone()];
            v.extend(
                deployment_names(&e.sr)
                    .into_iter()
                    .filter(|n| !order.contains(n)),
            );
            v
        } else {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            took = started.elapsed().as_micros() as u64;
            vec![String::from_utf8_lossy(&out.stdout).trim().to_string()]
        };
        if was_killed {
            killed += 1;
            // On a machine slower now than when measured, aim later.
            took = took * 11 / 10;
        }
        assert!(
            allowed.contains(&after),
            "after upgrade (killed: {was_killed}), the default is {after}; allowed {allowed:?}"
        );
        admin_ok(&e.sr, &["cleanup"]);
        status(&e.sr);
        assert_fsck(&e.sr);
    }
    eprintln!("{killed} of {runs} upgrades killed midway");
    assert!(
        killed >= 6 && killed < runs,
        "{killed} of {runs} upgrades were killed: the test proved little"
    );
    // Once let run, the upgrade reaches the newest version.
    admin_ok(&e.sr, &["upgrade"]);
    let newest = ok(&e.build, &["rev-parse", "--repo", s(&e.build), "os/main"]);
    assert_eq!(status(&e.sr)["deployments"][0]["commit"], newest.trim());
}

/// `cleanup` finds nothing to remove.
fn assert_nothing_left(sr: &Path) {
    let rep: Value = serde_json::from_str(&admin_ok(sr, &["cleanup", "--json"])).expect("json");
    for (k, v) in rep.as_object().expect("a report") {
        assert_eq!(v, &serde_json::json!([]), "cleanup found {k}: {rep}");
    }
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn stage_and_finalize_killed_at_any_moment() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let r = repo(&e);
    let publish = |v: u32| {
        let c = commit_version(&e.build, &e.trees, v, true);
        ok(&r, &["pull-local", "--repo", s(&r), s(&e.build), "os/main"]);
        c
    };
    // How long each takes when let run: kills are aimed inside that.
    publish(2);
    let started = std::time::Instant::now();
    admin_ok(&e.sr, &["upgrade", "--stage"]);
    let mut took_stage = started.elapsed().as_micros() as u64;
    let started = std::time::Instant::now();
    admin_ok(&e.sr, &["finalize-staged"]);
    let mut took_finalize = started.elapsed().as_micros() as u64;
    let mut next = moments(0x5851_f42d_4c95_7f2d);
    let (mut killed_stage, mut killed_finalize) = (0, 0);
    let runs = 16;
    for i in 0..runs {
        let commit = publish(3 + i as u32);
        // Stage, killed at some moment: the default never changes, and
        // the stage run again completes.
        let before = boot_loader_default(&e.sr);
        let started = std::time::Instant::now();
        let (was_killed, out) = run_killed(
            &e.sr,
            &["upgrade", "--stage"],
            next() % (took_stage * 5 / 4 + 1),
        );
        if was_killed {
            killed_stage += 1;
            took_stage = took_stage * 11 / 10;
        } else {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            took_stage = started.elapsed().as_micros() as u64;
        }
        assert_eq!(
            boot_loader_default(&e.sr),
            before,
            "a stage changed the default"
        );
        status(&e.sr);
        // Run again, it completes and removes what the killed one left.
        admin_ok(&e.sr, &["upgrade", "--stage"]);
        assert_nothing_left(&e.sr);
        let st = status(&e.sr);
        assert_eq!(st["staged"].as_array().expect("staged").len(), 1, "{st}");
        assert_eq!(st["staged"][0]["commit"], commit.as_str());
        assert_eq!(st["staged"][0]["problem"], Value::Null);
        let staged = format!(
            "{}/{}",
            st["staged"][0]["os"].as_str().expect("os"),
            st["staged"][0]["id"].as_str().expect("id")
        );
        // The machine changes /etc, then shuts down: finalize, killed at
        // some moment, leaves the old default or the new one, whole; run
        // again it completes, the change carried over.
        let default_etc = e.sr.join("slate/deploy").join(&before).join("etc");
        std::fs::write(default_etc.join("motd"), format!("edit {i}\n")).expect("motd");
        let started = std::time::Instant::now();
        let (was_killed, out) = run_killed(
            &e.sr,
            &["finalize-staged"],
            next() % (took_finalize * 5 / 4 + 1),
        );
        if was_killed {
            killed_finalize += 1;
            took_finalize = took_finalize * 11 / 10;
        } else {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            took_finalize = started.elapsed().as_micros() as u64;
        }
        let after = boot_loader_default(&e.sr);
        assert!(
            after == before || after == staged,
            "after finalize (killed: {was_killed}) the default is {after}; allowed {before} or {staged}"
        );
        status(&e.sr);
        admin_ok(&e.sr, &["finalize-staged"]);
        assert_eq!(boot_loader_default(&e.sr), staged);
        let st = status(&e.sr);
        assert_eq!(st["staged"], serde_json::json!([]), "{st}");
        assert_eq!(st["deployments"][0]["commit"], commit.as_str());
        let new = e.sr.join("slate/deploy").join(&staged);
        assert_eq!(
            std::fs::read_to_string(new.join("etc/motd")).expect("motd"),
            format!("edit {i}\n")
        );
        assert!(!new.join(".finalize").exists());
        assert_nothing_left(&e.sr);
        assert_fsck(&e.sr);
    }
    eprintln!("{killed_stage} stages and {killed_finalize} finalizations of {runs} killed midway");
    assert!(
        killed_stage >= 4 && killed_finalize >= 4,
        "{killed_stage} stages and {killed_finalize} finalizations killed: the test proved little"
    );
}
