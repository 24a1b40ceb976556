//! Scanning directories: a tree read from disk is committed in batches,
//! with the same result as a tree read from the page cache, and the same
//! again without io_uring; objects written are counted once each.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::Ordering;

use rustix::fs::Advice;
use rustix::io::{Errno, ReadWriteFlags};

use super::{batch, commit_dir_tree, probe, TreeScan};
use crate::progress::Progress;
use crate::store::{Repo, RepoMode, Transaction};

/// Scan `src` into a new repository at `at`.
fn scan_into(at: &Path, src: &Path) -> TreeScan {
    let repo = Repo::init(at, RepoMode::BareUser).expect("init");
    let tx = Transaction::begin(&repo).expect("begin");
    let scan = commit_dir_tree(&tx, src, &Progress::default()).expect("commit");
    tx.commit().expect("commit");
    scan
}

/// A directory of many regular files of every size class (empty, small,
/// too large for a batch), with a subdirectory, a symlink, a fifo and an
/// odd mode among them.
fn build(root: &Path) {
    let many = root.join("usr/share/many");
    std::fs::create_dir_all(many.join("sub")).expect("mkdir");
    for i in 0..150usize {
        let size = match i % 10 {
            0 => 0,
            1 => 300 << 10,
            _ => i * 211,
        };
        let data: Vec<u8> = (0..size).map(|j| (i * 31 + j) as u8).collect();
        std::fs::write(many.join(format!("f{i:03}")), data).expect("write");
    }
    std::fs::write(many.join("sub/inner"), b"inner").expect("write");
    std::os::unix::fs::symlink("f001", many.join("link")).expect("symlink");
    rustix::fs::mkfifoat(rustix::fs::CWD, many.join("fifo"), 0o644.into()).expect("mkfifo");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(many.join("f002"), std::fs::Permissions::from_mode(0o4755))
        .expect("chmod");
}

/// Drop the tree's files from the page cache; false if they stay.
fn evict(root: &Path) -> bool {
    let mut probe = None;
    for e in std::fs::read_dir(root.join("usr/share/many")).expect("list") {
        let p = e.expect("entry").path();
        if !p.is_file() || p.is_symlink() {
            continue;
        }
        let f = std::fs::File::open(&p).expect("open");
        f.sync_all().expect("fsync");
        rustix::fs::fadvise(&f, 0, None, Advice::DontNeed).expect("fadvise");
        if std::fs::metadata(&p).expect("stat").len() > 0 {
            probe = Some(f);
        }
    }
    let f = probe.expect("a file with content");
    let mut one = [0u8; 1];
    let mut bufs = [std::io::IoSliceMut::new(&mut one)];
    // The probe starts that file's readahead; evict it again after.
    let cold =
        rustix::io::preadv2(f.as_fd(), &mut bufs, 0, ReadWriteFlags::NOWAIT) == Err(Errno::AGAIN);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let _ = rustix::fs::fadvise(&f, 0, None, Advice::DontNeed);
    cold
}

#[test]
fn uncached_trees_commit_in_batches_to_the_same_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    build(&src);
    let commit = |name: &str| {
        let scan = scan_into(&dir.path().join(name), &src);
        (scan.root, scan.stats.batched)
    };
    let (cached_id, cached_batched) = commit("cached");
    assert_eq!(cached_batched, 0, "a cached tree is read file by file");
    if !evict(&src) {
        eprintln!(
            "SKIP: {} stays in the page cache (tmpfs?); batches untested",
            dir.path().display()
        );
        return;
    }
    let (id, batched) = commit("cold");
    assert_eq!(id, cached_id, "batched commit differs");
    // 150 files: 15 too large for a batch, the probe's directory's files
    // all batched save any whose read came up short.
    assert!(batched >= 120, "only {batched} files read in batches");

    assert!(evict(&src), "evicted once, not twice");
    batch::NO_READER.store(true, Ordering::Relaxed);
    let (id, batched) = commit("no-uring");
    batch::NO_READER.store(false, Ordering::Relaxed);
    assert_eq!(id, cached_id, "commit without io_uring differs");
    assert_eq!(batched, 0);
}

#[test]
fn identical_files_scanned_at_once_count_as_one_new_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    for d in 0..8 {
        let sub = src.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).expect("mkdir");
        for i in 0..100 {
            std::fs::write(sub.join(format!("same{i}")), b"one content").expect("write");
            std::fs::write(sub.join(format!("own{i}")), format!("{d}/{i}")).expect("write");
        }
    }
    for round in 0..3 {
        let scan = scan_into(&dir.path().join(format!("r{round}")), &src);
        // 800 distinct files and one shared content (trees are not
        // counted).
        let written = scan.stats.new_file_objects;
        assert_eq!(written, 801, "round {round}: {written} new objects counted");
    }
}

#[test]
fn a_tree_probe_tells_a_cached_tree_from_one_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("a/b")).expect("mkdir");
    std::fs::write(empty.join("a/nothing"), b"").expect("write");
    let open = |p: &Path| crate::fsutil::open_dir(p).expect("open");
    assert!(
        probe::tree_cached(open(&empty).as_fd()),
        "a tree without content counts as cached"
    );
    let src = dir.path().join("src");
    build(&src);
    assert!(
        probe::tree_cached(open(&src).as_fd()),
        "a tree just written is cached"
    );
    if !evict(&src) {
        eprintln!(
            "SKIP: {} stays in the page cache (tmpfs?); the probe of a tree on disk is untested",
            dir.path().display()
        );
        return;
    }
    assert!(
        !probe::tree_cached(open(&src).as_fd()),
        "a tree read from disk is found out"
    );
}

#[test]
fn a_tree_on_tmpfs_counts_as_cached() {
    let shm = Path::new("/dev/shm");
    let on_tmpfs =
        rustix::fs::statfs(shm).is_ok_and(|st| st.f_type as u64 == libc::TMPFS_MAGIC as u64);
    if !on_tmpfs {
        eprintln!("SKIP: /dev/shm is not a tmpfs here; the tmpfs case is untested");
        return;
    }
    let dir = tempfile::tempdir_in(shm).expect("tempdir");
    build(dir.path());
    let fd = crate::fsutil::open_dir(dir.path()).expect("open");
    // tmpfs refuses RWF_NOWAIT reads, which elsewhere mean a slow source.
    assert!(
        probe::tree_cached(fd.as_fd()),
        "a tree on tmpfs is in memory"
    );
}
