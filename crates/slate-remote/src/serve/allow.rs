//! Which request paths are served. From an archive repository, only what a
//! pull asks for (`docs/format/remote.md`): the summary and its signature,
//! objects, packs and their indexes, commit signatures and deltas, each by
//! its one shape of name. From any other folder (`--any-folder`), any file
//! but hidden ones (a component starting with `.`), private keys (`*.pem`)
//! and a repository's private parts (`config`, `lock`, `tmp/`,
//! `remotes/`, `corrupt/`). Symlinks are refused when the file is opened.

fn hex(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `NAME.suffix` with NAME `n` lowercase hex digits and suffix one of `suffixes`.
fn hex_name(s: &str, n: usize, suffixes: &[&str]) -> bool {
    s.split_once('.')
        .is_some_and(|(name, suffix)| hex(name, n) && suffixes.contains(&suffix))
}

/// A path a pull of an archive repository asks for.
pub(super) fn in_repository(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["summary.json"] | ["summary.sig"] => true,
        ["objects", "pack", f] => hex_name(f, 64, &["pack", "idx"]),
        ["objects", dir, f] => hex(dir, 2) && hex_name(f, 62, &["file", "tree", "commit"]),
        ["signatures", commit, f] => hex(commit, 64) && hex_name(f, 16, &["sig"]),
        ["deltas", to, f] => {
            hex(to, 64)
                && f.strip_suffix(".delta")
                    .is_some_and(|from| from == "empty" || hex(from, 64))
        }
        _ => false,
    }
}

/// A path served from any folder.
pub(super) fn in_folder(path: &str) -> bool {
    let first = path.split('/').next().unwrap_or("");
    let private = matches!(first, "tmp" | "remotes" | "lock" | "corrupt" | "config");
    !private
        && !path.split('/').any(|c| c.is_empty() || c.starts_with('.'))
        && !path.to_ascii_lowercase().ends_with(".pem")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths() {
        let h64 = "ab".repeat(32);
        let h62 = "c".repeat(62);
        for ok in [
            "summary.json".to_string(),
            "summary.sig".into(),
            format!("objects/pack/{h64}.pack"),
            format!("objects/pack/{h64}.idx"),
            format!("objects/0f/{h62}.file"),
            format!("objects/0f/{h62}.commit"),
            format!("signatures/{h64}/0123456789abcdef.sig"),
            format!("deltas/{h64}/empty.delta"),
            format!("deltas/{h64}/{h64}.delta"),
        ] {
            assert!(in_repository(&ok), "{ok}");
        }
        for bad in [
            "config".to_string(),
            "lock".into(),
            "refs/heads/os/main".into(),
            "remotes/origin/config.toml".into(),
            "tmp/x".into(),
            "key.pem".into(),
            format!("signatures/{h64}/cfg"),
            format!("signatures/{h64}/0123456789ABCDEF.sig"),
            format!("objects/pack/{h64}.pack.part"),
            format!("objects/0f/{h62}.file/x"),
            format!("objects/0F/{h62}.file"),
            format!("deltas/{h64}/other.delta"),
            format!("objects/pack/../{h64}.pack"),
            "".into(),
        ] {
            assert!(!in_repository(&bad), "{bad}");
        }
    }

    #[test]
    fn folder_paths() {
        assert!(in_folder("action") && in_folder("a/b/c.txt"));
        for bad in [
            "key.pem",
            "keys/Signing.PEM",
            ".git/config",
            "a/.hidden",
            "config",
            "lock",
            "tmp/x",
            "a//b",
        ] {
            assert!(!in_folder(bad), "{bad}");
        }
    }
}
