//! The image of a commit's `/usr`: the same bytes from two checkouts made
//! differently, and a flipped byte found and named.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::commit::{self, CommitOptions, ParentSpec, Source};
use crate::progress::Progress;
use crate::store::{Repo, RepoMode};

/// `mkfs.erofs` and root (a bare repository keeps owners), or a reason.
pub(crate) fn can_build() -> Option<&'static str> {
    if !crate::fsutil::is_root() {
        return Some("a bare repository needs root");
    }
    if std::process::Command::new("mkfs.erofs")
        .arg("--help")
        .output()
        .is_err()
    {
        return Some("mkfs.erofs (erofs-utils) is not installed");
    }
    None
}

/// A tree with a large file, a hard link, a symlink, a subdirectory.
pub(crate) fn sample_tree(root: &Path) {
    let usr = root.join("usr");
    std::fs::create_dir_all(usr.join("lib/sub")).expect("mkdir");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(usr.join("lib/big"), &big).expect("write");
    std::fs::write(usr.join("lib/sub/small"), "small\n").expect("write");
    std::fs::write(usr.join("lib/sub/same"), "small\n").expect("write");
    std::os::unix::fs::symlink("sub/small", usr.join("lib/link")).expect("symlink");
    std::fs::write(root.join("etc/hostname"), "box\n").expect("write");
}

fn commit_tree(repo: &Repo, tree: &Path) -> ObjectId {
    let opts = CommitOptions {
        branch: "main".into(),
        subject: "s".into(),
        body: String::new(),
        timestamp: 1_700_000_000,
        metadata: BTreeMap::new(),
        parent: ParentSpec::Auto,
        skip_if_unchanged: false,
    };
    commit::commit(repo, Source::Dir(tree), &opts, &Progress::default())
        .expect("commit")
        .id
}

#[test]
fn one_commit_gives_one_image_and_a_flipped_byte_names_its_file() {
    if let Some(why) = can_build() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let tree = d.path().join("tree");
    sample_tree(&tree);
    let repo = Repo::init(&d.path().join("repo"), RepoMode::Bare).expect("init");
    let c = commit_tree(&repo, &tree);
    // Two builds, in two places, a second apart.
    std::fs::create_dir_all(d.path().join("s1")).expect("mkdir");
    std::fs::create_dir_all(d.path().join("s2")).expect("mkdir");
    let a = build_from_commit(&repo, &c, &d.path().join("s1"), &d.path().join("a.img"))
        .expect("build a");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = build_from_commit(&repo, &c, &d.path().join("s2"), &d.path().join("b.img"))
        .expect("build b");
    assert_eq!(a, b);
    let (ia, ib) = (
        std::fs::read(d.path().join("a.img")).expect("read"),
        std::fs::read(d.path().join("b.img")).expect("read"),
    );
    assert!(ia == ib, "the two images differ");
    let ok = verify(&d.path().join("a.img"), &a).expect("verify");
    assert!(ok.ok && ok.first_bad.is_none(), "{ok:?}");

    // A byte of the large file's content: find its block by its bytes.
    let needle: Vec<u8> = (20_000u32..20_064).map(|i| (i % 253) as u8).collect();
    let at = ia
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("the file's bytes are in the image");
    let mut img = ia.clone();
    img[at] ^= 0x40;
    std::fs::write(d.path().join("a.img"), &img).expect("write");
    let bad = verify(&d.path().join("a.img"), &a).expect("verify");
    assert!(!bad.ok);
    assert_eq!(bad.bad_blocks, vec![at as u64 / 4096]);
    let first = bad.first_bad.expect("a bad block");
    assert_eq!(first.kind, "file");
    assert_eq!(first.path.as_deref(), Some("/usr/lib/big"));

    // A byte in the directory tree's metadata names what it holds.
    let mut img = ia.clone();
    img[1024 + 100] ^= 1;
    std::fs::write(d.path().join("a.img"), &img).expect("write");
    let sb = verify(&d.path().join("a.img"), &a).expect("verify");
    assert_eq!(sb.first_bad.expect("bad").kind, "superblock");

    // Another commit of the same /usr with another /etc: the same image.
    std::fs::write(tree.join("etc/hostname"), "other\n").expect("write");
    let c2 = commit_tree(&repo, &tree);
    let e = build_from_commit(&repo, &c2, &d.path().join("s1"), &d.path().join("c.img"))
        .expect("build c");
    assert_eq!(e.root_hash, a.root_hash);
}

#[test]
fn a_wrong_size_or_hash_is_refused() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("img");
    std::fs::write(&p, vec![0u8; 8192]).expect("write");
    let v = UsrVerity {
        root_hash: "00".repeat(32),
        salt: "11".repeat(32),
        data_blocks: 2,
    };
    let e = verify(&p, &v).expect_err("no tree");
    assert!(e.to_string().contains("8192 bytes"), "{e}");
    let bad = UsrVerity {
        root_hash: "XY".repeat(32),
        ..v
    };
    assert!(verify(&p, &bad).is_err());
    assert_eq!(hash_from_cmdline("ro slate.usrhash=abc quiet"), Some("abc"));
    assert_eq!(hash_from_cmdline("ro slate.usrhashx=abc"), None);
}

#[test]
fn params_come_from_the_tree() {
    let t = ObjectId::from_hex(&"ab".repeat(32)).expect("id");
    let p = Params::new(&t, 5);
    assert_eq!(p, Params::new(&t, 5));
    assert_ne!(
        p.salt,
        Params::new(&ObjectId::from_hex(&"cd".repeat(32)).expect("id"), 5).salt
    );
    assert_eq!(p.uuid.len(), 36);
    assert_eq!(&p.uuid[14..15], "4");
}
