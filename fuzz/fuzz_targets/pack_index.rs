//! Pack indexes: any bytes are a valid index or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = slate_core::store::check_pack_index(data) {
        assert_eq!(data.len(), 12 + n * 57 + 32);
    }
});
