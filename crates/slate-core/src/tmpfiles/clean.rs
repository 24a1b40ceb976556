//! The remove and clean operations: `r`, `R`, `D` with `--remove`, and
//! age-based cleaning of `d D v q Q x e X C` directories with `--clean`.

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, FlockOperation, Mode, OFlags, StatxFlags};
use rustix::io::Errno;

use super::fs;
use super::parse::Item;
use super::{Failed, Kind, Level, Runner};

type R = Result<(), Failed>;

const MAX_DEPTH: u32 = 256;
const STATX_ATTR_MOUNT_ROOT: u64 = 0x2000;

fn errno_text(e: Errno) -> String {
    super::os_text(&std::io::Error::from(e))
}

/// The timestamps of an inode in nanoseconds (0 when unknown).
#[derive(Clone, Copy)]
struct Times {
    atime: u64,
    btime: u64,
    ctime: u64,
    mtime: u64,
}

fn nsec(ts: &rfs::StatxTimestamp, have: bool) -> u64 {
    if !have {
        return 0;
    }
    if ts.tv_sec < 0 {
        return u64::MAX;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(ts.tv_nsec))
}

fn times(sx: &rfs::Statx) -> Times {
    let m = sx.stx_mask;
    Times {
        atime: nsec(&sx.stx_atime, m & StatxFlags::ATIME.bits() != 0),
        btime: nsec(&sx.stx_btime, m & StatxFlags::BTIME.bits() != 0),
        ctime: nsec(&sx.stx_ctime, m & StatxFlags::CTIME.bits() != 0),
        mtime: nsec(&sx.stx_mtime, m & StatxFlags::MTIME.bits() != 0),
    }
}

/// `needs_cleanup()`: every timestamp asked for is older than the cutoff.
fn needs_cleanup(t: &Times, cutoff: u64, age_by: u8) -> bool {
    use super::parse::{AGE_BY_ATIME, AGE_BY_BTIME, AGE_BY_CTIME, AGE_BY_MTIME};
    let too_new = |flag: u8, v: u64| age_by & flag != 0 && v != u64::MAX && v >= cutoff;
    !(too_new(AGE_BY_MTIME, t.mtime)
        || too_new(AGE_BY_ATIME, t.atime)
        || too_new(AGE_BY_CTIME, t.ctime)
        || too_new(AGE_BY_BTIME, t.btime))
}

fn open_dir_nomod(dir: BorrowedFd<'_>, name: &str) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rfs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => rfs::openat(dir, name, flags, Mode::empty()),
        r => r,
    }
}

struct Clean<'a> {
    cutoff: u64,
    age_by_file: u8,
    age_by_dir: u8,
    sockets: &'a HashSet<String>,
}

impl Runner<'_> {
    fn removed(&mut self, path: &str) {
        let text = format!("Removed {}.", self.show(path));
        self.log.done(Kind::Removed, path, text);
    }

    fn cleaned(&mut self, path: &str) {
        let text = format!("Removed {} (older than its age).", self.show(path));
        self.log.done(Kind::Cleaned, path, text);
    }

    pub(super) fn remove_item(&mut self, i: &Item) -> R {
        match i.kind {
            b'D' => {
                let Ok(parent) =
                    self.root
                        .open(&fs::dir_name(&i.path), OFlags::PATH | OFlags::DIRECTORY, 0)
                else {
                    return Ok(());
                };
                let Some(name) = fs::file_name(&i.path) else {
                    return Ok(());
                };
                let d = match rfs::openat(
                    &parent,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(d) => d,
                    Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(()),
                    Err(e) => {
                        return Err(self.error(format!(
                            "rm_rf({}): {}",
                            self.show(&i.path),
                            errno_text(e)
                        )))
                    }
                };
                let dev = rfs::fstat(&d).map(|s| s.st_dev).unwrap_or(0);
                match fs::rm_children(&d, dev) {
                    Ok(()) => {
                        let text = format!("Removed the contents of {}.", self.show(&i.path));
                        self.log.done(Kind::Removed, &i.path, text);
                        Ok(())
                    }
                    Err(Errno::NOENT) => Ok(()),
                    Err(e) => {
                        Err(self.error(format!("rm_rf({}): {}", self.show(&i.path), errno_text(e))))
                    }
                }
            }
            b'r' | b'R' => {
                let mut result = Ok(());
                for p in fs::glob(self.root, &i.path) {
                    let r = self.remove_instance(i, &p);
                    if result.is_ok() {
                        result = r;
                    }
                }
                result
            }
            _ => Ok(()),
        }
    }

    fn remove_instance(&mut self, i: &Item, path: &str) -> R {
        let Some(name) = fs::file_name(path) else {
            return Ok(());
        };
        let parent = match self
            .root
            .open(&fs::dir_name(path), OFlags::PATH | OFlags::DIRECTORY, 0)
        {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                let m = format!("rm({}): {}", self.show(path), super::os_text(&e));
                return Err(self.error(m));
            }
        };
        if i.kind == b'r' {
            let r = match rfs::unlinkat(&parent, name, AtFlags::empty()) {
                Err(Errno::ISDIR) => rfs::unlinkat(&parent, name, AtFlags::REMOVEDIR),
                r => r,
            };
            match r {
                Ok(()) => {
                    self.removed(path);
                    Ok(())
                }
                Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(self.error(format!("rm({}): {}", self.show(path), errno_text(e)))),
            }
        } else {
            match fs::rm_rf_at(parent.as_fd(), name) {
                Ok(()) => {
                    self.removed(path);
                    Ok(())
                }
                Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(self.error(format!("rm_rf({}): {}", self.show(path), errno_text(e)))),
            }
        }
    }

    pub(super) fn clean_item(&mut self, i: &Item) -> R {
        match i.kind {
            b'd' | b'D' | b'v' | b'q' | b'Q' | b'x' | b'C' => {
                let _ = self.clean_instance(i, &i.path.clone());
                Ok(())
            }
            b'e' | b'X' => {
                let mut result = Ok(());
                for p in fs::glob(self.root, &i.path) {
                    let r = self.clean_instance(i, &p);
                    if result.is_ok() {
                        result = r;
                    }
                }
                result
            }
            _ => Ok(()),
        }
    }

    fn clean_instance(&mut self, i: &Item, path: &str) -> R {
        let Some(age) = i.age else {
            return Ok(());
        };
        let now = self.host.now_usec();
        if now < age {
            return Ok(());
        }
        let cutoff = (now - age).saturating_mul(1000);
        let parent = match self
            .root
            .open(&fs::dir_name(path), OFlags::PATH | OFlags::DIRECTORY, 0)
        {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        let d = match open_dir_nomod(parent.as_fd(), fs::file_name(path).unwrap_or(".")) {
            Ok(d) => d,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
            Err(e) => {
                let m = format!(
                    "Failed to open directory {}: {}",
                    self.show(path),
                    errno_text(e)
                );
                return Err(self.error(m));
            }
        };
        let sx = rfs::statx(
            &d,
            "",
            AtFlags::EMPTY_PATH,
            StatxFlags::MODE | StatxFlags::INO | StatxFlags::ATIME | StatxFlags::MTIME,
        )
        .map_err(|e| {
            self.error(format!(
                "statx({}) failed: {}",
                self.show(path),
                errno_text(e)
            ))
        })?;
        let mountpoint = if sx.stx_attributes_mask.bits() & STATX_ATTR_MOUNT_ROOT != 0 {
            sx.stx_attributes.bits() & STATX_ATTR_MOUNT_ROOT != 0
        } else {
            let up = rfs::statat(&d, "..", AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
                self.error(format!(
                    "stat({}/..) failed: {}",
                    self.show(path),
                    errno_text(e)
                ))
            })?;
            rfs::fstat(&d)
                .map(|s| s.st_dev != up.st_dev || s.st_ino == up.st_ino)
                .unwrap_or(false)
        };
        let mut c = Clean {
            cutoff,
            age_by_file: i.age_by_file,
            age_by_dir: i.age_by_dir,
            sockets: &self.host.live_sockets,
        };
        let own = times(&sx);
        self.dir_cleanup(
            &mut c,
            path,
            &d,
            own,
            mountpoint,
            MAX_DEPTH,
            i.keep_first_level,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn dir_cleanup(
        &mut self,
        c: &mut Clean<'_>,
        path: &str,
        d: &OwnedFd,
        own: Times,
        mountpoint: bool,
        depth: u32,
        keep_this_level: bool,
    ) -> R {
        let mut result = Ok(());
        let mut deleted = false;
        let mut names = Vec::new();
        if let Ok(mut dir) = rfs::Dir::read_from(d) {
            while let Some(Ok(e)) = dir.next() {
                let n = e.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(String::from_utf8_lossy(n).into_owned());
                }
            }
        }
        let mask = StatxFlags::TYPE
            | StatxFlags::MODE
            | StatxFlags::UID
            | StatxFlags::ATIME
            | StatxFlags::MTIME
            | StatxFlags::CTIME
            | StatxFlags::BTIME;
        for name in names {
            let sx = match rfs::statx(
                d,
                name.as_str(),
                AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
                mask,
            ) {
                Ok(s) => s,
                Err(Errno::NOENT) => continue,
                Err(e) => {
                    if e != Errno::ACCESS {
                        self.log.push(
                            Level::Error,
                            format!(
                                "statx({}/{name}) failed: {}",
                                self.show(path),
                                errno_text(e)
                            ),
                        );
                    }
                    continue;
                }
            };
            if sx.stx_attributes_mask.bits() & STATX_ATTR_MOUNT_ROOT != 0
                && sx.stx_attributes.bits() & STATX_ATTR_MOUNT_ROOT != 0
            {
                continue;
            }
            let t = times(&sx);
            let sub_path = format!("{}/{name}", path.trim_end_matches('/'));
            if self.config.covers(&sub_path) {
                continue;
            }
            let ft = FileType::from_raw_mode(u32::from(sx.stx_mode));
            if ft == FileType::Directory {
                if mountpoint && name == "lost+found" && sx.stx_uid == 0 {
                    continue;
                }
                if depth == 0 {
                    self.log.push(
                        Level::Warning,
                        format!("Reached max depth on \"{}\".", self.show(&sub_path)),
                    );
                } else {
                    let sub = match open_dir_nomod(d.as_fd(), &name) {
                        Ok(s) => s,
                        Err(Errno::NOENT) => continue,
                        Err(e) => {
                            self.log.push(
                                Level::Warning,
                                format!(
                                    "Opening directory \"{}\" failed, ignoring: {}",
                                    self.show(&sub_path),
                                    errno_text(e)
                                ),
                            );
                            result = Err(Failed);
                            continue;
                        }
                    };
                    if rfs::flock(&sub, FlockOperation::NonBlockingLockExclusive).is_err() {
                        continue;
                    }
                    if self
                        .dir_cleanup(c, &sub_path, &sub, t, false, depth - 1, false)
                        .is_err()
                    {
                        result = Err(Failed);
                    }
                }
                if keep_this_level || !needs_cleanup(&t, c.cutoff, c.age_by_dir) {
                    continue;
                }
                match rfs::unlinkat(d, name.as_str(), AtFlags::REMOVEDIR) {
                    Ok(()) => self.cleaned(&sub_path),
                    Err(Errno::NOENT | Errno::NOTEMPTY) => {}
                    Err(e) => {
                        self.log.push(
                            Level::Warning,
                            format!(
                                "Failed to remove directory \"{}\", ignoring: {}",
                                self.show(&sub_path),
                                errno_text(e)
                            ),
                        );
                        result = Err(Failed);
                    }
                }
            } else {
                if u32::from(sx.stx_mode) & 0o1000 != 0 {
                    continue;
                }
                if mountpoint
                    && ft == FileType::RegularFile
                    && sx.stx_uid == 0
                    && [".journal", "aquota.user", "aquota.group"].contains(&name.as_str())
                {
                    continue;
                }
                if ft == FileType::Socket {
                    let shown = self.show(&sub_path);
                    if c.sockets.contains(&shown) {
                        continue;
                    }
                }
                if matches!(ft, FileType::CharacterDevice | FileType::BlockDevice)
                    || keep_this_level
                {
                    continue;
                }
                if !needs_cleanup(&t, c.cutoff, c.age_by_file) {
                    continue;
                }
                match rfs::unlinkat(d, name.as_str(), AtFlags::empty()) {
                    Ok(()) => self.cleaned(&sub_path),
                    Err(Errno::NOENT) => {}
                    Err(e) => {
                        self.log.push(
                            Level::Warning,
                            format!(
                                "Failed to remove \"{}\", ignoring: {}",
                                self.show(&sub_path),
                                errno_text(e)
                            ),
                        );
                        result = Err(Failed);
                    }
                }
                deleted = true;
            }
        }
        if deleted {
            let ts = |n: u64| rfs::Timespec {
                tv_sec: (n / 1_000_000_000) as i64,
                tv_nsec: (n % 1_000_000_000) as _,
            };
            let stamps = rfs::Timestamps {
                last_access: ts(own.atime),
                last_modification: ts(own.mtime),
            };
            if let Err(e) = rfs::futimens(d, &stamps) {
                self.log.push(
                    Level::Warning,
                    format!(
                        "Failed to revert timestamps of '{}', ignoring: {}",
                        self.show(path),
                        errno_text(e)
                    ),
                );
            }
        }
        result
    }
}
