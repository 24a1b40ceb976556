//! `slate compose`, `slate run`, `show` and `diff --packages`: a folder
//! base (root only), and a real Debian image through mmdebstrap booted on
//! systemd-nspawn (root, mmdebstrap, systemd-nspawn and a Debian mirror).

pub(crate) mod debian;
mod oci;
mod sysext;
mod updates;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{fails, have, init, is_root, ok, skip, slate_bin};

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, content).expect("write");
}

fn link(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink(target, p).expect("symlink");
}

/// A small Debian-like tree: users, a unit enabled in /etc, a dpkg
/// database, logs and caches, a kernel in /boot, state in /var.
fn debian_like(root: &Path, version: &str) {
    write(
        root,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nsvc:x:200:200:svc:/var/lib/svc:/usr/sbin/nologin\n",
    );
    write(root, "etc/group", "root:x:0:\nsvc:x:200:\n");
    write(root, "etc/shadow", "root:*:19000:0:99999:7:::\n");
    write(root, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    write(root, "etc/hostname", "builder\n");
    write(root, "etc/os-release", "ID=test\n");
    write(root, "etc/app/app.conf", "level = 1\n");
    write(
        root,
        "usr/lib/systemd/system/app.service",
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
    );
    write(
        root,
        "usr/lib/systemd/system/extra.service",
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
    );
    link(
        root,
        "etc/systemd/system/multi-user.target.wants/app.service",
        "/usr/lib/systemd/system/app.service",
    );
    write(
        root,
        "var/lib/dpkg/status",
        &format!(
            "Package: base\nStatus: install ok installed\nVersion: {version}\nArchitecture: amd64\n\n\
             Package: tool\nStatus: install ok installed\nVersion: 1.0\nArchitecture: all\n"
        ),
    );
    write(root, "var/lib/dpkg/status-old", "noise\n");
    write(root, "var/log/dpkg.log", "2024-01-01 noise\n");
    write(root, "var/cache/apt/pkgcache.bin", "noise");
    write(root, "var/lib/svc/data", "state\n");
    std::fs::create_dir_all(root.join("var/spool/empty")).expect("mkdir");
    std::fs::set_permissions(
        root.join("var/spool/empty"),
        std::fs::Permissions::from_mode(0o1730),
    )
    .expect("chmod");
    write(root, "boot/vmlinuz-6.1.0-test", "kernel\n");
    write(root, "boot/initrd.img-6.1.0-test", "initrd\n");
    link(root, "vmlinuz", "boot/vmlinuz-6.1.0-test");
    std::fs::create_dir_all(root.join("usr/lib/modules/6.1.0-test")).expect("mkdir");
    write(root, "usr/bin/true", "#!/bin/sh\n");
}

fn manifest(dir: &Path, base: &Path, extra: &str) -> PathBuf {
    let files = dir.join("files");
    write(&files, "motd", "welcome to the image\n");
    let m = dir.join("image.toml");
    std::fs::write(
        &m,
        format!(
            r#"[image]
name = "Folder"
version = "1.0"
ref = "folder/main"

[[input]]
type = "directory"
path = "{}"

[[input]]
type = "files"
source = "files/motd"
target = "/etc/motd"

[sysusers]
lines = ["u extra 300 \"Extra user\""]

[tmpfiles]
lines = ["d /var/lib/extra 0750 300 300 -"]

[units]
enable = ["extra.service"]

[kernel]
args = ["quiet", "console=ttyS0"]

[deploy]
etc = "stateless"
{extra}"#,
            base.display()
        ),
    )
    .expect("write manifest");
    m
}

fn compose(repo: &Path, cache: &Path, args: &[&str]) -> std::process::Output {
    Command::new(slate_bin())
        .env("SLATE_REPO", repo)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("SLATE_CACHE_DIR", cache)
        .arg("compose")
        .args(args)
        .output()
        .expect("run slate compose")
}

fn id_of(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "compose failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Make `repo` an empty bare repository.
fn fresh_repo(repo: &Path) {
    ok(
        repo,
        &[
            "init",
            "--repo",
            repo.to_str().expect("utf-8"),
            "--mode",
            "bare",
        ],
    );
}

fn cat(repo: &Path, rev: &str, path: &str) -> String {
    ok(repo, &["cat", rev, path])
}

#[test]
#[cfg_attr(
    not(all(test_root, test_have = "systemctl")),
    ignore = "needs root (file owners) and systemctl ([units])"
)]
fn compose_a_folder_into_a_stateless_image() {
    if !is_root() {
        return skip("slate compose needs root (file owners)");
    }
    if !have("systemctl") {
        return skip("systemctl is not installed ([units] are enabled with it)");
    }
    let t = tempfile::tempdir().expect("tempdir");
    let base = t.path().join("base");
    debian_like(&base, "1.0");
    let m = manifest(t.path(), &base, "");
    let cache = t.path().join("cache");
    let repo = init(t.path(), "bare");
    let mpath = m.to_str().expect("utf-8");
    let first = compose(&repo, &cache, &[mpath]);
    let id = id_of(&first);
    assert_eq!(id.len(), 64, "{id}");
    // The lockfile is named: image.lock beside image.toml.
    let lock = t.path().join("image.lock");
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(
        err.contains(&format!("lockfile {}: written", lock.display())) && lock.is_file(),
        "{err}"
    );
    let again = compose(&repo, &cache, &[mpath]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains(&format!("lockfile {}: unchanged", lock.display())),
        "{err}"
    );

    // /etc and /var are empty in the image; their content is factory
    // defaults with lines; what belongs to one machine is not shipped.
    let ls = ok(&repo, &["ls", "-R", &id, "/etc"]);
    assert!(!ls.contains("motd") && !ls.contains("passwd"), "{ls}");
    assert_eq!(
        cat(&repo, &id, "/usr/share/factory/etc/motd"),
        "welcome to the image\n"
    );
    assert_eq!(
        cat(&repo, &id, "/usr/share/factory/etc/app/app.conf"),
        "level = 1\n"
    );
    let etc_lines = cat(&repo, &id, "/usr/lib/tmpfiles.d/slate-etc.conf");
    assert!(etc_lines.contains("C /etc/app - - - -"), "{etc_lines}");
    assert!(etc_lines.contains("C /etc/motd - - - -"), "{etc_lines}");
    for never in ["machine-id", "hostname", "passwd", "shadow"] {
        let o = crate::common::slate(
            &repo,
            &["cat", &id, &format!("/usr/share/factory/etc/{never}")],
        );
        assert!(!o.status.success(), "/etc/{never} was shipped");
    }
    // Users as sysusers.d lines, with their ids.
    let users = cat(&repo, &id, "/usr/lib/sysusers.d/slate-image.conf");
    assert!(users.contains("u svc 200"), "{users}");
    assert!(cat(&repo, &id, "/usr/lib/sysusers.d/slate-manifest.conf").contains("u extra 300"));
    // Units: the package's link and the manifest's enable, both in /usr.
    let wants = ok(
        &repo,
        &["ls", &id, "/usr/lib/systemd/system/multi-user.target.wants"],
    );
    assert!(
        wants.contains("app.service") && wants.contains("extra.service"),
        "{wants}"
    );
    assert!(
        cat(&repo, &id, "/usr/lib/systemd/system-preset/00-slate.preset").contains("disable *")
    );
    // /var: noise gone, state as lines and factory copies, dpkg in /usr.
    let var_lines = cat(&repo, &id, "/usr/lib/tmpfiles.d/slate-var.conf");
    assert!(var_lines.contains("C /var/lib/svc - - - -"), "{var_lines}");
    assert!(var_lines.contains("C /var/spool - - - -"), "{var_lines}");
    assert!(var_lines.contains("d /var/log 0755 0 0 -"), "{var_lines}");
    assert!(
        var_lines.contains("L /var/lib/dpkg - - - - /usr/lib/sysimage/dpkg"),
        "{var_lines}"
    );
    assert!(!var_lines.contains("pkgcache") && !var_lines.contains("status-old"));
    assert_eq!(
        cat(&repo, &id, "/usr/share/factory/var/lib/svc/data"),
        "state\n"
    );
    assert!(cat(&repo, &id, "/usr/lib/sysimage/dpkg/status").contains("Package: tool"));
    let var_ls = ok(&repo, &["ls", &id, "/var"]);
    assert!(
        var_ls.trim().is_empty() || !var_ls.contains("lib"),
        "{var_ls}"
    );
    // The kernel in /usr/lib/modules, the arguments beside.
    assert_eq!(
        cat(&repo, &id, "/usr/lib/modules/6.1.0-test/vmlinuz"),
        "kernel\n"
    );
    assert_eq!(
        cat(&repo, &id, "/usr/lib/modules/6.1.0-test/initrd"),
        "initrd\n"
    );
    assert_eq!(
        cat(&repo, &id, "/usr/lib/kernel/cmdline"),
        "quiet console=ttyS0\n"
    );
    // Slate itself, with its dracut module.
    let bin = ok(&repo, &["ls", "-l", &id, "/usr/bin/slate"]);
    assert!(bin.starts_with("-0755"), "{bin}");
    let module = cat(
        &repo,
        &id,
        "/usr/lib/dracut/modules.d/50slate/slate-prepare-root.service",
    );
    assert!(
        module.contains("ExecStart=/usr/bin/slate admin prepare-root"),
        "{module}"
    );
    // The unit that finalizes a staged deployment at shutdown, enabled.
    let unit = cat(
        &repo,
        &id,
        "/usr/lib/systemd/system/slate-finalize-staged.service",
    );
    assert!(
        unit.contains("ExecStop=/usr/bin/slate admin finalize-staged"),
        "{unit}"
    );
    let wants = ok(
        &repo,
        &[
            "ls",
            "-l",
            &id,
            "/usr/lib/systemd/system/multi-user.target.wants",
        ],
    );
    assert!(
        wants.contains("slate-finalize-staged.service -> ../slate-finalize-staged.service"),
        "{wants}"
    );
    // The ESP's automount keeps it mounted, so no idle unmount stops the unit.
    for unit in ["efi", "boot"] {
        let dropin = cat(
            &repo,
            &id,
            &format!("/usr/lib/systemd/system/{unit}.automount.d/slate-finalize-staged.conf"),
        );
        assert!(dropin.contains("TimeoutIdleSec=0"), "{dropin}");
    }
    // Packages in show, metadata of the image.
    let show = ok(&repo, &["show", &id]);
    assert!(
        show.contains("Packages: 2") && show.contains("tool 1.0 all"),
        "{show}"
    );
    assert!(show.contains("slate.deploy.etc=stateless"), "{show}");

    // The lockfile pins the inputs; the same inputs give the same commit.
    let lock = std::fs::read_to_string(t.path().join("image.lock")).expect("lockfile");
    assert!(
        lock.contains("kind = \"directory\"") && lock.contains("tree:"),
        "{lock}"
    );
    assert!(lock.contains("kind = \"files\""), "{lock}");
    let repo2 = t.path().join("repo2");
    fresh_repo(&repo2);
    assert_eq!(id_of(&compose(&repo2, &cache, &["--locked", mpath])), id);

    // Nothing changed: no new commit, unless asked for.
    let o = compose(&repo, &cache, &[mpath]);
    assert_eq!(id_of(&o), id);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already has this image"));
    let again = id_of(&compose(&repo, &cache, &["--always-commit", mpath]));
    assert_ne!(again, id);
    ok(&repo, &["reset", "folder/main", &id]);

    // The built image boots its /etc back: tmpfiles and sysusers on an
    // empty /etc of a checkout make the files of the factory.
    let co = t.path().join("co");
    ok(&repo, &["checkout", &id, co.to_str().expect("utf-8")]);
    ok(&repo, &["sysusers", "--root", co.to_str().expect("utf-8")]);
    ok(
        &repo,
        &[
            "tmpfiles",
            "--root",
            co.to_str().expect("utf-8"),
            "--create",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(co.join("etc/motd")).expect("motd"),
        "welcome to the image\n"
    );
    assert!(std::fs::read_to_string(co.join("etc/passwd"))
        .expect("passwd")
        .contains("svc:x:200:200"));
    assert_eq!(
        std::fs::read_to_string(co.join("var/lib/svc/data")).expect("state"),
        "state\n"
    );
    assert_eq!(
        std::fs::metadata(co.join("var/lib/extra"))
            .expect("extra")
            .uid(),
        300
    );
    assert_eq!(
        std::fs::symlink_metadata(co.join("var/spool/empty"))
            .expect("spool")
            .mode()
            & 0o7777,
        0o1730
    );
    assert_eq!(
        std::fs::read_link(co.join("var/lib/dpkg")).expect("dpkg link"),
        Path::new("/usr/lib/sysimage/dpkg")
    );
    assert!(co.join("usr/lib/sysimage/dpkg/status").exists());

    // A changed input fails --locked, naming it; nothing is committed.
    write(t.path(), "files/motd", "changed\n");
    let repo3 = t.path().join("repo3");
    fresh_repo(&repo3);
    let o = compose(&repo3, &cache, &["--locked", mpath]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("input files /etc/motd"),
        "{err}"
    );
    assert!(fails(&repo3, &["rev-parse", "folder/main"]).contains("folder/main"));

    // A second version: diff --packages shows what changed.
    write(t.path(), "files/motd", "welcome to the image\n");
    std::fs::remove_dir_all(&base).expect("rm base");
    debian_like(&base, "2.0");
    let id2 = id_of(&compose(&repo, &cache, &[mpath]));
    assert_ne!(id2, id);
    let d = ok(&repo, &["diff", "--packages", &id, &id2]);
    assert_eq!(d.trim(), "M    base 1.0 -> 2.0", "{d}");
}

#[test]
#[cfg_attr(
    not(all(test_root, test_have = "systemctl")),
    ignore = "needs root (file owners) and systemctl ([units])"
)]
fn compose_lint_and_bad_input() {
    if !is_root() {
        return skip("slate compose needs root (file owners)");
    }
    if !have("systemctl") {
        return skip("systemctl is not installed ([units] are enabled with it)");
    }
    let t = tempfile::tempdir().expect("tempdir");
    let base = t.path().join("base");
    debian_like(&base, "1.0");
    // The tree's own line makes /var/lib/thing from a source that lacks
    // one of its files: that file is accounted for by nothing.
    write(
        &base,
        "usr/lib/tmpfiles.d/thing.conf",
        "C /var/lib/thing - - - - /usr/share/thing\n",
    );
    write(&base, "usr/share/thing/a", "a\n");
    write(&base, "var/lib/thing/a", "a\n");
    write(&base, "var/lib/thing/extra", "only here\n");
    let m = manifest(t.path(), &base, "");
    let cache = t.path().join("cache");
    let repo = init(t.path(), "bare");
    let mpath = m.to_str().expect("utf-8");
    let o = compose(&repo, &cache, &["--strict", mpath]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "--strict passed");
    assert!(
        err.contains("/var/lib/thing/extra") && !err.contains("/var/lib/thing/a\n"),
        "{err}"
    );
    assert!(fails(&repo, &["rev-parse", "folder/main"]).contains("folder/main"));
    // Without --strict it commits and warns; an exclusion silences it.
    // An enabled apt timer and a backup file in /etc are warned about;
    // systemd-resolved's backup of resolv.conf is removed as noise.
    write(&base, "etc/motd.dpkg-old", "old\n");
    write(
        &base,
        "etc/.resolv.conf.systemd-resolved.bak",
        "nameserver 1.1.1.1\n",
    );
    write(
        &base,
        "usr/lib/systemd/system/apt-daily.timer",
        "[Timer]\nOnCalendar=daily\n",
    );
    std::fs::create_dir_all(base.join("etc/systemd/system/timers.target.wants")).expect("mkdir");
    std::os::unix::fs::symlink(
        "/usr/lib/systemd/system/apt-daily.timer",
        base.join("etc/systemd/system/timers.target.wants/apt-daily.timer"),
    )
    .expect("link");
    let o = compose(&repo, &cache, &[mpath]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/var/lib/thing/extra"), "{err}");
    assert!(
        err.contains("lint: warning: enabled unit writes into the read-only /usr: apt-daily.timer"),
        "{err}"
    );
    assert!(
        err.contains("backup file in the factory /etc: /etc/motd.dpkg-old"),
        "{err}"
    );
    assert!(!err.contains("resolved.bak"), "{err}");
    let id = ok(&repo, &["rev-parse", "folder/main"]);
    let ls = ok(&repo, &["ls", "-R", id.trim(), "/usr/share/factory/etc"]);
    assert!(
        !ls.contains("resolved.bak") && ls.contains("motd.dpkg-old"),
        "{ls}"
    );
    let m = manifest(
        t.path(),
        &base,
        "\n[lint]\nexclude = [\"/var/lib/thing/\"]\n",
    );
    let o = compose(
        &repo,
        &cache,
        &["--strict", "--json", m.to_str().expect("utf-8")],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["lint"]["unaccounted"].as_array().map(Vec::len), Some(0));
    assert!(v["lint"]["excluded"]
        .to_string()
        .contains("/var/lib/thing/extra"));

    // Bad input: a wrong digest, packages on a folder base, a unit that
    // does not exist: each named, nothing committed.
    let bad = |extra_input: &str, extra: &str| -> String {
        let p = t.path().join("bad.toml");
        let text = std::fs::read_to_string(&m)
            .expect("read")
            .replace("[sysusers]", &format!("{extra_input}\n[sysusers]"))
            .replace("[kernel]", &format!("{extra}\n[kernel]"));
        std::fs::write(&p, text).expect("write");
        let r = t
            .path()
            .join(format!("bad-repo-{}", extra_input.len() + extra.len()));
        fresh_repo(&r);
        let o = compose(&r, &cache, &[p.to_str().expect("utf-8")]);
        assert!(!o.status.success());
        assert!(fails(&r, &["rev-parse", "folder/main"]).contains("folder/main"));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    write(t.path(), "x.deb", "not a package");
    let e = bad(
        &format!(
            "[[input]]\ntype = \"deb\"\npath = \"x.deb\"\nsha256 = \"{}\"\n",
            "0".repeat(64)
        ),
        "",
    );
    assert!(
        e.contains("input 3 (deb)") && e.contains("mmdebstrap base"),
        "{e}"
    );
    let e = bad("", "[units.more]\n");
    assert!(
        e.contains("bad.toml:") && e.contains("unknown field"),
        "{e}"
    );
    let text = std::fs::read_to_string(&m)
        .expect("read")
        .replace("extra.service", "nosuch.service");
    let p = t.path().join("nounit.toml");
    std::fs::write(&p, text).expect("write");
    let o = compose(&repo, &cache, &[p.to_str().expect("utf-8")]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("nosuch.service: no such unit"));
}

#[test]
#[cfg_attr(
    not(all(test_root, test_have = "systemctl", test_have = "tar")),
    ignore = "needs root (file owners), systemctl and tar"
)]
fn compose_a_tarball_base_with_units_disabled() {
    if !is_root() {
        return skip("slate compose needs root (file owners)");
    }
    for tool in ["systemctl", "tar"] {
        if !have(tool) {
            return skip(&format!("{tool} is not installed"));
        }
    }
    let t = tempfile::tempdir().expect("tempdir");
    let base = t.path().join("base");
    debian_like(&base, "1.0");
    let tarball = t.path().join("base.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&base)
        .args(["--numeric-owner", "-cf"])
        .arg(&tarball)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    let sha = slate_core::hash::ObjectId::digest(&std::fs::read(&tarball).expect("read")).to_hex();
    let text = |digest: &str| {
        format!(
            "[image]\nname = \"Tar\"\nversion = \"1\"\nref = \"tar/main\"\n\n\
             [[input]]\ntype = \"tarball\"\npath = \"base.tar\"\nsha256 = \"{digest}\"\n\n\
             [units]\nenable = [\"extra.service\"]\ndisable = [\"app.service\"]\n"
        )
    };
    let m = t.path().join("tar.toml");
    std::fs::write(&m, text(&sha)).expect("manifest");
    let cache = t.path().join("cache");
    let repo = init(t.path(), "bare");
    let id = id_of(&compose(&repo, &cache, &[m.to_str().expect("utf-8")]));
    let wants = ok(
        &repo,
        &["ls", &id, "/usr/lib/systemd/system/multi-user.target.wants"],
    );
    assert!(wants.contains("extra.service"), "{wants}");
    assert!(
        !wants.contains("app.service"),
        "app.service still enabled: {wants}"
    );
    assert_eq!(
        cat(&repo, &id, "/usr/share/factory/var/lib/svc/data"),
        "state\n"
    );
    let lock = std::fs::read_to_string(t.path().join("tar.lock")).expect("lockfile");
    assert!(lock.contains(&sha), "{lock}");

    // A wrong digest: named, with both digests; nothing committed.
    let wrong = "0".repeat(64);
    std::fs::write(&m, text(&wrong)).expect("manifest");
    let repo2 = t.path().join("repo2");
    fresh_repo(&repo2);
    let o = compose(&repo2, &cache, &[m.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("input 1 (tarball)") && err.contains(&sha) && err.contains(&wrong),
        "{err}"
    );
    assert!(fails(&repo2, &["rev-parse", "tar/main"]).contains("tar/main"));
}
