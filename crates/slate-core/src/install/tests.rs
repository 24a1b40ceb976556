//! The trust rule in an install: a commit of a source repository's
//! tracking ref `remotes/R/...`, where R requires signatures, is installed
//! only with a signature by one of R's keys.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::commit::{self, CommitOptions, ParentSpec, Source};
use crate::remotes::{self, config, RemoteConfig};
use crate::sign::SecretKey;
use crate::store::{Repo, RepoMode};

/// Why the install cannot run here, if it cannot.
fn missing() -> Option<String> {
    if !crate::fsutil::is_root() {
        return Some("a sysroot's bare repository needs root".into());
    }
    for t in ["sfdisk", "mkfs.vfat", "mcopy", "mkfs.ext4"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()));
        if !found {
            return Some(format!(
                "{t} is not installed (fdisk, dosfstools, mtools, e2fsprogs)"
            ));
        }
    }
    if !Path::new(disk::SYSTEMD_BOOT_EFI).exists() {
        return Some("systemd-boot-efi is not installed".into());
    }
    None
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, content).expect("write");
}

#[test]
#[cfg_attr(not(test_root), ignore = "needs root (a sysroot's bare repository)")]
fn an_unsigned_commit_of_a_remote_that_requires_signatures_is_not_installed() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let tree = t.path().join("tree");
    write(
        &tree,
        "usr/lib/modules/6.1.0-test/vmlinuz",
        "kernel image\n",
    );
    write(&tree, "usr/lib/modules/6.1.0-test/initrd", "initrd image\n");
    write(&tree, "usr/lib/os-release", "VERSION_ID=1\n");
    write(&tree, "etc/hostname", "box\n");
    let src = Repo::init(&t.path().join("src"), RepoMode::Bare).expect("init");
    let key = SecretKey::generate().expect("key");
    config::add(
        &src,
        "origin",
        &RemoteConfig {
            urls: vec!["http://127.0.0.1:9/".into()],
            keys: vec![key.public().to_pem()],
            no_sign_verify: false,
        },
    )
    .expect("remote add");
    let branch = config::tracking_ref("origin", "os/main");
    let c = commit::commit(
        &src,
        Source::Dir(&tree),
        &CommitOptions {
            branch: branch.clone(),
            subject: "version 1".into(),
            body: String::new(),
            timestamp: 1,
            metadata: BTreeMap::new(),
            parent: ParentSpec::Auto,
            skip_if_unchanged: false,
        },
        &Progress::default(),
    )
    .expect("commit")
    .id;
    let disk = t.path().join("disk.img");
    let o = InstallOptions::new(
        src.path().to_path_buf(),
        disk.clone(),
        branch.clone(),
        t.path().to_path_buf(),
        1,
    );

    let err = install(&o, &Quiet).expect_err("refused");
    assert!(
        matches!(&err, Error::Sysroot(sysroot::Error::Remotes(remotes::Error::Untrusted { commit, remote }))
            if *commit == c && remote == "origin"),
        "{err}"
    );
    assert!(!disk.exists(), "nothing written");

    // Signed by the remote's key: installed.
    src.sign_commit(&c, &key).expect("sign");
    let r = install(&o, &Quiet).expect("install");
    assert_eq!(r.resolved.commit, c);
    assert_eq!(r.resolved.origin, crate::remotes::Origin::Ref(branch));
    assert!(disk.is_file());
}
