//! Carrying out a checkout plan.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, RenameFlags, Uid};
use rustix::io::Errno;

use super::{CheckoutOptions, CheckoutStats, Error, Plan, Result};
use crate::fsutil;
use crate::hash::ObjectId;
use crate::object::{FileKind, FileMeta, Xattrs};
use crate::progress::Progress;
use crate::store::{Repo, RepoMode};

struct Ctx<'a> {
    repo: &'a Repo,
    root: OwnedFd,
    /// Absolute path of `root`, for path-based calls (xattrs).
    root_path: PathBuf,
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
        .map(|n| n.to_os_string())
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
        parent.join(format!(
            ".{}",
            fsutil::tmp_name(&format!("{}.slate-checkout", name.to_string_lossy()))
        ))
    };
    let (root_path, root) = if single_file {
        (
            parent.clone(),
            fsutil::open_dir(&parent).map_err(dest_err(parent.clone()))?,
        )
    } else {
        if !(exists && opts.union) {
            rfs::mkdir(&staging, Mode::from_raw_mode(0o700))
                .map_err(|e| dest_err(staging.clone())(e.into()))?;
        }
        (
            staging.clone(),
            fsutil::open_dir(&staging).map_err(dest_err(staging.clone()))?,
        )
    };
    let same_fs = repo.mode() != RepoMode::Archive
        && rfs::fstat(&root).map(|s| s.st_dev).ok() == Some(repo.objects_dev()?);
    let ctx = Ctx {
        repo,
        root,
        root_path,
        opts,
        progress,
        can_link: same_fs,
        hardlinked: AtomicU64::new(0),
        copied: AtomicU64::new(0),
        skipped_devices: AtomicU64::new(0),
    };
    let result = if single_file {
        let file_rel = if opts.union {
            name.to_string_lossy().into_owned()
        } else {
            staging
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
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
            dest_err(dest_abs.clone())(e.into())
        })?;
    }
    Ok(CheckoutStats {
        dirs: plan.dirs.len() as u64,
        hardlinked: ctx.hardlinked.into_inner(),
        copied: ctx.copied.into_inner(),
        skipped_devices: ctx.skipped_devices.into_inner(),
    })
}

fn rel_or_dot(rel: &str) -> &str {
    if rel.is_empty() {
        "."
    } else {
        rel
    }
}

impl Ctx<'_> {
    fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root_path.clone()
        } else {
            self.root_path.join(rel)
        }
    }

    fn run(&self, plan: &Plan) -> Result<()> {
        for d in plan.dirs.iter().skip(1) {
            match rfs::mkdirat(&self.root, d.rel.as_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) => {}
                Err(Errno::EXIST) if self.opts.union => {
                    let st = rfs::statat(&self.root, d.rel.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| dest_err(self.path(&d.rel))(e.into()))?;
                    if st.st_mode & 0o170000 != 0o040000 {
                        rfs::unlinkat(&self.root, d.rel.as_str(), AtFlags::empty())
                            .map_err(|e| dest_err(self.path(&d.rel))(e.into()))?;
                        rfs::mkdirat(&self.root, d.rel.as_str(), Mode::from_raw_mode(0o700))
                            .map_err(|e| dest_err(self.path(&d.rel))(e.into()))?;
                    }
                }
                Err(e) => return Err(dest_err(self.path(&d.rel))(e.into())),
            }
        }
        plan.files
            .par_iter()
            .try_for_each(|(id, paths)| self.place(id, paths))?;
        // Directory metadata last and deepest first: a read-only directory
        // must not stop its own entries from being created.
        plan.dirs
            .iter()
            .rev()
            .try_for_each(|d| self.dir_meta(&d.rel, &d.meta))
    }

    fn dir_meta(&self, rel: &str, meta: &crate::object::DirMeta) -> Result<()> {
        let err = dest_err(self.path(rel));
        let at = rel_or_dot(rel);
        self.owner_and_xattrs(rel, meta.uid, meta.gid, &meta.xattrs)?;
        rfs::chmodat(
            &self.root,
            at,
            Mode::from_raw_mode(meta.mode),
            AtFlags::empty(),
        )
        .map_err(|e| err(e.into()))?;
        fsutil::zero_times_at(&self.root, Path::new(at)).map_err(err)
    }

    fn xattrs_for<'x>(&self, x: &'x Xattrs) -> impl Iterator<Item = &'x (Vec<u8>, Vec<u8>)> {
        let user_mode = self.opts.user_mode;
        x.iter()
            .filter(move |(k, _)| !user_mode || k.starts_with(b"user."))
    }

    fn set_xattrs_path(&self, rel: &str, x: &Xattrs) -> Result<()> {
        let path = self.path(rel);
        for (k, v) in self.xattrs_for(x) {
            rfs::lsetxattr(&path, k.as_slice(), v, rfs::XattrFlags::empty())
                .map_err(|e| dest_err(path.clone())(e.into()))?;
        }
        Ok(())
    }

    /// Create the first path of an object, then hard-link the others to it.
    fn place(&self, id: &ObjectId, paths: &[String]) -> Result<()> {
        let first = &paths[0];
        if !self.link_object(id, first)? {
            self.copy_object(id, first)?;
        }
        for other in &paths[1..] {
            match self.linkat_replacing(self.root.as_fd(), first, other) {
                Ok(()) => {}
                Err(Errno::MLINK) => self.copy_object(id, other)?,
                Err(e) => return Err(dest_err(self.path(other))(e.into())),
            }
        }
        self.progress.add(paths.len() as u64, 0);
        Ok(())
    }

    fn linkat_replacing(&self, src_dir: BorrowedFd<'_>, src: &str, rel: &str) -> Result<(), Errno> {
        match rfs::linkat(src_dir, src, &self.root, rel, AtFlags::empty()) {
            Err(Errno::EXIST) if self.opts.union => {
                rfs::unlinkat(&self.root, rel, AtFlags::empty())?;
                rfs::linkat(src_dir, src, &self.root, rel, AtFlags::empty())
            }
            r => r,
        }
    }

    /// Hard-link the stored object at `rel`, if that gives every attribute.
    fn link_object(&self, id: &ObjectId, rel: &str) -> Result<bool> {
        if !self.can_link || !self.repo.object_linkable(id)? {
            return Ok(false);
        }
        let (objects, src) = self.repo.object_link_source(id);
        match self.linkat_replacing(objects, &src, rel) {
            Ok(()) => {
                self.hardlinked.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(Errno::XDEV | Errno::MLINK | Errno::PERM) => Ok(false),
            Err(Errno::NOENT) => Err(crate::store::Error::Missing {
                kind: crate::object::ObjectType::File,
                id: *id,
            }
            .into()),
            Err(e) => Err(dest_err(self.path(rel))(e.into())),
        }
    }

    fn copy_object(&self, id: &ObjectId, rel: &str) -> Result<()> {
        let (header, content) = self.repo.read_file(id)?;
        let meta = &header.meta;
        let err = dest_err(self.path(rel));
        if self.opts.union {
            match rfs::unlinkat(&self.root, rel, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(err(e.into())),
            }
        }
        match meta.kind {
            FileKind::Regular => {
                let fd = rfs::openat(
                    &self.root,
                    rel,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| err(e.into()))?;
                fsutil::write_all_fd(&fd, &content).map_err(&err)?;
                self.progress.add(0, content.len() as u64);
                if !self.opts.user_mode {
                    rfs::fchown(
                        &fd,
                        Some(Uid::from_raw(meta.uid)),
                        Some(Gid::from_raw(meta.gid)),
                    )
                    .map_err(|e| err(e.into()))?;
                }
                for (k, v) in self.xattrs_for(&meta.xattrs) {
                    rfs::fsetxattr(&fd, k.as_slice(), v, rfs::XattrFlags::empty())
                        .map_err(|e| err(e.into()))?;
                }
                let mode = if self.opts.user_mode {
                    meta.mode & 0o777
                } else {
                    meta.mode
                };
                rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| err(e.into()))?;
                fsutil::zero_times_fd(&fd).map_err(&err)?;
            }
            FileKind::Symlink => {
                rfs::symlinkat(content.as_slice(), &self.root, rel).map_err(|e| err(e.into()))?;
                self.finish_special(rel, meta)?;
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
                rfs::mknodat(&self.root, rel, ft, Mode::from_raw_mode(0o600), meta.rdev)
                    .map_err(|e| err(e.into()))?;
                self.finish_special(rel, meta)?;
                if !self.opts.user_mode || meta.kind == FileKind::Fifo {
                    rfs::chmodat(
                        &self.root,
                        rel,
                        Mode::from_raw_mode(meta.mode),
                        AtFlags::empty(),
                    )
                    .map_err(|e| err(e.into()))?;
                }
            }
        }
        self.copied.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn finish_special(&self, rel: &str, meta: &FileMeta) -> Result<()> {
        self.owner_and_xattrs(rel, meta.uid, meta.gid, &meta.xattrs)?;
        fsutil::zero_times_at(&self.root, Path::new(rel)).map_err(dest_err(self.path(rel)))
    }

    /// Owner (unless in user mode) and xattrs of `rel`, not following a
    /// final symlink; `rel` empty is DEST itself.
    fn owner_and_xattrs(&self, rel: &str, uid: u32, gid: u32, xattrs: &Xattrs) -> Result<()> {
        if !self.opts.user_mode {
            rfs::chownat(
                &self.root,
                rel_or_dot(rel),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| dest_err(self.path(rel))(e.into()))?;
        }
        self.set_xattrs_path(rel, xattrs)
    }
}
