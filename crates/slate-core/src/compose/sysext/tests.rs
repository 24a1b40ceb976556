use std::path::{Path, PathBuf};

use super::*;
use crate::compose::manifest::Loaded;
use crate::store::{Repo, RepoMode};

const OS: &str = r#"[image]
name = "Example"
version = "12.1"
vendor = "example"
arch = "x86-64"
install-slate = false

[[input]]
type = "directory"
path = "base"
"#;

fn ext_manifest(extra: &str) -> String {
    format!(
        r#"[image]
name = "debug"
version = "1"
vendor = "example"
arch = "x86-64"
kind = "sysext"
base = "usr/example/x86-64"

[[input]]
type = "files"
source = "tool"
target = "/usr/bin/tool"
{extra}"#
    )
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

fn options(d: &Path, manifest: &str, name: &str) -> Options {
    let m = d.join(name);
    std::fs::write(&m, manifest).expect("manifest");
    Options {
        manifest: Loaded::read(&m).expect("manifest reads"),
        lockfile: d.join(format!("{name}.lock")),
        locked: false,
        update: false,
        strict: false,
        cache_dir: d.join("cache"),
        tree_cache: false,
        epoch: 1_700_000_000,
        always_commit: false,
        slate_bin: None,
        initrd_bin: None,
    }
}

/// A folder base with an os-release, composed; returns the repository.
fn setup() -> (tempfile::TempDir, Repo, PathBuf) {
    let d = tempfile::tempdir().expect("tmp");
    let base = d.path().join("base");
    write(
        &base.join("usr/lib/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian\"\n",
    );
    write(&base.join("usr/bin/sh"), "#!/bin/true\n");
    write(&base.join("usr/share/doc/a"), "a\n");
    let repo_path = d.path().join("repo");
    let repo = Repo::init(&repo_path, RepoMode::BareUser).expect("repo");
    let o = options(d.path(), OS, "os.toml");
    let out = crate::compose::compose(&repo, &o, &mut |_| {}).expect("os composes");
    assert_eq!(out.branch, "usr/example/x86-64");
    assert_eq!(out.name.as_deref(), Some("usr:example:x86-64:12.1"));
    let p = d.path().to_path_buf();
    (d, repo, p)
}

#[test]
fn an_extension_holds_its_own_files_and_a_matching_release() {
    let (_d, repo, dir) = setup();
    std::fs::write(dir.join("tool"), "#!/bin/sh\necho tool\n").expect("tool");
    // A file the base has, the same: left out.
    write(&dir.join("doc/a"), "a\n");
    let extra = "\n[[input]]\ntype = \"files\"\nsource = \"doc\"\ntarget = \"/usr/share/doc\"\n";
    let o = options(&dir, &ext_manifest(extra), "ext.toml");
    let out = crate::compose::compose(&repo, &o, &mut |_| {}).expect("extension composes");
    assert_eq!(out.branch, "ext/example/debug/x86-64");
    assert_eq!(out.name.as_deref(), Some("ext:example:debug:x86-64:1"));
    let e = out.extension.expect("an extension");
    assert_eq!(e.left_out, ["/usr/share/doc/a"]);
    assert_eq!(e.release, ["ID=debian", "VERSION_ID=12"]);
    let tree = repo.read_commit(&out.id).expect("commit").tree;
    check_tree(&repo, &tree).expect("usr and opt only");
    let listed = crate::walk::list(&repo, &tree, b"", true)
        .expect("list")
        .expect("a tree");
    let paths: Vec<String> = listed
        .iter()
        .filter(|l| l.kind != "dir")
        .map(|l| crate::object::name::escape(&l.path))
        .collect();
    assert_eq!(
        paths,
        [
            "/usr/bin/tool",
            "/usr/lib/extension-release.d/extension-release.debug"
        ]
    );
    let (name, rel) = ext_release(&repo, &tree).expect("read").expect("release");
    assert_eq!(name, "debug");
    let base_tree = repo.read_commit(&e.base).expect("base commit").tree;
    let os = os_release(&repo, &base_tree)
        .expect("read")
        .expect("os-release");
    rel.matches(&os).expect("matches its base");
    // Again: the same commit (reproducible).
    let again = crate::compose::compose(
        &repo,
        &Options {
            always_commit: true,
            ..o
        },
        &mut |_| {},
    )
    .expect("again");
    assert_eq!(
        repo.read_commit(&again.id).expect("c").tree,
        tree,
        "the same inputs, another tree"
    );
}

#[test]
fn a_change_to_the_base_or_a_path_outside_usr_is_refused_by_name() {
    let (_d, repo, dir) = setup();
    std::fs::write(dir.join("tool"), "x\n").expect("tool");
    write(&dir.join("sh"), "#!/bin/false\n");
    write(&dir.join("etcfile"), "x\n");
    let extra = "\n[[input]]\ntype = \"files\"\nsource = \"sh\"\ntarget = \"/usr/bin/sh\"\n\
                 \n[[input]]\ntype = \"files\"\nsource = \"etcfile\"\ntarget = \"/etc/x\"\n";
    let o = options(&dir, &ext_manifest(extra), "ext.toml");
    let e = crate::compose::compose(&repo, &o, &mut |_| {})
        .expect_err("refused")
        .to_string();
    assert!(e.contains("/usr/bin/sh: changes a file of the base"), "{e}");
    assert!(e.contains("/etc: outside /usr and /opt"), "{e}");
    assert!(repo
        .read_ref("ext/example/debug/x86-64")
        .expect("ref")
        .is_none());
}

#[test]
fn releases_match_as_systemd_sysext_decides() {
    let os = Release::parse("ID=debian\nVERSION_ID=\"12\"\n");
    assert!(Release::parse("ID=debian\nVERSION_ID=12\n")
        .matches(&os)
        .is_ok());
    let e = Release::parse("ID=debian\nVERSION_ID=13\n")
        .matches(&os)
        .expect_err("13");
    assert!(e.contains("VERSION_ID=13"), "{e}");
    assert!(Release::parse("ID=fedora\nVERSION_ID=12\n")
        .matches(&os)
        .is_err());
    assert!(Release::parse("ID=_any\n").matches(&os).is_ok());
    let lvl = Release::parse("ID=debian\nSYSEXT_LEVEL=2\n");
    assert!(lvl
        .matches(&Release::parse(
            "ID=debian\nSYSEXT_LEVEL=2\nVERSION_ID=12\n"
        ))
        .is_ok());
    assert!(lvl.matches(&os).is_err());
    assert!(Release::parse("ID=debian\n").matches(&os).is_err());
}

#[test]
fn manifests_of_extensions_are_checked() {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::write(d.path().join("tool"), "x").expect("tool");
    std::fs::create_dir(d.path().join("base")).expect("base");
    let p = d.path().join("m.toml");
    let bad = |text: &str| Loaded::parse(&p, text).expect_err("refused").to_string();
    let e = bad(&ext_manifest("").replace("base = \"usr/example/x86-64\"\n", ""));
    assert!(e.contains("needs base"), "{e}");
    let e = bad(&ext_manifest("").replace("name = \"debug\"", "name = \"de bug\""));
    assert!(e.contains("extension-release.NAME"), "{e}");
    let e = bad(&ext_manifest(
        "\n[[input]]\ntype = \"directory\"\npath = \".\"\n",
    ));
    assert!(e.contains("its base is [image] base"), "{e}");
    let e = bad(&ext_manifest("\n[deploy]\nusr = \"verity\"\n"));
    assert!(e.contains("merged over the /usr of its base"), "{e}");
    let e = bad(&OS.replace("vendor = \"example\"\n", ""));
    assert!(e.contains("give ref"), "{e}");
    let e = bad(&OS.replace("vendor = \"example\"", "vendor = \"a:b\""));
    assert!(e.contains("not a part of a name"), "{e}");
    // A manifest with a ref and no vendor reads as before.
    let l =
        Loaded::parse(&p, &OS.replace("vendor = \"example\"\n", "ref = \"x/y\"\n")).expect("reads");
    assert_eq!(l.manifest.image.branch.get_ref(), "x/y");
}

#[test]
fn locked_follows_the_lockfile_and_names_what_changed() {
    let (_d, repo, dir) = setup();
    std::fs::write(dir.join("tool"), "one\n").expect("tool");
    let o = options(&dir, &ext_manifest(""), "ext.toml");
    let first = crate::compose::compose(&repo, &o, &mut |_| {}).expect("composes");
    assert!(first.lock_written);
    let locked = Options {
        locked: true,
        always_commit: true,
        ..o.clone()
    };
    let again = crate::compose::compose(&repo, &locked, &mut |_| {}).expect("locked");
    assert!(!again.lock_written);
    std::fs::write(dir.join("tool"), "two\n").expect("tool");
    let e = crate::compose::compose(&repo, &locked, &mut |_| {})
        .expect_err("differs")
        .to_string();
    assert!(e.contains("input files /usr/bin/tool"), "{e}");
}
