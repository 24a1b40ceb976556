use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::commit::{self, CommitOptions, ParentSpec, Source};
use crate::object::{EntryKind, ObjectType};
use crate::progress::Progress;
use crate::pull;
use crate::store::{ObjectRead, RepoMode};

fn commit_dir(repo: &Repo, dir: &Path, ts: i64) -> ObjectId {
    let opts = CommitOptions {
        branch: "os".into(),
        subject: format!("at {ts}"),
        body: String::new(),
        timestamp: ts,
        metadata: BTreeMap::new(),
        parent: ParentSpec::Auto,
        skip_if_unchanged: false,
    };
    commit::commit(repo, Source::Dir(dir), &opts, &Progress::default())
        .expect("commit")
        .id
}

/// Pseudo-random bytes that compress poorly (so a patch that works is
/// visibly smaller than the file).
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Every file of `commit` readable (each read checks the id), and the
/// content at `path`.
fn all_files(repo: &Repo, commit: &ObjectId) -> usize {
    let tree = repo.read_commit(commit).expect("commit").tree;
    let mut n = 0;
    let mut stack = vec![tree];
    while let Some(t) = stack.pop() {
        for e in repo.read_tree(&t).expect("tree").entries {
            match e.kind {
                EntryKind::Dir => stack.push(e.id),
                EntryKind::File => {
                    repo.read_file(&e.id).expect("file");
                    n += 1;
                }
            }
        }
    }
    n
}

struct Fixture {
    _tmp: tempfile::TempDir,
    src: Repo,
    dest: Repo,
    v1: ObjectId,
    v2: ObjectId,
}

/// v1: a tree; v2: one file changed a little, one new, one large new one,
/// one symlink changed; dest holds v1 alone.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tmp");
    let t = tmp.path();
    let src = Repo::init(&t.join("src"), RepoMode::Archive).expect("init");
    let dest = Repo::init(&t.join("dest"), RepoMode::Bare).expect("init");
    let tree = t.join("tree");
    std::fs::create_dir_all(tree.join("usr/bin")).expect("test setup");
    std::fs::create_dir_all(tree.join("usr/lib")).expect("test setup");
    let big = noise(1, 300_000);
    std::fs::write(tree.join("usr/bin/tool"), &big).expect("test setup");
    std::fs::write(tree.join("usr/lib/same"), b"unchanged").expect("test setup");
    std::os::unix::fs::symlink("tool", tree.join("usr/bin/link")).expect("test setup");
    let v1 = commit_dir(&src, &tree, 1);
    let mut big2 = big.clone();
    big2[1000..1010].copy_from_slice(b"0123456789");
    big2.extend_from_slice(b"more");
    std::fs::write(tree.join("usr/bin/tool"), &big2).expect("test setup");
    std::fs::write(tree.join("usr/lib/new"), noise(2, 5000)).expect("test setup");
    std::fs::write(
        tree.join("usr/lib/large"),
        noise(3, generate::CHUNK + 12345),
    )
    .expect("test setup");
    std::fs::remove_file(tree.join("usr/bin/link")).expect("test setup");
    std::os::unix::fs::symlink("usr-tool", tree.join("usr/bin/link")).expect("test setup");
    let v2 = commit_dir(&src, &tree, 2);
    let mut plan = pull::plan(
        &src,
        &dest,
        &[pull::Head {
            commit: v1,
            set_ref: None,
        }],
        Some(0),
    )
    .expect("plan");
    pull::pull_local(&src, &dest, &mut plan, &Progress::default()).expect("pull v1");
    Fixture {
        _tmp: tmp,
        src,
        dest,
        v1,
        v2,
    }
}

#[test]
fn a_delta_brings_the_new_commit_whole_and_patches_the_changed_file() {
    let f = fixture();
    let g = generate(
        &f.src,
        Some(f.v1),
        f.v2,
        &Options::default(),
        &Progress::default(),
    )
    .expect("generate");
    assert_eq!(g.patched, 1, "{g:?}");
    // new, large, link
    assert_eq!(g.files, 3, "{g:?}");
    // The patch is small: the delta is the new files' size, not the tool's.
    assert!(
        g.size < (generate::CHUNK + 12345 + 5000 + 50_000) as u64,
        "{g:?}"
    );
    let path = f.src.path().join(&g.path);
    assert_eq!(
        read_header(&path).expect("header"),
        Header {
            from: Some(f.v1),
            to: f.v2
        }
    );
    assert!(!f
        .dest
        .has_object(ObjectType::Commit, &f.v2)
        .expect("test setup"));
    let a = apply(&f.dest, &path, &Progress::default()).expect("apply");
    assert_eq!((a.patched, a.files, a.skipped), (1, 3, 0), "{a:?}");
    assert!(a.trees >= 3, "{a:?}");
    assert_eq!(all_files(&f.dest, &f.v2), 5);
    assert_eq!(
        f.dest
            .read_file(&tool_id(&f.src, &f.v2))
            .expect("test setup")
            .1,
        f.src
            .read_file(&tool_id(&f.src, &f.v2))
            .expect("test setup")
            .1
    );
    let listed = list(&f.src).expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, g.size);
    assert!(delete(&f.src, Some(&f.v1), &f.v2).expect("test setup"));
    assert!(!delete(&f.src, Some(&f.v1), &f.v2).expect("test setup"));
    assert!(list(&f.src).expect("test setup").is_empty());
}

fn tool_id(repo: &Repo, c: &ObjectId) -> ObjectId {
    let tree = repo.read_commit(c).expect("test setup").tree;
    walk::lookup(repo, &tree, b"usr/bin/tool")
        .expect("test setup")
        .expect("tool")
        .1
}

#[test]
fn an_empty_delta_brings_a_commit_from_nothing() {
    let f = fixture();
    let g = generate(
        &f.src,
        None,
        f.v2,
        &Options::default(),
        &Progress::default(),
    )
    .expect("generate");
    assert_eq!((g.patched, g.files), (0, 5), "{g:?}");
    assert!(g.path.ends_with("/empty.delta"), "{}", g.path);
    let tmp = tempfile::tempdir().expect("test setup");
    let fresh = Repo::init(&tmp.path().join("r"), RepoMode::Archive).expect("test setup");
    apply(&fresh, &f.src.path().join(&g.path), &Progress::default()).expect("apply");
    assert_eq!(all_files(&fresh, &f.v2), 5);
}

#[test]
fn a_patch_whose_base_is_missing_is_skipped_and_counted() {
    let f = fixture();
    let g = generate(
        &f.src,
        Some(f.v1),
        f.v2,
        &Options::default(),
        &Progress::default(),
    )
    .expect("test setup");
    let path = f.src.path().join(&g.path);
    // Without the old commit's trees the delta cannot be read at all.
    let tmp = tempfile::tempdir().expect("test setup");
    let fresh = Repo::init(&tmp.path().join("r"), RepoMode::Bare).expect("test setup");
    let e = apply(&fresh, &path, &Progress::default()).expect_err("no base trees");
    assert!(
        e.to_string().contains("on which its trees are encoded"),
        "{e}"
    );
    assert!(fresh.list_objects().expect("list").is_empty());
    // With them but without the old file, that file is left to the caller.
    let old_tool = tool_id(&f.src, &f.v1);
    let tx = crate::store::Transaction::begin(&f.dest).expect("test setup");
    tx.delete_object(ObjectType::File, &old_tool)
        .expect("test setup");
    tx.commit().expect("test setup");
    let a = apply(&f.dest, &path, &Progress::default()).expect("apply");
    assert_eq!((a.patched, a.skipped), (0, 1), "{a:?}");
    assert!(!f
        .dest
        .has_object(ObjectType::File, &tool_id(&f.src, &f.v2))
        .expect("test setup"));
}

#[test]
fn a_damaged_or_cut_delta_is_refused_and_stores_nothing() {
    let f = fixture();
    let g = generate(
        &f.src,
        Some(f.v1),
        f.v2,
        &Options::default(),
        &Progress::default(),
    )
    .expect("test setup");
    let good = std::fs::read(f.src.path().join(&g.path)).expect("test setup");
    let tmp = tempfile::tempdir().expect("test setup");
    let before = f.dest.list_objects().expect("test setup").len();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("cut", good[..good.len() - 30].to_vec()),
        ("cut-header", good[..40].to_vec()),
        ("flipped", {
            let mut b = good.clone();
            let i = b.len() / 2;
            b[i] ^= 0x40;
            b
        }),
        ("magic", {
            let mut b = good.clone();
            b[0] = b'X';
            b
        }),
    ];
    for (name, bytes) in cases {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).expect("test setup");
        let e = apply(&f.dest, &p, &Progress::default()).expect_err(name);
        let msg = e.to_string();
        assert!(
            msg.contains(&p.display().to_string()) || msg.contains("object"),
            "{name}: {msg}"
        );
        assert_eq!(
            f.dest.list_objects().expect("test setup").len(),
            before,
            "{name}: {msg}"
        );
    }
}

use crate::walk;

/// A small full-image delta, made once.
fn small_delta() -> &'static (Vec<u8>, ObjectId) {
    static D: std::sync::OnceLock<(Vec<u8>, ObjectId)> = std::sync::OnceLock::new();
    D.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tmp");
        let src = Repo::init(&tmp.path().join("src"), RepoMode::Archive).expect("init");
        let tree = tmp.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/lib")).expect("mkdir");
        std::fs::write(tree.join("usr/lib/a"), noise(7, 3000)).expect("write");
        std::fs::write(tree.join("usr/lib/b"), "text ".repeat(300)).expect("write");
        std::os::unix::fs::symlink("a", tree.join("usr/lib/c")).expect("symlink");
        let c = commit_dir(&src, &tree, 5);
        let g =
            generate(&src, None, c, &Options::default(), &Progress::default()).expect("generate");
        (
            std::fs::read(src.path().join(&g.path)).expect("read delta"),
            c,
        )
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// Any damage to a delta (a byte changed, the end cut off) is refused
    /// with nothing stored, or still gives the commit it names.
    #[test]
    fn damaged_deltas_are_refused_or_still_right(at in 0usize..100_000, xor in 1u8..=255, cut in proptest::bool::ANY) {
        let (good, commit) = small_delta();
        let mut bytes = good.clone();
        let at = at % bytes.len();
        if cut {
            bytes.truncate(at);
        } else {
            bytes[at] ^= xor;
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let repo = Repo::init(&tmp.path().join("r"), RepoMode::BareUser).expect("init");
        let file = tmp.path().join("d.delta");
        std::fs::write(&file, &bytes).expect("write");
        match apply(&repo, &file, &Progress::default()) {
            Ok(a) => {
                proptest::prop_assert_eq!(a.to, *commit);
                proptest::prop_assert_eq!(all_files(&repo, commit), 3);
            }
            Err(_) => proptest::prop_assert!(repo.list_objects().expect("list").is_empty()),
        }
    }
}
