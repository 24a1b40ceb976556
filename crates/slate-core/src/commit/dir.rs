//! Scanning a directory into objects: each directory's entries in parallel,
//! subdirectories recursively (rayon work stealing), trees written bottom up.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use rustix::fs::{self as rfs, AtFlags, Dir, Mode, OFlags};

use super::{batch, Error, Result, Stats, TreeScan};
use crate::fsutil;
use crate::hash::ObjectId;
use crate::object::{DirMeta, EntryKind, FileKind, FileMeta, Tree, TreeEntry};
use crate::store::{FileContent, Repo, RepoMode};

pub(super) struct Scanner<'a> {
    repo: &'a Repo,
    pub(super) stats: Arc<Stats>,
    sockets: Mutex<Vec<String>>,
    /// How many regular files may be read in one batch; 0 for none (in
    /// `archive` repositories, whose packs read their files later).
    pub(super) batch_files: usize,
}

pub(super) fn src_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Source {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn errno(path: &Path) -> impl Fn(rustix::io::Errno) -> Error + '_ {
    move |e| Error::Source {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Store every inode below `path` and return the root tree, counting into
/// `stats` as it goes (for progress).
pub fn commit_dir_tree(repo: &Repo, path: &Path, stats: Arc<Stats>) -> Result<TreeScan> {
    let fd = fsutil::open_dir(path).map_err(src_err(path))?;
    let cached = batch::tree_cached(fd.as_fd());
    match scan_pool(cached) {
        Some(pool) => pool.install(|| scan(repo, fd, path, stats)),
        None => scan(repo, fd, path, stats),
    }
}

/// The thread pool for a scan. A scan of a tree read from disk mostly
/// waits, and more reads in flight shorten it: sixteen threads per CPU, at
/// least 16 and at most 64. On 2 CPUs, a fresh bare-user commit of a cold
/// Debian tree took 1.375 s with 2 threads, 0.855 s with 8, and another 8%
/// and 5% less with 16 and 32. A scan of a cached tree is work for the
/// CPUs, which more threads only make switch and contend: one thread per
/// CPU and one more, which took 8% less than 32 threads (0.376 s instead of
/// 0.410 s). [`batch::tree_cached`] tells which. `RAYON_NUM_THREADS`, when
/// set, sets the count instead.
fn scan_pool(cached: bool) -> Option<rayon::ThreadPool> {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return None;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if cached {
        cpus + 1
    } else {
        (cpus * 16).clamp(16, 64)
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("slate-scan-{i}"))
        .build()
        .ok()
}

fn scan(repo: &Repo, fd: OwnedFd, path: &Path, stats: Arc<Stats>) -> Result<TreeScan> {
    let scanner = Scanner {
        repo,
        stats,
        sockets: Mutex::new(Vec::new()),
        batch_files: match repo.mode() {
            RepoMode::Archive => 0,
            _ => batch::files_per_batch(batch::open_file_limit(), rayon::current_num_threads()),
        },
    };
    let root = scanner.dir(fd, path, "")?;
    let mut skipped = scanner
        .sockets
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    skipped.sort();
    Ok(TreeScan {
        root,
        stats: scanner.stats,
        skipped_sockets: skipped,
    })
}

/// Open flags for a source file: never follow a symlink, never block on a
/// fifo swapped in, never become a controlling terminal.
pub(super) fn file_flags() -> OFlags {
    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK
}

/// Open flags for a source directory.
pub(super) fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Whether `O_NOATIME` is still worth asking for. Reading a source must not
/// dirty its inodes (a freshly built tree would otherwise have every
/// inode's access time written back); the kernel allows the flag to the
/// files' owner and to root, and after its first refusal it is not asked
/// for again.
static NOATIME: AtomicBool = AtomicBool::new(true);

/// Open `name` below `dir` for reading with `flags`, adding `O_NOATIME`
/// where the kernel allows it.
pub(super) fn open_source(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: OFlags,
) -> rustix::io::Result<OwnedFd> {
    if NOATIME.load(Ordering::Relaxed) {
        match rfs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
            Err(rustix::io::Errno::PERM) => NOATIME.store(false, Ordering::Relaxed),
            r => return r,
        }
    }
    rfs::openat(dir, name, flags, Mode::empty())
}

impl Scanner<'_> {
    fn dir(&self, fd: OwnedFd, path: &Path, rel: &str) -> Result<ObjectId> {
        let st = rfs::fstat(&fd).map_err(errno(path))?;
        let xattrs = fsutil::fd_xattrs(&fd).map_err(src_err(path))?;
        let meta = DirMeta {
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            xattrs,
        };
        let mut names = Vec::new();
        // The listing reads through the handle itself; openat() below does
        // not depend on its file position.
        let mut d = Dir::new(fd).map_err(errno(path))?;
        while let Some(ent) = d.read() {
            let ent = ent.map_err(errno(path))?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                let regular = ent.file_type() == rfs::FileType::RegularFile;
                names.push((n.to_vec(), regular, ent.ino()));
            }
        }
        Stats::add(&self.stats.dirs, 1);
        let fd = d.fd().map_err(errno(path))?;
        let entries: Vec<Option<TreeEntry>> = if self.batch_files > 0 && batch::uncached(fd, &names)
        {
            self.entries_in_batches(fd, path, rel, names)?
        } else {
            names
                .into_par_iter()
                .map(|(name, regular, _)| self.entry(fd, path, rel, name, regular))
                .collect::<Result<_>>()?
        };
        let mut tree = Tree {
            meta,
            entries: entries.into_iter().flatten().collect(),
        };
        tree.sort();
        Ok(self.repo.write_tree(&tree)?)
    }

    /// One directory entry. `regular` is the directory's word that it is a
    /// regular file, which saves a `stat`: the opened file is checked anyway.
    pub(super) fn entry(
        &self,
        dir: BorrowedFd<'_>,
        dpath: &Path,
        drel: &str,
        name: Vec<u8>,
        regular: bool,
    ) -> Result<Option<TreeEntry>> {
        let oname = OsStr::from_bytes(&name);
        let path = dpath.join(oname);
        if regular {
            let fd = open_source(dir, oname, file_flags()).map_err(errno(&path))?;
            let st = rfs::fstat(&fd).map_err(errno(&path))?;
            if st.st_mode & 0o170000 == 0o100000 {
                return self.regular(fd, &st, name, &path).map(Some);
            }
        }
        let st = rfs::statat(dir, oname, AtFlags::SYMLINK_NOFOLLOW).map_err(errno(&path))?;
        let rel = || {
            let n = String::from_utf8_lossy(&name);
            if drel.is_empty() {
                n.into_owned()
            } else {
                format!("{drel}/{n}")
            }
        };
        match st.st_mode & 0o170000 {
            0o040000 => {
                let fd = open_source(dir, oname, dir_flags()).map_err(errno(&path))?;
                let id = self.dir(fd, &path, &rel())?;
                return Ok(Some(TreeEntry {
                    name,
                    kind: EntryKind::Dir,
                    id,
                }));
            }
            0o140000 => {
                self.sockets
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(rel());
                return Ok(None);
            }
            0o100000 => {
                let fd = open_source(dir, oname, file_flags()).map_err(errno(&path))?;
                let st = rfs::fstat(&fd).map_err(errno(&path))?;
                return self.regular(fd, &st, name, &path).map(Some);
            }
            _ => {}
        }
        let kind = FileKind::from_st_mode(st.st_mode).ok_or_else(|| {
            src_err(&path)(std::io::Error::other(format!(
                "unsupported inode type {:o}",
                st.st_mode
            )))
        })?;
        let xattrs = fsutil::path_xattrs(&path).map_err(src_err(&path))?;
        let mut meta = FileMeta {
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: 0,
            xattrs,
        };
        let stored = if kind == FileKind::Symlink {
            let target = rfs::readlinkat(dir, oname, Vec::new()).map_err(errno(&path))?;
            Stats::add(&self.stats.symlinks, 1);
            self.repo.write_symlink(&meta, target.as_bytes())?
        } else {
            if kind != FileKind::Fifo {
                meta.rdev = st.st_rdev;
            }
            Stats::add(&self.stats.specials, 1);
            self.repo.write_special(&meta)?
        };
        if stored.written {
            Stats::add(&self.stats.objects_written, 1);
        }
        Ok(Some(TreeEntry {
            name,
            kind: EntryKind::File,
            id: stored.id,
        }))
    }

    pub(super) fn regular(
        &self,
        fd: OwnedFd,
        st: &rfs::Stat,
        name: Vec<u8>,
        path: &Path,
    ) -> Result<TreeEntry> {
        let mut name = name;
        self.regular_fd(fd.as_fd(), st, &mut name, path)
    }

    pub(super) fn regular_fd(
        &self,
        fd: BorrowedFd<'_>,
        st: &rfs::Stat,
        name: &mut Vec<u8>,
        path: &Path,
    ) -> Result<TreeEntry> {
        self.store_regular(fd, st, name, path, FileContent::Fd { fd, path })
    }

    pub(super) fn regular_bytes(
        &self,
        fd: BorrowedFd<'_>,
        st: &rfs::Stat,
        name: &mut Vec<u8>,
        path: &Path,
        content: &[u8],
    ) -> Result<TreeEntry> {
        self.store_regular(fd, st, name, path, FileContent::Bytes(content))
    }

    /// Store a regular file (`fd`, for its xattrs) with `content`.
    fn store_regular(
        &self,
        fd: BorrowedFd<'_>,
        st: &rfs::Stat,
        name: &mut Vec<u8>,
        path: &Path,
        content: FileContent<'_>,
    ) -> Result<TreeEntry> {
        let name = std::mem::take(name);
        let xattrs = fsutil::fd_xattrs(fd).map_err(src_err(path))?;
        let meta = FileMeta {
            kind: FileKind::Regular,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: 0,
            xattrs,
        };
        Stats::add(&self.stats.files, 1);
        Stats::add(&self.stats.content_bytes, st.st_size as u64);
        let stored = self.repo.write_file(&meta, st.st_size as u64, content)?;
        if stored.written {
            Stats::add(&self.stats.objects_written, 1);
        }
        Ok(TreeEntry {
            name,
            kind: EntryKind::File,
            id: stored.id,
        })
    }
}
