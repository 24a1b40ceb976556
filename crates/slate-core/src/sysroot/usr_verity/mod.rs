//! A deployment's verified `/usr` (`crate::verity`): deploy builds the
//! image from the checked-out `/usr` and refuses it when its root hash is
//! not the one the commit's signature covers; the deployment then keeps
//! the image (`deploy/OS/ID/.usr.verity`) and an empty `usr/`, its mount
//! point; its boot entry carries `slate.usrhash=ROOT`; prepare-root maps
//! it read-only through dm-verity and mounts it; `verify` re-reads it.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use rustix::fs::{Mode, OFlags};
use serde::Serialize;

use super::dirs::Dir;
use super::{io_err, Error, Record, Result, Sysroot, UsrMode};
use crate::hash::ObjectId;
use crate::image_meta::{ImageUsr, Metadata};
use crate::remotes::image as image_remotes;
use crate::store::ObjectRead;
use crate::verity::{self, UsrVerity};

/// A deploy's decision for `/usr`: a verity image, and the root hash the
/// commit's metadata names (covered by its signature), when it names one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsrPlan {
    pub signed_root_hash: Option<String>,
}

/// How prepare-root mounted a verified `/usr`.
#[derive(Clone, Debug, Serialize)]
pub struct UsrMounted {
    pub root_hash: String,
    pub loop_device: String,
    pub dm_device: String,
    /// `signed by KEY`, or why the signature was not checked.
    pub signature: String,
}

fn refused(what: String) -> Error {
    Error::Refused(what)
}

/// Whether a deployment of an image with `meta` to an OS that keeps
/// `/usr` as `os_usr` gets a verity image: when either asks for one.
pub(crate) fn usr_plan(os_usr: UsrMode, meta: &Metadata) -> Result<Option<UsrPlan>> {
    let image = ImageUsr::read(meta).map_err(|e| refused(e.to_string()))?;
    let wants = os_usr == UsrMode::Verity
        || image.mode == Some(UsrMode::Verity)
        || image.root_hash.is_some();
    Ok(wants.then_some(UsrPlan {
        signed_root_hash: image.root_hash,
    }))
}

impl Sysroot {
    /// The image of the staged tree's `/usr` (checked out in `staged`),
    /// written beside it; its root hash checked against the signed one;
    /// then `usr/` emptied (the mount point).
    pub(crate) fn make_usr_image(
        &self,
        staged: &Dir,
        commit: &ObjectId,
        plan: &UsrPlan,
    ) -> Result<UsrVerity> {
        let (usr_tree, time) = verity::usr_of(&self.repo, commit).map_err(verity_err)?;
        let out = staged.join(verity::IMAGE_FILE);
        let built = verity::build(
            &staged.join("usr"),
            &out,
            &verity::Params::new(&usr_tree, time),
        )
        .map_err(verity_err)?;
        if let Some(signed) = &plan.signed_root_hash {
            if *signed != built.root_hash {
                return Err(refused(format!(
                    "commit {commit}: the image of its /usr built here has root hash {}, and \
                     its signed metadata ({}) says {signed}: nothing was deployed (the tree or \
                     this machine's mkfs.erofs differs from the one that composed it)",
                    built.root_hash,
                    crate::image_meta::USR_VERITY
                )));
            }
        }
        staged.remove_tree("usr")?;
        staged.sub_create("usr")?;
        Ok(built)
    }

    /// Bytes the image of `commit`'s `/usr` takes, about (its files
    /// rounded to blocks, an inode each, and the hash tree's share).
    pub(crate) fn usr_image_bytes(&self, commit: &ObjectId) -> Result<u64> {
        let (usr, _) = verity::usr_of(&self.repo, commit).map_err(verity_err)?;
        struct Sizes<'a> {
            repo: &'a crate::store::Repo,
            bytes: u64,
        }
        impl crate::walk::Visitor for Sizes<'_> {
            type Error = crate::store::Error;
            fn tree(
                &mut self,
                _p: &[u8],
                _id: &ObjectId,
                t: &crate::object::Tree,
            ) -> crate::store::Result<()> {
                self.bytes += 64 * (t.entries.len() as u64 + 1);
                Ok(())
            }
            fn file(
                &mut self,
                _path: &[u8],
                e: &crate::object::TreeEntry,
            ) -> crate::store::Result<()> {
                let size = self.repo.file_header(&e.id)?.size;
                self.bytes += 64 + size.div_ceil(4096) * 4096;
                Ok(())
            }
        }
        let mut s = Sizes {
            repo: &self.repo,
            bytes: 0,
        };
        crate::walk::walk(&self.repo, &usr, b"usr", &mut s)?;
        Ok(s.bytes + s.bytes / 64)
    }

    /// The image of a deployment, open read-only (never through a
    /// symlink), and the path that names it.
    fn open_usr_image(&self, r: &Record) -> Result<(std::fs::File, std::path::PathBuf)> {
        let dir = self.dir(&self.deployment_path(r))?;
        let path = dir.join(verity::IMAGE_FILE);
        let fd = rustix::fs::openat(
            dir.fd(),
            verity::IMAGE_FILE,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(&path)(e.into()))?;
        let f = std::fs::File::from(fd);
        let md = f.metadata().map_err(io_err(&path))?;
        if !md.is_file() {
            return Err(refused(format!(
                "{}: not a regular file",
                crate::fsutil::show(&path)
            )));
        }
        Ok((f, path))
    }

    /// `verify`: re-read the verity image of a deployment (by index,
    /// `OS/ID` or ID; default the booted one, else the default) against
    /// its hash tree, offline. The root hash is the one the commit's
    /// metadata names when it names one (a record that says another is
    /// refused), else the record's.
    pub fn verify_usr(&self, which: Option<&str>) -> Result<verity::Verified> {
        let order = self.ordered()?;
        let d = match which {
            Some(w) => self.find(&order, w)?,
            None => match &self.booted {
                Some(b) => self.find(&order, b)?,
                None => self.find(&order, "0")?,
            },
        };
        let r = &d.record;
        let Some(v) = &r.usr_verity else {
            return Err(refused(format!(
                "{}: its /usr is a plain directory, not a verity image (nothing to verify; \
                 `slate admin fsck` checks the repository's objects)",
                r.name()
            )));
        };
        v.check().map_err(verity_err)?;
        if let Ok(c) = ObjectId::from_hex(&r.commit) {
            if let Ok(commit) = self.repo.read_commit(&c) {
                let image = ImageUsr::read(&commit.metadata).map_err(|e| refused(e.to_string()))?;
                if let Some(signed) = image.root_hash {
                    if signed != v.root_hash {
                        return Err(refused(format!(
                            "{}: its record says root hash {}, and its commit's metadata says \
                             {signed}",
                            r.name(),
                            v.root_hash
                        )));
                    }
                }
            }
        }
        let (f, path) = self.open_usr_image(r)?;
        verity::verify_file(&f, &path, v).map_err(verity_err)
    }

    /// Map the deployment's image through dm-verity with the root hash of
    /// the kernel command line (`cmdline`) and mount it read-only at
    /// `target`. Where the initrd has trusted keys (its own
    /// `/usr/lib/slate/remotes.d`), the commit must carry a signature by
    /// one of them, and its signed root hash must be the command line's.
    pub(crate) fn mount_usr_verity(
        &self,
        r: &Record,
        v: &UsrVerity,
        cmdline: &str,
        target: &Path,
    ) -> Result<UsrMounted> {
        v.check().map_err(verity_err)?;
        let Some(hash) = verity::hash_from_cmdline(cmdline) else {
            return Err(refused(format!(
                "{}: its /usr is a verity image, and the kernel command line has no {}=",
                r.name(),
                verity::KARG
            )));
        };
        verity::parse_hash(hash).map_err(verity_err)?;
        let signature = self.check_signed_hash(r, hash, Path::new("/"))?;
        let mapped = UsrVerity {
            root_hash: hash.to_string(),
            ..v.clone()
        };
        let (f, path) = self.open_usr_image(r)?;
        // Best effort: they may be built in.
        let _ = Command::new("modprobe")
            .args(["-q", "-a", "loop", "dm_verity", "erofs"])
            .status();
        // losetup opens the very file opened here, by its descriptor.
        let by_fd = format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd());
        let dev = run(Command::new("losetup").args(["--find", "--show", "--read-only", &by_fd]))?;
        let dev = dev.trim().to_string();
        if !dev.starts_with("/dev/loop") {
            return Err(refused(format!(
                "losetup named {dev:?} for {}",
                path.display()
            )));
        }
        let uuid = format!("{}{hash}", verity::DM_UUID_PREFIX);
        let mapped_and_mounted = self.map_and_mount(&dev, &uuid, &mapped, target);
        if mapped_and_mounted.is_err() {
            let _ = Command::new("dmsetup")
                .args(["remove", verity::DM_NAME])
                .output();
            let _ = Command::new("losetup").args(["-d", &dev]).output();
        }
        let dm = mapped_and_mounted?;
        Ok(UsrMounted {
            root_hash: hash.to_string(),
            loop_device: dev,
            dm_device: dm,
            signature,
        })
    }

    /// The verity target on `dev`, its node, and the mount; the node.
    fn map_and_mount(
        &self,
        dev: &str,
        uuid: &str,
        mapped: &UsrVerity,
        target: &Path,
    ) -> Result<String> {
        run(Command::new("dmsetup").args([
            "create",
            verity::DM_NAME,
            "--readonly",
            "--noudevsync",
            "--uuid",
            uuid,
            "--table",
            &mapped.table(dev),
        ]))?;
        run(Command::new("dmsetup").args(["mknodes", verity::DM_NAME]))?;
        let dm = format!("/dev/mapper/{}", verity::DM_NAME);
        rustix::mount::mount(
            dm.as_str(),
            target,
            "erofs",
            rustix::mount::MountFlags::RDONLY | rustix::mount::MountFlags::NODEV,
            c"",
        )
        .map_err(|e| {
            refused(format!(
                "mounting {dm} (erofs) at {}: {}",
                target.display(),
                std::io::Error::from(e)
            ))
        })?;
        Ok(dm)
    }

    /// Where the keys of `root`'s `/usr/lib/slate/remotes.d` (the
    /// initrd's own) can check it: the commit signed by one of them, its
    /// signed root hash `hash`. Returns what was checked.
    fn check_signed_hash(&self, r: &Record, hash: &str, root: &Path) -> Result<String> {
        let keys = initrd_keys(root);
        if keys.is_empty() {
            return Ok("not checked: no trusted keys in the initrd".into());
        }
        let c = ObjectId::from_hex(&r.commit)
            .map_err(|_| refused(format!("{}: commit {:?}", r.name(), r.commit)))?;
        let Some(signer) = self.repo.verified_signer(&c, &keys) else {
            return Err(refused(format!(
                "{}: commit {c} carries no signature by the initrd's {} trusted keys: the boot stops",
                r.name(),
                keys.len()
            )));
        };
        let meta = self.repo.read_commit(&c)?.metadata;
        let signed = ImageUsr::read(&meta).map_err(|e| refused(e.to_string()))?;
        if signed.root_hash.as_deref() != Some(hash) {
            return Err(refused(format!(
                "{}: the kernel command line's {}={hash} is not the root hash commit {c} signed \
                 ({}): the boot stops",
                r.name(),
                verity::KARG,
                signed.root_hash.as_deref().unwrap_or("none")
            )));
        }
        Ok(format!("root hash signed by {signer}"))
    }
}

/// The public keys of `ROOT/usr/lib/slate/remotes.d/*.toml` (each checked
/// as an image's remote file; a bad one is left out).
fn initrd_keys(root: &Path) -> Vec<crate::sign::PublicKey> {
    let dir = root.join(image_remotes::REMOTES_D);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for e in rd.flatten().take(image_remotes::MAX_FILES) {
        use std::os::unix::ffi::OsStrExt;
        let name = e.file_name();
        if image_remotes::file_remote(name.as_bytes()).is_none() {
            continue;
        }
        let Ok(md) = e.metadata() else { continue };
        if !md.is_file() || md.len() > image_remotes::MAX_FILE {
            continue;
        }
        let Ok(bytes) = std::fs::read(e.path()) else {
            continue;
        };
        if let Ok(cfg) = image_remotes::parse_file(&e.path().display().to_string(), &bytes) {
            if let Ok(k) = cfg.public_keys() {
                keys.extend(k);
            }
        }
    }
    keys
}

/// Whether the running `/usr` (`usr`) is the dm-verity device of the root
/// hash the kernel command line names: the booted deployment's `/usr`,
/// when it is a verity image.
pub(crate) fn runs_verity_usr(cmdline: &str, usr: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(hash) = verity::hash_from_cmdline(cmdline) else {
        return false;
    };
    let Ok(md) = std::fs::metadata(usr) else {
        return false;
    };
    let dev = md.dev();
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let Ok(uuid) = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/dm/uuid"))
    else {
        return false;
    };
    uuid.trim() == format!("{}{hash}", verity::DM_UUID_PREFIX)
}

fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| refused(format!("{shown}: could not be run: {e}")))?;
    if !out.status.success() {
        return Err(refused(format!(
            "{shown}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn verity_err(e: verity::Error) -> Error {
    match e {
        verity::Error::Io { path, source } => Error::Io { path, source },
        verity::Error::Store(s) => Error::Store(s),
        verity::Error::Checkout(c) => Error::Checkout(c),
        other => Error::Refused(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
