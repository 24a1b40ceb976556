//! The kernel of a tree (`/usr/lib/modules/KVER/vmlinuz` and `initrd`) and
//! its copy in the boot directory, `BOOT/slate/OS/KVER-HASH/{linux,initrd}`,
//! shared by every deployment with the same two files.

use std::path::Path;

use rustix::fs::{self as rfs, Mode, OFlags};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{io_err, Result, Sysroot};
use crate::fsutil;
use crate::hash::ObjectId;
use crate::object::EntryKind;
use crate::store::ObjectRead;
use crate::walk;

/// A kernel found in a tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Kernel {
    pub version: String,
    pub linux: ObjectId,
    pub initrd: Option<ObjectId>,
}

impl Kernel {
    /// `KVER-HASH`: the directory of this kernel in the boot directory.
    pub fn dir_name(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.linux.0);
        if let Some(i) = &self.initrd {
            h.update(i.0);
        }
        let d = h.finalize();
        format!("{}-{}", self.version, hex::encode(&d[..6]))
    }
}

/// The newest kernel of the tree `root`: `/usr/lib/modules/KVER/vmlinuz`,
/// with `initrd` (or `initramfs.img`) beside it when there is one.
pub fn find<S: ObjectRead + ?Sized>(store: &S, root: &ObjectId) -> Result<Option<Kernel>> {
    let Some((EntryKind::Dir, modules)) = walk::lookup(store, root, b"usr/lib/modules")? else {
        return Ok(None);
    };
    let mut found: Vec<Kernel> = Vec::new();
    for e in store.read_tree(&modules)?.entries {
        if e.kind != EntryKind::Dir {
            continue;
        }
        let Ok(version) = String::from_utf8(e.name.clone()) else {
            continue;
        };
        // It becomes a path in an entry's `linux` line: one word.
        if version.is_empty() || version.chars().any(|c| c.is_whitespace() || c.is_control()) {
            continue;
        }
        let t = store.read_tree(&e.id)?;
        let file = |n: &[u8]| t.get(n).filter(|x| x.kind == EntryKind::File).map(|x| x.id);
        if let Some(linux) = file(b"vmlinuz") {
            let initrd = file(b"initrd").or_else(|| file(b"initramfs.img"));
            found.push(Kernel {
                version,
                linux,
                initrd,
            });
        }
    }
    found.sort_by(|a, b| super::strverscmp(&a.version, &b.version));
    Ok(found.pop())
}

/// The `linux` line of an entry for the kernel directory `dir_name` of
/// `os`: its path inside the boot directory.
pub(crate) fn linux_line(os: &str, dir_name: &str) -> String {
    format!("/slate/{os}/{dir_name}/linux")
}

impl Sysroot {
    /// Copy `k` into the boot directory unless it is there; returns the
    /// paths inside the boot directory of its `linux` and `initrd`. Each
    /// file is written whole under a temporary name, synced and renamed:
    /// a present file is complete.
    pub(crate) fn install_kernel(&self, os: &str, k: &Kernel) -> Result<(String, Option<String>)> {
        let rel = Path::new("slate").join(os).join(k.dir_name());
        let dir = self.boot()?.create_rel(&rel)?;
        let mut files = vec![("linux", k.linux)];
        if let Some(i) = k.initrd {
            files.push(("initrd", i));
        }
        for (name, id) in files {
            if dir.kind(name)?.is_some() {
                continue;
            }
            let p = dir.join(name);
            let tmp = fsutil::tmp_name(&format!(".{name}.tmp"));
            let fd = rfs::openat(
                dir.fd(),
                tmp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map_err(|e| io_err(&p)(e.into()))?;
            let mut out = std::fs::File::from(fd);
            let written = (|| -> Result<()> {
                let mut stream = self.repo.open_file(&id)?;
                stream.copy_to(&mut out).map_err(|e| match e {
                    Ok(io) => io_err(&p)(io),
                    Err(store) => store.into(),
                })?;
                out.sync_all().map_err(io_err(&p))?;
                dir.rename(&tmp, name)
            })();
            if written.is_err() {
                let _ = dir.remove_file(&tmp);
            }
            written?;
        }
        dir.sync()?;
        self.dir(&self.kernels_dir(os))?.sync()?;
        let base = format!("/slate/{os}/{}", k.dir_name());
        Ok((
            linux_line(os, &k.dir_name()),
            k.initrd.map(|_| format!("{base}/initrd")),
        ))
    }

    /// Bytes that installing `k` would add to the boot directory.
    pub(crate) fn kernel_bytes_needed(&self, os: &str, k: &Kernel) -> Result<u64> {
        let dir = self.dir_if_there(&self.kernels_dir(os).join(k.dir_name()))?;
        let mut n = 0;
        for (name, id) in [("linux", Some(k.linux)), ("initrd", k.initrd)] {
            let Some(id) = id else { continue };
            let there = match &dir {
                Some(d) => d.kind(name)?.is_some(),
                None => false,
            };
            if !there {
                n += self.repo.file_header(&id)?.size;
            }
        }
        Ok(n)
    }
}
