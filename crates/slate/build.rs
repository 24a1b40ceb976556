//! Facts about the machine the tests are built on, as cfgs the tests use to
//! mark what cannot run here as ignored, with the reason:
//! `#[cfg_attr(not(test_root), ignore = "needs root")]`.
//!
//! - `test_root`: the build runs as root (the tests then run as root too:
//!   `cargo test` builds and runs as one user).
//! - `test_have = "TOOL"`: TOOL is an executable in a folder of `PATH`;
//!   `test_have = "ovmf"`, `"systemd-boot-efi"`, `"gnu-time"`: their files.
//! - `test_no_mirror`: `SLATE_TEST_NO_MIRROR` is set (no Debian mirror).
//!
//! The script runs again when `PATH`, a folder on it, the package
//! database (`/var/lib/dpkg/status`), `SLATE_TEST_NO_MIRROR` or the user's
//! `USER`/`HOME` changes. A test binary built as root and run by another
//! user still checks at run time and prints `SKIPPED: <reason>`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Tools a test needs, looked up in `PATH`.
const TOOLS: &[&str] = &[
    "bash",
    "bsdtar",
    "busybox",
    "chromedriver",
    "chromium",
    "debugfs",
    "dpkg-deb",
    "fish",
    "gzip",
    "losetup",
    "mcopy",
    "mkfs.ext4",
    "mkfs.vfat",
    "mmdebstrap",
    "mount",
    "nginx",
    "nsenter",
    "openssl",
    "podman",
    "runc",
    "script",
    "setpriv",
    "sfdisk",
    "systemctl",
    "systemd-analyze",
    "systemd-nspawn",
    "systemd-sysusers",
    "systemd-tmpfiles",
    "tar",
    "unshare",
    "zstd",
];

/// Files a test needs: (cfg value, paths). The paths are those of
/// `slate_core::vm::OVMF_CODE`/`OVMF_VARS` and
/// `slate_core::disk::SYSTEMD_BOOT_EFI` (a build script cannot use the
/// library it builds beside).
const FILES: &[(&str, &[&str])] = &[
    (
        "ovmf",
        &[
            "/usr/share/OVMF/OVMF_CODE_4M.fd",
            "/usr/share/OVMF/OVMF_VARS_4M.fd",
        ],
    ),
    (
        "systemd-boot-efi",
        &["/usr/lib/systemd/boot/efi/systemd-bootx64.efi"],
    ),
    ("gnu-time", &["/usr/bin/time"]),
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for var in ["PATH", "SLATE_TEST_NO_MIRROR", "USER", "HOME"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rustc-check-cfg=cfg(test_root)");
    println!("cargo::rustc-check-cfg=cfg(test_no_mirror)");
    let values: Vec<String> = TOOLS
        .iter()
        .copied()
        .chain(FILES.iter().map(|(name, _)| *name))
        .map(|v| format!("{v:?}"))
        .collect();
    println!(
        "cargo::rustc-check-cfg=cfg(test_have, values({}))",
        values.join(", ")
    );

    // /proc/self belongs to the process's effective user.
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        println!("cargo::rustc-cfg=test_root");
    }
    if std::env::var_os("SLATE_TEST_NO_MIRROR").is_some() {
        println!("cargo::rustc-cfg=test_no_mirror");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<_> = std::env::split_paths(&path)
        .filter(|d| d.is_absolute() && d.is_dir())
        .collect();
    for d in &dirs {
        println!("cargo::rerun-if-changed={}", d.display());
    }
    if Path::new("/var/lib/dpkg/status").is_file() {
        println!("cargo::rerun-if-changed=/var/lib/dpkg/status");
    }
    for tool in TOOLS {
        let found = dirs.iter().any(|d| {
            std::fs::metadata(d.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
        if found {
            println!("cargo::rustc-cfg=test_have={tool:?}");
        }
    }
    for (name, paths) in FILES {
        if paths.iter().all(|p| Path::new(p).is_file()) {
            println!("cargo::rustc-cfg=test_have={name:?}");
        }
    }
}
