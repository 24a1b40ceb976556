//! Path work inside the root for tmpfiles: walking a path component by
//! component (symlinks followed as if the root were `/`, `..` never
//! leaving it, systemd's "unsafe transition" check), creating parents,
//! globbing, and recursive removal that stays on one filesystem.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::fsutil::Root;

/// A path resolved inside the root: an `O_PATH` handle and its `stat`.
pub struct Resolved {
    pub fd: OwnedFd,
    pub st: Stat,
}

/// Why a walk failed.
#[derive(Debug)]
pub enum ChaseError {
    Io(Errno),
    /// A non-root-owned directory leads to something owned by another
    /// user (`ENOLINK`).
    Unsafe(Box<Transition>),
}

/// An unsafe transition: paths as shown (below the root), their owners,
/// and the path being resolved.
#[derive(Debug)]
pub struct Transition {
    pub from: String,
    pub from_uid: u32,
    pub to: String,
    pub to_uid: u32,
    pub path: String,
}

impl Transition {
    /// systemd's warning, owners named by `name`.
    pub fn message(&self, name: impl Fn(u32) -> String) -> String {
        format!(
            "Detected unsafe path transition {} (owned by {}) → {} (owned by {}) during canonicalization of {}.",
            self.from,
            name(self.from_uid),
            self.to,
            name(self.to_uid),
            self.path
        )
    }
}

impl std::fmt::Display for ChaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChaseError::Io(e) => f.write_str(&crate::confd::os_text(&io::Error::from(*e))),
            ChaseError::Unsafe(_) => f.write_str("Link has been severed"),
        }
    }
}

impl From<Errno> for ChaseError {
    fn from(e: Errno) -> Self {
        ChaseError::Io(e)
    }
}

pub fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// `unsafe_transition()`: leaving a directory not owned by root for an
/// inode of another owner.
fn unsafe_transition(a: &Stat, b: &Stat) -> bool {
    a.st_uid != 0 && a.st_uid != b.st_uid
}

fn join(base: &str, name: &str) -> String {
    if base == "/" {
        format!("/{name}")
    } else {
        format!("{base}/{name}")
    }
}

fn parent_of(p: &str) -> String {
    match p.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => p[..i].to_string(),
    }
}

/// Walk `path` inside the root (`chase_symlinks()` with the root as `/`).
/// With `safe`, refuse unsafe transitions; with `nofollow`, a final
/// symlink is not followed.
pub fn chase(root: &Root, path: &str, safe: bool, nofollow: bool) -> Result<Resolved, ChaseError> {
    let root_fd = rfs::openat(
        root.fd(),
        ".",
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let root_st = rfs::fstat(&root_fd)?;
    let mut stack: Vec<(OwnedFd, Stat, String)> = Vec::new();
    let mut todo: VecDeque<String> = split(path);
    let mut hops = 0;
    // What the last step reached (a symlink included): a transition is
    // judged from it, as systemd judges it; messages name the handles.
    let mut prev = root_st;
    while let Some(c) = todo.pop_front() {
        let (top_fd, top_st, top_path) = match stack.last() {
            Some((f, s, p)) => (f.as_fd(), *s, p.clone()),
            None => (root_fd.as_fd(), root_st, "/".to_string()),
        };
        if c == ".." {
            if let Some((_, st, p)) = stack.pop() {
                let (up_st, up_path) = match stack.last() {
                    Some((_, s, p)) => (*s, p.clone()),
                    None => (root_st, "/".into()),
                };
                if safe && unsafe_transition(&prev, &up_st) {
                    return Err(unsafe_error(root, (&p, &st), (&up_path, &up_st), path));
                }
                prev = up_st;
            }
            continue;
        }
        let child = rfs::openat(
            top_fd,
            c.as_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rfs::fstat(&child)?;
        let child_path = join(&top_path, &c);
        if safe && unsafe_transition(&prev, &st) {
            return Err(unsafe_error(
                root,
                (&top_path, &top_st),
                (&child_path, &st),
                path,
            ));
        }
        prev = st;
        if file_type(&st) == FileType::Symlink && !(nofollow && todo.is_empty()) {
            hops += 1;
            if hops > 32 {
                return Err(ChaseError::Io(Errno::LOOP));
            }
            let target = rfs::readlinkat(&child, "", Vec::new())?;
            let target = target.to_string_lossy().into_owned();
            let mut parts = split(&target);
            while let Some(p) = parts.pop_back() {
                todo.push_front(p);
            }
            if target.starts_with('/') {
                // Leaving the symlink for the root: the symlink itself is
                // named, with its own owner.
                if safe && unsafe_transition(&st, &root_st) {
                    return Err(unsafe_error(
                        root,
                        (&child_path, &st),
                        ("/", &root_st),
                        path,
                    ));
                }
                prev = root_st;
                stack.clear();
            }
            continue;
        }
        stack.push((child, st, child_path));
    }
    Ok(match stack.pop() {
        Some((fd, st, _)) => Resolved { fd, st },
        None => Resolved {
            fd: root_fd,
            st: root_st,
        },
    })
}

fn unsafe_error(root: &Root, from: (&str, &Stat), to: (&str, &Stat), path: &str) -> ChaseError {
    // A handle's path, as systemd shows it: the root is its own path.
    let shown = |p: &str| {
        let d = root.display(p);
        match d.strip_suffix('/') {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => d,
        }
    };
    ChaseError::Unsafe(Box::new(Transition {
        from: shown(from.0),
        from_uid: from.1.st_uid,
        to: shown(to.0),
        to_uid: to.1.st_uid,
        path: root.display(path),
    }))
}

fn split(p: &str) -> VecDeque<String> {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(String::from)
        .collect()
}

/// The last component of `path`, or `None` for `/`.
pub fn file_name(path: &str) -> Option<&str> {
    path.rsplit('/').next().filter(|n| !n.is_empty())
}

pub fn dir_name(path: &str) -> String {
    parent_of(path)
}

/// `mkdir_parents()`: create the missing directories above `path` with
/// mode 0755, following symlinks inside the root. Stops quietly at the
/// first component it cannot create.
pub fn mkdir_parents(root: &Root, path: &str) {
    let parent = parent_of(path);
    if root
        .open(&parent, OFlags::PATH | OFlags::DIRECTORY, 0)
        .is_ok()
    {
        return;
    }
    let mut cur = String::from("/");
    for c in split(&parent) {
        let next = join(&cur, &c);
        match root.open(&next, OFlags::PATH, 0) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc_enoent()) => {
                let Ok(dfd) = root.open(&cur, OFlags::PATH | OFlags::DIRECTORY, 0) else {
                    return;
                };
                if let Err(e) = mkdir_exact(dfd.as_fd(), c.as_str(), 0o755) {
                    if e != Errno::EXIST {
                        return;
                    }
                }
            }
            Err(_) => return,
        }
        cur = next;
    }
}

fn libc_enoent() -> i32 {
    Errno::NOENT.raw_os_error()
}

/// Type of the inode at `name` in `dir`, not following a final symlink.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &str) -> Result<Stat, Errno> {
    rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
}

/// Remove `name` in `dir` and, when it is a directory, everything below it
/// on the same filesystem (`rm_rf_child(…, REMOVE_PHYSICAL)`).
pub fn rm_rf_at(dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    let st = lstat_at(dir, name)?;
    let dev = rfs::fstat(dir)?.st_dev;
    if is_mount_point_at(dir, name, dev)? {
        // What is mounted there is not the root's to remove.
        return Err(Errno::BUSY);
    }
    if file_type(&st) == FileType::Directory {
        let fd = rfs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rm_children(&fd, st.st_dev)?;
        rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)
    } else {
        rfs::unlinkat(dir, name, AtFlags::empty())
    }
}

/// `STATX_ATTR_MOUNT_ROOT`: the inode is the root of a mount.
const STATX_ATTR_MOUNT_ROOT: u64 = 0x2000;

/// Whether `name` below `dir` is a mount point (a bind mount of the same
/// filesystem included), as far as the kernel tells; `dev` is the
/// directory's device, compared where the kernel cannot tell.
pub fn is_mount_point_at(dir: BorrowedFd<'_>, name: &str, dev: u64) -> Result<bool, Errno> {
    let sx = rfs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
        rfs::StatxFlags::TYPE,
    )?;
    if sx.stx_attributes_mask.bits() & STATX_ATTR_MOUNT_ROOT != 0 {
        return Ok(sx.stx_attributes.bits() & STATX_ATTR_MOUNT_ROOT != 0);
    }
    Ok(rfs::makedev(sx.stx_dev_major, sx.stx_dev_minor) != dev)
}

/// Remove everything inside the directory `fd`, not crossing onto other
/// filesystems and stopping at every mount point (a bind mount of the same
/// filesystem too, which may show what lies outside the root). Returns the
/// first error; removal goes on past it.
pub fn rm_children(fd: &OwnedFd, dev: u64) -> Result<(), Errno> {
    let mut names = Vec::new();
    let dir = rfs::Dir::read_from(fd)?;
    for e in dir {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(String::from_utf8_lossy(n).into_owned());
        }
    }
    let mut first = Ok(());
    for n in names {
        let r = (|| {
            if is_mount_point_at(fd.as_fd(), &n, dev)? {
                return Ok(());
            }
            let st = lstat_at(fd.as_fd(), &n)?;
            if file_type(&st) == FileType::Directory {
                if st.st_dev != dev {
                    return Ok(());
                }
                let sub = rfs::openat(
                    fd,
                    n.as_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                rm_children(&sub, dev)?;
                rfs::unlinkat(fd, n.as_str(), AtFlags::REMOVEDIR)
            } else {
                rfs::unlinkat(fd, n.as_str(), AtFlags::empty())
            }
        })();
        if let Err(e) = r {
            if e != Errno::NOENT && first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}

/// Give a just created inode the permission bits of `mode` that the
/// process umask took, as if it had been created under umask 0 (as
/// systemd-tmpfiles creates them). The umask itself is never changed.
pub fn restore_umask_fd<Fd: AsFd>(fd: Fd, mode: u32) -> Result<(), Errno> {
    let lost = crate::fsutil::umask_loss(mode);
    if lost == 0 {
        return Ok(());
    }
    let st = rfs::fstat(&fd)?;
    rfs::chmod(
        proc_path(&fd),
        Mode::from_raw_mode((st.st_mode & 0o7777) | lost),
    )
}

/// [`restore_umask_fd`] for `name` below `dir`, not following a symlink.
pub fn restore_umask_at(dir: BorrowedFd<'_>, name: &str, mode: u32) -> Result<(), Errno> {
    if crate::fsutil::umask_loss(mode) == 0 {
        return Ok(());
    }
    let fd = rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    restore_umask_fd(&fd, mode)
}

/// `mkdirat` with exactly `mode`, whatever the umask.
pub fn mkdir_exact(dir: BorrowedFd<'_>, name: &str, mode: u32) -> Result<(), Errno> {
    rfs::mkdirat(dir, name, Mode::from_raw_mode(mode))?;
    restore_umask_at(dir, name, mode)
}

/// `/proc/self/fd/N` of a handle, to reach the inode of an `O_PATH` fd.
pub fn proc_path<Fd: AsFd>(fd: Fd) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// Reopen an `O_PATH` handle for real I/O.
pub fn reopen<Fd: AsFd>(fd: Fd, flags: OFlags) -> Result<OwnedFd, Errno> {
    rfs::open(proc_path(fd), flags | OFlags::CLOEXEC, Mode::empty())
}

fn has_magic(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// `GLOB_BRACE`: `a{b,c}d` becomes `abd`, `acd` (nested braces too).
pub fn brace_expand(p: &str) -> Vec<String> {
    let b = p.as_bytes();
    let Some(open) = b.iter().position(|c| *c == b'{') else {
        return vec![p.to_string()];
    };
    let mut depth = 0;
    let mut commas = Vec::new();
    let mut close = None;
    for (i, c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            b',' if depth == 1 => commas.push(i),
            _ => {}
        }
    }
    let Some(close) = close else {
        return vec![p.to_string()];
    };
    let (pre, post) = (&p[..open], &p[close + 1..]);
    let mut bounds = vec![open];
    bounds.extend(commas);
    bounds.push(close);
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let alt = &p[w[0] + 1..w[1]];
        out.extend(brace_expand(&format!("{pre}{alt}{post}")));
    }
    out
}

const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// `fnmatch(pattern, path, FNM_PATHNAME|FNM_PERIOD)`.
pub fn fnmatch(pattern: &str, path: &str) -> bool {
    Matcher::new(pattern).matches(path)
}

/// A compiled `fnmatch` pattern (a pattern glob cannot parse matches
/// itself literally).
#[derive(Debug)]
pub struct Matcher(Result<glob::Pattern, String>);

impl Matcher {
    pub fn new(pattern: &str) -> Matcher {
        Matcher(glob::Pattern::new(pattern).map_err(|_| pattern.to_string()))
    }

    pub fn matches(&self, path: &str) -> bool {
        match &self.0 {
            Ok(p) => p.matches_with(path, MATCH),
            Err(literal) => literal == path,
        }
    }
}

/// `glob(3)` with `GLOB_BRACE`, inside the root: every existing path the
/// pattern matches, sorted. Hidden names match only a literal `.`.
pub fn glob(root: &Root, pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    for p in brace_expand(pattern) {
        let comps: Vec<String> = split(&p).into_iter().collect();
        let mut current = vec![String::from("/")];
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let mut next = Vec::new();
            for base in &current {
                if has_magic(c) {
                    let Ok(pat) = glob::Pattern::new(c) else {
                        continue;
                    };
                    let Ok(dfd) = root.open(base, OFlags::RDONLY | OFlags::DIRECTORY, 0) else {
                        continue;
                    };
                    let Ok(mut dir) = rfs::Dir::read_from(&dfd) else {
                        continue;
                    };
                    let mut names = Vec::new();
                    while let Some(Ok(e)) = dir.next() {
                        let n = String::from_utf8_lossy(e.file_name().to_bytes()).into_owned();
                        if n != "." && n != ".." && pat.matches_with(&n, MATCH) {
                            names.push(n);
                        }
                    }
                    names.sort();
                    next.extend(names.into_iter().map(|n| join(base, &n)));
                } else {
                    let cand = join(base, c);
                    let exists = if last {
                        root.exists_nofollow(&cand)
                    } else {
                        root.exists(&cand)
                    };
                    if exists {
                        next.push(cand);
                    }
                }
            }
            current = next;
        }
        out.extend(current);
    }
    out
}

/// The part of a glob before its first component with a wildcard.
pub fn non_glob_prefix(p: &str) -> String {
    let mut out = String::from("/");
    for c in split(p) {
        if has_magic(&c) {
            break;
        }
        out = join(&out, &c);
    }
    out
}

pub fn is_glob(p: &str) -> bool {
    has_magic(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn braces_and_walks_stay_inside() {
        assert_eq!(
            brace_expand("/a{b,c{d,e}}f"),
            vec!["/abf", "/acdf", "/acef"]
        );
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path().join("root");
        std::fs::create_dir_all(r.join("etc/sub")).expect("mkdir");
        std::fs::write(r.join("etc/a.conf"), "a").expect("w");
        std::fs::write(r.join("etc/.h.conf"), "h").expect("w");
        symlink("/etc", r.join("link")).expect("ln");
        symlink("../../../../..", r.join("etc/up")).expect("ln");
        let root = Root::new(&r).expect("root");
        assert_eq!(glob(&root, "/link/*.conf"), vec!["/link/a.conf"]);
        assert_eq!(glob(&root, "/etc/up/etc/sub"), vec!["/etc/up/etc/sub"]);
        let res = chase(&root, "/etc/up/link/a.conf", true, false).expect("chase");
        assert_eq!(file_type(&res.st), FileType::RegularFile);
        mkdir_parents(&root, "/etc/up/new/dir/file");
        assert!(r.join("new/dir").is_dir());
        assert!(!t.path().join("new").exists());
        assert!(fnmatch("/tmp/x-*", "/tmp/x-1"));
        assert!(!fnmatch("/tmp/*", "/tmp/a/b"));
        assert!(!fnmatch("/tmp/*", "/tmp/.a"));
        assert_eq!(non_glob_prefix("/var/tmp/x-*/tmp"), "/var/tmp");
    }
}
