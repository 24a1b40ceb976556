//! The create operation: every line type's action, then owner, mode,
//! xattrs, ACLs and file attributes, as systemd-tmpfiles 252 applies them.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::fs::{self, file_type, ChaseError};
use super::parse::Item;
use super::perms::{errno_text, Creation};
use super::{Failed, Kind, Level, Runner};

type R = Result<(), Failed>;

impl Runner<'_> {
    /// The action of a glob line on one path.
    fn on_path(&mut self, i: &Item, path: &str) -> R {
        let r = self.open_safe(path)?;
        let fd = r.fd.as_fd();
        match i.kind {
            b'm' | b'z' => self.set_perms(i, fd, path, None, Creation::Existing),
            b't' => self.set_xattrs(i, fd, path),
            b'a' => self.set_acls(i, fd, path, &r.st),
            b'h' => self.set_attribute(i, fd, path, &r.st),
            _ => Ok(()),
        }
    }

    /// The action of a recursive glob line on one inode.
    fn on_fd(&mut self, i: &Item, fd: BorrowedFd<'_>, path: &str, st: &Stat) -> R {
        match i.kind {
            b'Z' => self.set_perms(i, fd, path, Some(*st), Creation::Existing),
            b'T' => self.set_xattrs(i, fd, path),
            b'A' => self.set_acls(i, fd, path, st),
            b'H' => self.set_attribute(i, fd, path, st),
            _ => Ok(()),
        }
    }

    /// `item_do()`: the action on `fd`, then on everything below it.
    fn item_do(&mut self, i: &Item, fd: OwnedFd, path: &str) -> R {
        let st = match rfs::fstat(&fd) {
            Ok(s) => s,
            Err(e) => return Err(self.error(format!("fstat() on file failed: {}", errno_text(e)))),
        };
        let mut result = self.on_fd(i, fd.as_fd(), path, &st);
        if file_type(&st) == FileType::Directory {
            let dir = match fs::reopen(&fd, OFlags::RDONLY | OFlags::DIRECTORY) {
                Ok(d) => d,
                Err(e) => {
                    let m = format!(
                        "Failed to opendir() '{}': {}",
                        fs::proc_path(&fd),
                        errno_text(e)
                    );
                    let f = self.error(m);
                    return result.and(Err(f));
                }
            };
            let mut names = Vec::new();
            if let Ok(mut d) = rfs::Dir::read_from(&dir) {
                while let Some(Ok(e)) = d.next() {
                    let n = e.file_name().to_bytes();
                    if n != b"." && n != b".." {
                        names.push(String::from_utf8_lossy(n).into_owned());
                    }
                }
            }
            names.sort();
            for n in names {
                let r = match rfs::openat(
                    &fd,
                    n.as_str(),
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(sub) => {
                        let sub_path = format!("{}/{n}", path.trim_end_matches('/'));
                        self.item_do(i, sub, &sub_path)
                    }
                    Err(Errno::NOENT) => Ok(()),
                    Err(e) => {
                        Err(self.error(format!("Failed to open file '{n}': {}", errno_text(e))))
                    }
                };
                if result.is_ok() {
                    result = r;
                }
            }
        }
        result
    }

    fn glob_paths(&self, i: &Item) -> Vec<String> {
        fs::glob(self.root, &i.path)
    }

    fn glob_item(&mut self, i: &Item, action: fn(&mut Self, &Item, &str) -> R) -> R {
        let mut result = Ok(());
        for p in self.glob_paths(i) {
            let r = action(self, i, &p);
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    fn glob_item_recursively(&mut self, i: &Item) -> R {
        let mut result = Ok(());
        for p in self.glob_paths(i) {
            let r = match fs::chase(self.root, &p, false, true) {
                Ok(res) => self.item_do(i, res.fd, &p),
                Err(e) => {
                    let m = format!("Opening '{}' failed", self.show(&p));
                    Err(self.chase_error(e, m))
                }
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    pub(super) fn create_item(&mut self, i: &Item) -> R {
        match i.kind {
            b'x' | b'X' | b'r' | b'R' => Ok(()),
            b'f' | b'F' => {
                self.mkdir_parents_item(i, Some(FileType::RegularFile))?;
                if i.kind == b'F' || i.append_or_force {
                    self.truncate_file(i)
                } else {
                    self.create_file(i)
                }
            }
            b'C' => {
                self.mkdir_parents_item(i, None)?;
                self.copy_files(i)
            }
            b'w' => self.glob_item(i, Self::write_one_file),
            b'd' | b'D' | b'v' | b'q' | b'Q' => {
                self.mkdir_parents_item(i, Some(FileType::Directory))?;
                self.create_directory(i)
            }
            b'e' => self.glob_item(i, Self::empty_directory),
            b'p' => {
                self.mkdir_parents_item(i, Some(FileType::Fifo))?;
                self.create_node(i, FileType::Fifo)
            }
            b'L' => {
                self.mkdir_parents_item(i, Some(FileType::Symlink))?;
                self.create_symlink(i)
            }
            b'c' | b'b' => {
                if !self.host.can_mknod {
                    return Ok(());
                }
                let t = if i.kind == b'b' {
                    FileType::BlockDevice
                } else {
                    FileType::CharacterDevice
                };
                self.mkdir_parents_item(i, Some(t))?;
                self.create_node(i, t)
            }
            b'm' | b'z' | b't' | b'a' | b'h' => self.glob_item(i, Self::on_path),
            b'Z' | b'T' | b'A' | b'H' => self.glob_item_recursively(i),
            _ => Ok(()),
        }
    }

    fn write_one_file(&mut self, i: &Item, path: &str) -> R {
        self.file_name_of(path, "writing")?;
        // The parent is checked as systemd checks it (unsafe transitions);
        // the last component may be a symlink, followed inside the root.
        self.open_parent(path, i.allow_failure)?;
        let flags = OFlags::NONBLOCK
            | OFlags::WRONLY
            | OFlags::NOCTTY
            | if i.append_or_force {
                OFlags::APPEND
            } else {
                OFlags::empty()
            };
        let fd = match self.root.open(path, flags, 0) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) if i.allow_failure => return Err(Failed),
            Err(e) => {
                let m = format!(
                    "Failed to open file \"{}\": {}",
                    self.show(path),
                    super::os_text(&e)
                );
                return Err(self.error(m));
            }
        };
        let st = self.fstat_logged(&fd, path)?;
        let fd = match self.own_inode(fd.as_fd(), path, st)? {
            (Some(copy), _) => self.reopen_for_write(&copy, path, flags)?,
            (None, _) => fd,
        };
        self.write_argument(i, fd.as_fd(), path)?;
        self.log
            .done(Kind::Written, path, format!("Wrote {}.", self.show(path)));
        self.set_perms(i, fd.as_fd(), path, None, Creation::Existing)
    }

    fn write_argument(&mut self, i: &Item, fd: BorrowedFd<'_>, path: &str) -> R {
        let Some(data) = i.argument.as_deref().filter(|a| !a.is_empty()) else {
            return Ok(());
        };
        crate::fsutil::write_all_fd(fd, data).map_err(|e| {
            let m = format!(
                "Failed to write file \"{}\": {}",
                self.show(path),
                super::os_text(&e)
            );
            self.error(m)
        })
    }

    fn create_file(&mut self, i: &Item) -> R {
        let path = i.path.clone();
        let bn = self.file_name_of(&path, "writing")?;
        let dir = self.open_parent(&path, i.allow_failure)?;
        let flags = OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::CLOEXEC
            | OFlags::WRONLY
            | OFlags::NOCTTY;
        let has_content = i.argument.as_ref().is_some_and(|a| !a.is_empty());
        let created = if has_content {
            self.create_file_atomically(i, dir.as_fd(), bn, flags)
                .map(Err)
        } else {
            rfs::openat(&dir, bn, flags, Mode::from_raw_mode(i.mode))
                .and_then(|fd| fs::restore_umask_fd(&fd, i.mode).map(|()| fd))
                .map(Ok)
        };
        match created {
            Ok(Ok(fd)) => {
                self.created(&path, "file");
                self.set_perms(i, fd.as_fd(), &path, None, Creation::Normal)
            }
            // Made complete (content, owner, mode) and renamed into place,
            // or failed with the reason logged.
            Ok(Err(done)) => {
                if done.is_ok() {
                    self.created(&path, "file");
                }
                done
            }
            Err(Errno::EXIST) => {
                let fd = rfs::openat(
                    &dir,
                    bn,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| {
                    self.error(format!(
                        "Failed to re-open file {}: {}",
                        self.show(&path),
                        errno_text(e)
                    ))
                })?;
                let st = self.stat_logged(&fd, &path)?;
                if file_type(&st) != FileType::RegularFile {
                    let m = format!("{} exists and is not a regular file.", self.show(&path));
                    return Err(self.error(m));
                }
                self.set_perms(i, fd.as_fd(), &path, Some(st), Creation::Existing)
            }
            Err(e) => {
                let m = format!(
                    "Failed to create file {}: {}",
                    self.show(&path),
                    errno_text(e)
                );
                Err(self.error(m))
            }
        }
    }

    /// A new file with content appears whole or not at all: written, given
    /// its owner and mode, and synced under a temporary name, then renamed
    /// into place unless something took the name meanwhile (`EEXIST`).
    fn create_file_atomically(
        &mut self,
        i: &Item,
        dir: BorrowedFd<'_>,
        bn: &str,
        flags: OFlags,
    ) -> Result<R, Errno> {
        match fs::lstat_at(dir, bn) {
            Ok(_) => return Err(Errno::EXIST),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
        let tmp = crate::fsutil::tmp_name(".#tmpfiles");
        let fd = rfs::openat(dir, tmp.as_str(), flags, Mode::from_raw_mode(i.mode))?;
        fs::restore_umask_fd(&fd, i.mode)?;
        let path = i.path.clone();
        let done = self
            .write_argument(i, fd.as_fd(), &path)
            .and_then(|()| self.set_perms(i, fd.as_fd(), &path, None, Creation::Normal));
        let r = match done {
            Ok(()) => rfs::fsync(&fd).and_then(|()| {
                rfs::renameat_with(dir, tmp.as_str(), dir, bn, rfs::RenameFlags::NOREPLACE)
            }),
            Err(Failed) => {
                let _ = rfs::unlinkat(dir, tmp.as_str(), rfs::AtFlags::empty());
                return Ok(Err(Failed));
            }
        };
        if r.is_err() {
            let _ = rfs::unlinkat(dir, tmp.as_str(), rfs::AtFlags::empty());
        }
        r.map(|()| Ok(()))
    }

    fn truncate_file(&mut self, i: &Item) -> R {
        let path = i.path.clone();
        let bn = self.file_name_of(&path, "truncation")?;
        let dir = self.open_parent(&path, i.allow_failure)?;
        let base =
            OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::WRONLY | OFlags::NOCTTY;
        let mode = Mode::from_raw_mode(i.mode);
        let (fd, creation) = match rfs::openat(&dir, bn, base, mode) {
            Ok(fd) => (Ok(fd), Creation::Existing),
            Err(Errno::NOENT) => (
                rfs::openat(&dir, bn, base | OFlags::CREATE, mode)
                    .and_then(|fd| fs::restore_umask_fd(&fd, i.mode).map(|()| fd)),
                Creation::Normal,
            ),
            Err(e) => (Err(e), Creation::Existing),
        };
        // On a read-only file system an existing file that is already
        // empty, with the right owner and mode, is no failure: go on with
        // a path handle and let whatever would change it fail.
        let (fd, read_only) = match fd {
            Ok(fd) => (fd, false),
            Err(Errno::ROFS) => {
                match rfs::openat(
                    &dir,
                    bn,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => (fd, true),
                    Err(Errno::NOENT) => {
                        let m = format!(
                            "Cannot create file {} on a read-only file system.",
                            self.show(&path)
                        );
                        return Err(self.error(m));
                    }
                    Err(e) => {
                        let m = format!(
                            "Failed to re-open file {}: {}",
                            self.show(&path),
                            errno_text(e)
                        );
                        return Err(self.error(m));
                    }
                }
            }
            Err(e) => {
                let m = format!(
                    "Failed to open/create file {}: {}",
                    self.show(&path),
                    errno_text(e)
                );
                return Err(self.error(m));
            }
        };
        let st = self.stat_logged(&fd, &path)?;
        if file_type(&st) != FileType::RegularFile {
            let m = format!("{} exists and is not a regular file.", self.show(&path));
            return Err(self.error(m));
        }
        if read_only && (st.st_size > 0 || i.argument.is_some()) {
            let what = if st.st_size > 0 { "truncate" } else { "write" };
            let m = format!(
                "Failed to {what} file {}: {}",
                self.show(&path),
                errno_text(Errno::ROFS)
            );
            return Err(self.error(m));
        }
        let (fd, st) = match read_only {
            true => (fd, st),
            false => match self.own_inode(fd.as_fd(), &path, st)? {
                (Some(copy), st) => (self.reopen_for_write(&copy, &path, base)?, st),
                (None, st) => (fd, st),
            },
        };
        if creation == Creation::Normal {
            self.created(&path, "file");
        } else if st.st_size > 0 {
            self.log.done(
                Kind::Truncated,
                &path,
                format!("Truncated {}.", self.show(&path)),
            );
        }
        let mut known = None;
        if st.st_size > 0 {
            rfs::ftruncate(&fd, 0).map_err(|e| {
                let m = format!(
                    "Failed to truncate file {}: {}",
                    self.show(&path),
                    errno_text(e)
                );
                self.error(m)
            })?;
        } else {
            known = Some(st);
        }
        self.write_argument(i, fd.as_fd(), &path)?;
        self.set_perms(i, fd.as_fd(), &path, known, creation)
    }

    fn create_directory(&mut self, i: &Item) -> R {
        let path = i.path.clone();
        let ignoring = if i.allow_failure { ", ignoring" } else { "" };
        let Some(bn) = fs::file_name(&path) else {
            // "/" itself: it exists; only its owner and mode can be set.
            let r = fs::chase(self.root, "/", true, true).map_err(|_| Failed)?;
            return self.set_perms(i, r.fd.as_fd(), &path, Some(r.st), Creation::Existing);
        };
        let dir = self.open_parent(&path, i.allow_failure)?;
        let made = fs::mkdir_exact(dir.as_fd(), bn, i.mode);
        let creation = if made.is_ok() {
            self.created(&path, "directory");
            Creation::Normal
        } else {
            Creation::Existing
        };
        let fd = match rfs::openat(
            &dir,
            bn,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOTDIR) => {
                let m = format!(
                    "\"{}\" already exists and is not a directory.",
                    self.show(&path)
                );
                self.error(m);
                return Ok(());
            }
            Err(e) => {
                let m = match made {
                    Err(me) => format!(
                        "Failed to create directory or subvolume \"{}\"{ignoring}: {}",
                        self.show(&path),
                        errno_text(me)
                    ),
                    Ok(()) => format!(
                        "Failed to open directory/subvolume we just created '{}': {}",
                        self.show(&path),
                        errno_text(e)
                    ),
                };
                if i.allow_failure {
                    self.log.push(Level::Info, m);
                    return Err(Failed);
                }
                return Err(self.error(m));
            }
        };
        let st = self.fstat_logged(&fd, &path)?;
        self.set_perms(i, fd.as_fd(), &path, Some(st), creation)
    }

    fn empty_directory(&mut self, i: &Item, path: &str) -> R {
        let r = match fs::chase(self.root, path, true, false) {
            Ok(r) => r,
            Err(ChaseError::Io(Errno::NOENT)) => return Ok(()),
            Err(e) => {
                let m = format!("Failed to open directory '{}'", self.show(path));
                return Err(self.chase_error(e, m));
            }
        };
        if file_type(&r.st) != FileType::Directory {
            let m = format!(
                "'{}' already exists and is not a directory.",
                self.show(path)
            );
            self.log.push(Level::Warning, m);
            return Ok(());
        }
        self.set_perms(i, r.fd.as_fd(), path, Some(r.st), Creation::Existing)
    }
}
