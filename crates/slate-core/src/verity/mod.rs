//! A verified `/usr`: the image's `/usr` as a read-only EROFS file system
//! with a dm-verity hash tree after it, made the same, byte for byte, from
//! the same commit on any machine (`docs/format/sysroot.md`):
//!
//! - `mkfs.erofs` writes the file system from a checkout of `/usr` (in a
//!   checkout, paths with one object are hard links of each other and
//!   every time is the epoch), with every time set to the commit's time,
//!   and a UUID derived from `/usr`'s tree id, never with
//!   `SOURCE_DATE_EPOCH` in its environment (it changes the bytes);
//! - the hash tree (`hashtree`) is computed here, with a salt derived
//!   from the same tree id, and appended after the file system.
//!
//! Compose records the root hash in the commit's metadata
//! (`image_meta::USR_VERITY`), so the commit's signature covers it; deploy
//! builds the image again and refuses it when its root hash differs; the
//! initrd maps it through the kernel's dm-verity with that hash.

pub mod erofs;
pub mod hashtree;

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil::show;
use crate::hash::ObjectId;

/// The image's file in a deployment's directory (beside its `usr/`,
/// which stays as the mount point).
pub const IMAGE_FILE: &str = ".usr.verity";

/// The largest image, in 4 KiB blocks (32 GiB): what a record may claim,
/// and so what `verify` holds in memory (33 bytes a block at most).
pub const MAX_DATA_BLOCKS: u64 = 1 << 23;

/// The kernel argument that carries the root hash.
pub const KARG: &str = "slate.usrhash";

/// The device-mapper name of the booted `/usr`, and the prefix of its
/// UUID (followed by the root hash).
pub const DM_NAME: &str = "slate-usr";
pub const DM_UUID_PREFIX: &str = "SLATE-USR-";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", show(path))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `mkfs.erofs` could not be run, or failed.
    #[error("mkfs.erofs {}: {message}", show(path))]
    Mkfs { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Checkout(#[from] crate::checkout::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

fn io_err(p: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: p.to_path_buf(),
        source,
    }
}

/// What maps an image: its root hash, its salt and the number of its data
/// blocks (the hash tree starts right after them). Kept in a deployment's
/// record; only the root hash is trusted (a wrong salt or size makes every
/// read fail, never gives other bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsrVerity {
    /// 64 hex digits.
    pub root_hash: String,
    /// 64 hex digits.
    pub salt: String,
    pub data_blocks: u64,
}

impl UsrVerity {
    /// Check every field (a record is read from a disk).
    pub fn check(&self) -> Result<()> {
        parse_hash(&self.root_hash)?;
        parse_hash(&self.salt)?;
        if self.data_blocks == 0 || self.data_blocks > MAX_DATA_BLOCKS {
            return Err(Error::Invalid(format!(
                "{} data blocks: not an image's (at most {MAX_DATA_BLOCKS}, 32 GiB)",
                self.data_blocks
            )));
        }
        Ok(())
    }

    /// The device-mapper table of the image on `dev` (one device for the
    /// data and, after it, the tree).
    pub fn table(&self, dev: &str) -> String {
        format!(
            "0 {} verity 1 {dev} {dev} 4096 4096 {} {} sha256 {} {}",
            self.data_blocks * 8,
            self.data_blocks,
            self.data_blocks,
            self.root_hash,
            self.salt
        )
    }
}

/// 64 lowercase hex digits → 32 bytes.
pub fn parse_hash(text: &str) -> Result<hashtree::Hash> {
    let bad = || {
        Error::Invalid(format!(
            "{text:?}: not a SHA-256 hash (64 lowercase hex digits)"
        ))
    };
    if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| bad())?;
    Ok(out)
}

/// The root hash a kernel command line names (`slate.usrhash=`), if any.
pub fn hash_from_cmdline(cmdline: &str) -> Option<&str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(KARG)?.strip_prefix('='))
}

/// What makes an image of a `/usr` reproducible: its salt and UUID come
/// from the tree id of `/usr`, its times are the commit's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub salt: [u8; 32],
    pub uuid: String,
    pub timestamp: i64,
}

impl Params {
    pub fn new(usr_tree: &ObjectId, timestamp: i64) -> Params {
        let derive = |what: &str| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(b"slate verity ");
            h.update(what.as_bytes());
            h.update(b"\n");
            h.update(usr_tree.to_hex().as_bytes());
            h.finalize().into()
        };
        let salt = derive("salt");
        let mut u = derive("uuid");
        // A version 4 (random-looking) UUID's bits.
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        let h = hex::encode(&u[..16]);
        let uuid = format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        );
        Params {
            salt,
            uuid,
            timestamp: timestamp.max(0),
        }
    }
}

/// Write the image of the directory `usr` to `out` (made or truncated):
/// `mkfs.erofs` (from `$SLATE_MKFS_EROFS`, else the `PATH`), then the hash
/// tree, synced. The caller makes it atomic (a staging directory renamed,
/// a scratch folder).
pub fn build(usr: &Path, out: &Path, params: &Params) -> Result<UsrVerity> {
    let tool = std::env::var_os("SLATE_MKFS_EROFS").unwrap_or_else(|| "mkfs.erofs".into());
    let mkfs_err = |message: String| Error::Mkfs {
        path: out.to_path_buf(),
        message,
    };
    let res = std::process::Command::new(&tool)
        .arg("--quiet")
        .arg(format!("-T{}", params.timestamp))
        .arg(format!("-U{}", params.uuid))
        .arg(out)
        .arg(usr)
        // mkfs.erofs reads SOURCE_DATE_EPOCH (a compose sets it) and
        // then writes other bytes: the image is the commit's alone.
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            mkfs_err(format!(
                "could not be run ({e}); install erofs-utils, or set SLATE_MKFS_EROFS"
            ))
        })?;
    if !res.status.success() {
        return Err(mkfs_err(format!(
            "{}: {}",
            res.status,
            String::from_utf8_lossy(&res.stderr).trim()
        )));
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(out)
        .map_err(io_err(out))?;
    let (root, data_blocks) = hashtree::append(&mut f, &params.salt).map_err(io_err(out))?;
    Ok(UsrVerity {
        root_hash: hex::encode(root),
        salt: hex::encode(params.salt),
        data_blocks,
    })
}

/// The tree id of `/usr` in `commit`'s tree, and the commit's time.
pub fn usr_of(repo: &crate::store::Repo, commit: &ObjectId) -> Result<(ObjectId, i64)> {
    use crate::store::ObjectRead;
    let c = repo.read_commit(commit)?;
    match crate::walk::lookup(repo, &c.tree, b"usr")? {
        Some((crate::object::EntryKind::Dir, id)) => Ok((id, c.timestamp)),
        _ => Err(Error::Invalid(format!(
            "commit {commit} has no /usr directory"
        ))),
    }
}

/// Build the image of `commit`'s `/usr`: checked out into `scratch` (made
/// here, removed after), written to `out`.
pub fn build_from_commit(
    repo: &crate::store::Repo,
    commit: &ObjectId,
    scratch: &Path,
    out: &Path,
) -> Result<UsrVerity> {
    let (usr, time) = usr_of(repo, commit)?;
    let co = crate::checkout::CheckoutOptions {
        subpath: Some(b"usr".to_vec()),
        private: Vec::new(),
        user_mode: !rustix::process::geteuid().is_root(),
        ..crate::checkout::CheckoutOptions::default()
    };
    let dest = scratch.join("usr");
    let _ = std::fs::remove_dir_all(&dest);
    crate::checkout::checkout(
        repo,
        commit,
        &dest,
        &co,
        &crate::progress::Progress::default(),
    )?;
    let built = build(&dest, out, &Params::new(&usr, time));
    let _ = std::fs::remove_dir_all(&dest);
    built
}

/// What `verify` found in an image.
#[derive(Clone, Debug, Serialize)]
pub struct Verified {
    pub image: String,
    pub root_hash: String,
    pub data_blocks: u64,
    /// The image as its root hash vouches for it.
    pub ok: bool,
    /// Damaged data blocks (the first 64), in order.
    pub bad_blocks: Vec<u64>,
    /// Damaged blocks of the hash tree (from its start; the first 64).
    pub bad_hash_blocks: Vec<u64>,
    /// The first damaged data block, and what it holds.
    pub first_bad: Option<BadBlock>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BadBlock {
    pub block: u64,
    /// `file`, `directory`, `inode`, `superblock` or `unknown`.
    pub kind: String,
    /// The path in the image (`/usr/...`), where one is known.
    pub path: Option<String>,
    /// In words.
    pub what: String,
}

/// Re-read the image at `path` against its hash tree and `v`'s root hash
/// (offline: no device mapper), and tell the first damaged block's file.
pub fn verify(path: &Path, v: &UsrVerity) -> Result<Verified> {
    verify_file(&open_image(path)?, path, v)
}

/// [`verify`] of an image already open (`path` names it in messages).
pub fn verify_file(f: &File, path: &Path, v: &UsrVerity) -> Result<Verified> {
    v.check()?;
    let root = parse_hash(&v.root_hash)?;
    let salt = parse_hash(&v.salt)?;
    let len = f.metadata().map_err(io_err(path))?.len();
    let want = hashtree::image_len(v.data_blocks);
    if len != want {
        return Err(Error::Invalid(format!(
            "{}: {len} bytes, and an image of {} data blocks with its hash tree has {want}",
            show(path),
            v.data_blocks
        )));
    }
    let c = hashtree::check(f, v.data_blocks, &salt, &root, 64).map_err(io_err(path))?;
    let first_bad = match c.bad_data.first() {
        None => None,
        Some(&b) => {
            let owner = erofs::owner_of(f, v.data_blocks, &c.bad_data, b);
            let (kind, p, what) = match owner {
                Ok(o) => {
                    let (k, p) = match &o {
                        erofs::Owner::Superblock => ("superblock", None),
                        erofs::Owner::File(p) => ("file", Some(p.clone())),
                        erofs::Owner::Directory(p) => ("directory", Some(p.clone())),
                        erofs::Owner::Inode(p) => ("inode", Some(p.clone())),
                        erofs::Owner::Unknown => ("unknown", None),
                    };
                    (k, p, o.to_string())
                }
                Err(e) => (
                    "unknown",
                    None,
                    format!("its file is not known: the file system cannot be read ({e})"),
                ),
            };
            Some(BadBlock {
                block: b,
                kind: kind.into(),
                path: p,
                what,
            })
        }
    };
    Ok(Verified {
        image: show(path),
        root_hash: v.root_hash.clone(),
        data_blocks: v.data_blocks,
        ok: c.bad_data.is_empty() && c.bad_hash.is_empty(),
        bad_blocks: c.bad_data,
        bad_hash_blocks: c.bad_hash,
        first_bad,
    })
}

/// An image file, read-only, never through a symlink, a regular file.
pub fn open_image(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(path))?;
    let md = f.metadata().map_err(io_err(path))?;
    if !md.is_file() {
        return Err(Error::Invalid(format!(
            "{}: not a regular file",
            show(path)
        )));
    }
    Ok(f)
}

#[cfg(test)]
pub(crate) mod tests;
