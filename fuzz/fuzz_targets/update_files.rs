//! The files an image or a disk gives a machine about its updates: a
//! remote of `/usr/lib/slate/remotes.d/` and an update policy
//! (`update.toml`). Any bytes are refused with an error naming the file,
//! or read into a configuration that passes its own checks; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slate_core::remotes::image;
use slate_core::update_policy::PolicyFile;

fuzz_target!(|data: &[u8]| {
    match image::parse_file("remotes.d/x.toml", data) {
        Ok(c) => {
            c.check().expect("a file read is a usable remote");
            let again = image::parse_file("x", image::render_file(&c).as_bytes());
            assert_eq!(again.expect("what is written reads back"), c);
        }
        Err(e) => assert!(e.to_string().contains("remotes.d/x.toml")),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        match PolicyFile::parse("update.toml", text) {
            Ok(f) => assert_eq!(
                PolicyFile::parse("again", &f.render()).expect("reads back"),
                f
            ),
            Err(e) => assert!(e.starts_with("update.toml")),
        }
    }
});
