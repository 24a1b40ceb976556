//! Container image archives: any file is opened as an image (index,
//! manifest, config, links between members) and its layers applied into a
//! hash-only store, or refused with an error; never a panic, and never a
//! tree with a name that is not a valid entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slate_core::commit::oci;
use slate_core::object::{valid_entry_name, EntryKind};
use slate_core::progress::Progress;
use slate_core::store::{HashSink, ObjectRead};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("image.tar");
    std::fs::write(&path, data).expect("write the input");
    let Ok(image) = oci::open_path(&path, None) else {
        return;
    };
    let sink = HashSink::new();
    if let Ok(scan) = oci::scan_image(&sink, &image, &Progress::default()) {
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
