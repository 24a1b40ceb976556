//! tmpfiles.d lines: any line parses into an item or is refused with a
//! message, never a panic; an item's path is absolute and simplified.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use slate_core::confd::{Host, Log};
use slate_core::fsutil::Root;
use slate_core::tmpfiles::parse::Parser;

fn root() -> &'static (tempfile::TempDir, Root, Host) {
    static R: OnceLock<(tempfile::TempDir, Root, Host)> = OnceLock::new();
    R.get_or_init(|| {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("etc")).expect("mkdir");
        std::fs::write(t.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").expect("write");
        std::fs::write(t.path().join("etc/group"), "root:x:0:\n").expect("write");
        let root = Root::new(t.path()).expect("root");
        (t, root, Host::for_image())
    })
}

fuzz_target!(|data: &[u8]| {
    let (_, root, host) = root();
    let mut p = Parser::new(root, true, host);
    let mut log = Log::default();
    if let Ok(Some(item)) = p.parse_line("fuzz.conf", 1, data, &mut log) {
        assert!(item.path.starts_with('/'));
        assert!(!item.path.contains("//"));
    }
});
