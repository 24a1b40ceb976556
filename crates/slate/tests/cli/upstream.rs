//! systemd's own test suites for tmpfiles and sysusers (the systemd-tests
//! package: test-sysusers.sh's cases and the TEST-22-TMPFILES scripts),
//! run unchanged by `tests/upstream/run.sh` against systemd's binaries and
//! against Slate's: every case systemd passes must pass with Slate. The
//! script's lines (one per case, then the counts) go straight to the
//! terminal; it says itself why it skips (no package, not root, no mount
//! namespaces).

use std::path::PathBuf;
use std::process::Command;

use crate::common::slate_bin;

#[test]
fn systemd_test_suites() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/upstream/run.sh");
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("upstream");
    let status = Command::new("bash")
        .arg(&script)
        .arg("--compare")
        .arg("--slate")
        .arg(slate_bin())
        .arg("--work")
        .arg(&work)
        .status()
        .expect("run tests/upstream/run.sh");
    assert!(
        status.success(),
        "systemd's test suites: a case that passes with systemd fails with Slate, \
         or the harness is broken (see the lines above; logs in {})",
        work.display()
    );
}
