//! Carrying out a checkout plan. Every path is reached below a directory
//! handle (`fsutil::at`, for trees deeper than `PATH_MAX`); names are the
//! tree's bytes; copied content is streamed from the repository.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, RenameFlags, Uid};
use rustix::io::Errno;

use super::{CheckoutOptions, CheckoutStats, Error, Plan, Result};
use crate::fsutil::{self, at};
use crate::hash::ObjectId;
use crate::object::{name, DirMeta, FileKind, FileMeta, Xattrs};
use crate::progress::Progress;
use crate::store::{ObjectRead, Repo, RepoMode};

struct Ctx<'a> {
    repo: &'a Repo,
    root: OwnedFd,
    /// The path of `root`, for messages.
    root_path: PathBuf,
    /// Where DEST is in the commit's tree.
    base: &'a [u8],
    opts: &'a CheckoutOptions,
    progress: &'a Progress,
    can_link: bool,
    hardlinked: AtomicU64,
    copied: AtomicU64,
    skipped_devices: AtomicU64,
}

fn dest_err(path: PathBuf) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Dest {
        path: path.clone(),
        source,
    }
}

fn errno(path: PathBuf) -> impl Fn(Errno) -> Error {
    move |e| Error::Dest {
        path: path.clone(),
        source: e.into(),
    }
}

pub(super) fn apply(
    repo: &Repo,
    plan: &Plan,
    dest: &Path,
    opts: &CheckoutOptions,
    progress: &Progress,
) -> Result<CheckoutStats> {
    let single_file = plan.dirs.is_empty();
    let dest_abs = std::path::absolute(dest).map_err(dest_err(dest.to_path_buf()))?;
    let parent = dest_abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = dest_abs
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    let exists = rfs::lstat(&dest_abs).is_ok();
    if exists && !opts.union {
        return Err(Error::Exists(dest_abs));
    }
    // Without --union, build beside DEST and rename into place at the end,
    // so an interrupted checkout never leaves a partial tree at DEST.
    let staging = if opts.union {
        dest_abs.clone()
    } else {
        let mut n = b".".to_vec();
        n.extend_from_slice(&name);
        n.extend_from_slice(fsutil::tmp_name(".slate-checkout").as_bytes());
        parent.join(OsStr::from_bytes(&n))
    };
    let (root_path, root) = if single_file {
        (
            parent.clone(),
            fsutil::open_dir(&parent).map_err(dest_err(parent.clone()))?,
        )
    } else {
        if !(exists && opts.union) {
            rfs::mkdir(&staging, Mode::from_raw_mode(0o700)).map_err(errno(staging.clone()))?;
        }
        (
            staging.clone(),
            fsutil::open_dir(&staging).map_err(dest_err(staging.clone()))?,
        )
    };
    let same_fs = !opts.copy
        && repo.mode() != RepoMode::Archive
        && rfs::fstat(&root).map(|s| s.st_dev).ok() == Some(repo.objects_dev()?);
    let ctx = Ctx {
        repo,
        root,
        root_path,
        base: &plan.base,
        opts,
        progress,
        can_link: same_fs,
        hardlinked: AtomicU64::new(0),
        copied: AtomicU64::new(0),
        skipped_devices: AtomicU64::new(0),
    };
    let result = if single_file {
        let file_rel = if opts.union {
            name.clone()
        } else {
            staging
                .file_name()
                .map(|n| n.as_bytes().to_vec())
                .unwrap_or_default()
        };
        let (id, _) = &plan.files[0];
        ctx.place(id, &[file_rel])
    } else {
        ctx.run(plan)
    };
    if let Err(e) = result {
        if !opts.union {
            let _ = if single_file {
                std::fs::remove_file(&staging)
            } else {
                std::fs::remove_dir_all(&staging)
            };
        }
        return Err(e);
    }
    if !opts.union {
        rfs::renameat_with(
            rfs::CWD,
            &staging,
            rfs::CWD,
            &dest_abs,
            RenameFlags::NOREPLACE,
        )
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(&staging);
            errno(dest_abs.clone())(e)
        })?;
    }
    Ok(CheckoutStats {
        dirs: plan.dirs.len() as u64,
        hardlinked: ctx.hardlinked.into_inner(),
        copied: ctx.copied.into_inner(),
        skipped_devices: ctx.skipped_devices.into_inner(),
    })
}

/// The plan's directories grouped by depth, shallowest first (indices).
fn by_depth(plan: &Plan) -> Vec<Vec<usize>> {
    let mut levels: Vec<Vec<usize>> = Vec::new();
    for (i, d) in plan.dirs.iter().enumerate() {
        let depth = if d.rel.is_empty() {
            0
        } else {
            1 + d.rel.iter().filter(|&&b| b == b'/').count()
        };
        if levels.len() <= depth {
            levels.resize_with(depth + 1, Vec::new);
        }
        levels[depth].push(i);
    }
    levels
}

impl Ctx<'_> {
    fn path(&self, rel: &[u8]) -> PathBuf {
        fsutil::joined(&self.root_path, rel)
    }

    fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Whether the file at `rel` must be a private copy.
    fn private(&self, rel: &[u8]) -> bool {
        let under = |full: &[u8]| {
            self.opts.private.iter().any(|p| {
                full.strip_prefix(p.as_slice())
                    .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
            })
        };
        if self.base.is_empty() {
            under(rel)
        } else {
            under(&name::join(self.base, rel))
        }
    }

    fn run(&self, plan: &Plan) -> Result<()> {
        // Directories a level at a time, in parallel within a level: a
        // parent exists before its children are made.
        let levels = by_depth(plan);
        for level in levels.iter().skip(1) {
            level
                .par_iter()
                .try_for_each(|&i| self.make_dir(&plan.dirs[i].rel))?;
        }
        plan.files
            .par_iter()
            .try_for_each(|(id, paths)| self.place(id, paths))?;
        // Directory metadata last and deepest first: a read-only directory
        // must not stop its own entries from being created.
        for level in levels.iter().rev() {
            level
                .par_iter()
                .try_for_each(|&i| self.dir_meta(&plan.dirs[i].rel, &plan.dirs[i].meta))?;
        }
        Ok(())
    }

    fn make_dir(&self, rel: &[u8]) -> Result<()> {
        let mode = Mode::from_raw_mode(0o700);
        at(self.root(), rel, |d, n| match rfs::mkdirat(d, n, mode) {
            Err(Errno::EXIST) if self.opts.union => {
                let st = rfs::statat(d, n, AtFlags::SYMLINK_NOFOLLOW)?;
                if st.st_mode & 0o170000 != 0o040000 {
                    rfs::unlinkat(d, n, AtFlags::empty())?;
                    rfs::mkdirat(d, n, mode)?;
                }
                Ok(())
            }
            r => Ok(r?),
        })
        .map_err(|e| dest_err(self.path(rel))(e))
    }

    /// Owner, xattrs, mode and times of a directory we made (no symlink
    /// can be in its place: every directory on the way is ours).
    fn dir_meta(&self, rel: &[u8], meta: &DirMeta) -> Result<()> {
        let root = self.root();
        self.chown(rel, meta.uid, meta.gid, |u, g| {
            at(root, rel, |d, n| {
                Ok(rfs::chownat(d, n, u, g, AtFlags::SYMLINK_NOFOLLOW)?)
            })
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
        })?;
        let xattrs: Xattrs = self.xattrs_for(&meta.xattrs).cloned().collect();
        at(root, rel, |d, n| {
            fsutil::set_xattrs_at(d, n, &xattrs)?;
            rfs::chmodat(d, n, Mode::from_raw_mode(meta.mode), AtFlags::empty())?;
            Ok(rfs::utimensat(
                d,
                n,
                &fsutil::zero_timestamps(),
                AtFlags::SYMLINK_NOFOLLOW,
            )?)
        })
        .map_err(|e| dest_err(self.path(rel))(e))
    }

    /// Give `rel` an owner (unless in user mode). A refusal to a user who
    /// is not root says how to check out as one.
    fn chown(
        &self,
        rel: &[u8],
        uid: u32,
        gid: u32,
        f: impl FnOnce(Option<Uid>, Option<Gid>) -> rustix::io::Result<()>,
    ) -> Result<()> {
        if self.opts.user_mode {
            return Ok(());
        }
        f(Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(|e| {
            if e == Errno::PERM && !fsutil::is_root() {
                Error::Owner {
                    path: self.path(rel),
                    uid,
                    gid,
                    source: e.into(),
                }
            } else {
                errno(self.path(rel))(e)
            }
        })
    }

    fn xattrs_for<'x>(&self, x: &'x Xattrs) -> impl Iterator<Item = &'x (Vec<u8>, Vec<u8>)> {
        let user_mode = self.opts.user_mode;
        x.iter()
            .filter(move |(k, _)| !user_mode || k.starts_with(b"user."))
    }

    /// Create the first path of an object, then hard-link the others to it:
    /// paths that may share the repository's inode to the first of them,
    /// private paths to the first private copy.
    fn place(&self, id: &ObjectId, paths: &[Vec<u8>]) -> Result<()> {
        if !paths.iter().any(|p| self.private(p)) {
            // The common case: no private path, nothing to sort out.
            let (first, others) = paths.split_first().expect("an object has a path");
            if !self.link_object(id, first)? {
                self.copy_object(id, first)?;
            }
            for other in others {
                self.link_other(id, first, other)?;
            }
            self.progress.add(paths.len() as u64, 0);
            return Ok(());
        }
        let (private, shared): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) =
            paths.iter().partition(|p| self.private(p));
        if let Some((first, others)) = shared.split_first() {
            if !self.link_object(id, first)? {
                self.copy_object(id, first)?;
            }
            self.link_others(id, first, others)?;
        }
        if let Some((first, others)) = private.split_first() {
            self.copy_object(id, first)?;
            self.link_others(id, first, others)?;
        }
        self.progress.add(paths.len() as u64, 0);
        Ok(())
    }

    fn link_others(&self, id: &ObjectId, first: &[u8], others: &[&Vec<u8>]) -> Result<()> {
        others
            .iter()
            .try_for_each(|other| self.link_other(id, first, other))
    }

    /// Hard-link `other` to `first` (a copy when the file has too many links).
    fn link_other(&self, id: &ObjectId, first: &[u8], other: &[u8]) -> Result<()> {
        let linked = at(self.root(), first, |d, n| {
            Ok(self.link_replacing(d, n, other))
        })
        .map_err(|e| dest_err(self.path(first))(e))?;
        match linked {
            Ok(()) => Ok(()),
            Err(Errno::MLINK) => self.copy_object(id, other),
            Err(e) => Err(errno(self.path(other))(e)),
        }
    }

    /// `linkat(src_dir, src, DEST/rel)`, replacing what is at `rel` in a
    /// union checkout.
    fn link_replacing(&self, src_dir: BorrowedFd<'_>, src: &[u8], rel: &[u8]) -> Result<(), Errno> {
        let flags = AtFlags::empty();
        let link = |d: BorrowedFd<'_>, n: &[u8]| match rfs::linkat(src_dir, src, d, n, flags) {
            Err(Errno::EXIST) if self.opts.union => {
                rfs::unlinkat(d, n, AtFlags::empty())?;
                rfs::linkat(src_dir, src, d, n, flags)
            }
            r => r,
        };
        at(self.root(), rel, |d, n| Ok(link(d, n)?))
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
    }

    /// Hard-link the stored object at `rel`, if that gives every attribute.
    fn link_object(&self, id: &ObjectId, rel: &[u8]) -> Result<bool> {
        if !self.can_link || !self.repo.object_linkable(id)? {
            return Ok(false);
        }
        let (objects, src) = self.repo.object_link_source(id);
        match self.link_replacing(objects, src.as_bytes(), rel) {
            Ok(()) => {
                self.hardlinked.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            // EPERM: fs.protected_hardlinks forbids linking a file of
            // another owner; a copy does.
            Err(Errno::XDEV | Errno::MLINK | Errno::PERM) => Ok(false),
            Err(Errno::NOENT) => Err(crate::store::Error::Missing {
                kind: crate::object::ObjectType::File,
                id: *id,
            }
            .into()),
            Err(e) => Err(errno(self.path(rel))(e)),
        }
    }

    fn copy_object(&self, id: &ObjectId, rel: &[u8]) -> Result<()> {
        let mut stream = self.repo.open_file(id)?;
        let meta = stream.header().meta.clone();
        let err = dest_err(self.path(rel));
        if self.opts.union {
            at(self.root(), rel, |d, n| {
                match rfs::unlinkat(d, n, AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            })
            .map_err(&err)?;
        }
        match meta.kind {
            FileKind::Regular => {
                let fd = at(self.root(), rel, |d, n| {
                    Ok(rfs::openat(
                        d,
                        n,
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )?)
                })
                .map_err(&err)?;
                let mut file = std::fs::File::from(fd);
                let n = stream.copy_to(&mut file).map_err(|e| match e {
                    Ok(io) => err(io),
                    Err(store) => store.into(),
                })?;
                self.progress.add(0, n);
                self.chown(rel, meta.uid, meta.gid, |u, g| rfs::fchown(&file, u, g))?;
                for (k, v) in self.xattrs_for(&meta.xattrs) {
                    rfs::fsetxattr(&file, k.as_slice(), v, rfs::XattrFlags::empty())
                        .map_err(|e| err(e.into()))?;
                }
                let mode = if self.opts.user_mode {
                    meta.mode & 0o777
                } else {
                    meta.mode
                };
                rfs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(|e| err(e.into()))?;
                fsutil::zero_times_fd(&file).map_err(&err)?;
            }
            FileKind::Symlink => {
                let target = stream.read_all()?;
                at(self.root(), rel, |d, n| {
                    Ok(rfs::symlinkat(target.as_slice(), d, n)?)
                })
                .map_err(&err)?;
                self.finish_special(rel, &meta)?;
            }
            FileKind::CharDevice | FileKind::BlockDevice | FileKind::Fifo => {
                if meta.kind != FileKind::Fifo && !fsutil::is_root() {
                    if self.opts.user_mode {
                        self.skipped_devices.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    return Err(Error::NeedsRoot {
                        path: self.path(rel),
                        kind: meta.kind.name(),
                    });
                }
                let ft = match meta.kind {
                    FileKind::CharDevice => FileType::CharacterDevice,
                    FileKind::BlockDevice => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                at(self.root(), rel, |d, n| {
                    Ok(rfs::mknodat(
                        d,
                        n,
                        ft,
                        Mode::from_raw_mode(0o600),
                        meta.rdev,
                    )?)
                })
                .map_err(&err)?;
                self.finish_special(rel, &meta)?;
                if !self.opts.user_mode || meta.kind == FileKind::Fifo {
                    at(self.root(), rel, |d, n| {
                        Ok(rfs::chmodat(
                            d,
                            n,
                            Mode::from_raw_mode(meta.mode),
                            AtFlags::empty(),
                        )?)
                    })
                    .map_err(&err)?;
                }
            }
        }
        self.copied.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Owner, xattrs and times of a symlink, device node or fifo, not
    /// following a symlink.
    fn finish_special(&self, rel: &[u8], meta: &FileMeta) -> Result<()> {
        let err = dest_err(self.path(rel));
        let root = self.root();
        self.chown(rel, meta.uid, meta.gid, |u, g| {
            at(root, rel, |d, n| {
                Ok(rfs::chownat(d, n, u, g, AtFlags::SYMLINK_NOFOLLOW)?)
            })
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
        })?;
        let xattrs: Xattrs = self.xattrs_for(&meta.xattrs).cloned().collect();
        at(root, rel, |d, n| {
            fsutil::set_xattrs_at(d, n, &xattrs)?;
            Ok(rfs::utimensat(
                d,
                n,
                &fsutil::zero_timestamps(),
                AtFlags::SYMLINK_NOFOLLOW,
            )?)
        })
        .map_err(err)
    }
}
