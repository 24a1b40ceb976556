//! Deploy, rollback, undeploy and cleanup killed at random moments: the
//! boot loader's default is always the old deployment or the new one.

use super::*;

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
