//! The object decoders: any bytes decode or are refused, never panic; what
//! decodes encodes back to the same bytes (the encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use slate_core::object::{Commit, FileHeader, Tree};

fuzz_target!(|data: &[u8]| {
    if let Ok((h, n)) = FileHeader::decode_prefix(data) {
        assert_eq!(h.encode(), &data[..n]);
    }
    if let Ok(t) = Tree::decode(data) {
        assert_eq!(t.encode(), data);
    }
    if let Ok(c) = Commit::decode(data) {
        assert_eq!(c.encode(), data);
    }
});
