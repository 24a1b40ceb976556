//! Deployments with a verity `/usr`: the image made and checked against
//! the signed root hash, the entry's argument, staging, `verify`, and a
//! plain deployment beside them unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::super::*;
use super::usr_plan;
use crate::commit::{self, CommitOptions, ParentSpec, Source};
use crate::hash::ObjectId;
use crate::image_meta::{ImageUsr, UsrMode};
use crate::progress::Progress;
use crate::verity;

struct Env {
    _dir: tempfile::TempDir,
    tree: PathBuf,
    s: Sysroot,
}

fn setup(usr: UsrMode) -> Option<Env> {
    if !crate::fsutil::is_root() {
        eprintln!("SKIPPED: a sysroot's bare repository needs root");
        return None;
    }
    if std::process::Command::new("mkfs.erofs")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: mkfs.erofs (erofs-utils) is not installed");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("tree");
    let m = tree.join("usr/lib/modules/6.1.0-test");
    std::fs::create_dir_all(&m).expect("mkdir");
    std::fs::write(m.join("vmlinuz"), "kernel\n").expect("write");
    std::fs::write(m.join("initrd"), "initrd\n").expect("write");
    std::fs::create_dir_all(tree.join("etc")).expect("mkdir");
    std::fs::write(tree.join("etc/hostname"), "box\n").expect("write");
    let big = noise(50_000);
    std::fs::write(tree.join("usr/lib/big"), big).expect("write");
    let s = Sysroot::init_fs(&dir.path().join("sysroot"), Some(Path::new("boot"))).expect("init");
    let cfg = OsConfig {
        usr,
        ..OsConfig::new(EtcMode::Persistent, VarMode::Persistent)
    };
    s.os_init("os", &cfg).expect("os-init");
    Some(Env { _dir: dir, tree, s })
}

/// Bytes that do not repeat (xorshift).
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn commit_with(repo: &crate::store::Repo, tree: &Path, v: i64, usr: ImageUsr) -> ObjectId {
    std::fs::write(tree.join("usr/lib/os-release"), format!("VERSION_ID={v}\n")).expect("write");
    let mut metadata = BTreeMap::new();
    usr.write(&mut metadata);
    let opts = CommitOptions {
        branch: "os/main".into(),
        subject: format!("version {v}"),
        body: String::new(),
        timestamp: 1_700_000_000 + v,
        metadata,
        parent: ParentSpec::Auto,
        skip_if_unchanged: false,
    };
    commit::commit(repo, Source::Dir(tree), &opts, &Progress::default())
        .expect("commit")
        .id
}

fn deploy(s: &Sysroot, c: &ObjectId) -> Result<Deployed> {
    let opts = DeployOptions {
        os: Some("os".into()),
        now: 1,
        ..DeployOptions::default()
    };
    let _lock = s.lock()?;
    let plan = s.plan_deploy(c, &opts)?;
    s.deploy(plan, &opts, &Progress::default())
}

/// The root hash of `commit`'s `/usr` image, built aside as compose does.
fn root_hash_of(s: &Sysroot, c: &ObjectId, scratch: &Path) -> String {
    std::fs::create_dir_all(scratch).expect("mkdir");
    verity::build_from_commit(s.repo(), c, scratch, &scratch.join("img"))
        .expect("build")
        .root_hash
}

#[test]
#[cfg_attr(not(test_root), ignore = "needs root (a sysroot's bare repository)")]
fn a_signed_root_hash_is_deployed_and_verified_and_a_flipped_byte_named() {
    let Some(e) = setup(UsrMode::Plain) else {
        return;
    };
    let s = &e.s;
    // Compose's way: the hash of the commit's /usr, then a commit of the
    // same tree that names it.
    let c0 = commit_with(s.repo(), &e.tree, 1, ImageUsr::default());
    let hash = root_hash_of(s, &c0, &e.tree.with_file_name("scratch"));
    let c = commit_with(
        s.repo(),
        &e.tree,
        1,
        ImageUsr {
            mode: Some(UsrMode::Verity),
            root_hash: Some(hash.clone()),
        },
    );
    let d = deploy(s, &c).expect("deploy");
    let v = d.record.usr_verity.clone().expect("a verity /usr");
    assert_eq!(v.root_hash, hash);
    let dep = s.deployment_path(&d.record);
    assert!(dep.join(verity::IMAGE_FILE).is_file());
    assert_eq!(
        std::fs::read_dir(dep.join("usr")).expect("usr").count(),
        0,
        "usr/ is an empty mount point"
    );
    let entry =
        std::fs::read_to_string(s.entries_dir().join(d.entry.as_deref().expect("an entry")))
            .expect("entry");
    assert!(entry.contains(&format!("slate.usrhash={hash}")), "{entry}");
    let st = s.status().expect("status");
    assert!(st.deployments[0].usr_verified);
    assert_eq!(
        st.deployments[0].usr_root_hash.as_deref(),
        Some(hash.as_str())
    );

    let ok = s.verify_usr(None).expect("verify");
    assert!(ok.ok, "{ok:?}");
    // One byte of /usr/lib/big in the image on the disk.
    let img = dep.join(verity::IMAGE_FILE);
    let mut bytes = std::fs::read(&img).expect("read");
    let needle = noise(50_000)[30_000..30_064].to_vec();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("the file's bytes");
    bytes[at] ^= 1;
    std::fs::write(&img, bytes).expect("write");
    let bad = s.verify_usr(Some(&d.record.id)).expect("verify");
    assert!(!bad.ok);
    let first = bad.first_bad.expect("a bad block");
    assert_eq!(first.path.as_deref(), Some("/usr/lib/big"), "{first:?}");
    assert_eq!(first.block, at as u64 / 4096);
}

#[test]
#[cfg_attr(not(test_root), ignore = "needs root (a sysroot's bare repository)")]
fn a_commit_whose_signed_root_hash_differs_is_refused_naming_both() {
    let Some(e) = setup(UsrMode::Plain) else {
        return;
    };
    let s = &e.s;
    let wrong = "ab".repeat(32);
    let c = commit_with(
        s.repo(),
        &e.tree,
        1,
        ImageUsr {
            mode: Some(UsrMode::Verity),
            root_hash: Some(wrong.clone()),
        },
    );
    let err = deploy(s, &c).expect_err("refused").to_string();
    assert!(err.contains(&wrong) && err.contains("root hash"), "{err}");
    let built = root_hash_of(s, &c, &e.tree.with_file_name("scratch"));
    assert!(err.contains(&built), "{err}");
    assert!(s.status().expect("status").deployments.is_empty());
    assert!(std::fs::read_dir(s.deploy_dir("os"))
        .expect("deploy dir")
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().starts_with(".staging")
            || std::fs::read_dir(e.path()).is_ok()));
}

#[test]
#[cfg_attr(not(test_root), ignore = "needs root (a sysroot's bare repository)")]
fn an_os_that_asks_for_verity_gets_it_staged_and_a_plain_one_stays_plain() {
    let Some(e) = setup(UsrMode::Verity) else {
        return;
    };
    let s = &e.s;
    // An image that says nothing: the OS asks, the hash is computed here.
    let c = commit_with(s.repo(), &e.tree, 1, ImageUsr::default());
    let d = deploy(s, &c).expect("deploy");
    assert!(d.record.usr_verity.is_some());
    // Staged, then finalized: the entry carries the hash.
    let c2 = commit_with(s.repo(), &e.tree, 2, ImageUsr::default());
    let opts = DeployOptions {
        os: Some("os".into()),
        now: 2,
        stage: true,
        ..DeployOptions::default()
    };
    let lock = s.lock().expect("lock");
    let plan = s.plan_deploy(&c2, &opts).expect("plan");
    s.stage(plan, &opts, &Progress::default()).expect("stage");
    let rep = s.finalize_staged(&lock, None, 3).expect("finalize");
    drop(lock);
    let f = &rep.finalized[0];
    let entry = std::fs::read_to_string(s.entries_dir().join(f.entry.as_deref().expect("entry")))
        .expect("entry");
    let st = s.status().expect("status");
    let hash = st.deployments[0].usr_root_hash.clone().expect("verity");
    assert!(entry.contains(&format!("slate.usrhash={hash}")), "{entry}");

    // An OS that does not ask, an image that does not ask: as before.
    let plain = OsConfig::new(EtcMode::Persistent, VarMode::Persistent);
    s.os_init("other", &plain).expect("os-init");
    let opts = DeployOptions {
        os: Some("other".into()),
        now: 4,
        ..DeployOptions::default()
    };
    let _lock = s.lock().expect("lock");
    let plan = s.plan_deploy(&c, &opts).expect("plan");
    assert!(plan.usr_verity.is_none());
    let d = s.deploy(plan, &opts, &Progress::default()).expect("deploy");
    assert!(d.record.usr_verity.is_none());
    let dep = s.deployment_path(&d.record);
    assert!(dep.join("usr/lib/big").is_file());
    assert!(!dep.join(verity::IMAGE_FILE).exists());
    let err = s.verify_usr(Some(&d.record.name())).expect_err("plain");
    assert!(err.to_string().contains("not a verity image"), "{err}");
}

#[test]
fn an_image_or_an_os_asks_for_verity() {
    let mut meta = BTreeMap::new();
    assert_eq!(usr_plan(UsrMode::Plain, &meta).expect("plan"), None);
    assert!(usr_plan(UsrMode::Verity, &meta).expect("plan").is_some());
    meta.insert(crate::image_meta::USR_VERITY.to_string(), "cd".repeat(32));
    assert_eq!(
        usr_plan(UsrMode::Plain, &meta).expect("plan"),
        Some(UsrPlan {
            signed_root_hash: Some("cd".repeat(32))
        })
    );
    meta.insert(crate::image_meta::USR_VERITY.to_string(), "nope".into());
    assert!(usr_plan(UsrMode::Plain, &meta).is_err());
    assert!(check_karg("slate.usrhash=00", "t").is_err());
}
