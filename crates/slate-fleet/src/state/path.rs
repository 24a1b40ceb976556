//! The paths a group keeps: absolute, below `/etc` or `/var`, no `.` or
//! `..`, no empty component, no control character. A pattern may hold one
//! `*` in its last component (`/etc/ssh/ssh_host_*`). Checked by the
//! server on every upload and by the agent on every answer.

use crate::wire::Invalid;

/// The longest kept path.
pub const MAX_PATH: usize = 1024;
/// The most patterns a group keeps.
pub const MAX_PATTERNS: usize = 64;
/// What a group keeps unless told otherwise.
pub const DEFAULT_KEEP: &str = "/etc/ssh/ssh_host_*";

fn bad(field: &str, why: &str) -> Invalid {
    Invalid {
        field: field.to_string(),
        why: why.to_string(),
    }
}

fn check_any(field: &str, p: &str, star: bool) -> Result<(), Invalid> {
    if p.len() > MAX_PATH {
        return Err(bad(field, "longer than 1024 bytes"));
    }
    if p.chars().any(char::is_control) {
        return Err(bad(field, "holds a control character"));
    }
    let Some(rest) = p.strip_prefix("/etc/").or_else(|| p.strip_prefix("/var/")) else {
        return Err(bad(field, "not below /etc or /var"));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    for (i, c) in parts.iter().enumerate() {
        if c.is_empty() || *c == "." || *c == ".." {
            return Err(bad(field, "has an empty, '.' or '..' component"));
        }
        let stars = c.matches('*').count();
        let last = i + 1 == parts.len();
        if stars > 0 && !(star && last && stars == 1) {
            return Err(bad(
                field,
                "a '*' is allowed once, in the last component of a pattern",
            ));
        }
    }
    Ok(())
}

/// A kept file's path.
pub fn check(field: &str, p: &str) -> Result<(), Invalid> {
    check_any(field, p, false)
}

/// A pattern of a group's list.
pub fn check_pattern(field: &str, p: &str) -> Result<(), Invalid> {
    check_any(field, p, true)
}

/// Whether `path` matches `pattern` (a `*` matches any run of characters
/// but `/`).
pub fn matches(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == path,
        Some((pre, post)) => {
            path.len() >= pre.len() + post.len()
                && path.starts_with(pre)
                && path.ends_with(post)
                && !path[pre.len()..path.len() - post.len()].contains('/')
        }
    }
}

/// A group's list as stored (one pattern a line), checked.
pub fn parse_list(text: &str) -> Result<Vec<String>, Invalid> {
    let list: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if list.len() > MAX_PATTERNS {
        return Err(bad("keep", "more than 64 patterns"));
    }
    for (i, p) in list.iter().enumerate() {
        check_pattern(&format!("keep[{i}]"), p)?;
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_etc_and_var_without_climbing() {
        for ok in ["/etc/ssh/ssh_host_ed25519_key", "/var/lib/x", "/etc/a b"] {
            assert!(check("p", ok).is_ok(), "{ok}");
        }
        for bad in [
            "/usr/bin/sh",
            "etc/x",
            "/etc/",
            "/etc/../usr/x",
            "/etc/./x",
            "/etc//x",
            "/etc/x/",
            "/var/x\n",
            "/etc/ssh/*",
            "/etcx/y",
        ] {
            assert!(check("p", bad).is_err(), "{bad:?}");
        }
        assert!(check("p", &format!("/etc/{}", "a".repeat(MAX_PATH))).is_err());
        assert!(check_pattern("p", "/etc/ssh/ssh_host_*").is_ok());
        assert!(check_pattern("p", "/etc/*/x").is_err());
        assert!(check_pattern("p", "/etc/ssh/**").is_err());
    }

    #[test]
    fn a_star_matches_within_one_component() {
        assert!(matches(
            "/etc/ssh/ssh_host_*",
            "/etc/ssh/ssh_host_ed25519_key.pub"
        ));
        assert!(matches("/etc/ssh/ssh_host_*", "/etc/ssh/ssh_host_"));
        assert!(!matches("/etc/ssh/ssh_host_*", "/etc/ssh/ssh_host_x/y"));
        assert!(!matches("/etc/ssh/ssh_host_*", "/etc/ssh/sshd_config"));
        assert!(matches("/var/lib/a", "/var/lib/a"));
        assert!(!matches("/var/lib/a", "/var/lib/ab"));
        assert!(matches("/etc/*.key", "/etc/a.key"));
        assert!(!matches("/etc/a*a", "/etc/a"));
    }
}
