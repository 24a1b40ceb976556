//! Owner, mode, xattrs, ACLs and file attributes of an inode, applied as
//! systemd-tmpfiles 252 applies them (`fd_set_perms()` and friends).

use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::acl::{self, Acl};
use super::fs::{self, file_type};
use super::parse::{Item, FS_DIRSYNC_FL};
use super::{Failed, Kind, Level, Runner};

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

pub(super) fn errno_text(e: Errno) -> String {
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
    /// `fstat` of a handle; a failure is logged as "Failed to fstat(PATH)".
    pub(super) fn fstat_logged<Fd: std::os::fd::AsFd>(
        &mut self,
        fd: Fd,
        path: &str,
    ) -> Result<Stat, Failed> {
        rfs::fstat(fd).map_err(|e| {
            let m = format!("Failed to fstat({}): {}", self.show(path), errno_text(e));
            self.error(m)
        })
    }

    /// `fstat` of a handle; a failure is logged as "stat(PATH) failed".
    pub(super) fn stat_logged<Fd: std::os::fd::AsFd>(
        &mut self,
        fd: Fd,
        path: &str,
    ) -> Result<Stat, Failed> {
        rfs::fstat(fd).map_err(|e| {
            let m = format!("stat({}) failed: {}", self.show(path), errno_text(e));
            self.error(m)
        })
    }

    pub(super) fn hardlink_vulnerable(&mut self, st: &Stat) -> bool {
        file_type(st) != FileType::Directory && st.st_nlink > 1 && !self.host.protected_hardlinks
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
        if !(do_chmod || do_chown) {
            return Ok(());
        }
        let (own, st) = self.own_inode(fd, path, st)?;
        let fd = own.as_ref().map_or(fd, |f| f.as_fd());
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
        if !symlink {
            chmod_fd(fd, new_mode).map_err(|e| {
                self.error(format!("fchmod() of {shown} failed: {}", errno_text(e)))
            })?;
        }
        self.log.done(
            Kind::Adjusted,
            path,
            format!("Set owner {new_uid}:{new_gid} and mode {new_mode:04o} of {shown}."),
        );
        Ok(())
    }

    pub(super) fn set_xattrs(&mut self, i: &Item, fd: BorrowedFd<'_>, path: &str) -> R {
        if i.xattrs.is_empty() {
            return Ok(());
        }
        let st = self.fstat_logged(fd, path)?;
        let (own, _) = self.own_inode(fd, path, st)?;
        let fd = own.as_ref().map_or(fd, |f| f.as_fd());
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
        let text = format!("Set extended attributes of {}.", self.show(path));
        self.log.done(Kind::Adjusted, path, text);
        Ok(())
    }

    pub(super) fn set_one_acl(
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

    pub(super) fn set_acls(&mut self, i: &Item, fd: BorrowedFd<'_>, path: &str, st: &Stat) -> R {
        if self.hardlink_vulnerable(st) {
            let m = format!("Refusing to set ACLs on hardlinked file {} while the fs.protected_hardlinks sysctl is turned off.", self.show(path));
            return Err(self.error(m));
        }
        if file_type(st) == FileType::Symlink {
            return Ok(());
        }
        if i.acl_access.is_none() && i.acl_default.is_none() {
            return Ok(());
        }
        let (own, st) = self.own_inode(fd, path, *st)?;
        let fd = own.as_ref().map_or(fd, |f| f.as_fd());
        let st = &st;
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

    pub(super) fn set_attribute(
        &mut self,
        i: &Item,
        fd: BorrowedFd<'_>,
        path: &str,
        st: &Stat,
    ) -> R {
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
        let (own, _) = self.own_inode(fd, path, *st)?;
        let fd = own.as_ref().map_or(fd, |f| f.as_fd());
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
}
