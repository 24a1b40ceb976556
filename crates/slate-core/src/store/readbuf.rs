//! Buffers that file contents are read into before they are hashed and
//! stored.
//!
//! A scan runs dozens of threads. Each keeps one buffer of up to
//! [`KEPT_PER_THREAD`] bytes for the files it reads. Larger files (up to the
//! in-memory limit of a few MiB) borrow from a small shared pool instead, so
//! their memory stays mapped from one large file to the next: a buffer
//! allocated and freed per file costs a fresh mapping, a page fault per
//! page and its zeroing, more than reading the file itself.
//!
//! Contents are read into a buffer's spare capacity, so nothing is zeroed
//! before the kernel overwrites it.

use std::cell::RefCell;
use std::os::fd::BorrowedFd;
use std::sync::Mutex;

use rustix::io::Errno;

/// Files up to this size are read into memory once and hashed before
/// anything is written; larger ones are streamed to a temporary object.
pub(super) const SMALL_FILE: u64 = 4 << 20;
/// A buffer that holds any file read into memory, and one byte more.
const SMALL_FILE_CAP: usize = SMALL_FILE as usize + 1;

/// What a thread's own buffer may keep between files.
pub(super) const KEPT_PER_THREAD: usize = 1 << 20;
/// How many large buffers the pool keeps while none is in use.
const POOL_KEPT: usize = 8;

thread_local! {
    static OWN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Run `f` with an empty buffer of at least `need` bytes of capacity.
pub(super) fn with_buf<R>(need: usize, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    if need <= KEPT_PER_THREAD {
        return OWN.with(|own| {
            let mut buf = own.borrow_mut();
            buf.clear();
            if buf.capacity() < need {
                // Allocate anew rather than reserve: nothing needs copying.
                *buf = Vec::with_capacity(need.next_power_of_two().max(64 << 10));
            }
            f(&mut buf)
        });
    }
    let taken = POOL
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop()
        .filter(|b| b.capacity() >= need);
    let mut buf = taken.unwrap_or_else(|| Vec::with_capacity(need.max(SMALL_FILE_CAP)));
    buf.clear();
    let r = f(&mut buf);
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < POOL_KEPT {
        pool.push(buf);
    }
    r
}

/// Append the contents of the regular file `fd` to `buf` until its spare
/// capacity is full or the file ends; returns how many bytes were read. A
/// short read of a regular file means its end, so no extra read is made.
pub(super) fn read_regular(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let start = buf.len();
    while buf.len() < buf.capacity() {
        let asked = buf.capacity() - buf.len();
        match rustix::io::read(fd, rustix::buffer::spare_capacity(buf)) {
            Ok(0) => break,
            Ok(n) => {
                if n < asked && n < (1 << 30) {
                    break;
                }
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(buf.len() - start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_whole_files_small_and_large_and_reuses_pool_buffers() {
        let dir = tempfile::tempdir().expect("tempdir");
        for size in [0usize, 1, 4095, 70_000, KEPT_PER_THREAD + 1, 3 << 20] {
            let path = dir.path().join(format!("f{size}"));
            let data: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
            std::fs::File::create(&path)
                .and_then(|mut f| f.write_all(&data))
                .expect("write");
            let file = std::fs::File::open(&path).expect("open");
            use std::os::fd::AsFd;
            let got = with_buf(size + 1, |buf| {
                assert!(buf.is_empty() && buf.capacity() > size);
                let n = read_regular(file.as_fd(), buf).expect("read");
                assert_eq!(n, size);
                buf.clone()
            });
            assert_eq!(got, data, "content of a {size}-byte file");
        }
        // A large buffer returned to the pool is handed out again, empty.
        let cap = with_buf(KEPT_PER_THREAD + 1, |b| {
            b.extend_from_slice(b"old");
            b.capacity()
        });
        with_buf(KEPT_PER_THREAD + 1, |b| {
            assert!(b.is_empty());
            assert!(b.capacity() >= cap.min(KEPT_PER_THREAD + 1));
        });
    }
}
