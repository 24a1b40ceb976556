//! Questions a commit asks before reading a tree: is it in the page cache
//! (which sizes the scan's thread pool), is one directory's content on
//! disk (which has its files read in batches), and how many files may be
//! open at once.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs as rfs;
use rustix::io::{Errno, ReadWriteFlags};

use super::source::{dir_flags, file_flags, open_source};

/// Regular files of one directory handed to one thread at a time, at most
/// (see [`files_per_batch`]).
pub(super) const BATCH_FILES: usize = 32;

/// How many files a batch may hold open, given the limit on open files and
/// the scan's thread count: every thread may be inside a batch at once, and
/// half the limit stays for everything else (directories being listed, the
/// repository, objects being written). Below 4, batches are not worth it: 0.
pub(super) fn files_per_batch(open_limit: u64, threads: usize) -> usize {
    let per_thread = open_limit / 2 / threads.max(1) as u64;
    match per_thread.min(BATCH_FILES as u64) as usize {
        n if n < 4 => 0,
        n => n,
    }
}

/// The process's limit on open files, first raised to its hard maximum (up
/// to 65,536): the soft limit of 1,024 that many systems still set exists
/// for `select()`, which Slate does not use.
pub(super) fn open_file_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let soft = lim.current.unwrap_or(u64::MAX);
    let want = lim.maximum.unwrap_or(u64::MAX).min(1 << 16);
    if soft < want {
        let raised = Rlimit {
            current: Some(want),
            maximum: lim.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return want;
        }
    }
    soft
}

/// A directory entry: name, whether the directory calls it a regular file,
/// inode number.
pub(super) type Name = (Vec<u8>, bool, u64);

/// What a one-byte read without waiting says of a file's first page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Cached,
    /// Not in the page cache (the probe started reading it).
    OnDisk,
    /// Empty or unreadable.
    Unknown,
    /// On a filesystem that cannot read without waiting (`RWF_NOWAIT`
    /// refused).
    Unsupported,
}

/// Whether the file `name` below `dir` starts in the page cache. The probe
/// reads one byte without waiting (on a miss, the kernel starts reading
/// that file).
fn probe(dir: BorrowedFd<'_>, name: &[u8]) -> Probe {
    let Ok(fd) = open_source(dir, OsStr::from_bytes(name), file_flags()) else {
        return Probe::Unknown;
    };
    let mut one = [0u8; 1];
    let mut bufs = [std::io::IoSliceMut::new(&mut one)];
    match rustix::io::preadv2(&fd, &mut bufs, 0, ReadWriteFlags::NOWAIT) {
        Ok(0) => Probe::Unknown,
        Ok(_) => Probe::Cached,
        Err(Errno::AGAIN) => Probe::OnDisk,
        Err(Errno::OPNOTSUPP | Errno::INVAL) => Probe::Unsupported,
        Err(_) => Probe::Unknown,
    }
}

/// Whether the directory's files are to be read from disk: the first of its
/// regular files with content is not in the page cache. A directory with a
/// single regular file is not worth a batch.
pub(super) fn uncached(dir: BorrowedFd<'_>, names: &[Name]) -> bool {
    let regular = names.iter().filter(|n| n.1);
    if regular.clone().nth(1).is_none() {
        return false;
    }
    for (name, _, _) in regular.take(4) {
        match probe(dir, name) {
            Probe::Unknown => continue,
            p => return p == Probe::OnDisk,
        }
    }
    false
}

/// Whether `dir` is on a filesystem that lives in memory (tmpfs, ramfs),
/// which refuses reads without waiting but never waits.
fn in_memory(dir: BorrowedFd<'_>) -> bool {
    /// ramfs's `f_type` (linux/magic.h; libc does not name it).
    const RAMFS_MAGIC: u64 = 0x8584_58f6;
    rfs::fstatfs(dir).is_ok_and(|st| {
        let kind = st.f_type as u64;
        kind == libc::TMPFS_MAGIC as u64 || kind == RAMFS_MAGIC
    })
}

/// Directories a tree probe lists, at most.
const PROBE_DIRS: usize = 32;
/// Files a tree probe reads from, at most.
const PROBE_FILES: usize = 16;

/// Whether the tree below `root` seems to be in the page cache: the last
/// regular file of each of the first directories met breadth first (at
/// most [`PROBE_DIRS`] of them) is, until [`PROBE_FILES`] with content were
/// asked. It stops at the first that is not, so a tree read from disk waits
/// only for the listings that led to it. (The last file, because the probe
/// brings its file into the cache, and [`uncached`] asks the first ones.)
/// A tree with no file to ask, or on tmpfs, counts as cached; a tree on
/// another filesystem that cannot read without waiting (some network and
/// FUSE filesystems) counts as one on disk, whose scan gains from more
/// reads in flight.
pub(super) fn tree_cached(root: BorrowedFd<'_>) -> bool {
    if in_memory(root) {
        return true;
    }
    let mut queue = std::collections::VecDeque::new();
    let mut dirs = 0;
    let mut asked = 0;
    let mut dir: Option<rustix::fd::OwnedFd> = None;
    loop {
        let fd = match &dir {
            Some(fd) => fd.as_fd(),
            None => root,
        };
        let Ok(mut listing) = rfs::Dir::read_from(fd) else {
            return true;
        };
        dirs += 1;
        let mut last = None;
        while let Some(Ok(ent)) = listing.read() {
            let name = ent.file_name().to_bytes();
            match ent.file_type() {
                rfs::FileType::RegularFile => last = Some(name.to_vec()),
                rfs::FileType::Directory
                    if name != b"." && name != b".." && dirs + queue.len() < PROBE_DIRS =>
                {
                    if let Ok(sub) = open_source(fd, OsStr::from_bytes(name), dir_flags()) {
                        queue.push_back(sub);
                    }
                }
                _ => {}
            }
        }
        match last.map_or(Probe::Unknown, |name| probe(fd, &name)) {
            // A filesystem that cannot tell is treated as slow to read.
            Probe::OnDisk | Probe::Unsupported => return false,
            Probe::Cached => {
                asked += 1;
                if asked == PROBE_FILES {
                    return true;
                }
            }
            Probe::Unknown => {}
        }
        match queue.pop_front() {
            Some(next) => dir = Some(next),
            None => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fit_in_the_limit_on_open_files() {
        assert_eq!(files_per_batch(1 << 16, 32), BATCH_FILES);
        assert_eq!(files_per_batch(1024, 32), 16);
        assert_eq!(files_per_batch(1024, 64), 8);
        assert_eq!(files_per_batch(256, 64), 0);
        assert_eq!(files_per_batch(0, 0), 0);
        // Never more open at once than half the limit.
        for limit in [64u64, 300, 1024, 4096, 20000] {
            for threads in [1usize, 2, 16, 33, 64] {
                let n = files_per_batch(limit, threads) as u64;
                assert!(n * threads as u64 <= limit / 2, "{limit} {threads}: {n}");
            }
        }
    }

    #[test]
    fn the_soft_limit_on_open_files_is_raised_to_the_hard_one() {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let before = getrlimit(Resource::Nofile);
        // Start from a low soft limit (lowering it needs no privilege).
        let start = before.maximum.map_or(512, |m| m.min(512));
        let low = Rlimit {
            current: Some(start),
            maximum: before.maximum,
        };
        setrlimit(Resource::Nofile, low).expect("lower the soft limit");
        let got = open_file_limit();
        let after = getrlimit(Resource::Nofile);
        assert_eq!(
            after.current,
            Some(got),
            "the limit reported is the limit set"
        );
        assert_eq!(
            after.maximum, before.maximum,
            "the hard limit is left alone"
        );
        let want = before.maximum.unwrap_or(u64::MAX).min(1 << 16);
        assert_eq!(
            got,
            want.max(start),
            "raised from {start} to the hard limit"
        );
    }
}
