//! Static deltas: any bytes are refused with an error, or stored as a
//! commit whose id is the delta's target; never a panic, and nothing kept
//! when refused.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use slate_core::progress::Progress;
use slate_core::store::{ObjectRead, Repo, RepoMode};

thread_local! {
    /// One repository while deltas are refused (it stays empty), made anew
    /// after one is stored: a repository per input would be most of the
    /// time spent.
    static REPO: RefCell<Option<(tempfile::TempDir, Repo)>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    REPO.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (dir, repo) = cell.get_or_insert_with(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let repo = Repo::init(&dir.path().join("r"), RepoMode::BareUser).expect("init");
            (dir, repo)
        });
        let file = dir.path().join("d.delta");
        std::fs::write(&file, data).expect("write");
        match slate_core::delta::apply(repo, &file, &Progress::default()) {
            Ok(a) => {
                assert!(repo.read_commit(&a.to).is_ok());
                *cell = None;
            }
            Err(_) => assert!(repo.list_objects().expect("list").is_empty()),
        }
    });
});
