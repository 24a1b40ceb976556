//! `prepare-root`: what the initrd runs before switching root. The kernel
//! command line names the deployment (`slate=/slate/deploy/OS/ID`); the
//! new root is built from it:
//!
//! - a pending factory reset is done first, before anything is mounted;
//! - the OS's machine id is kept in its state (made on the first boot), so
//!   that later boots are not first boots;
//! - the root is a bind mount of the deployment, private;
//! - `/usr` is a read-only bind of the deployment's `/usr`, or, when the
//!   deployment holds a verity image, that image mapped through dm-verity
//!   with the kernel command line's root hash (`usr_verity.rs`);
//! - `/etc` is the deployment's own (persistent) or an empty tmpfs
//!   (stateless), with the machine id written into it;
//! - `/var` is the OS's persistent `/var` (bind) or a tmpfs (volatile);
//! - the physical sysroot is visible at `/sysroot`.
//!
//! The root is built at the target directory; when the target is the
//! sysroot itself (the initrd's `/sysroot`), it is built aside and moved
//! over it at the end.

use std::path::{Path, PathBuf};

use rustix::mount::{self, MountFlags, MountPropagationFlags};
use serde::Serialize;

use super::{io_err, Error, EtcMode, Result, Sysroot, VarMode};
use crate::fsutil;

/// One mount made.
#[derive(Clone, Debug, Serialize)]
pub struct Mounted {
    pub source: String,
    pub target: String,
    pub how: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Prepared {
    pub deployment: String,
    pub target: String,
    pub machine_id: String,
    /// The machine id was made now: this is the OS's first boot.
    pub first_boot: bool,
    /// A requested factory reset that was done: (`/etc`, `/var`).
    pub reset: Option<(bool, bool)>,
    pub mounts: Vec<Mounted>,
    /// The deployment's system extensions linked in `/run/extensions`,
    /// and those whose checkout is missing (skipped).
    pub extensions: Vec<String>,
    pub extensions_missing: Vec<String>,
    /// `/usr` mapped through dm-verity, when it is a verity image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usr_verity: Option<super::UsrMounted>,
}

fn merr(p: &Path) -> impl Fn(rustix::io::Errno) -> Error + '_ {
    move |e| {
        Error::Refused(format!(
            "mounting {}: {}",
            p.display(),
            std::io::Error::from(e)
        ))
    }
}

impl Sysroot {
    /// The OS's kept machine id, made (32 random hex digits) when there is
    /// none; and whether it was made now.
    fn machine_id(&self, os: &str) -> Result<(String, bool)> {
        let state = self.dir(&self.state_dir(os))?;
        let p = state.join("machine-id");
        if let Ok(Some(t)) = state.read("machine-id") {
            let t = String::from_utf8_lossy(&t).trim().to_string();
            if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok((t.to_ascii_lowercase(), false));
            }
        }
        let mut b = [0u8; 16];
        rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())
            .map_err(|e| io_err(&p)(e.into()))?;
        // A version 4 UUID's bits, as systemd makes machine ids.
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let id = hex::encode(b);
        state.write("machine-id", format!("{id}\n").as_bytes(), 0o444)?;
        Ok((id, true))
    }

    /// Build the root of the booted deployment at `target` (default: the
    /// sysroot itself).
    pub fn prepare_root(&self, target: Option<&Path>) -> Result<Prepared> {
        let Some(booted) = self.booted.clone() else {
            return Err(Error::Refused(
                "the kernel command line names no deployment (slate=/slate/deploy/OS/ID)".into(),
            ));
        };
        // Found by its record: in the initrd the boot directory (the
        // ESP, mounted by the booted system at /efi) is not there.
        let record = self
            .all_records()?
            .into_iter()
            .find(|r| r.name() == booted)
            .ok_or_else(|| Error::NoSuchDeployment(booted.clone()))?;
        let os = record.os.clone();
        let cfg = self.os_config(&os)?;
        let dep = self.deployment_path(&record);
        // What is mounted and written below is the deployment's own: a
        // symlink in its place (or in place of its /usr, /etc, /var) is
        // refused, not mounted or written through.
        let dep_dir = self.dir(&dep)?;
        for n in ["usr", "etc", "var", "sysroot"] {
            match dep_dir.kind(n)? {
                None | Some(rustix::fs::FileType::Directory) => {}
                Some(_) => return Err(super::dirs::not_a_dir(&dep_dir.join(n))),
            }
        }
        // A reset first, before anything is mounted.
        let reset = self.pending_reset(&os);
        if let Some((etc, var)) = reset {
            self.apply_reset(&os, etc, var)?;
        }
        let (machine_id, first_boot) = self.machine_id(&os)?;

        let final_target = target
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.path.clone());
        let in_place = final_target == self.path;
        // Built in place (the initrd's /sysroot): the root is made aside,
        // on a private tmpfs of its own, then moved over the target. A
        // mount whose parent is shared cannot be moved (EINVAL), and in an
        // initrd /run is shared.
        let aside = PathBuf::from("/run/slate-root");
        let t: PathBuf = if in_place {
            std::fs::create_dir_all(&aside).map_err(io_err(&aside))?;
            mount::mount("tmpfs", &aside, "tmpfs", MountFlags::NOSUID, c"mode=0700")
                .map_err(merr(&aside))?;
            mount::mount_change(&aside, MountPropagationFlags::PRIVATE).map_err(merr(&aside))?;
            aside.join("root")
        } else {
            final_target.clone()
        };
        std::fs::create_dir_all(&t).map_err(io_err(&t))?;
        let mut mounts = Vec::new();
        let mut note = |source: &Path, target: &Path, how: &str| {
            mounts.push(Mounted {
                source: source.display().to_string(),
                target: target.display().to_string(),
                how: how.to_string(),
            })
        };
        // The root: the deployment, private (in an initrd `/` is shared,
        // and what is mounted below would propagate back).
        mount::mount_bind(&dep, &t).map_err(merr(&t))?;
        mount::mount_change(&t, MountPropagationFlags::PRIVATE).map_err(merr(&t))?;
        note(&dep, &t, "bind");
        // /usr, read-only.
        let usr = t.join("usr");
        let usr_verity = match &record.usr_verity {
            Some(v) => {
                let cmdline = std::fs::read_to_string("/proc/cmdline")
                    .map_err(io_err(Path::new("/proc/cmdline")))?;
                let m = self.mount_usr_verity(&record, v, &cmdline, &usr)?;
                note(
                    Path::new(&m.dm_device),
                    &usr,
                    "erofs through dm-verity, read-only",
                );
                Some(m)
            }
            None => {
                mount::mount_bind(dep.join("usr"), &usr).map_err(merr(&usr))?;
                mount::mount_remount(&usr, MountFlags::BIND | MountFlags::RDONLY, "")
                    .map_err(merr(&usr))?;
                note(&dep.join("usr"), &usr, "bind, read-only");
                None
            }
        };
        // /etc.
        let etc = t.join("etc");
        std::fs::create_dir_all(&etc).map_err(io_err(&etc))?;
        if cfg.etc == EtcMode::Stateless {
            mount::mount(
                "tmpfs",
                &etc,
                "tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV,
                c"mode=0755",
            )
            .map_err(merr(&etc))?;
            note(Path::new("tmpfs"), &etc, "tmpfs (stateless /etc)");
        }
        let etc_fd = fsutil::open_dir(&etc).map_err(io_err(&etc))?;
        fsutil::atomic_write_at(
            &etc_fd,
            "machine-id",
            format!("{machine_id}\n").as_bytes(),
            0o444,
        )
        .map_err(io_err(&etc.join("machine-id")))?;
        // /var.
        let var = t.join("var");
        std::fs::create_dir_all(&var).map_err(io_err(&var))?;
        match cfg.var {
            VarMode::Persistent => {
                let state = self.dir(&self.state_dir(&os))?.sub_create("var")?;
                let state = state.path().to_path_buf();
                mount::mount_bind(&state, &var).map_err(merr(&var))?;
                note(&state, &var, "bind (persistent /var)");
            }
            VarMode::Volatile => {
                mount::mount(
                    "tmpfs",
                    &var,
                    "tmpfs",
                    MountFlags::NOSUID | MountFlags::NODEV,
                    c"mode=0755",
                )
                .map_err(merr(&var))?;
                note(Path::new("tmpfs"), &var, "tmpfs (volatile /var)");
            }
        }
        // The physical sysroot.
        let phys = t.join("sysroot");
        std::fs::create_dir_all(&phys).map_err(io_err(&phys))?;
        mount::mount_bind_recursive(&self.path, &phys).map_err(merr(&phys))?;
        // Private: a bind of a shared mount is its peer, and the move of
        // the root over the sysroot below would propagate onto it too,
        // hiding the physical sysroot under a second copy of the root.
        mount::mount_change(
            &phys,
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )
        .map_err(merr(&phys))?;
        note(&self.path, &phys, "bind, recursive (the physical sysroot)");
        // Its system extensions, for systemd-sysext: in the initrd's
        // /run, which the booted system keeps (else the root's own /run).
        let run_ext = if in_place {
            PathBuf::from("/run/extensions")
        } else {
            final_target.join("run/extensions")
        };
        let (extensions, extensions_missing) = super::ext::expose(self, &record, &run_ext)?;
        if in_place {
            mount::mount_move(&t, &final_target).map_err(merr(&final_target))?;
            note(&t, &final_target, "move");
            let _ = mount::unmount(&aside, mount::UnmountFlags::DETACH);
        }
        Ok(Prepared {
            deployment: booted,
            target: final_target.display().to_string(),
            machine_id,
            first_boot,
            reset,
            mounts,
            extensions,
            extensions_missing,
            usr_verity,
        })
    }
}
