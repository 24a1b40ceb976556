//! Whether the build runs as root, as the cfg `test_root`: unit tests that
//! need root are marked `#[cfg_attr(not(test_root), ignore = "needs root")]`,
//! so that `cargo test` reports them as ignored with the reason (as the
//! binary's `build.rs` does for its integration tests). A test binary run
//! by another user than the one who built it still checks at run time and
//! prints `SKIPPED: <reason>`.

use std::os::unix::fs::MetadataExt;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for var in ["USER", "HOME"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rustc-check-cfg=cfg(test_root)");
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        println!("cargo::rustc-cfg=test_root");
    }
}
