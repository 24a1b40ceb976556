//! Scanning a directory into objects: each directory's entries in parallel,
//! subdirectories recursively (rayon work stealing), trees written bottom up.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;
use rustix::fs::{self as rfs, AtFlags, Dir};

use super::probe;
use super::source::{dir_flags, errno, file_flags, open_source, src_err};
use super::{Result, Stats, TreeScan};
use crate::fsutil;
use crate::hash::ObjectId;
use crate::object::{name, DirMeta, EntryKind, FileKind, FileMeta, Tree, TreeEntry};
use crate::progress::Progress;
use crate::store::{FileContent, ObjectWrite};

pub(super) struct Scanner<'a, W: ?Sized> {
    store: &'a W,
    pub(super) stats: Stats,
    pub(super) progress: &'a Progress,
    sockets: Mutex<Vec<Vec<u8>>>,
    /// How many regular files may be read in one batch; 0 for none (when
    /// the store reads them again later, as an archive pack does).
    pub(super) batch_files: usize,
}

/// Store every inode below `path` into `store` and return the root tree.
/// `progress` counts the files stored and their bytes as it goes.
pub fn commit_dir_tree<W: ObjectWrite + ?Sized>(
    store: &W,
    path: &Path,
    progress: &Progress,
) -> Result<TreeScan> {
    let fd = fsutil::open_dir(path).map_err(src_err(path))?;
    let cached = probe::tree_cached(fd.as_fd());
    match scan_pool(cached) {
        Some(pool) => pool.install(|| scan(store, fd, path, progress)),
        None => scan(store, fd, path, progress),
    }
}

/// The thread pool for a scan. A scan of a tree read from disk mostly
/// waits, and more reads in flight shorten it: sixteen threads per CPU, at
/// least 16 and at most 64. On 2 CPUs, a fresh bare-user commit of a cold
/// Debian tree took 1.375 s with 2 threads, 0.855 s with 8, and another 8%
/// and 5% less with 16 and 32. A scan of a cached tree is work for the
/// CPUs, which more threads only make switch and contend: one thread per
/// CPU and one more, which took 8% less than 32 threads (0.376 s instead of
/// 0.410 s). [`probe::tree_cached`] tells which. `RAYON_NUM_THREADS`, when
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
        // A scan recurses once per directory level: room for deep trees.
        .stack_size(16 << 20)
        .build()
        .ok()
}

fn scan<W: ObjectWrite + ?Sized>(
    store: &W,
    fd: OwnedFd,
    path: &Path,
    progress: &Progress,
) -> Result<TreeScan> {
    let scanner = Scanner {
        store,
        stats: Stats::default(),
        progress,
        sockets: Mutex::new(Vec::new()),
        batch_files: if store.rereads_files() {
            0
        } else {
            probe::files_per_batch(probe::open_file_limit(), rayon::current_num_threads())
        },
    };
    let root = scanner.dir(fd, path, b"")?;
    let mut skipped = scanner
        .sockets
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    skipped.sort();
    Ok(TreeScan {
        root,
        stats: scanner.stats.snapshot(),
        skipped_sockets: skipped,
    })
}

impl<W: ObjectWrite + ?Sized> Scanner<'_, W> {
    fn dir(&self, fd: OwnedFd, path: &Path, rel: &[u8]) -> Result<ObjectId> {
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
        let entries: Vec<Option<TreeEntry>> = if self.batch_files > 0 && probe::uncached(fd, &names)
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
        Ok(self.store.write_tree(&tree)?)
    }

    /// One directory entry. `regular` is the directory's word that it is a
    /// regular file, which saves a `stat`: the opened file is checked anyway.
    pub(super) fn entry(
        &self,
        dir: BorrowedFd<'_>,
        dpath: &Path,
        drel: &[u8],
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
        let rel = || name::join(drel, &name);
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
        let xattrs = fsutil::xattrs_at(dir, &name).map_err(src_err(&path))?;
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
            self.store.write_symlink(&meta, target.as_bytes())?
        } else {
            if kind != FileKind::Fifo {
                meta.rdev = st.st_rdev;
            }
            Stats::add(&self.stats.specials, 1);
            self.store.write_special(&meta)?
        };
        self.progress.add(1, 0);
        if stored.written {
            Stats::add(&self.stats.objects_written, 1);
            self.progress.add_new(1);
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
        let stored = self.store.write_file(&meta, st.st_size as u64, content)?;
        self.progress.add(1, st.st_size as u64);
        if stored.written {
            Stats::add(&self.stats.objects_written, 1);
            self.progress.add_new(1);
        }
        Ok(TreeEntry {
            name,
            kind: EntryKind::File,
            id: stored.id,
        })
    }
}
