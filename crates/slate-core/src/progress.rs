//! How far long work has come: counters that the working threads add to
//! and another thread may read meanwhile (to draw a status line). Every
//! long operation of the library (commit, checkout, fsck, pull, export,
//! prune) takes one.

use std::sync::atomic::{AtomicU64, Ordering};

/// Items done out of a total (0 while the total is not known yet), bytes
/// moved, and new objects stored.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
    bytes: AtomicU64,
    new: AtomicU64,
    /// Bytes received from a remote, and how many are expected (0: not
    /// known yet).
    fetched: AtomicU64,
    fetch_total: AtomicU64,
}

impl Progress {
    pub fn set_total(&self, n: u64) {
        self.total.store(n, Ordering::Relaxed);
    }
    pub fn add(&self, items: u64, bytes: u64) {
        if items > 0 {
            self.done.fetch_add(items, Ordering::Relaxed);
        }
        if bytes > 0 {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }
    /// Count objects that were not stored before.
    pub fn add_new(&self, objects: u64) {
        self.new.fetch_add(objects, Ordering::Relaxed);
    }
    pub fn add_fetched(&self, bytes: u64) {
        self.fetched.fetch_add(bytes, Ordering::Relaxed);
    }
    /// Expect `bytes` more to be fetched.
    pub fn add_fetch_total(&self, bytes: u64) {
        self.fetch_total.fetch_add(bytes, Ordering::Relaxed);
    }
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }
    pub fn fetch_total(&self) -> u64 {
        self.fetch_total.load(Ordering::Relaxed)
    }
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    pub fn new_objects(&self) -> u64 {
        self.new.load(Ordering::Relaxed)
    }
}
