//! The one module with `unsafe`: what `rustix` does not cover.
//!
//! - [`restore_default_sigpipe`]: `slate log | head` ends quietly like any
//!   Unix tool instead of failing on a closed pipe (Rust ignores SIGPIPE).
//! - [`BatchReader`]: many small files read with one system call, through
//!   io_uring. When a tree is not in the page cache, every file read is its
//!   own request to the disk, and on a virtual machine every request
//!   submitted alone costs an exit to the hypervisor. Reads submitted
//!   together share one block-layer plug: reads of adjacent files merge
//!   into one request, and the device is notified once per batch.
//!
//! The reader hands the kernel a buffer that it writes into after the call
//! that submits the reads has returned. The buffer belongs to the reader,
//! the only way to get at it is a borrow of the reader, and every submitted
//! read has completed before any borrow is handed out. Should the ring fail
//! in a way that may leave reads in flight, the reader leaks its buffer
//! rather than free memory that the kernel may still write.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use io_uring::{opcode, types, IoUring};
use rustix::io::Errno;

/// Restore the default SIGPIPE action. Call first thing in `main`.
pub fn restore_default_sigpipe() {
    // SAFETY: called before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE and no handler code runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Whether io_uring is worth trying: not after the kernel refused to set up
/// a ring (too old a kernel, or a sandbox that forbids it), nor after a
/// ring failed.
static AVAILABLE: AtomicBool = AtomicBool::new(true);

/// Largest number of reads in one batch.
pub const MAX_FILES: usize = 64;

/// A ring and the buffer that its reads fill.
pub struct BatchReader {
    ring: IoUring,
    /// `None` once leaked after a failure.
    buf: Option<Box<[u8]>>,
    /// Per read of the last batch: where it landed and its result.
    spans: Vec<(usize, i32)>,
}

impl BatchReader {
    /// A reader with a buffer of `capacity` bytes (below 4 GiB), or `None`
    /// when the kernel offers no io_uring.
    pub fn new(capacity: usize) -> Option<BatchReader> {
        if !AVAILABLE.load(Ordering::Relaxed) || u32::try_from(capacity).is_err() {
            return None;
        }
        match IoUring::new(MAX_FILES as u32) {
            Ok(ring) => Some(BatchReader {
                ring,
                buf: Some(vec![0u8; capacity].into_boxed_slice()),
                spans: Vec::with_capacity(MAX_FILES),
            }),
            Err(_) => {
                AVAILABLE.store(false, Ordering::Relaxed);
                None
            }
        }
    }

    /// How many bytes one batch may read in all.
    pub fn capacity(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.len())
    }

    /// Read up to `len` bytes from offset 0 of each file, all at once (the
    /// files' positions do not move). At most [`MAX_FILES`] files, and
    /// lengths adding up to at most [`capacity`](Self::capacity). Returns,
    /// per file in order, the bytes read (fewer than asked at the end of
    /// the file) or the error.
    pub fn read(
        &mut self,
        files: &[(BorrowedFd<'_>, usize)],
    ) -> std::io::Result<Vec<Result<&[u8], Errno>>> {
        let total = files.iter().try_fold(0usize, |t, f| t.checked_add(f.1));
        if files.len() > MAX_FILES || total.is_none_or(|t| t > self.capacity()) {
            return Err(std::io::Error::other("batch larger than the reader"));
        }
        let Some(buf) = self.buf.as_mut() else {
            return Err(std::io::Error::other("reader unusable after an error"));
        };
        self.spans.clear();
        let base = buf.as_mut_ptr();
        let mut off = 0;
        {
            let mut sq = self.ring.submission();
            for (i, (fd, len)) in files.iter().enumerate() {
                // SAFETY: `off + len` is within the buffer (checked above),
                // so this points into memory the reader owns.
                let ptr = unsafe { base.add(off) };
                let len = u32::try_from(*len).expect("within the buffer, far below 4 GiB");
                let e = opcode::Read::new(types::Fd(fd.as_raw_fd()), ptr, len)
                    .offset(0)
                    .build()
                    .user_data(i as u64);
                // SAFETY: the entry's buffer stays allocated, unmoved and
                // otherwise untouched until the read completes (all are
                // reaped below before the buffer is borrowed), or forever
                // (leaked on failure). `fd` outlives this call, which
                // returns only after every read completed.
                if unsafe { sq.push(&e) }.is_err() {
                    // Not reachable: the ring has MAX_FILES entries and
                    // every earlier batch was reaped in full.
                    return Err(std::io::Error::other("io_uring submission queue full"));
                }
                self.spans.push((off, 0));
                off += len as usize;
            }
        }
        let mut done = 0;
        while done < files.len() {
            match self.ring.submit_and_wait(files.len() - done) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
                    ) => {}
                Err(e) => {
                    // Reads may still be in flight: never free their buffer.
                    if let Some(b) = self.buf.take() {
                        Box::leak(b);
                    }
                    AVAILABLE.store(false, Ordering::Relaxed);
                    return Err(e);
                }
            }
            for cqe in self.ring.completion() {
                if let Some(span) = self.spans.get_mut(cqe.user_data() as usize) {
                    span.1 = cqe.result();
                    done += 1;
                }
            }
        }
        let buf = self.buf.as_deref().expect("checked above");
        Ok(self
            .spans
            .iter()
            .zip(files)
            .map(|(&(off, r), f)| match usize::try_from(r) {
                Ok(n) if n <= f.1 => Ok(&buf[off..off + n]),
                Ok(_) => Err(Errno::IO),
                Err(_) => Err(Errno::from_raw_os_error(-r)),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn reads_each_file_whole_or_up_to_the_length_asked() {
        let Some(mut reader) = BatchReader::new(1 << 17) else {
            eprintln!("SKIP: this kernel offers no io_uring");
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let contents: Vec<Vec<u8>> = (0..40usize)
            .map(|i| (0..i * 97).map(|j| (i + j) as u8).collect())
            .collect();
        let files: Vec<std::fs::File> = contents
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let p = dir.path().join(format!("f{i}"));
                std::fs::write(&p, c).expect("write");
                std::fs::File::open(&p).expect("open")
            })
            .collect();
        let sub = std::fs::File::open(dir.path()).expect("open dir");
        for round in 0..3 {
            // Whole files (one byte more than each holds), then the first 10
            // bytes of each, then a directory among them.
            let mut reqs: Vec<(BorrowedFd<'_>, usize)> = files
                .iter()
                .zip(&contents)
                .map(|(f, c)| (f.as_fd(), if round == 1 { 10 } else { c.len() + 1 }))
                .collect();
            if round == 2 {
                reqs.insert(3, (sub.as_fd(), 5));
            }
            let got = reader.read(&reqs).expect("batch");
            assert_eq!(got.len(), reqs.len());
            let mut got = got.into_iter();
            for (i, c) in contents.iter().enumerate() {
                if round == 2 && i == 3 {
                    assert_eq!(got.next(), Some(Err(Errno::ISDIR)));
                }
                let want = if round == 1 {
                    &c[..c.len().min(10)]
                } else {
                    &c[..]
                };
                assert_eq!(got.next(), Some(Ok(want)), "round {round}, file {i}");
            }
        }
    }

    #[test]
    fn refuses_batches_larger_than_the_reader() {
        let Some(mut reader) = BatchReader::new(100) else {
            eprintln!("SKIP: this kernel offers no io_uring");
            return;
        };
        let f = tempfile::tempfile().expect("tempfile");
        assert!(reader.read(&[(f.as_fd(), 60), (f.as_fd(), 41)]).is_err());
        assert!(reader
            .read(&[(f.as_fd(), usize::MAX), (f.as_fd(), 2)])
            .is_err());
        let many = vec![(f.as_fd(), 1); MAX_FILES + 1];
        assert!(reader.read(&many).is_err());
        assert_eq!(
            reader.read(&[(f.as_fd(), 100)]).expect("fits"),
            vec![Ok(&[][..])]
        );
    }
}
