//! `slate sysusers`: the differential cases against systemd-sysusers 252
//! (every line type, field, ID rule, conflict, bad input and option), and
//! the checks that have no systemd counterpart (staying inside the root,
//! the plan as JSON).

use crate::common::{skip, slate_bin};
use crate::sysusers_diff::{can_run, case, compare, Case};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
# a comment\n\
\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
broken line without colons\n\
bad:x:notanumber:1::/:/bin/sh\n\
short:x:5\n\
sh2:x:6:7\n\
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n\
+::::::\n";
const GROUP: &str =
    "root:x:0:\ndaemon:x:1:\nadm:x:4:syslog,alice\nusers:x:100:\nalice:x:1000:\n+:::\n";
const SHADOW: &str = "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nalice:$6$x:19500:0:99999:7:::\nghost:!:1::::::\nold:!:5:1:2\nold2:!\nold3:!:1:2:3:4\n";
const GSHADOW: &str = "root:*::\ndaemon:*::\nadm:*::syslog,alice\nusers:*::\nalice:!::\n";

/// A root that already has the four databases (with odd lines).
fn populated(name: &'static str) -> Case {
    case(name)
        .file("etc/passwd", PASSWD)
        .file("etc/group", GROUP)
        .file("etc/shadow", SHADOW)
        .own("etc/shadow", 0, 42, 0o640)
        .file("etc/gshadow", GSHADOW)
        .own("etc/gshadow", 0, 42, 0o640)
}

fn line_types() -> Vec<Case> {
    vec![
        case("u g m r basics").conf(
            "a.conf",
            "g grp1 -\ng grp2 555\nu usr1 - \"User One\" /var/lib/usr1 /bin/sh\nu usr2 600\n\
             u usr3 601:555\nu usr4 -:grp2\nu usr5 602:grp1\nm usr1 grp2\nm usr9 newgroup\n",
        ),
        case("u with a path").dir("srv/owned").own("srv/owned", 4321, 4322, 0o755).conf(
            "a.conf",
            "r - 1-5000\nu fromfile /srv/owned\ng gfromfile /srv/owned\nu missing /srv/nope\n",
        ),
        case("u with a path outside the range")
            .dir("srv/owned")
            .own("srv/owned", 40000, 40000, 0o755)
            .conf("a.conf", "u fromfile /srv/owned\n"),
        case("g line GID reused as UID").conf("a.conf", "g shared 444\nu shared -\n"),
        case("UID taken by another group's GID").conf("a.conf", "g other 900\nu me 900\n"),
        case("u UID:GID with missing GID").conf("a.conf", "u strict 700:701\n"),
        case("u UID:groupname missing").conf("a.conf", "u lost 702:nosuchgroup\n"),
        // systemd 252.39: the group an earlier u line made for itself.
        case("u UID:groupname of an earlier u line's group")
            .conf("a.conf", "u foo -\nu bar 300:foo\nu own 301:own\n"),
        case("r ranges").conf("a.conf", "r - 500-502\nr - 800\nu a -\nu b -\nu c -\nu d -\nu e -\ng f -\n"),
        case("ranges exhausted").conf("a.conf", "r - 10-11\nu a -\nu b -\nu c -\n"),
        case("uid 0 root shell with bash").file("usr/bin/bash", "").link("bin", "usr/bin").conf("a.conf", "u root 0 \"Super User\" /root\n"),
        case("uid 0 root shell without bash").conf("a.conf", "u root 0 \"Super User\" /root\n"),
        case("gecos home shell quoting").conf(
            "a.conf",
            "u q1 - 'single quoted gecos' /home/q1 /bin/zsh\nu q2 - \"esc\\\"aped\" - -\nu q3 - - /srv/q3\n",
        ),
        case("specifiers")
            .file("etc/machine-id", "0123456789abcdef0123456789abcdef\n")
            .file("usr/lib/os-release", "ID=slatetest\nVERSION_ID=\"42\"\n")
            .conf("a.conf", "u sp_%o - \"id %m v%w %%\" /var/lib/%o%T\nu tmp - - %V\n"),
        case("duplicate and conflicting lines").conf(
            "a.conf",
            "u dup 650 \"Dup\"\nu dup 650 \"Dup\"\nu dup 651 \"Other\"\ng dupg 652\ng dupg 653\n",
        ),
        case("m lines add members sorted").conf("a.conf", "g team -\nm zed team\nm amy team\nm amy team\n"),
        case("many users, default range").conf(
            "a.conf",
            &(0..40).map(|i| format!("u svc{i} -\n")).collect::<String>(),
        ),
    ]
}

fn existing_databases() -> Vec<Case> {
    vec![
        populated("existing files kept and extended")
            .conf("a.conf", "u newsvc -\ng newgrp 1000\nu alice 1234\n"),
        populated("members into an existing group")
            .conf("a.conf", "m bob adm\nm alice adm\nm alice users\n"),
        populated("shadow entry without passwd entry").conf("a.conf", "u ghost -\n"),
        populated("requested UID taken").conf("a.conf", "u taken 1000\ng gtaken 1\n"),
        populated("nothing to do").conf("a.conf", "u root 0\ng adm 4\nu alice -\n"),
        case("modes and owners of the old files kept")
            .file("etc/passwd", "root:x:0:0::/root:/bin/sh\n")
            .own("etc/passwd", 0, 0, 0o600)
            .file("etc/group", "root:x:0:\n")
            .own("etc/group", 0, 7, 0o640)
            .conf("a.conf", "u kept -\n"),
        case("login.defs is ignored as in 252")
            .file("etc/login.defs", "SYS_UID_MIN 100\nSYS_UID_MAX 200\n")
            .conf("a.conf", "u x -\n"),
    ]
}

fn bad_input() -> Vec<Case> {
    let bad_lines = "x foo -\nuu foo -\nu\nu a b c d e f g\nu 'unterminated\nu 9abc -\n\
                     u aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa -\nu a01 01\nu a02 65535\nu a03 abc\nu a04 1:2x!\n\
                     r name 1-2\nr -\nr - 5-3\nm onlyuser\nm u1 9bad\ng g1 - gecos\nu a05 - bad:gecos\n\
                     u a06 - - relative/home\nu a07 - - /home - \nu a08 - - - sh\nu a09 %z\nm u2 g2 x\n\
                     u good -\n";
    vec![
        case("bad lines in a config directory are skipped").conf("bad.conf", bad_lines),
        case("bad lines in a CONFIG argument fail the run")
            .file("srv/bad.conf", bad_lines)
            .args(&["@ROOT@/srv/bad.conf"]),
        case("bad inline line fails the run").args(&["--inline", "u good -", "u 9bad -"]),
        case("missing CONFIG argument").args(&["nosuch.conf"]),
        case("no /etc in the root")
            .no_etc()
            .conf("a.conf", "u x -\n"),
        case("replace must be absolute").args(&["--replace=relative.conf", "--inline", "u x -"]),
        case("replace must end in .conf").args(&[
            "--replace=/etc/sysusers.d/x.txt",
            "--inline",
            "u x -",
        ]),
        case("replace needs arguments").args(&["--replace=/usr/lib/sysusers.d/a.conf"]),
    ]
}

fn command_line() -> Vec<Case> {
    let dirs = |c: Case| {
        c.conf("a.conf", "u from_lib_a -\n")
            .file("etc/sysusers.d/a.conf", "u from_etc_a -\n")
            .conf("b.conf", "u from_lib_b -\n")
            .link("etc/sysusers.d/b.conf", "/dev/null")
            .conf("c.conf", "u from_lib_c -\n")
            .file("run/sysusers.d/c.conf", "")
            .file("usr/local/lib/sysusers.d/d.conf", "u from_local_d -\n")
            .conf("e.conf", "u from_lib_e -\n")
    };
    vec![
        dirs(case("override and masking")),
        dirs(case("cat-config")).args(&["--cat-config"]),
        dirs(case("replace a file")).args(&[
            "--replace=/usr/lib/sysusers.d/e.conf",
            "--inline",
            "u replaced -",
        ]),
        dirs(case("replace shadowed by /etc")).args(&[
            "--replace=/usr/lib/sysusers.d/a.conf",
            "--inline",
            "u replaced -",
        ]),
        dirs(case("replace with a new name")).args(&[
            "--replace=/etc/sysusers.d/bb.conf",
            "--inline",
            "u replaced -",
        ]),
        dirs(case("CONFIG by name")).args(&["a.conf", "e.conf"]),
        dirs(case("CONFIG from stdin"))
            .args(&["-"])
            .stdin("u stdin_user - \"From stdin\"\nm stdin_user wheel\n"),
        dirs(case("dry run writes nothing")).args(&["--dry-run"]),
        case("inline lines").args(&[
            "--inline",
            "g ig 321",
            "u iu 321:ig \"Inline\"",
            "m iu extra",
        ]),
        case("credentials give shell and password")
            .credential("passwd.shell.cred", "/bin/zsh")
            .credential("passwd.hashed-password.cred", "$6$salt$hash")
            .args(&["--inline", "u cred -", "u plain -"]),
        case("comments and blank lines").conf(
            "a.conf",
            "# comment\n\n   \t\n  u spaced -   \"Spaced  Out\"  \r\nu crlf -\r\n",
        ),
        case("sysusers.extra credential adds lines")
            .conf("a.conf", "u from_conf -\n")
            .credential(
                "sysusers.extra",
                "u from_cred - \"From a credential\"\ng cred_group 555\n",
            ),
        case("sysusers.extra credential after CONFIG arguments")
            .credential("sysusers.extra", "u from_cred -\n")
            .args(&["--inline", "u from_arg -"]),
        case("SOURCE_DATE_EPOCH sets the password change day")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(&["--inline", "u dated -"]),
        case("/lib/sysusers.d is read last")
            .file("lib/sysusers.d/a.conf", "u from_lib_dir -\n")
            .file("lib/sysusers.d/z.conf", "u only_in_lib -\n")
            .conf("a.conf", "u from_usr_lib -\n"),
        case("/lib/sysusers.d in --cat-config")
            .file("lib/sysusers.d/z.conf", "u only_in_lib -\n")
            .conf("a.conf", "u from_usr_lib -\n")
            .args(&["--cat-config"]),
    ]
}

fn check(cases: Vec<Case>) {
    if !can_run() {
        return;
    }
    let n = cases.len();
    let failures = compare(&cases);
    assert!(
        failures.is_empty(),
        "{} of {n} cases differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!("{n} cases identical to systemd-sysusers");
}

#[test]
#[cfg_attr(
    not(all(test_have = "systemd-sysusers", test_root)),
    ignore = "needs systemd-sysusers and root (the differential tests set owners)"
)]
fn sysusers_line_types_match_systemd() {
    check(line_types());
}

#[test]
#[cfg_attr(
    not(all(test_have = "systemd-sysusers", test_root)),
    ignore = "needs systemd-sysusers and root (the differential tests set owners)"
)]
fn sysusers_existing_databases_match_systemd() {
    check(existing_databases());
}

#[test]
#[cfg_attr(
    not(all(test_have = "systemd-sysusers", test_root)),
    ignore = "needs systemd-sysusers and root (the differential tests set owners)"
)]
fn sysusers_bad_input_matches_systemd() {
    check(bad_input());
}

#[test]
#[cfg_attr(
    not(all(test_have = "systemd-sysusers", test_root)),
    ignore = "needs systemd-sysusers and root (the differential tests set owners)"
)]
fn sysusers_command_line_matches_systemd() {
    check(command_line());
}

/// `slate sysusers --root=ROOT --dry-run --json ARGS...`, which must succeed.
fn dry_run_json(root: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let o = std::process::Command::new(slate_bin())
        .args([
            "sysusers",
            &format!("--root={}", root.display()),
            "--dry-run",
            "--json",
        ])
        .args(args)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    // One shape with `slate tmpfiles --json`.
    assert_eq!(v["tool"], "sysusers");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["status"], 0);
    assert!(v["events"].is_array(), "{v}");
    v["plan"].clone()
}

/// 252 follows `u NAME /PATH` and the config directories' symlinks out of
/// `--root`; Slate resolves them inside it.
#[test]
#[cfg_attr(not(test_root), ignore = "needs root to set file owners")]
fn sysusers_stays_inside_the_root() {
    if !crate::common::is_root() {
        skip("needs root to set file owners");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let outside = t.path().join("outside");
    std::fs::create_dir_all(outside.join("sysusers.d")).expect("mkdir");
    std::fs::write(outside.join("sysusers.d/evil.conf"), "u evil -\n").expect("write");
    std::fs::write(outside.join("owned"), "").expect("write");
    std::os::unix::fs::chown(outside.join("owned"), Some(777), Some(777)).expect("chown");
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::create_dir_all(root.join("usr/lib/sysusers.d")).expect("mkdir");
    std::os::unix::fs::symlink(outside.join("sysusers.d"), root.join("etc/sysusers.d"))
        .expect("ln");
    std::os::unix::fs::symlink(outside.join("owned"), root.join("owned")).expect("ln");
    std::fs::write(
        root.join("usr/lib/sysusers.d/a.conf"),
        "r - 1-999\nu byfile /owned\n",
    )
    .expect("write");
    let v = dry_run_json(&root, &[]);
    let users: Vec<(String, u64)> = v["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| {
            (
                u["name"].as_str().expect("name").to_string(),
                u["uid"].as_u64().expect("uid"),
            )
        })
        .collect();
    // The absolute symlinks resolve inside the root, where nothing exists:
    // no `evil` user, and `byfile` gets a free UID, not 777.
    assert_eq!(users, vec![("byfile".to_string(), 999)]);
    assert!(
        !root.join("etc/passwd").exists(),
        "--dry-run wrote /etc/passwd"
    );
}

#[test]
fn sysusers_plan_as_json() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path();
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::write(root.join("etc/group"), "adm:x:4:\n").expect("write");
    let v = dry_run_json(
        root,
        &[
            "--inline",
            "u web - \"Web server\" /var/lib/web",
            "m web adm",
            "g db 500",
        ],
    );
    assert_eq!(
        v["groups"],
        serde_json::json!([{"name": "db", "gid": 500}, {"name": "web", "gid": 999}])
    );
    assert_eq!(
        v["users"],
        serde_json::json!([{"name": "web", "uid": 999, "gid": 999, "gecos": "Web server", "home": "/var/lib/web", "shell": null}])
    );
    assert_eq!(v["members"], serde_json::json!({"adm": ["web"]}));
    assert_eq!(
        v["files"],
        serde_json::json!(["/etc/group", "/etc/gshadow", "/etc/passwd", "/etc/shadow"])
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/group")).expect("read"),
        "adm:x:4:\n"
    );
}

/// SIGKILL at random moments: each of the four databases is always either
/// the old file or the new one, never a mix.
#[test]
fn sysusers_killed_leaves_old_or_new_files() {
    use std::os::unix::process::ExitStatusExt;
    let t = tempfile::tempdir().expect("tempdir");
    let conf = t.path().join("big.conf");
    let mut text = String::from("r - 1000-60000\n");
    for i in 0..3000 {
        text += &format!("u svc{i} - \"Service {i}\" /var/lib/svc{i}\nm svc{i} adm\n");
    }
    std::fs::write(&conf, text).expect("write");
    let template = t.path().join("template");
    std::fs::create_dir_all(template.join("etc")).expect("mkdir");
    for (name, data) in [
        ("passwd", PASSWD),
        ("group", GROUP),
        ("shadow", SHADOW),
        ("gshadow", GSHADOW),
    ] {
        std::fs::write(template.join("etc").join(name), data).expect("write");
    }
    let fresh = |dir: &std::path::Path| {
        let _ = std::fs::remove_dir_all(dir);
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(dir)
            .status()
            .expect("cp");
        assert!(ok.success());
    };
    let run = |dir: &std::path::Path| {
        std::process::Command::new(slate_bin())
            .args(["sysusers", &format!("--root={}", dir.display())])
            .arg(&conf)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn")
    };
    let full = t.path().join("full");
    fresh(&full);
    let started = std::time::Instant::now();
    assert!(run(&full).wait().expect("wait").success());
    let span = started.elapsed().as_micros() as u64 * 6 / 5 + 1;
    let names = ["passwd", "group", "shadow", "gshadow"];
    let new: Vec<Vec<u8>> = names
        .iter()
        .map(|n| std::fs::read(full.join("etc").join(n)).expect("read"))
        .collect();
    let old = [PASSWD, GROUP, SHADOW, GSHADOW];
    let mut killed = 0;
    let mut partial = 0;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let work = t.path().join("work");
    for _ in 0..30 {
        fresh(&work);
        let mut child = run(&work);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(std::time::Duration::from_micros(seed % span));
        let _ = child.kill();
        let status = child.wait().expect("wait");
        if status.signal() == Some(9) {
            killed += 1;
        }
        let mut changed = 0;
        for (i, n) in names.iter().enumerate() {
            let got = std::fs::read(work.join("etc").join(n)).expect("read");
            assert!(
                got == old[i].as_bytes() || got == new[i],
                "/etc/{n} is neither the old nor the new file after a kill"
            );
            changed += usize::from(got != old[i].as_bytes());
        }
        if changed > 0 && changed < names.len() {
            partial += 1;
        }
    }
    assert!(
        killed > 0,
        "no run was killed while working; the test proved nothing"
    );
    eprintln!(
        "{killed} of 30 runs killed mid-way ({partial} between two renames); every database was old or new"
    );
}
