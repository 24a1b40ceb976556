//! A repository on disk: configuration, objects in three modes, refs,
//! revision parsing and the writer lock. Layout and encodings are in
//! `docs/format/repository.md`.
//!
//! Reading goes through [`ObjectRead`] (a [`Repo`] implements it), writing
//! through a [`Transaction`]: it holds the writer lock, the pack being
//! written and the listing of present objects, and ends by making
//! everything durable and moving refs with a compare-and-swap; dropped
//! unfinished, it removes what it wrote. A [`HashSink`] computes ids
//! without storing anything.
//!
//! Objects appear under their final name only complete (temporary file,
//! then rename). Refs move by atomic replacement after one `syncfs`.

mod config;
mod error;
mod files;
mod files_read;
mod lock;
mod looseidx;
mod objects;
mod pack;
mod packheaders;
mod packread;
mod packwrite;
mod readbuf;
mod refs;
mod revparse;
mod sink;
mod stream;
mod tmpobj;
mod traits;
mod txn;

#[cfg(test)]
mod files_tests;

pub use config::RepoMode;
pub use error::{Error, Result};
pub use files_read::{decode_loose_file, decode_packed_file};
pub use lock::WriteLock;
pub use objects::RelPath;
pub use pack::{
    decode_index as decode_pack_index, index_pack_digest, kind_of_code, DamagedPack, PackEntry,
    PACK_MAGIC,
};
pub use packread::{decode_frame, frame_is_small, object_in_frame, stream_frame_object};
pub use refs::validate_ref_name;
pub use sink::HashSink;
pub use stream::FileStream;
pub use traits::{FileContent, ObjectRead, ObjectWrite, StoredFile};
pub use txn::{RefChange, Transaction};

/// Check the bytes of a pack index as the store does when it loads one;
/// the number of objects it lists. (For tests and fuzzing.)
pub fn check_pack_index(bytes: &[u8]) -> std::result::Result<usize, String> {
    pack::decode_index(bytes).map(|e| e.len())
}

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::fsutil;

/// An open repository. Cheap to share between threads (`&Repo` is `Sync`).
pub struct Repo {
    path: PathBuf,
    root: OwnedFd,
    objects: OwnedFd,
    tmp: OwnedFd,
    mode: RepoMode,
    compression_level: i32,
    packs: pack::PackSet,
    packs_loaded: std::sync::OnceLock<()>,
}

impl Repo {
    /// Create a new, empty repository at `path` (created if missing; must be
    /// empty if it exists).
    pub fn init(path: &Path, mode: RepoMode) -> Result<Repo> {
        let io = |e| Error::io(path, e);
        match std::fs::read_dir(path) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(Error::Invalid(format!(
                        "{}: directory exists and is not empty",
                        path.display()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(path).map_err(io)?
            }
            Err(e) => return Err(io(e)),
        }
        if mode == RepoMode::Bare && !fsutil::is_root() {
            return Err(Error::BareNeedsRoot {
                path: path.to_path_buf(),
            });
        }
        let root = fsutil::open_dir(path).map_err(io)?;
        for d in ["objects", "refs", "refs/heads", "tmp"] {
            fsutil::mkdir_p_at(&root, d, 0o755).map_err(|e| Error::io(&path.join(d), e))?;
        }
        if mode == RepoMode::Bare {
            Self::restrict(&root, path)?;
        }
        let objects = fsutil::open_dir_at(&root, Path::new("objects")).map_err(io)?;
        for i in 0..=255u8 {
            if mode == RepoMode::Archive {
                break; // created on demand: most objects live in packs
            }
            let name = format!("{i:02x}");
            rustix::fs::mkdirat(
                &objects,
                name.as_str(),
                rustix::fs::Mode::from_raw_mode(0o755),
            )
            .map_err(|e| Error::io(&path.join("objects").join(&name), e.into()))?;
        }
        // The config is written last: its presence marks a complete repository.
        fsutil::atomic_write_at(&root, "config", config::render(mode).as_bytes(), 0o644)
            .map_err(|e| Error::io(&path.join("config"), e))?;
        Repo::open(path)
    }

    /// Open an existing repository.
    pub fn open(path: &Path) -> Result<Repo> {
        let path = match std::fs::canonicalize(path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotARepo {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        let cfg_path = path.join("config");
        let text = match std::fs::read_to_string(&cfg_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotARepo { path: path.clone() });
            }
            Err(e) => return Err(Error::io(&cfg_path, e)),
        };
        let cfg = config::parse(&text)
            .map_err(|msg| Error::Invalid(format!("{}: {msg}", cfg_path.display())))?;
        let root = fsutil::open_dir(&path).map_err(|e| Error::io(&path, e))?;
        let objects = fsutil::open_dir_at(&root, Path::new("objects"))
            .map_err(|e| Error::io(&path.join("objects"), e))?;
        let tmp = fsutil::open_dir_at(&root, Path::new("tmp"))
            .map_err(|e| Error::io(&path.join("tmp"), e))?;
        Ok(Repo {
            path,
            root,
            objects,
            tmp,
            mode: cfg.mode,
            compression_level: cfg.compression_level,
            packs: Default::default(),
            packs_loaded: Default::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn mode(&self) -> RepoMode {
        self.mode
    }
    pub(crate) fn objects_fd(&self) -> &OwnedFd {
        &self.objects
    }

    /// A `bare` repository holds objects with real owners and modes: setuid
    /// files and device nodes from an image, possibly untrusted. Only its
    /// owner may reach them: `objects/` and `tmp/` are `0700` (a checkout
    /// hard-links them where they are meant to be used).
    pub(crate) fn restrict(root: &OwnedFd, path: &Path) -> Result<()> {
        for d in ["objects", "tmp"] {
            let st = rustix::fs::statat(root, d, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| Error::io(&path.join(d), e.into()))?;
            if st.st_mode & 0o077 != 0 {
                rustix::fs::chmodat(
                    root,
                    d,
                    rustix::fs::Mode::from_raw_mode(0o700),
                    rustix::fs::AtFlags::empty(),
                )
                .map_err(|e| Error::io(&path.join(d), e.into()))?;
            }
        }
        Ok(())
    }

    /// Flush every write of this filesystem to stable storage (one
    /// `syncfs`), as done before a ref moves.
    pub fn sync(&self) -> Result<()> {
        rustix::fs::syncfs(&self.root).map_err(|e| Error::io(&self.path, e.into()))
    }
}
