//! The one place with `unsafe`: restore the default SIGPIPE action, so that
//! `slate log | head` ends quietly like any Unix tool instead of failing on
//! a closed pipe (Rust ignores SIGPIPE by default).

#![allow(unsafe_code)]

pub fn restore_default() {
    // SAFETY: called first thing in `main`, before any other thread exists;
    // SIG_DFL is a valid disposition for SIGPIPE and no handler code runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
