//! `slate tmpfiles`: differential cases against systemd-tmpfiles 252 (every
//! line type, modifier, option and error path), and the checks that have
//! no systemd counterpart (staying inside the root where 252 does not).

use crate::common::{skip, slate_bin};
use crate::tmpfiles_diff::{can_run, case, compare, Case};

fn check(cases: Vec<Case>) {
    if !can_run() {
        return;
    }
    let failures = compare(&cases);
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from systemd-tmpfiles:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
#[cfg_attr(
    not(all(test_have = "systemd-tmpfiles", test_root)),
    ignore = "needs systemd-tmpfiles and root (the differential tests set owners and make devices)"
)]
fn files_and_writes() {
    check(vec![
        case("f creates with content, mode, owner").conf(
            "a.conf",
            "f /srv/new 0640 web adm - hello\\nworld\nf /srv/empty\nf /srv/deep/er/file 0600 1000 1000\n",
        ),
        case("f on existing files: no truncation, mode and owner applied")
            .file("srv/old", "keep")
            .own("srv/old", 0, 0, 0o600)
            .conf("a.conf", "f /srv/old 0644 daemon - - new content\n"),
        case("f+ and F truncate and write")
            .file("srv/a", "old a")
            .file("srv/b", "old b")
            .conf("a.conf", "f+ /srv/a 0600 - - - fresh\nF /srv/b\nf+ /srv/c - - - - made\n"),
        case("f on a directory and on a symlink")
            .dir("srv/d")
            .link("srv/l", "/srv/nowhere")
            .conf("a.conf", "f /srv/d\nf /srv/l\n"),
        case("w and w+ on files, globs and missing paths")
            .file("srv/one", "1")
            .file("srv/two.conf", "2")
            .file("srv/three.conf", "3")
            .conf(
                "a.conf",
                "w /srv/one - - - - replaced\nw+ /srv/*.conf - - - - +more\nw /srv/missing - - - - x\nw+ /srv/one - - - - and\\x20this\n",
            ),
        case("w through a symlink inside the root")
            .file("srv/target", "t")
            .link("srv/via", "target")
            .conf("a.conf", "w /srv/via - - - - written\n"),
        case("mode prefixes ~ and :, owner prefix :")
            .file("srv/x", "x")
            .own("srv/x", 0, 0, 0o640)
            .file("srv/y", "y")
            .own("srv/y", 0, 0, 0o600)
            .conf(
                "a.conf",
                "f /srv/x ~0775\nf /srv/y :0644 :web :web\nf /srv/z :0600 :web :adm\nd /srv/dd ~2775\n",
            ),
        case("C escapes, quotes and specifiers in arguments")
            .file("etc/machine-id", "0123456789abcdef0123456789abcdef\n")
            .file("etc/os-release", "ID=slateos\nVERSION_ID=7\n")
            .conf(
                "a.conf",
                "f /srv/esc - - - - a\\tb\\x41\\101\\\\c\nf \"/srv/with space\" - - - - q\nf /srv/spec-%m - - - - %o-%w-%%-%a\nf /srv/t - - - - %T %V %h %u %U %g %G\n",
            ),
    ]);
}

#[test]
#[cfg_attr(
    not(all(test_have = "systemd-tmpfiles", test_root)),
    ignore = "needs systemd-tmpfiles and root (the differential tests set owners and make devices)"
)]
fn directories_and_nodes() {
    check(vec![
        case("d D v q Q e")
            .dir("srv/exists")
            .own("srv/exists", 0, 0, 0o700)
            .dir("srv/e")
            .conf(
                "a.conf",
                "d /srv/new 0750 web adm\nd /srv/exists 0755 daemon\nD /srv/trunc 1777\nv /srv/vol\nq /srv/q 0700\nQ /srv/Q\ne /srv/e 0711 web\ne /srv/nothere 0700\n",
            ),
        case("d on a file, e on a file")
            .file("srv/f", "f")
            .file("srv/g", "g")
            .conf("a.conf", "d /srv/f\ne /srv/g 0700\n"),
        case("parents come first")
            .conf("a.conf", "d /srv/a/b/c 0700\nd /srv/a 0710 web\nd /srv/a/b 0750\n"),
        case("p and p+")
            .file("srv/isfile", "f")
            .file("srv/replace", "f")
            .conf("a.conf", "p /srv/fifo 0600 web\np /srv/isfile\np+ /srv/replace 0640\n"),
        case("c and b, with + over a file")
            .file("dev2/nul", "x")
            .conf(
                "a.conf",
                "c /dev2/null 0666 - - - 1:3\nb /dev2/loop9 0660 - adm - 7:9\nc /dev2/nul - - - - 1:3\nc+ /dev2/nul 0600 - - - 1:3\n",
            ),
        case("L, L+ and the factory default")
            .file("srv/file", "f")
            .dir("srv/dir/sub")
            .link("srv/wrong", "/elsewhere")
            .conf(
                "a.conf",
                "L /srv/link - - - - /target\nL /srv/wrong - - - - /right\nL+ /srv/file - - - - /t1\nL+ /srv/dir - - - - /t2\nL /etc/os-release\nL /srv/deep/link - - - - ../x\n",
            ),
        case("= replaces what is in the way")
            .dir("srv/wasdir/sub")
            .file("srv/wasdir/sub/f", "x")
            .file("srv/wasfile", "f")
            .file("srv/parentfile", "p")
            .link("srv/dangling", "/nowhere")
            .conf(
                "a.conf",
                "f= /srv/wasdir 0600 - - - now a file\nd= /srv/wasfile 0700\nd= /srv/parentfile/child\nL= /srv/dangling/x - - - - /y\n",
            ),
    ]);
}

#[test]
#[cfg_attr(
    not(all(test_have = "systemd-tmpfiles", test_root)),
    ignore = "needs systemd-tmpfiles and root (the differential tests set owners and make devices)"
)]
fn copies() {
    check(vec![
        case("C from the factory and from a path")
            .file("usr/share/factory/etc/pam.d/login", "auth login\n")
            .file("usr/share/factory/etc/pam.d/other", "other\n")
            .own("usr/share/factory/etc/pam.d/other", 33, 4, 0o640)
            .xattr("usr/share/factory/etc/pam.d/login", "user.origin", "factory")
            .hardlink("usr/share/factory/etc/pam.d/login2", "usr/share/factory/etc/pam.d/login")
            .link("usr/share/factory/etc/pam.d/ln", "other")
            .fifo("usr/share/factory/etc/pam.d/fifo")
            .aged("usr/share/factory/etc/pam.d/login", 86400 * 3000)
            .aged("usr/share/factory/etc/pam.d/other", 86400 * 3000)
            .aged("usr/share/factory/etc/pam.d", 86400 * 3000)
            .file("opt/src/file.txt", "file source")
            .aged("opt/src/file.txt", 86400 * 4000)
            .conf("a.conf", "C /etc/pam.d\nC /srv/copy 0700 web - - /opt/src\nC /srv/one - - - - /opt/src/file.txt\nC /srv/missing - - - - /opt/nothing\n"),
        case("C into an existing empty, non-empty, and wrong-type target")
            .file("usr/share/factory/a/x", "x")
            .file("usr/share/factory/b/y", "y")
            .file("usr/share/factory/c/z", "z")
            .dir("a")
            .file("b/keep", "k")
            .file("c", "a file")
            .conf("a.conf", "C /a 0750 daemon\nC /b 0700\nC /c\n"),
        case("C with a relative source").conf("a.conf", "C /x - - - - relative/path\n"),
    ]);
}

#[test]
#[cfg_attr(
    not(all(test_have = "systemd-tmpfiles", test_root)),
    ignore = "needs systemd-tmpfiles and root (the differential tests set owners and make devices)"
)]
fn adjustments() {
    check(vec![
        case("z and Z")
            .file("srv/a/1", "1")
            .file("srv/a/sub/2", "2")
            .link("srv/a/ln", "/srv/a/1")
            .file("srv/b/3", "3")
            .conf("a.conf", "z /srv/* 0700 web\nZ /srv/a 0640 daemon adm\nz /srv/none 0600\n"),
        case("t and T")
            .file("srv/x/1", "1")
            .file("srv/x/sub/2", "2")
            .conf(
                "a.conf",
                "t /srv/x - - - - user.one=1 \"user.two=a b\" user.bad bad=\nT /srv/x/sub - - - - user.deep=%a\n",
            ),
        case("h and H")
            .file("srv/f", "f")
            .file("srv/g/1", "1")
            .file("srv/g/s/2", "2")
            .conf("a.conf", "h /srv/f - - - - +dA\nH /srv/g - - - - d\nh /srv/g/s - - - - =A\nh /srv/f - - - - -A\n"),
        case("h with a bad attribute and no attribute")
            .file("srv/f", "f")
            .conf("a.conf", "h /srv/f - - - - +q\nh /srv/f - - - - -\nh /srv/f - - - - +\n"),
        case("a and A")
            .file("srv/f", "f")
            .file("srv/d/1", "1")
            .file("srv/d/s/2", "2")
            .conf(
                "a.conf",
                "a /srv/f - - - - u:1000:rw,g:adm:r\nA /srv/d - - - - u:daemon:rwx,d:g:4:r-x\nd /srv/m 0750\na /srv/m - - - - m::r\n",
            ),
        case("a+ and A+ merge")
            .file("srv/f", "f")
            .own("srv/f", 0, 0, 0o640)
            .dir("srv/d/s")
            .conf(
                "a.conf",
                "a /srv/f - - - - u:1000:r\na+ /srv/f - - - - u:33:rw,g:4:r\nA+ /srv/d - - - - d:u:1000:rwx,o::r\n",
            )
            .loose_messages(),
        case("bad ACL").file("srv/f", "f").conf("a.conf", "a /srv/f - - - - u:nosuchuser:rw\na /srv/f - - - - z::r\n"),
    ]);
}

#[test]
#[cfg_attr(
    not(all(test_have = "systemd-tmpfiles", test_root)),
    ignore = "needs systemd-tmpfiles and root (the differential tests set owners and make devices)"
)]
fn removal_and_cleaning() {
    check(vec![
        case("r R and D with --remove")
            .file("srv/file", "f")
            .file("srv/full/x", "x")
            .dir("srv/empty")
            .file("srv/tree/a/b", "b")
            .file("srv/glob/1.tmp", "1")
            .file("srv/glob/2.tmp", "2")
            .file("srv/glob/keep", "k")
            .file("srv/trunc/inside/x", "x")
            .link("srv/link", "/srv/tree")
            .conf(
                "a.conf",
                "r /srv/file\nr /srv/empty\nR /srv/tree\nr /srv/glob/*.tmp\nD /srv/trunc\nR /srv/link\nr /srv/missing\n",
            )
            .args(&["--remove"]),
        case("r on a non-empty directory fails")
            .file("srv/full/x", "x")
            .conf("a.conf", "r /srv/full\n")
            .args(&["--remove"]),
        case("--create --remove --boot together")
            .file("srv/old/x", "x")
            .conf("a.conf", "R! /srv/old\nd! /srv/old 0700\nf /srv/new\n")
            .args(&["--create", "--remove", "--boot"]),
        case("cleaning by age")
            .file("srv/c/old", "o")
            .aged("srv/c/old", 86400 * 20)
            .file("srv/c/new", "n")
            .file("srv/c/sub/old", "o")
            .aged("srv/c/sub/old", 86400 * 20)
            .aged("srv/c/sub", 86400 * 20)
            .file("srv/c/sticky", "s")
            .own("srv/c/sticky", 0, 0, 0o1644)
            .aged("srv/c/sticky", 86400 * 20)
            .file("srv/c/keep/old", "o")
            .aged("srv/c/keep/old", 86400 * 20)
            .file("srv/c/skip/old", "o")
            .aged("srv/c/skip/old", 86400 * 20)
            .file("srv/k/top", "t")
            .aged("srv/k/top", 86400 * 20)
            .file("srv/k/d/inner", "i")
            .aged("srv/k/d/inner", 86400 * 20)
            .aged("srv/k/d", 86400 * 20)
            .file("srv/dflt/old", "o")
            .aged("srv/dflt/old", 86400 * 20)
            .conf(
                "a.conf",
                "d /srv/c - - - mM:10d\nx /srv/c/keep\nX /srv/c/skip\nd /srv/k - - - ~aAmM:1w\nd /srv/dflt - - - 10d\n",
            )
            .args(&["--clean"]),
        case("X takes its age from the d line above it; globs for e and x")
            .file("srv/t/run-1/tmp/old", "o")
            .aged("srv/t/run-1/tmp/old", 86400 * 30)
            .file("srv/t/run-1/old", "o")
            .aged("srv/t/run-1/old", 86400 * 30)
            .file("srv/t/plain/old", "o")
            .aged("srv/t/plain/old", 86400 * 30)
            .file("srv/g1/old", "o")
            .aged("srv/g1/old", 86400 * 30)
            .file("srv/g2/old", "o")
            .aged("srv/g2/old", 86400 * 30)
            .conf(
                "a.conf",
                "d /srv/t - - - m:10d\nx /srv/t/run-*\nX /srv/t/run-*/tmp\ne /srv/g* - - - m:1d\n",
            )
            .args(&["--clean"]),
        case("age-by and e with an age")
            .file("srv/m/old", "o")
            .aged("srv/m/old", 3600 * 5)
            .file("srv/e/x", "x")
            .aged("srv/e/x", 3600 * 5)
            .conf("a.conf", "d /srv/m - - - m:1h\ne /srv/e - - - am:2h\n")
            .args(&["--clean"]),
        case("bad ages").conf(
            "a.conf",
            "d /srv/a - - - 10x\nd /srv/b - - - q:1d\nd /srv/c - - - :5\nd /srv/d - - - 1h30min\nd /srv/e - - - 1.5d\n",
        ),
    ]);
}

#[test]
#[cfg_attr(
    not(all(test_have = "systemd-tmpfiles", test_root)),
    ignore = "needs systemd-tmpfiles and root (the differential tests set owners and make devices)"
)]
fn modifiers_and_specifiers() {
    check(vec![
        case("! only with --boot").conf("a.conf", "d! /srv/boot\nd /srv/always\n"),
        case("! with --boot")
            .conf("a.conf", "d! /srv/boot\nd /srv/always\n")
            .args(&["--create", "--boot"]),
        case("- allows failure")
            .file("srv/file", "f")
            .conf("a.conf", "d- /srv/file/sub\nf /srv/file/x\n"),
        case("~ base64 and ^ credentials")
            .credential("greeting", "hello from a credential")
            .conf(
                "a.conf",
                "f~ /srv/b64 - - - - aGVsbG8gd29y bGQ=\nw~ /srv/b64 - - - - Zm9v\nf^ /srv/cred - - - - greeting\nf^ /srv/nocred - - - - absent\nL~ /srv/l - - - - eA==\nf~ /srv/bad - - - - !!!\n",
            ),
        case("%h is $HOME; %T ignores $TMPDIR under --root")
            .env("HOME", "/home/alice")
            .env("TMPDIR", "/elsewhere")
            .conf("a.conf", "d %h/cache\nd %T/x\nd %V/y\n"),
        case("unresolvable specifiers are skipped in a root")
            .conf("a.conf", "d /srv/%m\nd /srv/%o\nd /srv/ok-%%\n"),
        case("bad specifier, bad lines in a directory file").conf(
            "a.conf",
            "d /srv/%z\nk /srv/unknown\nd /srv/m 0999\nd /srv/u 0700 nosuchuser\nd /srv/g 0700 - nosuchgroup\nd relative\nc /dev2/x - - - - 1\nc /dev2/y\nw /srv/w\nL~ /srv/l - - - - eA==\nC~ /srv/c\nd /srv/ok\nf\nd /srv/q \"unterminated\ndd /srv/mod\n\"\" /srv/empty\n",
        ),
        case("the same bad lines as a CONFIG argument")
            .file("srv/bad.conf", "k /srv/unknown\nd /srv/ok\n")
            .args(&["--create", "@ROOT@/srv/bad.conf"])
            .loose_messages(),
        case("a failing base64 line in a CONFIG argument ends the run")
            .stdin("f~ /srv/bad - - - - !!!\nd /srv/after\n")
            .args(&["--create", "-"]),
        case("duplicate and conflicting lines").conf(
            "a.conf",
            "d /srv/a 0700\nd /srv/a 0755\nf /srv/a/f 0600\nf /srv/a/f 0600\nw+ /srv/a/f - - - - 1\nw+ /srv/a/f - - - - 2\nz /srv/a 0711\n",
        ),
        case("b+, C+, m, and lines across files")
            .file("dev2/blk", "x")
            .file("usr/share/factory/srv/cp/a", "a")
            .dir("srv/cp")
            .file("srv/cp/old", "o")
            .file("srv/m", "m")
            .conf("a.conf", "b+ /dev2/blk 0600 - - - 8:1\nC+ /srv/cp\nm /srv/m 0600 daemon\nd /srv/x 0700\n")
            .conf("b.conf", "d /srv/x 0755\nd /srv/x 0700\ne /srv/x - web\n"),
        case("/var/run is rewritten").conf("a.conf", "d /var/run/svc 0700\n").file("etc/tmpfiles.d/b.conf", "d /var/run/other\n"),
        case("an argument with an unknown escape or a lone backslash is invalid").conf(
            "a.conf",
            "f /srv/a - - - - x\\qy\nf /srv/b - - - - end\\\nf /srv/c - - - - ok\\tz\nw /srv/c - - - - \\\nL /srv/l - - - - tar\\get\n",
        ),
        case("modes are exact under a strict umask, parents made 0755")
            .umask(0o077)
            .conf(
                "a.conf",
                "d /srv/a 0775\nf /srv/f 0666 - - - x\nF /srv/g 0664\np /srv/p 0666\nd /srv/deep/er/d 0711\nf /srv/dflt\nd /srv/dflt-dir\n",
            ),
        case("an argument with a lone backslash in a CONFIG argument")
            .stdin("f /srv/b - - - - end\\\nd /srv/after\n")
            .args(&["--create", "-"]),
    ]);
}

#[test]
#[cfg_attr(
    not(all(test_have = "systemd-tmpfiles", test_root)),
    ignore = "needs systemd-tmpfiles and root (the differential tests set owners and make devices)"
)]
fn options() {
    let lines = "d /srv/a\nd /run/b\nd /dev2/c\nd /srv/sub/d\nd /proc2/e\nd /sys/f\nd /dev/g\n";
    check(vec![
        case("--prefix").conf("a.conf", lines).args(&[
            "--create",
            "--prefix=/srv/sub",
            "--prefix=/run",
        ]),
        case("--exclude-prefix")
            .conf("a.conf", lines)
            .args(&["--create", "--exclude-prefix=/srv"]),
        case("-E").conf("a.conf", lines).args(&["--create", "-E"]),
        case("overriding and masking across directories")
            .conf("a.conf", "d /srv/from-usr-lib\n")
            .file("etc/tmpfiles.d/a.conf", "d /srv/from-etc\n")
            .conf("b.conf", "d /srv/masked\n")
            .link("run/tmpfiles.d/b.conf", "/dev/null")
            .file("usr/local/lib/tmpfiles.d/c.conf", "d /srv/from-local\n")
            .conf("c.conf", "d /srv/hidden\n")
            .conf("d.txt", "d /srv/not-conf\n"),
        case("--cat-config")
            .conf("a.conf", "d /srv/a\n# comment\n")
            .file("etc/tmpfiles.d/b.conf", "d /srv/b\r\nd /srv/c")
            .args(&["--cat-config"]),
        case("--replace")
            .conf("a.conf", "d /srv/a\n")
            .conf("b.conf", "d /srv/b\n")
            .stdin("d /srv/instead\n")
            .args(&["--create", "--replace=/usr/lib/tmpfiles.d/b.conf", "-"]),
        case("CONFIG by name, absolute, and stdin")
            .conf("a.conf", "d /srv/a\n")
            .conf("b.conf", "d /srv/b\n")
            .file("opt/x.conf", "d /srv/x\n")
            .stdin("d /srv/stdin\n")
            .args(&["--create", "a.conf", "-"]),
        case("a missing CONFIG").args(&["--create", "nothere.conf"]),
        case("/lib/tmpfiles.d is read last, and --cat-config shows it")
            .file("lib/tmpfiles.d/a.conf", "d /srv/from-lib\n")
            .file("lib/tmpfiles.d/b.conf", "d /srv/lib-b\n")
            .conf("b.conf", "d /srv/usr-lib-b\n")
            .args(&["--create"]),
        case("/lib/tmpfiles.d in --cat-config")
            .file("lib/tmpfiles.d/a.conf", "d /srv/from-lib\n")
            .conf("b.conf", "d /srv/usr-lib-b\n")
            .args(&["--cat-config"]),
        case("CONFIG found in /lib/tmpfiles.d")
            .file("lib/tmpfiles.d/only.conf", "d /srv/only-in-lib\n")
            .args(&["--create", "only.conf"]),
        case("no operation").conf("a.conf", "d /srv/a\n").args(&[]),
        case("bad --replace").args(&["--create", "--replace=relative.conf", "x"]),
        case("--replace without CONFIG").args(&["--create", "--replace=/etc/tmpfiles.d/x.conf"]),
    ]);
}

#[test]
#[cfg_attr(
    not(all(test_have = "systemd-tmpfiles", test_root)),
    ignore = "needs systemd-tmpfiles and root (the differential tests set owners and make devices)"
)]
fn unsafe_transitions_and_owners() {
    check(vec![
        case("a root-owned file below a user's directory")
            .file("home/alice/f", "f")
            .own("home/alice", 1000, 1000, 0o755)
            .conf(
                "a.conf",
                "z /home/alice/f 0600\nf /home/alice/new 0600\nd /home/alice/sub/dir 0700\n",
            ),
        case("names and numbers").conf(
            "a.conf",
            "d /srv/a - web web\nd /srv/b - 33 4\nd /srv/c - root root\nd /srv/d - 4294967295\n",
        ),
        // TEST-22.03: the refusal names the symlink itself, with its owner.
        case("a user's symlink to an absolute path owned by root")
            .dir("srv/daemon")
            .dir("root")
            .link("srv/daemon/unsafe-symlink", "/root")
            .own("srv/daemon", 1, 1, 0o755)
            .own("srv/daemon/unsafe-symlink", 1, 1, 0o777)
            .conf(
                "a.conf",
                "f /srv/daemon/unsafe-symlink/exploit 0644 daemon daemon - -\n",
            )
            .status(73),
        case("a user's symlink in root's directory, climbing out")
            .dir("srv/pub/sub")
            .link("srv/pub/up", "../..")
            .own("srv/pub/up", 1, 1, 0o777)
            .conf("a.conf", "d /srv/pub/up/srv/x 0755\n")
            .status(73),
        case("a user's directory climbing out through ..")
            .dir("srv/daemon/sub")
            .link("srv/daemon/rel", "../../root")
            .dir("root")
            .own("srv/daemon", 1, 1, 0o755)
            .own("srv/daemon/rel", 1, 1, 0o777)
            .conf("a.conf", "f /srv/daemon/rel/exploit 0644\n")
            .status(73),
    ]);
}

/// The user's environment of a `--user` run, every XDG directory in the
/// case's tree.
fn xdg(c: Case) -> Case {
    c.env("HOME", "@ROOT@/home")
        .env("XDG_CONFIG_DIRS", "@ROOT@/xa:@ROOT@/xb")
        .env("XDG_CONFIG_HOME", "@ROOT@/config")
        .env("XDG_RUNTIME_DIR", "@ROOT@/run")
        .env("XDG_DATA_HOME", "@ROOT@/data")
        .env("XDG_DATA_DIRS", "@ROOT@/da:@ROOT@/db")
        .env("XDG_CACHE_HOME", "@ROOT@/cache")
        .dir("home")
}

const SPECIFIER_LINES: &str = "f %h/S - - - - %S\nf %h/C - - - - %C\nf %h/L - - - - %L\nf %h/t - - - - %t\nf %h/h - - - - %h\nf %h/ids - - - - %u %U %g %G\nf %h/pct - - - - 100%%\nd %t/made-in-runtime 0700\nd %C/made-in-cache\n";

#[test]
#[cfg_attr(
    not(all(test_have = "systemd-tmpfiles", test_root)),
    ignore = "needs systemd-tmpfiles and root (the differential tests set owners and make devices)"
)]
fn user_mode() {
    let dirs = ["xa", "xb", "config", "run", "data", "da", "db"];
    let mut every_dir = xdg(case("--user reads user-tmpfiles.d of every XDG directory"))
        .dir("run")
        .user(None);
    for d in dirs {
        every_dir = every_dir
            .file(
                &format!("{d}/user-tmpfiles.d/{d}.conf"),
                &format!("d %h/only-{d}\n"),
            )
            .file(
                &format!("{d}/user-tmpfiles.d/same.conf"),
                &format!("d %h/same-{d}\n"),
            );
    }
    let mut cat = xdg(case("--user --cat-config lists them in order"))
        .user(None)
        .args(&["--cat-config"]);
    for d in dirs {
        cat = cat.file(&format!("{d}/user-tmpfiles.d/{d}.conf"), "d %h/x\n");
    }
    check(vec![
        every_dir,
        cat,
        case("without XDG variables: ~/.config and ~/.local/share")
            .env("HOME", "@ROOT@/home")
            .env("XDG_CONFIG_DIRS", "@ROOT@/none")
            .env("XDG_DATA_DIRS", "@ROOT@/none")
            .file("home/.config/user-tmpfiles.d/a.conf", "d %h/from-config\n")
            .file("home/.local/share/user-tmpfiles.d/b.conf", SPECIFIER_LINES)
            .user(None),
        xdg(case("specifiers from the XDG variables"))
            .dir("run")
            .dir("cache")
            .stdin(SPECIFIER_LINES)
            .args(&["--create", "-"])
            .user(None),
        case("relative XDG variables are not used for specifiers")
            .env("HOME", "@ROOT@/home")
            .env("XDG_RUNTIME_DIR", "relative")
            .env("XDG_CONFIG_HOME", "relative")
            .env("XDG_CACHE_HOME", "relative")
            .dir("home")
            .stdin(SPECIFIER_LINES)
            .args(&["--create", "-"])
            .user(None),
        case("--user with --root is refused")
            .stdin("d /srv/x\n")
            .args(&["--create", "--root=@ROOT@", "-"])
            .user(None)
            .status(1),
        xdg(case("as another user (nobody)"))
            .dir("run")
            .dir("cache")
            .stdin(&format!(
                "{SPECIFIER_LINES}d /etc/not-for-nobody\nf %h/nobody-file 0600 - - - x\n"
            ))
            .args(&["--create", "-"])
            .user(Some((65534, 65534)))
            .status(73),
        case("as nobody, %t without $XDG_RUNTIME_DIR: the line is skipped")
            .env("HOME", "@ROOT@/home")
            .dir("home")
            .stdin("w %h/foo - - - - \"specifier for --user %t\"\nf %h/after - - - - ok\n")
            .args(&["--create", "-"])
            .user(Some((65534, 65534)))
            .status(0),
    ]);
}

/// The lines systemd's own test-systemd-tmpfiles.py rejects: each alone,
/// in both modes, exits 65.
#[test]
#[cfg_attr(
    not(all(test_have = "systemd-tmpfiles", test_root)),
    ignore = "needs systemd-tmpfiles and root (the differential tests set owners and make devices)"
)]
fn invalid_lines_exit_65() {
    const INVALID: &[&str] = &[
        "asdfa",
        "f \"open quote",
        "f closed quote\"\"",
        "Y /unknown/letter",
        "w non/absolute/path",
        "s",
        "f!! /too/many/bangs",
        "f++ /too/many/plusses",
        "f+!+ /too/many/plusses",
        "f!+! /too/many/bangs",
        "f== /too/many/equals",
        "w /unresolved/argument - - - - \"%Y\"",
        "w /unresolved/argument/sandwich - - - - \"%v%Y%v\"",
        "w /unresolved/filename/%Y - - - - \"whatever\"",
        "w /unresolved/filename/sandwich/%v%Y%v - - - - \"whatever\"",
        "w - - - - - \"no file specified\"",
        "C - - - - - \"no file specified\"",
        "C non/absolute/path - - - - -",
        "b - - - - - -",
        "b 1234 - - - - -",
        "c - - - - - -",
        "c 1234 - - - - -",
        "t - - -",
        "T - - -",
        "a - - -",
        "A - - -",
        "h - - -",
        "H - - -",
    ];
    let mut cases = Vec::new();
    for (user, mode) in [(false, "system"), (true, "--user")] {
        for line in INVALID {
            let name: &'static str = Box::leak(format!("{mode}: {line}").into_boxed_str());
            let mut c = case(name)
                .stdin(&format!("{line}\n"))
                .args(&["--create", "-"])
                .status(65);
            if user {
                c = c.env("HOME", "@ROOT@").user(None);
            }
            cases.push(c);
        }
    }
    check(cases);
}

/// Under `--root`, systemd 252 puts the root in front of what `%S %C %L
/// %t` expand to (so `d %S/x` lands at ROOT/ROOT/var/lib/x, and a file's
/// content names the build machine's path); Slate expands them as the
/// image will see them.
#[test]
fn state_directories_under_root_are_the_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let out = std::process::Command::new(slate_bin())
        .args(["tmpfiles", "--create", "-"])
        .arg(format!("--root={}", root.display()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(b"d %S/app\nf /srv/dirs - - - - %S %C %L %t\n")?;
            c.wait_with_output()
        })
        .expect("run slate tmpfiles");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(root.join("var/lib/app").is_dir());
    assert_eq!(
        std::fs::read_to_string(root.join("srv/dirs")).expect("read"),
        "/var/lib /var/cache /var/log /run"
    );
}

/// The other checks of test-systemd-tmpfiles.py: specifiers in both
/// modes, and `f=` replacing whatever is in the way.
#[test]
#[cfg_attr(
    not(all(test_have = "systemd-tmpfiles", test_root)),
    ignore = "needs systemd-tmpfiles and root (the differential tests set owners and make devices)"
)]
fn specifiers_and_hard_cleanup() {
    let mut cases = vec![
        case("system specifiers")
            .file("etc/machine-id", "0123456789abcdef0123456789abcdef\n")
            .stdin("f /srv/words - - - - two words\nf /srv/m - - - - %m\nf /srv/b - - - - %b\nf /srv/H - - - - %H\nf /srv/v - - - - %v\nf /srv/U - - - - %U\nf /srv/G - - - - %G\nf /srv/u - - - - %u\nf /srv/g - - - - %g\nf /srv/h - - - - %h\nf /srv/pct - - - - %%\nf~ /srv/base64 - - - - UGlmZgpQYWZmClB1ZmYgCg==\n")
            .args(&["--create", "-"])
            .status(0),
        xdg(case("user specifiers"))
            .stdin("f %h/words - - - - two words\nf %h/b - - - - %b\nf %h/H - - - - %H\nf %h/v - - - - %v\nf %h/U - - - - %U\nf %h/G - - - - %G\nf %h/u - - - - %u\nf %h/g - - - - %g\nf %h/h - - - - %h\nf %h/t - - - - %t\nf %h/S - - - - %S\nf %h/C - - - - %C\nf %h/L - - - - %L\nf %h/pct - - - - %%\n")
            .args(&["--create", "-"])
            .user(None)
            .status(0),
    ];
    // f= over nothing, a file, a directory (holding a symlink to itself),
    // a symlink to a file, a fifo; shallow and deep; and a valid symlink
    // to a directory on the way.
    for user in [false, true] {
        for kind in ["none", "file", "dir", "symlink", "fifo", "valid-symlink"] {
            for sub in ["shallow", "deep/1/2"] {
                if kind == "valid-symlink" && sub == "shallow" {
                    continue;
                }
                let first = sub.split('/').next().expect("a component");
                let name: &'static str = Box::leak(
                    format!(
                        "f= over {kind} at {sub}{}",
                        if user { " (--user)" } else { "" }
                    )
                    .into_boxed_str(),
                );
                let mut c = case(name).dir("t");
                c = match kind {
                    "file" => c.file(&format!("t/{sub}"), &format!("file-{first}")),
                    "dir" => c
                        .dir(&format!("t/{first}"))
                        .link(&format!("t/{first}/self"), "."),
                    "symlink" => c
                        .file("t/link-target", "target")
                        .link(&format!("t/{first}"), "link-target"),
                    "fifo" => c.fifo(&format!("t/{first}")),
                    "valid-symlink" => c
                        .dir("t/link-target")
                        .link(&format!("t/{first}"), "link-target"),
                    _ => c,
                };
                let label = format!("{kind}-{first}");
                c = if user {
                    c.env("HOME", "@ROOT@")
                        .stdin(&format!("f= %h/t/{sub} - - - - {label}\n"))
                        .user(None)
                } else {
                    c.stdin(&format!("f= /t/{sub} - - - - {label}\n"))
                };
                cases.push(c.args(&["--create", "-"]));
            }
        }
    }
    check(cases);
}

/// Debian's own rules (the host's /usr/lib/tmpfiles.d), applied at boot to
/// an empty root that holds only that directory.
#[test]
#[cfg_attr(
    not(all(test_have = "systemd-tmpfiles", test_root)),
    ignore = "needs systemd-tmpfiles and root (the differential tests set owners and make devices)"
)]
fn debian_rules() {
    let dir = std::path::Path::new("/usr/lib/tmpfiles.d");
    let Ok(entries) = std::fs::read_dir(dir) else {
        skip("no /usr/lib/tmpfiles.d on this machine");
        return;
    };
    let mut c = case("Debian's tmpfiles.d").args(&["--create", "--boot"]);
    let mut c2 = case("Debian's tmpfiles.d, -E, then again (second run)")
        .args(&["--create", "--remove", "--boot", "-E"]);
    for e in entries {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if let Ok(text) = std::fs::read_to_string(e.path()) {
            c = c.conf(&name, &text);
            c2 = c2.conf(&name, &text);
        }
    }
    check(vec![c, c2]);
}

/// Where 252 follows symlinks out of the root, Slate stays inside it.
#[test]
#[cfg_attr(not(test_root), ignore = "needs root: creates devices and owners")]
fn nothing_outside_the_root_is_touched() {
    if !crate::common::is_root() {
        skip("the in-root test creates devices and owners and needs root");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let outside = t.path().join("outside");
    std::fs::create_dir_all(outside.join("tree/sub")).expect("mkdir");
    std::fs::write(outside.join("victim"), "precious").expect("write");
    std::fs::write(outside.join("tree/sub/file"), "precious").expect("write");
    let root = t.path().join("root");
    for d in ["usr/lib/tmpfiles.d", "etc", "srv"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let out = outside.display().to_string();
    std::os::unix::fs::symlink(format!("{out}/victim"), root.join("srv/abs")).expect("ln");
    std::os::unix::fs::symlink("../../../../../../../..", root.join("srv/up")).expect("ln");
    std::os::unix::fs::symlink(out.clone(), root.join("srv/dir")).expect("ln");
    std::fs::write(
        root.join("usr/lib/tmpfiles.d/evil.conf"),
        format!(
            "w /srv/abs - - - - overwritten\nR /srv/dir/tree\nr /srv/up{out}/victim\nz /srv/up{out}/tree 0777\nf /srv/dir/created\nd /srv/up{out}/newdir\nC /srv/copy - - - - /srv/up{out}\nt /srv/up{out}/victim - - - - user.x=y\n"
        ),
    )
    .expect("conf");
    let o = std::process::Command::new(slate_bin())
        .args(["tmpfiles", "--create", "--remove"])
        .arg(format!("--root={}", root.display()))
        .output()
        .expect("run");
    assert_eq!(
        std::fs::read_to_string(outside.join("victim")).expect("victim"),
        "precious",
        "{o:?}"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("tree/sub/file")).expect("tree"),
        "precious"
    );
    assert!(!outside.join("created").exists());
    assert!(!outside.join("newdir").exists());
    let mode = std::fs::metadata(outside.join("tree"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .expect("stat");
    assert_ne!(mode & 0o777, 0o777);
    assert!(crate::common::raw_xattrs(&outside.join("victim")).is_empty());
    // The same lines acted on the root's own paths instead.
    assert!(root.join(&out[1..]).join("newdir").is_dir());
}

/// `--graceful` (from systemd after 252): lines naming unknown users or
/// groups are skipped without error; without it they are invalid (65).
#[test]
fn graceful_skips_unknown_owners() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path();
    std::fs::create_dir_all(root.join("usr/lib/tmpfiles.d")).expect("mkdir");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
    std::fs::write(
        root.join("usr/lib/tmpfiles.d/a.conf"),
        "d /srv/a 0700 nobody-here\nd /srv/b 0700 - nogroup\nd /srv/c 0700\n",
    )
    .expect("conf");
    let run = |extra: &[&str]| {
        std::process::Command::new(slate_bin())
            .args(["tmpfiles", "--create"])
            .arg(format!("--root={}", root.display()))
            .args(extra)
            .output()
            .expect("run")
    };
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(65), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("a.conf:1: Failed to resolve user 'nobody-here': No such process"),
        "{err}"
    );
    assert!(
        err.contains("a.conf:2: Failed to resolve group 'nogroup'."),
        "{err}"
    );
    assert!(root.join("srv/c").is_dir() && !root.join("srv/a").exists());
    std::fs::remove_dir_all(root.join("srv")).expect("rm");
    let o = run(&["--graceful", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(o.stderr.is_empty(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["status"], 0);
    assert_eq!(v["tool"], "tmpfiles");
    // Only debug-level events (what was done), no message.
    let events = v["events"].as_array().expect("events");
    assert!(events.iter().all(|e| e["level"] == "debug"), "{v}");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "created" && e["path"] == "/srv/c"),
        "{v}"
    );
    assert!(v["plan"].as_array().is_some_and(|p| !p.is_empty()), "{v}");
    assert!(
        root.join("srv/c").is_dir() && !root.join("srv/a").exists() && !root.join("srv/b").exists()
    );
}

/// SIGKILL at random moments while `f` lines write files with content:
/// every file that exists afterwards is whole (a new file appears complete
/// or not at all).
#[test]
fn tmpfiles_killed_leaves_no_partial_file() {
    use std::os::unix::process::ExitStatusExt;
    let t = tempfile::tempdir().expect("tempdir");
    let content = "x".repeat(4000);
    let mut text = String::new();
    for i in 0..800 {
        text += &format!("f /srv/f{i} 0640 - - - {content}\n");
    }
    let conf = t.path().join("big.conf");
    std::fs::write(&conf, text).expect("write");
    let run = |dir: &std::path::Path| {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("mkdir");
        std::process::Command::new(slate_bin())
            .args(["tmpfiles", "--create"])
            .arg(format!("--root={}", dir.display()))
            .arg(&conf)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn")
    };
    let full = t.path().join("full");
    let started = std::time::Instant::now();
    assert!(run(&full).wait().expect("wait").success());
    let span = started.elapsed().as_micros() as u64 + 1;
    let (mut killed, mut seed) = (0, 0x2545_f491_4f6c_dd1d_u64);
    let work = t.path().join("work");
    for _ in 0..20 {
        let mut child = run(&work);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(std::time::Duration::from_micros(seed % span));
        let _ = child.kill();
        if child.wait().expect("wait").signal() == Some(9) {
            killed += 1;
        }
        let Ok(entries) = std::fs::read_dir(work.join("srv")) else {
            continue;
        };
        for e in entries {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".#") {
                continue;
            }
            let md = e.metadata().expect("stat");
            assert_eq!(
                md.len(),
                content.len() as u64,
                "{name} is partial after a kill"
            );
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777,
                0o640
            );
        }
    }
    assert!(
        killed > 0,
        "no run was killed while working; the test proved nothing"
    );
    eprintln!("{killed} of 20 runs killed mid-way; every file present was whole");
}
