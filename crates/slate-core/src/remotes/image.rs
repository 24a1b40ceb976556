//! Remotes an image brings: `/usr/lib/slate/remotes.d/NAME.toml`, written
//! by compose from a manifest's `[remote]` and read by every sysroot that
//! deploys the image (`docs/format/remote.md`). A file in an image or on a
//! disk is untrusted: its name, size, keys and URLs are checked here
//! before any is used.

use serde::{Deserialize, Serialize};

use super::config::{is_name, RemoteConfig};
use super::Error;

/// The folder of an image's remotes, below its root.
pub const REMOTES_D: &str = "usr/lib/slate/remotes.d";
/// The largest file read.
pub const MAX_FILE: u64 = 64 << 10;
/// The most files of one image read.
pub const MAX_FILES: usize = 64;

/// The file's keys: the same as a repository's remote configuration.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    urls: Vec<String>,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default, rename = "no-sign-verify")]
    no_sign_verify: bool,
}

/// The remote name a file of `remotes.d` is for: `NAME.toml`, NAME a
/// remote name; `None` for any other file (not a remote's).
pub fn file_remote(file_name: &[u8]) -> Option<&str> {
    let n = std::str::from_utf8(file_name).ok()?.strip_suffix(".toml")?;
    is_name(n).then_some(n)
}

/// The remote `name` of the file `what` (for messages), checked: at
/// most [`MAX_FILE`] bytes of UTF-8 TOML with known keys only, URLs and
/// keys as [`RemoteConfig::check`] wants them.
pub fn parse_file(what: &str, bytes: &[u8]) -> Result<RemoteConfig, Error> {
    let bad = |m: String| Error::Config(format!("{what}: {m}"));
    if bytes.len() as u64 > MAX_FILE {
        return Err(bad(format!("larger than {MAX_FILE} bytes")));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| bad(format!("not UTF-8: {e}")))?;
    let f: File = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
    let c = RemoteConfig {
        urls: f.urls,
        keys: f.keys,
        no_sign_verify: f.no_sign_verify,
    };
    c.check().map_err(|e| bad(e.to_string()))?;
    Ok(c)
}

/// The text of a remote's file in `remotes.d`.
pub fn render_file(c: &RemoteConfig) -> String {
    let mut t = String::from(
        "# A remote this image's machines update from (slate compose, [remote]).\n\
         # A remote of the same name in the sysroot's repository overrides it.\n",
    );
    t.push_str(
        &toml::to_string(&File {
            urls: c.urls.clone(),
            keys: c.keys.clone(),
            no_sign_verify: c.no_sign_verify,
        })
        .expect("plain data serializes"),
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> String {
        crate::sign::SecretKey::generate()
            .expect("random")
            .public()
            .to_pem()
    }

    #[test]
    fn a_file_round_trips_and_names_are_checked() {
        let c = RemoteConfig {
            urls: vec!["https://updates.example.org/os".into()],
            keys: vec![key()],
            no_sign_verify: false,
        };
        let text = render_file(&c);
        assert_eq!(parse_file("x.toml", text.as_bytes()).expect("parses"), c);
        assert_eq!(file_remote(b"origin.toml"), Some("origin"));
        for bad in [
            &b"origin"[..],
            b".x.toml",
            b"a b.toml",
            b"\xff.toml",
            b"../x.toml",
        ] {
            assert_eq!(file_remote(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hostile_files_are_refused_naming_the_file() {
        let k = key();
        let cases: Vec<(String, &str)> = vec![
            (
                "urls = [\"file:///etc\"]\nno-sign-verify = true\n".into(),
                "http://",
            ),
            (
                "urls = [\"https://a b\"]\nno-sign-verify = true\n".into(),
                "no spaces",
            ),
            (
                "urls = []\nno-sign-verify = true\n".into(),
                "at least one URL",
            ),
            ("urls = [\"https://a\"]\n".into(), "--sign-verify"),
            (
                "urls = [\"https://a\"]\nkeys = [\"not a key\"]\n".into(),
                "key",
            ),
            (
                format!("urls = [\"https://a\"]\nkeys = [{k:?}]\ncolour = 1\n"),
                "unknown field",
            ),
            (
                format!(
                    "urls = {:?}\nno-sign-verify = true\n",
                    vec!["https://a"; 17]
                ),
                "at most",
            ),
            ("x".repeat(70 << 10), "larger than"),
        ];
        for (text, want) in cases {
            let e = parse_file("IMG/usr/lib/slate/remotes.d/o.toml", text.as_bytes())
                .expect_err(&text)
                .to_string();
            assert!(e.contains(want) && e.contains("remotes.d/o.toml"), "{e}");
        }
        assert!(parse_file("f", b"\xff\xfe").is_err());
    }

    proptest::proptest! {
        /// Any bytes: an error naming the file, or a remote that passes
        /// its checks and reads back the same once written.
        #[test]
        fn any_bytes_are_refused_or_read_back(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            match parse_file("d/x.toml", &bytes) {
                Ok(c) => {
                    c.check().expect("checked");
                    proptest::prop_assert_eq!(parse_file("x", render_file(&c).as_bytes()).expect("again"), c);
                }
                Err(e) => proptest::prop_assert!(e.to_string().contains("d/x.toml")),
            }
        }

        #[test]
        fn toml_like_text_is_refused_or_read_back(text in "(urls|keys|no-sign-verify|x) = (\\[\"https?://[a-z ]{0,5}\"\\]|true|\"[a-z]{0,4}\")\n{0,3}") {
            if let Ok(c) = parse_file("x", text.as_bytes()) {
                proptest::prop_assert_eq!(parse_file("x", render_file(&c).as_bytes()).expect("again"), c);
            }
        }
    }
}

#[cfg(test)]
mod provided_tests {
    use crate::remotes::config::{self, RemoteConfig, Source};
    use crate::store::{Repo, RepoMode};

    fn cfg(url: &str) -> RemoteConfig {
        RemoteConfig {
            urls: vec![url.into()],
            keys: Vec::new(),
            no_sign_verify: true,
        }
    }

    #[test]
    fn provided_remotes_yield_to_the_repository_and_go_with_their_image() {
        let d = tempfile::tempdir().expect("tmp");
        let repo = Repo::init(&d.path().join("r"), RepoMode::BareUser).expect("init");
        let img = vec![(
            "origin".to_string(),
            cfg("https://a"),
            "os/x:/f".to_string(),
        )];
        assert!(config::set_provided(&repo, &img).expect("set"));
        assert!(
            !config::set_provided(&repo, &img).expect("again"),
            "rewritten"
        );
        let (c, src) = config::get_with_source(&repo, "origin").expect("get");
        assert_eq!(c.urls, ["https://a"]);
        assert_eq!(
            src,
            Source::Image {
                from: "os/x:/f".into()
            }
        );
        assert!(config::delete(&repo, "origin").is_err());
        // The repository's own wins; removed, the image's is back.
        config::add(&repo, "origin", &cfg("https://b")).expect("add");
        assert_eq!(
            config::get(&repo, "origin").expect("get").urls,
            ["https://b"]
        );
        config::delete(&repo, "origin").expect("delete");
        assert_eq!(
            config::get(&repo, "origin").expect("get").urls,
            ["https://a"]
        );
        // No image provides it any more: gone.
        assert!(config::set_provided(&repo, &[]).expect("clear"));
        assert!(!config::exists(&repo, "origin"));
    }

    #[test]
    fn a_remotes_folder_that_is_a_symlink_is_not_written_through() {
        let d = tempfile::tempdir().expect("tmp");
        let repo = Repo::init(&d.path().join("r"), RepoMode::BareUser).expect("init");
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::create_dir_all(repo.path().join("remotes")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, repo.path().join("remotes/origin")).expect("link");
        let img = vec![("origin".to_string(), cfg("https://a"), "f".to_string())];
        let e = config::set_provided(&repo, &img).expect_err("through a link");
        assert!(e.to_string().contains("not a folder"), "{e}");
        assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0);
    }
}
