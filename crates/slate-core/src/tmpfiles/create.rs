//! The create operation: every line type's action, then owner, mode,
//! xattrs, ACLs and file attributes, as systemd-tmpfiles 252 applies them.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::acl::{self, Acl};
use super::fs::{self, file_type, ChaseError};
use super::parse::{Item, FS_DIRSYNC_FL};
use super::{Failed, Level, Runner};

type R = Result<(), Failed>;

/// How the inode came to be (`CreationMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    Normal,
    Existing,
    Force,
    /// `C`: neither created nor found (ownership applies in full).
    Copy,
}

fn errno_text(e: Errno) -> String {
    super::os_text(&std::io::Error::from(e))
}

fn process_mask_perms(mut mode: u32, current: u32) -> u32 {
    if current & 0o111 == 0 {
        mode &= !0o111;
    }
    if current & 0o222 == 0 {
        mode &= !0o222;
    }
    if current & 0o444 == 0 {
        mode &= !0o444;
    }
    if FileType::from_raw_mode(current) != FileType::Directory {
        mode &= !0o7000;
    }
    mode
}

fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> Result<(), Errno> {
    rfs::chmod(fs::proc_path(fd), Mode::from_raw_mode(mode))
}

impl Runner<'_> {
    fn chase_error(&mut self, e: ChaseError, text: String) -> Failed {
        match e {
            ChaseError::Unsafe(m) => {
                self.log.push(Level::Warning, m);
                Failed
            }
            ChaseError::Io(_) => self.error(format!("{text}: {e}")),
        }
    }

    /// `path_open_parent_safe()`: the directory holding `path`.
    pub(super) fn open_parent(
        &mut self,
        path: &str,
        allow_failure: bool,
    ) -> Result<OwnedFd, Failed> {
        let ignoring = if allow_failure { ", ignoring" } else { "" };
        if path.split('/').any(|c| c == "..") {
            let m = format!(
                "Failed to open parent of '{}': path not normalized{ignoring}.",
                self.show(path)
            );
            return Err(self.error(m));
        }
        let dn = fs::dir_name(path);
        match fs::chase(self.root, &dn, true, false) {
            Ok(r) => Ok(r.fd),
            Err(ChaseError::Unsafe(m)) => {
                self.log.push(Level::Warning, m);
                Err(Failed)
            }
            Err(e) => {
                let m = format!("Failed to open path '{}'{ignoring}: {e}", self.show(&dn));
                Err(self.error(m))
            }
        }
    }

    /// `path_open_safe()`: `path` itself, a final symlink not followed.
    fn open_safe(&mut self, path: &str) -> Result<fs::Resolved, Failed> {
        if path.split('/').any(|c| c == "..") {
            let m = format!("Failed to open invalid path '{}'.", self.show(path));
            return Err(self.error(m));
        }
        fs::chase(self.root, path, true, true).map_err(|e| {
            let m = format!("Failed to open path {}", self.show(path));
            self.chase_error(e, m)
        })
    }

    fn hardlink_vulnerable(&mut self, st: &Stat) -> bool {
        file_type(st) != FileType::Directory && st.st_nlink > 1 && !self.hardlinks_protected()
    }

    /// `fd_set_perms()`: owner and mode of the inode behind `fd`.
    pub(super) fn set_perms(
        &mut self,
        i: &Item,
        fd: BorrowedFd<'_>,
        path: &str,
        st: Option<Stat>,
        creation: Creation,
    ) -> R {
        if !i.mode_set && i.uid.is_none() && i.gid.is_none() {
            return Ok(());
        }
        let shown = self.show(path);
        let st = match st {
            Some(s) => s,
            None => rfs::fstat(fd)
                .map_err(|e| self.error(format!("fstat({shown}) failed: {}", errno_text(e))))?,
        };
        if self.hardlink_vulnerable(&st) {
            return Err(self.error(format!("Refusing to set permissions on hardlinked file {shown} while the fs.protected_hardlinks sysctl is turned off.")));
        }
        let existing = creation == Creation::Existing;
        let new_uid = match i.uid {
            Some(u) if !existing || !i.uid_only_create => u,
            _ => st.st_uid,
        };
        let new_gid = match i.gid {
            Some(g) if !existing || !i.gid_only_create => g,
            _ => st.st_gid,
        };
        let do_chown = new_uid != st.st_uid || new_gid != st.st_gid;
        let new_mode = if i.mode_set && (!existing || !i.mode_only_create) {
            if i.mask_perms {
                process_mask_perms(i.mode, st.st_mode)
            } else {
                i.mode
            }
        } else {
            st.st_mode & 0o7777
        };
        let do_chmod = (new_mode ^ st.st_mode) & 0o7777 != 0;
        let symlink = file_type(&st) == FileType::Symlink;
        if do_chmod && do_chown && !symlink {
            let m = new_mode & st.st_mode & 0o7777;
            if (m ^ st.st_mode) & 0o7777 != 0 {
                chmod_fd(fd, m).map_err(|e| {
                    self.error(format!("fchmod() of {shown} failed: {}", errno_text(e)))
                })?;
            }
        }
        if do_chown {
            let uid = (new_uid != st.st_uid).then(|| rfs::Uid::from_raw(new_uid));
            let gid = (new_gid != st.st_gid).then(|| rfs::Gid::from_raw(new_gid));
            rfs::chownat(fd, "", uid, gid, AtFlags::EMPTY_PATH).map_err(|e| {
                self.error(format!("fchownat() of {shown} failed: {}", errno_text(e)))
            })?;
        }
        if (do_chmod || do_chown) && !symlink {
            chmod_fd(fd, new_mode).map_err(|e| {
                self.error(format!("fchmod() of {shown} failed: {}", errno_text(e)))
            })?;
        }
        Ok(())
    }

    fn set_xattrs(&mut self, i: &Item, fd: BorrowedFd<'_>, path: &str) -> R {
        for (name, value) in &i.xattrs {
            if let Err(e) = rfs::setxattr(
                fs::proc_path(fd),
                name.as_str(),
                value,
                rfs::XattrFlags::empty(),
            ) {
                let v = String::from_utf8_lossy(value);
                let m = format!(
                    "Setting extended attribute {name}={v} on {} failed: {}",
                    self.show(path),
                    errno_text(e)
                );
                return Err(self.error(m));
            }
        }
        Ok(())
    }

    fn set_one_acl(
        &mut self,
        fd: BorrowedFd<'_>,
        path: &str,
        default: bool,
        new: &Acl,
        modify: bool,
    ) -> R {
        let proc = fs::proc_path(fd);
        let name = if default {
            acl::DEFAULT_XATTR
        } else {
            acl::ACCESS_XATTR
        };
        let st = rfs::stat(&proc).map_err(|e| {
            self.error(format!(
                "ACL operation on \"{}\" failed: {}",
                self.show(path),
                errno_text(e)
            ))
        })?;
        let mut acl = if modify {
            let mut buf = vec![0u8; 4096];
            let mut old = match rfs::getxattr(&proc, name, &mut buf) {
                Ok(n) => Acl::from_xattr(&buf[..n]).unwrap_or_default(),
                Err(Errno::NODATA) if default => Acl::default(),
                Err(Errno::NODATA) => Acl::from_mode(st.st_mode),
                Err(e) => {
                    let m = format!(
                        "ACL operation on \"{}\" failed: {}",
                        self.show(path),
                        errno_text(e)
                    );
                    return Err(self.error(m));
                }
            };
            old.merge(new);
            old.add_mask_if_needed();
            old
        } else {
            new.clone()
        };
        acl.add_base_from_mode(st.st_mode);
        match rfs::setxattr(&proc, name, &acl.to_xattr(), rfs::XattrFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::OPNOTSUPP | Errno::NOSYS) => Ok(()),
            Err(e) => {
                let m = format!(
                    "Setting {} ACL \"{}\" on {} failed: {}",
                    if default { "default" } else { "access" },
                    acl.to_text(),
                    self.show(path),
                    errno_text(e)
                );
                Err(self.error(m))
            }
        }
    }

    fn set_acls(&mut self, i: &Item, fd: BorrowedFd<'_>, path: &str, st: &Stat) -> R {
        if self.hardlink_vulnerable(st) {
            let m = format!("Refusing to set ACLs on hardlinked file {} while the fs.protected_hardlinks sysctl is turned off.", self.show(path));
            return Err(self.error(m));
        }
        if file_type(st) == FileType::Symlink {
            return Ok(());
        }
        if let Some(a) = &i.acl_access {
            self.set_one_acl(fd, path, false, a, i.append_or_force)?;
        }
        if let Some(d) = &i.acl_default {
            if file_type(st) == FileType::Directory {
                self.set_one_acl(fd, path, true, d, i.append_or_force)?;
            }
        }
        Ok(())
    }

    fn set_attribute(&mut self, i: &Item, fd: BorrowedFd<'_>, path: &str, st: &Stat) -> R {
        let Some((value, mask)) = i.attribute else {
            return Ok(());
        };
        if mask == 0 {
            return Ok(());
        }
        let shown = self.show(path);
        let ft = file_type(st);
        if ft != FileType::RegularFile && ft != FileType::Directory {
            return Err(self.error(format!("Setting file flags is only supported on regular files and directories, cannot set on '{shown}'.")));
        }
        let mut f = value & mask;
        if ft != FileType::Directory {
            f &= !FS_DIRSYNC_FL;
        }
        let file = fs::reopen(fd, OFlags::RDONLY | OFlags::NOATIME)
            .map_err(|e| self.error(format!("Failed to re-open '{shown}': {}", errno_text(e))))?;
        let warn = |this: &mut Self, e: Errno| {
            if !matches!(e, Errno::OPNOTSUPP | Errno::NOTTY | Errno::NOSYS) {
                this.log.push(
                    Level::Warning,
                    format!("Cannot set file attributes for '{shown}', value=0x{value:08x}, mask=0x{mask:08x}, ignoring: {}", errno_text(e)),
                );
            }
        };
        let old = match rfs::ioctl_getflags(&file) {
            Ok(o) => o.bits(),
            Err(e) => {
                warn(self, e);
                return Ok(());
            }
        };
        let want = (old & !mask) | (f & mask);
        if want == old {
            return Ok(());
        }
        let set = |v: u32| rfs::ioctl_setflags(&file, rfs::IFlags::from_bits_retain(v));
        let get = || rfs::ioctl_getflags(&file).map(|f| f.bits());
        match set(want) {
            Ok(()) if get() == Ok(want) => return Ok(()),
            Ok(()) => {}
            Err(e)
                if !matches!(
                    e,
                    Errno::INVAL | Errno::OPNOTSUPP | Errno::NOTTY | Errno::NOSYS
                ) =>
            {
                warn(self, e);
                return Ok(());
            }
            Err(_) => {}
        }
        let mut current = old;
        let mut only_unsupported = true;
        let mut failed = false;
        for bit in (0..32).map(|b| 1u32 << b).filter(|b| mask & b != 0) {
            let one = if f & bit != 0 {
                current | bit
            } else {
                current & !bit
            };
            if one == current {
                continue;
            }
            match set(one) {
                Ok(()) => current = get().unwrap_or(current),
                Err(e)
                    if matches!(
                        e,
                        Errno::INVAL | Errno::OPNOTSUPP | Errno::NOTTY | Errno::NOSYS
                    ) =>
                {
                    failed = true;
                    if e == Errno::INVAL {
                        only_unsupported = false;
                    }
                }
                Err(e) => {
                    warn(self, e);
                    return Ok(());
                }
            }
        }
        if current != want && !(failed && only_unsupported) {
            self.log.push(Level::Warning, format!(
                "Cannot set file attributes for '{shown}', maybe due to incompatibility in specified attributes, previous=0x{old:08x}, current=0x{current:08x}, expected=0x{want:08x}, ignoring."
            ));
        }
        Ok(())
    }

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

    /// `mkdir_parents_item()`.
    fn mkdir_parents_item(&mut self, i: &Item, child: Option<FileType>) -> R {
        if i.try_replace {
            self.mkdir_parents_rm_if_wrong_type(child, &i.path)
        } else {
            fs::mkdir_parents(self.root, &i.path);
            Ok(())
        }
    }

    fn wrong_type_rm(&mut self, dir: BorrowedFd<'_>, dir_path: &str, name: &str, st: &Stat) -> R {
        self.log.push(
            Level::Info,
            format!(
                "Wrong file type 0o{:o}; rm -rf \"{}/{name}\"",
                st.st_mode & 0o170000,
                self.show(dir_path).trim_end_matches('/')
            ),
        );
        fs::rm_rf_at(dir, name).map_err(|e| {
            let m = format!(
                "Failed to remove \"{name}\" at \"{}\": {}",
                self.show(dir_path),
                errno_text(e)
            );
            self.error(m)
        })
    }

    /// `mkdir_parents_rm_if_wrong_type()`: every parent made a directory
    /// (whatever else is in the way is removed); the last component
    /// removed when it is not of type `child`.
    fn mkdir_parents_rm_if_wrong_type(&mut self, child: Option<FileType>, path: &str) -> R {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut cur = String::from("/");
        for (n, c) in comps.iter().enumerate() {
            let dir = match self.root.open(&cur, OFlags::PATH | OFlags::DIRECTORY, 0) {
                Ok(d) => d,
                Err(e) => {
                    let m = format!(
                        "Failed to open \"{}\": {}",
                        self.show(&cur),
                        super::os_text(&e)
                    );
                    return Err(self.error(m));
                }
            };
            let next = if cur == "/" {
                format!("/{c}")
            } else {
                format!("{cur}/{c}")
            };
            if n + 1 == comps.len() {
                if let Some(want) = child {
                    if let Ok(st) = fs::lstat_at(dir.as_fd(), c) {
                        if file_type(&st) != want {
                            self.wrong_type_rm(dir.as_fd(), &cur, c, &st)?;
                        }
                    }
                }
                return Ok(());
            }
            let followed = self.root.stat(&next);
            let is_dir = matches!(&followed, Ok(st) if file_type(st) == FileType::Directory);
            if !is_dir {
                let st = match followed {
                    Ok(st) => Some(st),
                    Err(_) => fs::lstat_at(dir.as_fd(), c).ok(),
                };
                if let Some(st) = st {
                    self.wrong_type_rm(dir.as_fd(), &cur, c, &st)?;
                }
                if let Err(e) = rfs::mkdirat(&dir, *c, Mode::from_raw_mode(0o755)) {
                    let m = format!(
                        "Failed to mkdir \"{c}\" at \"{}\": {}",
                        self.show(&cur),
                        errno_text(e)
                    );
                    return Err(self.error(m));
                }
            }
            cur = next;
        }
        Ok(())
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
                if !rustix::thread::capabilities(None)
                    .is_ok_and(|c| c.effective.contains(rustix::thread::CapabilitySet::MKNOD))
                {
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
        let Some(bn) = fs::file_name(path) else {
            let m = format!(
                "Cannot open path '{}' for writing, is a directory.",
                self.show(path)
            );
            return Err(self.error(m));
        };
        // The parent is checked like systemd does; the last component may
        // be a symlink, followed inside the root.
        let _parent = self.open_parent(path, i.allow_failure)?;
        let _ = bn;
        let target = path.to_string();
        let flags = OFlags::NONBLOCK
            | OFlags::WRONLY
            | OFlags::NOCTTY
            | if i.append_or_force {
                OFlags::APPEND
            } else {
                OFlags::empty()
            };
        let fd = match self.root.open(&target, flags, 0) {
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
        self.write_argument(i, fd.as_fd(), path)?;
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
        let Some(bn) = fs::file_name(&path) else {
            let m = format!(
                "Cannot open path '{}' for writing, is a directory.",
                self.show(&path)
            );
            return Err(self.error(m));
        };
        let dir = self.open_parent(&path, i.allow_failure)?;
        let flags = OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::CLOEXEC
            | OFlags::WRONLY
            | OFlags::NOCTTY;
        match rfs::openat(&dir, bn, flags, Mode::from_raw_mode(i.mode)) {
            Ok(fd) => {
                self.write_argument(i, fd.as_fd(), &path)?;
                self.set_perms(i, fd.as_fd(), &path, None, Creation::Normal)
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
                let st = rfs::fstat(&fd).map_err(|e| {
                    self.error(format!(
                        "stat({}) failed: {}",
                        self.show(&path),
                        errno_text(e)
                    ))
                })?;
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

    fn truncate_file(&mut self, i: &Item) -> R {
        let path = i.path.clone();
        let Some(bn) = fs::file_name(&path) else {
            let m = format!(
                "Cannot open path '{}' for truncation, is a directory.",
                self.show(&path)
            );
            return Err(self.error(m));
        };
        let dir = self.open_parent(&path, i.allow_failure)?;
        let base =
            OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::WRONLY | OFlags::NOCTTY;
        let mode = Mode::from_raw_mode(i.mode);
        let (fd, creation) = match rfs::openat(&dir, bn, base, mode) {
            Ok(fd) => (Ok(fd), Creation::Existing),
            Err(Errno::NOENT) => (
                rfs::openat(&dir, bn, base | OFlags::CREATE, mode),
                Creation::Normal,
            ),
            Err(e) => (Err(e), Creation::Existing),
        };
        let fd = fd.map_err(|e| {
            let m = format!(
                "Failed to open/create file {}: {}",
                self.show(&path),
                errno_text(e)
            );
            self.error(m)
        })?;
        let st = rfs::fstat(&fd).map_err(|e| {
            self.error(format!(
                "stat({}) failed: {}",
                self.show(&path),
                errno_text(e)
            ))
        })?;
        if file_type(&st) != FileType::RegularFile {
            let m = format!("{} exists and is not a regular file.", self.show(&path));
            return Err(self.error(m));
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
        let made = rfs::mkdirat(&dir, bn, Mode::from_raw_mode(i.mode));
        let creation = if made.is_ok() {
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
        let st = rfs::fstat(&fd).map_err(|e| {
            self.error(format!(
                "Failed to fstat({}): {}",
                self.show(&path),
                errno_text(e)
            ))
        })?;
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

    fn make_node(&self, dir: BorrowedFd<'_>, bn: &str, i: &Item, t: FileType) -> Result<(), Errno> {
        let dev = rfs::makedev(i.major_minor.0, i.major_minor.1);
        rfs::mknodat(
            dir,
            bn,
            t,
            Mode::from_raw_mode(i.mode),
            if t == FileType::Fifo { 0 } else { dev },
        )
    }

    /// `p`, `c`, `b`: a FIFO or a device node.
    fn create_node(&mut self, i: &Item, t: FileType) -> R {
        let path = i.path.clone();
        let what = match t {
            FileType::Fifo => "FIFO",
            _ => "device node",
        };
        let Some(bn) = fs::file_name(&path) else {
            let m = format!(
                "Cannot open path '{}' for creating {what}, is a directory.",
                self.show(&path)
            );
            return Err(self.error(m));
        };
        let dir = self.open_parent(&path, i.allow_failure)?;
        let made = self.make_node(dir.as_fd(), bn, i, t);
        let mut creation = if made.is_ok() {
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
        let mut st = rfs::fstat(&fd).map_err(|e| {
            self.error(format!(
                "Failed to fstat({}): {}",
                self.show(&path),
                errno_text(e)
            ))
        })?;
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
            st = rfs::fstat(&fd).map_err(|e| {
                self.error(format!(
                    "Failed to fstat({}): {}",
                    self.show(&path),
                    errno_text(e)
                ))
            })?;
            if file_type(&st) != t {
                return Err(
                    self.error(format!("{what} we just created is not a {what}, refusing."))
                );
            }
            creation = Creation::Force;
        }
        self.set_perms(i, fd.as_fd(), &path, Some(st), creation)
    }

    /// Put a new inode in place of whatever is at `bn`: made under a
    /// temporary name and renamed over it; a directory in the way is
    /// removed first (`*_atomic()` then `rm_rf_child()`).
    fn replace_with(
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

    fn create_symlink(&mut self, i: &Item) -> R {
        let path = i.path.clone();
        let target = i.argument.clone().unwrap_or_default();
        let Some(bn) = fs::file_name(&path) else {
            let m = format!(
                "Cannot open path '{}' for creating symlink, is a directory.",
                self.show(&path)
            );
            return Err(self.error(m));
        };
        let dir = self.open_parent(&path, i.allow_failure)?;
        let made = rfs::symlinkat(target.as_slice(), &dir, bn);
        let mut creation = if made.is_ok() {
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
        let mut st = rfs::fstat(&fd).map_err(|e| {
            self.error(format!(
                "Failed to fstat({}): {}",
                self.show(&path),
                errno_text(e)
            ))
        })?;
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
            st = rfs::fstat(&fd).map_err(|e| {
                self.error(format!(
                    "Failed to fstat({}): {}",
                    self.show(&path),
                    errno_text(e)
                ))
            })?;
            if file_type(&st) != FileType::Symlink {
                return Err(
                    self.error("Symlink we just created is not a symlink, refusing.".into())
                );
            }
            creation = Creation::Force;
        }
        self.set_perms(i, fd.as_fd(), &path, Some(st), creation)
    }

    fn copy_files(&mut self, i: &Item) -> R {
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
        let st = rfs::fstat(&fd).map_err(|e| {
            self.error(format!(
                "Failed to fstat({}): {}",
                self.show(&path),
                errno_text(e)
            ))
        })?;
        let a = self.root.stat(&src).map_err(|e| {
            let m = format!(
                "Failed to stat({}): {}",
                self.show(&src),
                super::os_text(&e)
            );
            self.error(m)
        })?;
        if file_type(&st) != file_type(&a) {
            return Ok(());
        }
        self.set_perms(i, fd.as_fd(), &path, Some(st), Creation::Copy)
    }
}
