//! The booted deployment's extensions made visible to `systemd-sysext`:
//! `/run/extensions/NAME`, a symlink to the extension's checkout as the
//! booted system sees it (`/sysroot/slate/ext/OS/COMMIT`, the physical
//! sysroot being bound at `/sysroot`). `/run` is a tmpfs that the initrd
//! hands to the booted system, so the set is the booted deployment's, made
//! afresh at every boot.

use std::path::Path;

use super::Record;
use crate::fsutil::show;
use crate::sysroot::{io_err, Error, Result, Sysroot};

/// Where the booted system sees the physical sysroot.
const SYSROOT_MOUNT: &str = "/sysroot";

/// Link each extension of `r` whose checkout is there into the folder
/// `dir` (made, as `/run/extensions`): `NAME` → its checkout. A name
/// that is there already is replaced (a symlink written beside and
/// renamed). Returns the names linked, and those whose checkout is
/// missing or whose entry in the record is not valid (skipped: a boot
/// goes on without them).
pub fn expose(sysroot: &Sysroot, r: &Record, dir: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let (mut linked, mut missing) = (Vec::new(), Vec::new());
    if r.extensions.is_empty() {
        return Ok((linked, missing));
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let handle = crate::fsutil::open_dir(dir).map_err(io_err(dir))?;
    let ext = sysroot.dir_if_there(&sysroot.ext_dir(&r.os))?;
    for u in &r.extensions {
        let Ok(commit) = u.check(&format!("the record of {}", r.name())) else {
            missing.push(crate::object::name::escape(u.name.as_bytes()));
            continue;
        };
        let hex = commit.to_hex();
        let there = match &ext {
            Some(d) => d.kind(&hex)? == Some(rustix::fs::FileType::Directory),
            None => false,
        };
        if !there {
            missing.push(u.name.clone());
            continue;
        }
        let target = format!("{SYSROOT_MOUNT}/slate/ext/{}/{hex}", r.os);
        let tmp = crate::fsutil::tmp_name(&u.name);
        rustix::fs::symlinkat(target.as_str(), &handle, tmp.as_str())
            .map_err(|e| io_err(&dir.join(&tmp))(e.into()))?;
        rustix::fs::renameat(&handle, tmp.as_str(), &handle, u.name.as_str()).map_err(|e| {
            Error::Refused(format!(
                "{}: cannot link extension {}: {e}",
                show(&dir.join(&u.name)),
                u.name
            ))
        })?;
        linked.push(u.name.clone());
    }
    Ok((linked, missing))
}
