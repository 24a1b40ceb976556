//! The lossless escape of names: every byte string escapes to text that
//! unescapes to it; any text unescapes or is refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slate_core::object::name;

fuzz_target!(|data: &[u8]| {
    let text = name::escape(data);
    assert_eq!(name::unescape(&text).expect("escaped text unescapes"), data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(bytes) = name::unescape(s) {
            assert_eq!(name::unescape(&name::escape(&bytes)).expect("round trip"), bytes);
        }
    }
});
