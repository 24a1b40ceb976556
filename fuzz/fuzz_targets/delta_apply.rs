//! Static deltas: any bytes are refused with an error, or stored as a
//! commit whose id is the delta's target; never a panic, and nothing kept
//! when refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slate_core::progress::Progress;
use slate_core::store::{ObjectRead, Repo, RepoMode};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Repo::init(&dir.path().join("r"), RepoMode::BareUser).expect("init");
    let file = dir.path().join("d.delta");
    std::fs::write(&file, data).expect("write");
    match slate_core::delta::apply(&repo, &file, &Progress::default()) {
        Ok(a) => assert!(repo.read_commit(&a.to).is_ok()),
        Err(_) => assert!(repo.list_objects().expect("list").is_empty()),
    }
});
