//! Reading a directory's regular files in batches when they are not in the
//! page cache.
//!
//! A tree read from disk costs one request per file, and on a virtual
//! machine each request submitted alone costs an exit to the hypervisor.
//! A directory whose files are not cached has them read through
//! [`BatchReader`]: up to [`BATCH_FILES`] files per batch, taken in inode
//! order (about the order of their data on disk), so that the reads of
//! neighbouring files merge into one request. A cached directory is read a
//! file at a time: there, a batch only moves the data through a larger
//! buffer.
//!
//! On a fresh Debian tree (8,130 files) read from disk, this cut the reads
//! the disk saw from about 9,900 to 3,700 and the commit's time by about
//! 7%.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rayon::prelude::*;
use rustix::fs as rfs;
use rustix::io::Errno;

use super::dir::Scanner;
use super::probe::Name;
use super::source::{errno, file_flags, open_source};
use super::{Result, Stats};
use crate::object::TreeEntry;
use crate::store::ObjectWrite;
use crate::sys::{self, BatchReader};

/// Files from this size on are read on their own.
const BATCH_FILE_MAX: u64 = 256 << 10;
/// What one batch may read in all.
const BATCH_BYTES: usize = 1 << 20;

/// Makes scan threads go without a reader, as without io_uring.
#[cfg(test)]
pub(super) static NO_READER: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

fn new_reader() -> Option<BatchReader> {
    #[cfg(test)]
    if NO_READER.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    BatchReader::new(BATCH_BYTES)
}

thread_local! {
    /// Each scan thread's reader, made on first use; `Some(None)` where
    /// the kernel offers no io_uring.
    static READER: RefCell<Option<Option<BatchReader>>> = const { RefCell::new(None) };
}

impl<W: ObjectWrite + ?Sized> Scanner<'_, W> {
    /// A directory's entries, its regular files read in batches.
    pub(super) fn entries_in_batches(
        &self,
        dir: BorrowedFd<'_>,
        path: &Path,
        rel: &[u8],
        names: Vec<Name>,
    ) -> Result<Vec<Option<TreeEntry>>> {
        let (mut files, others): (Vec<Name>, Vec<Name>) = names.into_iter().partition(|n| n.1);
        files.sort_unstable_by_key(|n| n.2);
        let mut entries: Vec<Option<TreeEntry>> = others
            .into_par_iter()
            .map(|(name, regular, _)| self.entry(dir, path, rel, name, regular))
            .collect::<Result<_>>()?;
        let batched: Vec<Vec<Option<TreeEntry>>> = files
            .par_chunks(self.batch_files)
            .map(|chunk| self.file_batch(dir, path, rel, chunk))
            .collect::<Result<_>>()?;
        entries.extend(batched.into_iter().flatten());
        Ok(entries)
    }

    /// Entries that the directory calls regular files, their contents read
    /// together. Anything else found under such a name, files too large for
    /// a batch and any read that does not give what `fstat` promised take
    /// the ordinary path, which reports what is wrong.
    fn file_batch(
        &self,
        dir: BorrowedFd<'_>,
        dpath: &Path,
        drel: &[u8],
        names: &[Name],
    ) -> Result<Vec<Option<TreeEntry>>> {
        let mut out = Vec::with_capacity(names.len());
        let mut small = Vec::with_capacity(names.len());
        for (name, _, _) in names {
            let oname = OsStr::from_bytes(name);
            let path = dpath.join(oname);
            let fd = open_source(dir, oname, file_flags()).map_err(errno(&path))?;
            let st = rfs::fstat(&fd).map_err(errno(&path))?;
            if st.st_mode & 0o170000 != 0o100000 {
                drop(fd);
                out.push(self.entry(dir, dpath, drel, name.clone(), false)?);
            } else if st.st_size as u64 >= BATCH_FILE_MAX {
                out.push(Some(self.regular(fd, &st, name.clone(), &path)?));
            } else {
                small.push((fd, st, name.clone(), path));
            }
        }
        READER.with(|r| -> Result<()> {
            let mut r = r.borrow_mut();
            let reader = r.get_or_insert_with(new_reader);
            let mut rest = &mut small[..];
            while !rest.is_empty() {
                let Some(reader) = reader.as_mut() else {
                    for (fd, st, name, path) in rest.iter_mut() {
                        out.push(Some(self.regular_fd(fd.as_fd(), st, name, path)?));
                    }
                    break;
                };
                // One byte more than each file holds, to see one that grew.
                let mut n = 0;
                let mut bytes = 0;
                while n < rest.len() && n < sys::MAX_FILES {
                    let want = rest[n].1.st_size as usize + 1;
                    if bytes + want > reader.capacity() {
                        break;
                    }
                    bytes += want;
                    n += 1;
                }
                if n == 0 {
                    // Not reachable with these limits; kept safe anyway.
                    let (fd, st, name, path) = &mut rest[0];
                    out.push(Some(self.regular_fd(fd.as_fd(), st, name, path)?));
                    rest = &mut rest[1..];
                    continue;
                }
                let (now, later) = rest.split_at_mut(n);
                rest = later;
                let reqs: Vec<_> = now
                    .iter()
                    .map(|f| (f.0.as_fd(), f.1.st_size as usize + 1))
                    .collect();
                let got = reader
                    .read(&reqs)
                    .unwrap_or_else(|_| vec![Err(Errno::AGAIN); now.len()]);
                for ((fd, st, name, path), res) in now.iter_mut().zip(got) {
                    let entry = match res {
                        Ok(b) if b.len() as i64 == st.st_size => {
                            Stats::add(&self.stats.batched, 1);
                            self.regular_bytes(fd.as_fd(), st, name, path, b)?
                        }
                        _ => self.regular_fd(fd.as_fd(), st, name, path)?,
                    };
                    out.push(Some(entry));
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}
