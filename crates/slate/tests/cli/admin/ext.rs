//! `slate admin ext`: system extensions that go with deployments: added
//! to the default, switched with the OS by an upgrade, refused when none
//! fits the new image (or left out), brought back by a rollback, linked
//! by prepare-root; `ext add` and the joint upgrade killed at random.

use super::crash::{assert_fsck, boot_loader_default, moments, run_killed};
use super::*;

/// OS version `v` on `os/main` of the build repository, its os-release
/// with `ID=slate-test` (what an extension's release names).
fn os_version(e: &Env, v: u32) -> String {
    let t = e.trees.join(format!("os{v}"));
    os_tree(&t, v, true);
    write(
        &t,
        "usr/lib/os-release",
        &format!("ID=slate-test\nPRETTY_NAME=\"Slate Test {v}\"\nVERSION_ID={v}\n"),
    );
    let b = s(&e.build);
    ok(
        &e.build,
        &[
            "commit",
            "--repo",
            b,
            "-b",
            "os/main",
            "-s",
            &format!("v{v}"),
            s(&t),
        ],
    );
    ok(&e.build, &["rev-parse", "--repo", b, "os/main"])
        .trim()
        .to_string()
}

/// The extension `debug` built for OS version `v` (build `n`), composed
/// over `os/main` (which must be version `v`) onto `ext/debug`.
fn ext_version(e: &Env, n: u32) -> String {
    let dir = e.trees.join(format!("ext{n}"));
    write(&dir, "tool", &format!("#!/bin/sh\necho ext-tool {n}\n"));
    write(
        &dir,
        "ext.toml",
        &format!(
            "[image]\nname = \"debug\"\nversion = \"{n}\"\nvendor = \"example\"\n\
             arch = \"x86-64\"\nkind = \"sysext\"\nbase = \"os/main\"\nref = \"ext/debug\"\n\n\
             [[input]]\ntype = \"files\"\nsource = \"tool\"\ntarget = \"/usr/bin/ext-tool\"\n"
        ),
    );
    let o = Command::new(slate_bin())
        .env("SLATE_REPO", &e.build)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("SLATE_CACHE_DIR", e.trees.join("cache"))
        .args(["compose", "--json", s(&dir.join("ext.toml"))])
        .output()
        .expect("compose");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["name"], format!("ext:example:debug:x86-64:{n}"));
    v["id"].as_str().expect("id").to_string()
}

fn exts(d: &Value) -> Vec<(String, String)> {
    d["extensions"]
        .as_array()
        .expect("extensions")
        .iter()
        .map(|x| {
            (
                x["name"].as_str().expect("name").to_string(),
                x["commit"].as_str().expect("commit").to_string(),
            )
        })
        .collect()
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn an_extension_is_switched_with_the_os_and_rolled_back_with_it() {
    let Some(e) = setup("persistent") else { return };
    os_version(&e, 1);
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let x1 = ext_version(&e, 1);
    let out = admin_ok(&e.sr, &["ext", "add", "--from", s(&e.build), "ext/debug"]);
    assert_eq!(out.trim(), x1);
    let st = status(&e.sr);
    let d0 = &st["deployments"][0];
    assert_eq!(exts(d0), [("debug".to_string(), x1.clone())]);
    assert_eq!(d0["extensions"][0]["origin"], "ext/debug");
    let checkout = e.sr.join("slate/ext/test").join(&x1);
    assert_eq!(
        std::fs::read_to_string(checkout.join("usr/bin/ext-tool")).expect("checked out"),
        "#!/bin/sh\necho ext-tool 1\n"
    );
    let text = admin_ok(&e.sr, &["status"]);
    assert!(
        text.contains(&format!("ext      debug {} 1", &x1[..12])),
        "{text}"
    );
    let list = admin_ok(&e.sr, &["ext", "list"]);
    assert!(
        list.contains("(default)") && list.contains("debug"),
        "{list}"
    );

    // An upgrade to version 2 takes the extension's build for 2.
    let c2 = os_version(&e, 2);
    let x2 = ext_version(&e, 2);
    admin_ok(&e.sr, &["upgrade", "--from", s(&e.build)]);
    let st = status(&e.sr);
    let d = st["deployments"].as_array().expect("deployments");
    assert_eq!(d[0]["commit"], c2.as_str());
    assert_eq!(exts(&d[0]), [("debug".to_string(), x2.clone())]);
    assert_eq!(exts(&d[1]), [("debug".to_string(), x1.clone())]);
    assert!(e
        .sr
        .join("slate/ext/test")
        .join(&x2)
        .join("usr/bin/ext-tool")
        .is_file());

    // A rollback boots version 1 with its build.
    admin_ok(&e.sr, &["rollback"]);
    let st = status(&e.sr);
    assert_ne!(st["deployments"][0]["commit"], c2.as_str());
    assert_eq!(
        exts(&st["deployments"][0]),
        [("debug".to_string(), x1.clone())]
    );
    // prepare-root links the booted deployment's extensions for
    // systemd-sysext.
    let booted = format!(
        "slate=/slate/deploy/test/{}",
        st["deployments"][0]["id"].as_str().expect("id")
    );
    let cmdline = e._dir.path().join("cmdline");
    std::fs::write(&cmdline, &booted).expect("cmdline");
    let target = e._dir.path().join("root");
    let o = admin(
        &e.sr,
        &[
            "--cmdline",
            s(&cmdline),
            "prepare-root",
            "--target",
            s(&target),
            "--json",
        ],
    );
    if o.status.success() {
        let v: Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["extensions"], serde_json::json!(["debug"]));
        let link = std::fs::read_link(target.join("run/extensions/debug")).expect("a link");
        assert_eq!(link, Path::new("/sysroot/slate/ext/test").join(&x1));
        let _ = Command::new("umount").arg("-R").arg(&target).status();
    } else {
        eprintln!(
            "note: prepare-root could not mount here: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // Removed from the default; the older deployment keeps its own, and
    // its checkout with it.
    admin_ok(&e.sr, &["ext", "remove", "debug"]);
    let st = status(&e.sr);
    assert!(exts(&st["deployments"][0]).is_empty());
    assert_eq!(
        exts(&st["deployments"][1]),
        [("debug".to_string(), x2.clone())]
    );
    assert!(!e.sr.join("slate/ext/test").join(&x1).exists());
    assert!(e.sr.join("slate/ext/test").join(&x2).exists());
    assert!(admin_fails(&e.sr, &["ext", "remove", "debug"]).contains("no extension"));
    fsck_clean(&e);
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn an_extension_without_a_build_for_the_new_image_blocks_the_upgrade() {
    let Some(e) = setup("persistent") else { return };
    os_version(&e, 1);
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let x1 = ext_version(&e, 1);
    admin_ok(&e.sr, &["ext", "add", "--from", s(&e.build), "ext/debug"]);
    let before = status(&e.sr);
    os_version(&e, 2);
    let err = admin_fails(&e.sr, &["upgrade", "--from", s(&e.build)]);
    assert!(
        err.contains("debug") && err.contains("VERSION_ID=1") && err.contains("nothing changed"),
        "{err}"
    );
    assert_eq!(
        status(&e.sr)["deployments"],
        before["deployments"],
        "a refused upgrade changed the deployments"
    );
    // An extension that does not fit is not added either.
    let x_other = {
        let t = e.trees.join("other");
        write(&t, "usr/bin/other", "x\n");
        write(
            &t,
            "usr/lib/extension-release.d/extension-release.other",
            "ID=slate-test\nVERSION_ID=9\n",
        );
        let b = s(&e.build);
        ok(
            &e.build,
            &[
                "commit",
                "--repo",
                b,
                "-b",
                "ext/other",
                "-s",
                "other",
                s(&t),
            ],
        );
        "ext/other"
    };
    let err = admin_fails(&e.sr, &["ext", "add", "--from", s(&e.build), x_other]);
    assert!(
        err.contains("does not fit") && err.contains("VERSION_ID=9"),
        "{err}"
    );
    // A commit that is not an extension is refused.
    let err = admin_fails(&e.sr, &["ext", "add", "--from", s(&e.build), "os/main"]);
    assert!(err.contains("not a system extension"), "{err}");

    admin_ok(
        &e.sr,
        &["upgrade", "--drop-incompatible", "--from", s(&e.build)],
    );
    let st = status(&e.sr);
    assert!(exts(&st["deployments"][0]).is_empty());
    assert_eq!(exts(&st["deployments"][1]), [("debug".to_string(), x1)]);
    fsck_clean(&e);
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn ext_add_and_the_joint_upgrade_killed_at_any_moment() {
    let Some(e) = setup("persistent") else { return };
    os_version(&e, 1);
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    ext_version(&e, 1);
    let r = repo(&e);
    let pull = |what: &str| {
        ok(&r, &["pull-local", "--repo", s(&r), s(&e.build), what]);
    };
    pull("ext/debug");
    pull("os/main");
    // Consistent: every extension a record names is checked out whole,
    // and the default boots.
    let consistent = |e: &Env| {
        let st = status(&e.sr);
        for d in st["deployments"].as_array().expect("deployments") {
            for (name, commit) in exts(d) {
                let co = e.sr.join("slate/ext/test").join(&commit);
                assert!(
                    co.join("usr/bin/ext-tool").is_file()
                        && co
                            .join(format!(
                                "usr/lib/extension-release.d/extension-release.{name}"
                            ))
                            .is_file(),
                    "{} names extension {name} {commit}, whose checkout is incomplete",
                    d["id"]
                );
            }
        }
        boot_loader_default(&e.sr);
        assert_fsck(&e.sr);
    };
    let started = std::time::Instant::now();
    admin_ok(&e.sr, &["ext", "add", "ext/debug"]);
    let took = started.elapsed().as_micros() as u64;
    let mut next = moments(0x9e37_79b9_7f4a_7c15);
    let mut killed = 0;
    for _ in 0..16 {
        admin_ok(&e.sr, &["ext", "remove", "debug"]);
        let (was_killed, out) = run_killed(
            &e.sr,
            &["ext", "add", "ext/debug"],
            next() % (took * 5 / 4 + 1),
        );
        if was_killed {
            killed += 1;
        } else {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        consistent(&e);
        admin_ok(&e.sr, &["cleanup"]);
        consistent(&e);
        // Added again after a kill, it is whole.
        admin_ok(&e.sr, &["ext", "add", "ext/debug"]);
        consistent(&e);
    }
    // The joint upgrade: new OS and extension builds each time; how long
    // one takes when let run first.
    os_version(&e, 2);
    ext_version(&e, 2);
    pull("ext/debug");
    pull("os/main");
    let started = std::time::Instant::now();
    admin_ok(&e.sr, &["upgrade"]);
    let mut took = started.elapsed().as_micros() as u64;
    let mut killed_up = 0;
    for v in 3..15u32 {
        os_version(&e, v);
        ext_version(&e, v);
        pull("ext/debug");
        pull("os/main");
        let before = boot_loader_default(&e.sr);
        let names: Vec<String> = status(&e.sr)["deployments"]
            .as_array()
            .expect("d")
            .iter()
            .map(|d| d["id"].as_str().expect("id").to_string())
            .collect();
        let started = std::time::Instant::now();
        let (was_killed, out) = run_killed(&e.sr, &["upgrade"], next() % (took * 5 / 4 + 1));
        if was_killed {
            killed_up += 1;
            took = took * 11 / 10;
        } else {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            took = started.elapsed().as_micros() as u64;
        }
        let after = boot_loader_default(&e.sr);
        if after != before {
            // The new default has the new extension build with it.
            assert!(!names.iter().any(|n| after.ends_with(n.as_str())));
            let st = status(&e.sr);
            let x = ok(&r, &["rev-parse", "--repo", s(&r), "ext/debug"]);
            assert_eq!(
                exts(&st["deployments"][0]),
                [("debug".to_string(), x.trim().to_string())]
            );
        }
        consistent(&e);
        admin_ok(&e.sr, &["cleanup"]);
        consistent(&e);
    }
    eprintln!("{killed} of 16 ext add and {killed_up} of 12 upgrades killed midway");
    assert!(
        killed >= 3 && killed_up >= 3,
        "too few kills: the test proved little"
    );
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn a_staged_upgrade_takes_its_extensions_to_the_finalize() {
    let Some(e) = setup("persistent") else { return };
    os_version(&e, 1);
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let x1 = ext_version(&e, 1);
    admin_ok(&e.sr, &["ext", "add", "--from", s(&e.build), "ext/debug"]);
    os_version(&e, 2);
    let x2 = ext_version(&e, 2);
    admin_ok(&e.sr, &["upgrade", "--stage", "--from", s(&e.build)]);
    let listed: Value =
        serde_json::from_str(&admin_ok(&e.sr, &["ext", "list", "--json"])).expect("json");
    let staged: Vec<&Value> = listed
        .as_array()
        .expect("list")
        .iter()
        .filter(|d| d["staged"] == true)
        .collect();
    assert_eq!(staged.len(), 1, "{listed}");
    assert_eq!(exts(staged[0]), [("debug".to_string(), x2.clone())]);
    // A removal reaches the staged deployment too; an add brings it back
    // to both (the build that fits each: the one named must fit both).
    admin_ok(&e.sr, &["ext", "remove", "debug"]);
    let listed: Value =
        serde_json::from_str(&admin_ok(&e.sr, &["ext", "list", "--json"])).expect("json");
    for d in listed.as_array().expect("list") {
        assert!(exts(d).is_empty(), "{listed}");
    }
    // Each build goes where it fits: version 2's to the staged one only,
    // version 1's to the default only (with a warning naming the other).
    let o = admin(&e.sr, &["ext", "add", "--json", &x2]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let added: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(added["deployments"].as_array().map(Vec::len), Some(1));
    assert!(added["not_fitting"][0]
        .as_str()
        .is_some_and(|w| w.contains("VERSION_ID=2")));
    let o = admin(&e.sr, &["ext", "add", &x1]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning: not added to"));
    let st = status(&e.sr);
    assert_eq!(exts(&st["deployments"][0]), [("debug".to_string(), x1)]);
    // The finalize makes the staged deployment the default, with its own.
    admin_ok(&e.sr, &["finalize-staged"]);
    let st = status(&e.sr);
    assert_eq!(st["staged"], serde_json::json!([]));
    assert_eq!(
        exts(&st["deployments"][0]),
        [("debug".to_string(), x2.clone())]
    );
    assert!(e.sr.join("slate/ext/test").join(&x2).is_dir());
    // Another OS version nothing fits: refused, nothing changed.
    let before = status(&e.sr);
    let t = e.trees.join("v9");
    write(&t, "usr/bin/x", "x\n");
    write(
        &t,
        "usr/lib/extension-release.d/extension-release.debug",
        "ID=slate-test\nVERSION_ID=9\n",
    );
    ok(
        &e.build,
        &[
            "commit",
            "--repo",
            s(&e.build),
            "-b",
            "ext/nine",
            "-s",
            "9",
            s(&t),
        ],
    );
    let err = admin_fails(&e.sr, &["ext", "add", "--from", s(&e.build), "ext/nine"]);
    assert!(
        err.contains("does not fit") && err.contains("nothing changed"),
        "{err}"
    );
    assert_eq!(status(&e.sr)["deployments"], before["deployments"]);
    fsck_clean(&e);
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn a_hostile_extension_entry_in_a_record_becomes_no_path() {
    let Some(e) = setup("persistent") else { return };
    os_version(&e, 1);
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    ext_version(&e, 1);
    admin_ok(&e.sr, &["ext", "add", "--from", s(&e.build), "ext/debug"]);
    let st = status(&e.sr);
    let id = st["deployments"][0]["id"].as_str().expect("id").to_string();
    let record = e.sr.join("slate/deploy/test").join(format!("{id}.toml"));
    let text = std::fs::read_to_string(&record).expect("record");
    std::fs::write(
        &record,
        text.replace("name = \"debug\"", "name = \"../../../evil\""),
    )
    .expect("write");
    // Read and shown, never used as a path.
    let list = admin_ok(&e.sr, &["ext", "list"]);
    assert!(list.contains("../../../evil"), "{list}");
    os_version(&e, 2);
    let err = admin_fails(&e.sr, &["upgrade", "--from", s(&e.build)]);
    assert!(
        err.contains("not an extension name") && err.contains(&id),
        "{err}"
    );
    let cmdline = e._dir.path().join("cmdline");
    std::fs::write(&cmdline, format!("slate=/slate/deploy/test/{id}")).expect("cmdline");
    let target = e._dir.path().join("root");
    let o = admin(
        &e.sr,
        &[
            "--cmdline",
            s(&cmdline),
            "prepare-root",
            "--target",
            s(&target),
            "--json",
        ],
    );
    if o.status.success() {
        let v: Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["extensions"], serde_json::json!([]));
        assert_eq!(
            v["extensions_missing"],
            serde_json::json!(["../../../evil"])
        );
        let _ = Command::new("umount").arg("-R").arg(&target).status();
    }
    assert!(!e._dir.path().join("evil").exists());
    assert!(!target.join("evil").exists());
}
