//! Scanning a directory into objects: each directory's entries in parallel,
//! subdirectories recursively (rayon work stealing), trees written bottom up.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;
use rustix::fs::{self as rfs, AtFlags, Dir, Mode, OFlags};

use super::{Error, Result, Stats, TreeScan};
use crate::fsutil;
use crate::hash::ObjectId;
use crate::object::{DirMeta, EntryKind, FileKind, FileMeta, Tree, TreeEntry};
use crate::store::{FileContent, Repo};

struct Scanner<'a> {
    repo: &'a Repo,
    stats: Stats,
    sockets: Mutex<Vec<String>>,
}

fn src_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Source {
        path: path.to_path_buf(),
        source,
    }
}

/// Store every inode below `path` and return the root tree.
pub fn commit_dir_tree(repo: &Repo, path: &Path) -> Result<TreeScan> {
    let fd = fsutil::open_dir(path).map_err(src_err(path))?;
    let scanner = Scanner {
        repo,
        stats: Stats::default(),
        sockets: Mutex::new(Vec::new()),
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

impl Scanner<'_> {
    fn dir(&self, fd: OwnedFd, path: &Path, rel: &str) -> Result<ObjectId> {
        let st = rfs::fstat(&fd).map_err(|e| src_err(path)(e.into()))?;
        let xattrs = fsutil::fd_xattrs(&fd).map_err(src_err(path))?;
        let meta = DirMeta {
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            xattrs,
        };
        let mut names = Vec::new();
        let mut d = Dir::read_from(&fd).map_err(|e| src_err(path)(e.into()))?;
        while let Some(ent) = d.read() {
            let ent = ent.map_err(|e| src_err(path)(e.into()))?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        Stats::add(&self.stats.dirs, 1);
        let entries: Vec<Option<TreeEntry>> = names
            .into_par_iter()
            .map(|name| self.entry(fd.as_fd(), path, rel, name))
            .collect::<Result<_>>()?;
        let mut tree = Tree {
            meta,
            entries: entries.into_iter().flatten().collect(),
        };
        tree.sort();
        Ok(self.repo.write_tree(&tree)?)
    }

    fn entry(
        &self,
        dir: std::os::fd::BorrowedFd<'_>,
        dpath: &Path,
        drel: &str,
        name: Vec<u8>,
    ) -> Result<Option<TreeEntry>> {
        let oname = OsStr::from_bytes(&name);
        let path = dpath.join(oname);
        let err = src_err(&path);
        let st = rfs::statat(dir, oname, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| err(e.into()))?;
        let ftype = st.st_mode & 0o170000;
        let rel = || {
            if drel.is_empty() {
                String::from_utf8_lossy(&name).into_owned()
            } else {
                format!("{drel}/{}", String::from_utf8_lossy(&name))
            }
        };
        if ftype == 0o040000 {
            let fd = fsutil::open_dir_at(dir, Path::new(oname)).map_err(&err)?;
            let id = self.dir(fd, &path, &rel())?;
            return Ok(Some(TreeEntry {
                name,
                kind: EntryKind::Dir,
                id,
            }));
        }
        if ftype == 0o140000 {
            self.sockets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(rel());
            return Ok(None);
        }
        let kind = FileKind::from_st_mode(st.st_mode).ok_or_else(|| {
            err(std::io::Error::other(format!(
                "unsupported inode type {:o}",
                st.st_mode
            )))
        })?;
        let mut meta = FileMeta {
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: 0,
            xattrs: Vec::new(),
        };
        let stored = match kind {
            FileKind::Regular => {
                let fd = rfs::openat(
                    dir,
                    oname,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
                    Mode::empty(),
                )
                .map_err(|e| err(e.into()))?;
                let st = rfs::fstat(&fd).map_err(|e| err(e.into()))?;
                meta.mode = st.st_mode & 0o7777;
                meta.uid = st.st_uid;
                meta.gid = st.st_gid;
                meta.xattrs = fsutil::fd_xattrs(&fd).map_err(&err)?;
                Stats::add(&self.stats.files, 1);
                Stats::add(&self.stats.content_bytes, st.st_size as u64);
                self.repo.write_file(
                    &meta,
                    st.st_size as u64,
                    FileContent::Fd {
                        fd: fd.as_fd(),
                        path: &path,
                    },
                )?
            }
            FileKind::Symlink => {
                let target = rfs::readlinkat(dir, oname, Vec::new()).map_err(|e| err(e.into()))?;
                meta.xattrs = fsutil::path_xattrs(&path).map_err(&err)?;
                Stats::add(&self.stats.symlinks, 1);
                self.repo.write_symlink(&meta, target.as_bytes())?
            }
            FileKind::CharDevice | FileKind::BlockDevice | FileKind::Fifo => {
                if kind != FileKind::Fifo {
                    meta.rdev = st.st_rdev;
                }
                meta.xattrs = fsutil::path_xattrs(&path).map_err(&err)?;
                Stats::add(&self.stats.specials, 1);
                self.repo.write_special(&meta)?
            }
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
}
