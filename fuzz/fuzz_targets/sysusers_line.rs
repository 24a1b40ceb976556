//! sysusers.d lines: any line parses or is refused with a message, never
//! a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use slate_core::confd::specifier::SystemSpecifiers;
use slate_core::confd::{Host, Log};
use slate_core::fsutil::Root;
use slate_core::sysusers::Config;

fn root() -> &'static (tempfile::TempDir, Root, Host) {
    static R: OnceLock<(tempfile::TempDir, Root, Host)> = OnceLock::new();
    R.get_or_init(|| {
        let t = tempfile::tempdir().expect("tempdir");
        let root = Root::new(t.path()).expect("root");
        (t, root, Host::for_image())
    })
}

fuzz_target!(|data: &[u8]| {
    let (_, root, host) = root();
    let mut specs = SystemSpecifiers::new(root, true, host);
    let mut config = Config::default();
    let mut log = Log::default();
    let _ = config.parse_line(&mut specs, "fuzz.conf", 1, data, &mut log);
});
