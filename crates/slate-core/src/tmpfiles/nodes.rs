//! `p c b L C` lines: FIFOs, device nodes, symlinks (with `+` replacing
//! what is in the way) and copies.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::fs::{self, file_type};
use super::parse::Item;
use super::perms::{errno_text, Creation};
use super::{Failed, Kind, Level, Runner};

type R = Result<(), Failed>;

impl Runner<'_> {
    pub(super) fn make_node(
        &self,
        dir: BorrowedFd<'_>,
        bn: &str,
        i: &Item,
        t: FileType,
    ) -> Result<(), Errno> {
        let dev = rfs::makedev(i.major_minor.0, i.major_minor.1);
        rfs::mknodat(
            dir,
            bn,
            t,
            Mode::from_raw_mode(i.mode),
            if t == FileType::Fifo { 0 } else { dev },
        )?;
        fs::restore_umask_at(dir, bn, i.mode)
    }

    /// `p`, `c`, `b`: a FIFO or a device node.
    pub(super) fn create_node(&mut self, i: &Item, t: FileType) -> R {
        let path = i.path.clone();
        let what = match t {
            FileType::Fifo => "FIFO",
            _ => "device node",
        };
        let bn = self.file_name_of(&path, &format!("creating {what}"))?;
        let dir = self.open_parent(&path, i.allow_failure)?;
        let made = self.make_node(dir.as_fd(), bn, i, t);
        let mut creation = if made.is_ok() {
            self.created(&path, what);
            Creation::Normal
        } else {
            Creation::Existing
        };
        let privilege = |e: Errno| matches!(e, Errno::PERM | Errno::ACCESS);
        let fd = match rfs::openat(
            &dir,
            bn,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) => {
                return match made {
                    Err(me) if t != FileType::Fifo && privilege(me) => Ok(()),
                    Err(me) => {
                        let m = match t {
                            FileType::Fifo => format!(
                                "Failed to create FIFO {}: {}",
                                self.show(&path),
                                errno_text(me)
                            ),
                            _ => format!(
                                "Failed to create device node '{}': {}",
                                self.show(&path),
                                errno_text(me)
                            ),
                        };
                        Err(self.error(m))
                    }
                    Ok(()) => Err(self.error(format!(
                        "Failed to open {what} we just created {}: {}",
                        self.show(&path),
                        errno_text(e)
                    ))),
                };
            }
        };
        let mut st = self.fstat_logged(&fd, &path)?;
        let mut fd = fd;
        if file_type(&st) != t {
            if !i.append_or_force {
                let m = match t {
                    FileType::Fifo => {
                        format!("\"{}\" already exists and is not a FIFO.", self.show(&path))
                    }
                    _ => format!(
                        "\"{}\" already exists and is not a device node.",
                        self.show(&path)
                    ),
                };
                self.log.push(Level::Warning, m);
                return Ok(());
            }
            drop(fd);
            self.replace_with(dir.as_fd(), bn, &path, |this, d, n| {
                this.make_node(d, n, i, t)
            })?;
            fd = rfs::openat(
                &dir,
                bn,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| {
                self.error(format!(
                    "Failed to open {what} we just created '{}': {}",
                    self.show(&path),
                    errno_text(e)
                ))
            })?;
            st = self.fstat_logged(&fd, &path)?;
            if file_type(&st) != t {
                return Err(
                    self.error(format!("{what} we just created is not a {what}, refusing."))
                );
            }
            self.replaced(&path);
            creation = Creation::Force;
        }
        self.set_perms(i, fd.as_fd(), &path, Some(st), creation)
    }

    pub(super) fn replaced(&mut self, path: &str) {
        let text = format!("Replaced {}.", self.show(path));
        self.log.done(Kind::Replaced, path, text);
    }

    /// Put a new inode in place of whatever is at `bn`: made under a
    /// temporary name and renamed over it; a directory in the way is
    /// removed first (`*_atomic()` then `rm_rf_child()`).
    pub(super) fn replace_with(
        &mut self,
        dir: BorrowedFd<'_>,
        bn: &str,
        path: &str,
        make: impl Fn(&Self, BorrowedFd<'_>, &str) -> Result<(), Errno>,
    ) -> R {
        let tmp = crate::fsutil::tmp_name(".#tmpfiles");
        let r = make(self, dir, &tmp).and_then(|()| {
            rfs::renameat(dir, tmp.as_str(), dir, bn).inspect_err(|_| {
                let _ = rfs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
            })
        });
        match r {
            Ok(()) => Ok(()),
            Err(Errno::ISDIR | Errno::EXIST | Errno::NOTEMPTY) => {
                fs::rm_rf_at(dir, bn).map_err(|e| {
                    let m = format!("rm -rf {} failed: {}", self.show(path), errno_text(e));
                    self.error(m)
                })?;
                make(self, dir, bn).map_err(|e| {
                    let m = format!("Failed to create {}: {}", self.show(path), errno_text(e));
                    self.error(m)
                })
            }
            Err(e) => {
                let m = format!("Failed to create {}: {}", self.show(path), errno_text(e));
                Err(self.error(m))
            }
        }
    }

    pub(super) fn create_symlink(&mut self, i: &Item) -> R {
        let path = i.path.clone();
        let target = i.argument.clone().unwrap_or_default();
        let bn = self.file_name_of(&path, "creating symlink")?;
        let dir = self.open_parent(&path, i.allow_failure)?;
        let made = rfs::symlinkat(target.as_slice(), &dir, bn);
        let mut creation = if made.is_ok() {
            self.created(&path, "symlink");
            Creation::Normal
        } else {
            Creation::Existing
        };
        let open = |d: &OwnedFd| {
            rfs::openat(
                d,
                bn,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
        };
        let fd = match open(&dir) {
            Ok(fd) => fd,
            Err(e) => {
                let m = match made {
                    Err(me) => format!(
                        "Failed to create symlink '{}': {}",
                        self.show(&path),
                        errno_text(me)
                    ),
                    Ok(()) => format!(
                        "Failed to open symlink we just created '{}': {}",
                        self.show(&path),
                        errno_text(e)
                    ),
                };
                return Err(self.error(m));
            }
        };
        let mut st = self.fstat_logged(&fd, &path)?;
        let good = file_type(&st) == FileType::Symlink
            && rfs::readlinkat(&fd, "", Vec::new())
                .is_ok_and(|t| t.as_bytes() == target.as_slice());
        let mut fd = fd;
        if !good {
            if !i.append_or_force {
                return Ok(());
            }
            drop(fd);
            let t = target.clone();
            self.replace_with(dir.as_fd(), bn, &path, move |_, d, n| {
                rfs::symlinkat(t.as_slice(), d, n)
            })?;
            fd = open(&dir).map_err(|e| {
                self.error(format!(
                    "Failed to open symlink we just created '{}': {}",
                    self.show(&path),
                    errno_text(e)
                ))
            })?;
            st = self.fstat_logged(&fd, &path)?;
            if file_type(&st) != FileType::Symlink {
                return Err(
                    self.error("Symlink we just created is not a symlink, refusing.".into())
                );
            }
            self.replaced(&path);
            creation = Creation::Force;
        }
        self.set_perms(i, fd.as_fd(), &path, Some(st), creation)
    }

    pub(super) fn copy_files(&mut self, i: &Item) -> R {
        let path = i.path.clone();
        let src = i.arg_text();
        let Some(bn) = fs::file_name(&path) else {
            return Ok(());
        };
        let dir = self.open_parent(&path, i.allow_failure)?;
        let copied = super::copy::copy_tree(self.root, &src, dir.as_fd(), bn, i.uid, i.gid);
        let fd = match rfs::openat(
            &dir,
            bn,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) => {
                let m = match copied {
                    Err(ce) => format!(
                        "Failed to copy files to {}: {}",
                        self.show(&path),
                        errno_text(ce)
                    ),
                    Ok(()) => format!("Failed to openat({}): {}", self.show(&path), errno_text(e)),
                };
                return Err(self.error(m));
            }
        };
        let st = self.fstat_logged(&fd, &path)?;
        let a = self.root.stat(&src).map_err(|e| {
            let m = format!(
                "Failed to stat({}): {}",
                self.show(&src),
                super::os_text(&e)
            );
            self.error(m)
        })?;
        if copied.is_ok() {
            let text = format!("Copied {} to {}.", self.show(&src), self.show(&path));
            self.log.done(Kind::Copied, &path, text);
        }
        if file_type(&st) != file_type(&a) {
            return Ok(());
        }
        self.set_perms(i, fd.as_fd(), &path, Some(st), Creation::Copy)
    }
}
