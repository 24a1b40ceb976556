//! Tar input (plain, gzip or zstd): any stream commits into a hash-only
//! store or is refused with an error, never a panic or a path that escapes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slate_core::commit::commit_tar_tree;
use slate_core::object::{valid_entry_name, EntryKind};
use slate_core::progress::Progress;
use slate_core::store::{HashSink, ObjectRead};

fuzz_target!(|data: &[u8]| {
    let sink = HashSink::new();
    let reader: Box<dyn std::io::Read> = Box::new(data);
    if let Ok(scan) = commit_tar_tree(&sink, reader, "fuzz", &Progress::default()) {
        // Every name of the tree made is a valid directory entry.
        let mut todo = vec![scan.root];
        while let Some(id) = todo.pop() {
            let tree = sink.read_tree(&id).expect("written trees read back");
            for e in &tree.entries {
                assert!(valid_entry_name(&e.name));
                if e.kind == EntryKind::Dir {
                    todo.push(e.id);
                }
            }
        }
    }
});
