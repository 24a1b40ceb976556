//! Redirects, followed by the client itself: a few hops, to `http` and
//! `https` only, never from `https` down to `http`. Every hop is recorded
//! (a pull reports where its requests led).

use serde::Serialize;

/// At most this many redirects for one request.
pub const MAX_REDIRECTS: usize = 5;

/// The statuses that redirect a GET.
pub(super) fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// One redirect a server answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Redirect {
    pub from: String,
    pub to: String,
    pub status: u16,
}

/// Where `location` (a `Location` header of a response to `base`) leads,
/// or why it is not followed.
pub(super) fn target(base: &str, location: &str) -> Result<String, String> {
    let base = url::Url::parse(base).map_err(|e| format!("{base}: {e}"))?;
    let mut to = base
        .join(location.trim())
        .map_err(|e| format!("not a URL ({e})"))?;
    match to.scheme() {
        "http" | "https" => {}
        s => return Err(format!("a {s}: URL (only http and https are followed)")),
    }
    if base.scheme() == "https" && to.scheme() == "http" {
        return Err("from https down to http".into());
    }
    if !to.username().is_empty() || to.password().is_some() {
        return Err("a URL with credentials".into());
    }
    to.set_fragment(None);
    Ok(to.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let b = "http://a.example/repo/summary.json";
        assert_eq!(
            target(b, "/other/summary.json").as_deref(),
            Ok("http://a.example/other/summary.json")
        );
        assert_eq!(
            target(b, "mirror/summary.json").as_deref(),
            Ok("http://a.example/repo/mirror/summary.json")
        );
        assert_eq!(
            target(b, "https://b.example/x#frag").as_deref(),
            Ok("https://b.example/x")
        );
        assert_eq!(
            target(b, "//c.example/y").as_deref(),
            Ok("http://c.example/y")
        );
        for bad in [
            "file:///etc/passwd",
            "ftp://x/y",
            "data:,hello",
            "http://user:pw@x/y",
            "http://[::1",
        ] {
            assert!(target(b, bad).is_err(), "{bad}");
        }
        assert!(target("https://a.example/s", "http://a.example/s").is_err());
        assert!(is_redirect(302) && is_redirect(308) && !is_redirect(304) && !is_redirect(300));
    }
}
