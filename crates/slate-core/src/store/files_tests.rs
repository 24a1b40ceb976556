//! Storing regular files from open descriptors: contents of every size
//! class, and files that change size while they are read.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use super::{Error, FileContent, ObjectRead, ObjectWrite, Repo, RepoMode, Transaction};
use crate::object::{FileHeader, FileKind, FileMeta};

fn meta() -> FileMeta {
    FileMeta {
        kind: FileKind::Regular,
        mode: 0o644,
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        rdev: 0,
        xattrs: Vec::new(),
    }
}

fn file_of(dir: &Path, data: &[u8]) -> std::fs::File {
    let path = dir.join("src");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(data))
        .expect("write source");
    std::fs::File::open(&path).expect("open source")
}

fn count_objects(repo: &Path) -> usize {
    walk(&repo.join("objects"))
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read objects")
        .map(|e| {
            let e = e.expect("entry");
            if e.file_type().expect("type").is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn files_of_every_size_class_store_and_read_back() {
    for mode in [RepoMode::BareUser, RepoMode::Archive] {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repo::init(&dir.path().join("repo"), mode).expect("init");
        // In memory from the thread's buffer, from the shared pool, streamed.
        for size in [0usize, 3000, (1 << 20) + 5, 3 << 20, (4 << 20) + 7] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let src = file_of(dir.path(), &data);
            let src_path = dir.path().join("src");
            let fd = FileContent::Fd {
                fd: src.as_fd(),
                path: &src_path,
            };
            // An archive pack reads its files at the end: one transaction
            // each, so that the source is still there.
            let tx = Transaction::begin(&repo).expect("begin");
            let stored = tx.write_file(&meta(), size as u64, fd).expect("store");
            tx.commit().expect("commit");
            let header = FileHeader {
                meta: meta(),
                size: size as u64,
            };
            assert_eq!(stored.id, header.id_of(&data), "{mode:?}, {size} bytes");
            let (_, back) = repo.read_file(&stored.id).expect("read back");
            assert!(back == data, "{mode:?}: content of {size} bytes differs");
        }
    }
}

#[test]
fn a_file_that_changed_size_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo_path = dir.path().join("repo");
    let repo = Repo::init(&repo_path, RepoMode::BareUser).expect("init");
    let before = count_objects(&repo_path);
    let tx = Transaction::begin(&repo).expect("begin");
    for size in [3000usize, (1 << 20) + 5, 3 << 20] {
        let data = vec![7u8; size];
        for claimed in [size - 1, size + 1] {
            let src = file_of(dir.path(), &data);
            let fd = FileContent::Fd {
                fd: src.as_fd(),
                path: Path::new("etc/grown"),
            };
            match tx.write_file(&meta(), claimed as u64, fd) {
                Err(Error::Invalid(msg)) => assert!(
                    msg.contains("etc/grown") && msg.contains("changed size"),
                    "{msg}"
                ),
                other => panic!("{size} bytes stored as {claimed}: {other:?}"),
            }
        }
    }
    drop(tx);
    assert_eq!(
        count_objects(&repo_path),
        before,
        "an object was left behind"
    );
}
