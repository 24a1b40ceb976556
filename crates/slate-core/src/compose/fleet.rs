//! The manifest's `[fleet]`: the fleet server an image's machines report
//! to. Compose writes the agent's settings (`/usr/lib/slate/fleet.toml`),
//! the server's CA certificate (`/usr/lib/slate/fleet-ca.pem`, a file
//! below the manifest's folder, pinned by the agent) and the agent's units
//! (`slate-agent.service`, `slate-agent.timer`, and
//! `slate-state-restore.service`, which brings a replaced machine's SSH
//! host keys back before sshd; enabled in `/usr`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::image::Added;
use super::Error;

pub const CONFIG: &str = "usr/lib/slate/fleet.toml";
pub const CA: &str = "/usr/lib/slate/fleet-ca.pem";
const UNITS: &[(&str, &str)] = &[
    (
        "usr/lib/systemd/system/slate-agent.service",
        include_str!("../../../../dist/systemd/slate-agent.service"),
    ),
    (
        "usr/lib/systemd/system/slate-agent.timer",
        include_str!("../../../../dist/systemd/slate-agent.timer"),
    ),
    (
        "usr/lib/systemd/system/slate-state-restore.service",
        include_str!("../../../../dist/systemd/slate-state-restore.service"),
    ),
];
const TIMER_WANTS: &str = "usr/lib/systemd/system/timers.target.wants/slate-agent.timer";
const RESTORE_WANTS: &str =
    "usr/lib/systemd/system/multi-user.target.wants/slate-state-restore.service";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Fleet {
    /// `https://HOST[:PORT]`.
    pub url: Spanned<String>,
    pub group: Spanned<String>,
    /// The server's CA certificate (PEM), below the manifest's folder.
    pub ca: Option<Spanned<String>>,
    /// The system credential holding the enrollment token.
    #[serde(default = "credential")]
    pub token_credential: Spanned<String>,
    /// `ca`, checked and made absolute.
    #[serde(skip)]
    pub ca_source: Option<PathBuf>,
}

fn credential() -> Spanned<String> {
    Spanned::new(0..0, "slate-fleet-token".to_string())
}

/// What the agent reads (`slate_fleet::agent::FileConfig`).
#[derive(Serialize)]
struct Config<'a> {
    url: &'a str,
    group: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca: Option<&'a str>,
    token_credential: &'a str,
}

impl Fleet {
    /// Every field checked; `ca` resolved below `roots`. The error's byte
    /// offset and message.
    pub fn check(&mut self, dir: &Path, roots: &[PathBuf]) -> Result<(), (usize, String)> {
        let url = self.url.get_ref();
        let ok = (url.starts_with("https://") || url.starts_with("http://"))
            && url.len() <= 256
            && url.len() > "https://".len()
            && url.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err((
                self.url.span().start,
                format!("url {url:?} is not an https:// URL"),
            ));
        }
        let g = self.group.get_ref();
        let ok = (1..=64).contains(&g.len())
            && g.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && g.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'));
        if !ok {
            return Err((
                self.group.span().start,
                format!("group {g:?} is not a group name"),
            ));
        }
        let c = self.token_credential.get_ref();
        let ok = !c.is_empty()
            && c.len() <= 64
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && !c.starts_with('.');
        if !ok {
            return Err((
                self.token_credential.span().start,
                format!("token-credential {c:?} is not a credential name"),
            ));
        }
        if let Some(ca) = &self.ca {
            let real = super::files::check_source(&dir.join(ca.get_ref()), roots)
                .map_err(|m| (ca.span().start, format!("ca: {m}")))?;
            if !real.is_file() {
                return Err((
                    ca.span().start,
                    format!("ca {:?} is not a file", ca.get_ref()),
                ));
            }
            self.ca_source = Some(real);
        }
        Ok(())
    }
}

/// Put the agent's settings, the CA and the units into the tree.
pub fn apply(tree: &Path, f: &Fleet, roots: &[PathBuf], out: &mut Added) -> Result<(), Error> {
    if let Some(src) = &f.ca_source {
        super::files::add(tree, src, CA, roots)?;
        out.files.push(CA.to_string());
    }
    let config = Config {
        url: f.url.get_ref(),
        group: f.group.get_ref(),
        ca: f.ca_source.as_ref().map(|_| CA),
        token_credential: f.token_credential.get_ref(),
    };
    let text = format!(
        "# The fleet agent's settings (slate compose, from the manifest's [fleet]).\n{}",
        toml::to_string(&config).expect("plain strings serialize")
    );
    super::image::write_file(tree, CONFIG, &text, out)?;
    for (rel, text) in UNITS {
        super::image::write_file(tree, rel, text, out)?;
    }
    super::image::symlink(tree, TIMER_WANTS, "../slate-agent.timer")?;
    out.enabled.push("slate-agent.timer".into());
    super::image::symlink(tree, RESTORE_WANTS, "../slate-state-restore.service")?;
    out.enabled.push("slate-state-restore.service".into());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(url: &str, group: &str, ca: Option<&str>) -> Fleet {
        Fleet {
            url: Spanned::new(0..1, url.into()),
            group: Spanned::new(2..3, group.into()),
            ca: ca.map(|c| Spanned::new(4..5, c.into())),
            token_credential: credential(),
            ca_source: None,
        }
    }

    #[test]
    fn fields_are_checked_and_the_ca_kept_below_the_manifests_folder() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(d.path().join("ca.pem"), "-----BEGIN CERTIFICATE-----\n").expect("ca");
        let roots = super::super::files::roots(d.path(), &[]).expect("roots");
        let mut f = fleet("https://fleet.example:8443", "web", Some("ca.pem"));
        f.check(d.path(), &roots).expect("good");
        assert!(f.ca_source.as_ref().is_some_and(|p| p.ends_with("ca.pem")));
        for (mut bad, at, words) in [
            (fleet("ftp://x", "web", None), 0, "not an https"),
            (fleet("https://x y", "web", None), 0, "not an https"),
            (fleet("https://x", "../web", None), 2, "not a group name"),
            (fleet("https://x", "web", Some("/etc/passwd")), 4, "outside"),
            (fleet("https://x", "web", Some(".")), 4, "not a file"),
        ] {
            let e = bad.check(d.path(), &roots).expect_err(words);
            assert_eq!(e.0, at, "{e:?}");
            assert!(e.1.contains(words), "{e:?}");
        }
    }

    #[test]
    fn the_settings_ca_and_enabled_timer_are_written() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(d.path().join("ca.pem"), "CA\n").expect("ca");
        let tree = d.path().join("tree");
        std::fs::create_dir(&tree).expect("tree");
        let roots = super::super::files::roots(d.path(), &[]).expect("roots");
        let mut f = fleet("https://fleet.example", "web", Some("ca.pem"));
        f.check(d.path(), &roots).expect("good");
        let mut added = Added::default();
        apply(&tree, &f, &roots, &mut added).expect("applied");
        let text = std::fs::read_to_string(tree.join(CONFIG)).expect("config");
        let v: toml::Table = toml::from_str(&text).expect("toml");
        assert_eq!(v["url"].as_str(), Some("https://fleet.example"));
        assert_eq!(v["ca"].as_str(), Some(CA));
        assert_eq!(v["token_credential"].as_str(), Some("slate-fleet-token"));
        assert_eq!(
            std::fs::read_to_string(tree.join(CA.trim_start_matches('/'))).expect("ca"),
            "CA\n"
        );
        assert_eq!(
            std::fs::read_link(tree.join(TIMER_WANTS)).expect("link"),
            Path::new("../slate-agent.timer")
        );
        assert!(tree
            .join("usr/lib/systemd/system/slate-agent.service")
            .is_file());
        assert_eq!(
            std::fs::read_link(tree.join(RESTORE_WANTS)).expect("link"),
            Path::new("../slate-state-restore.service")
        );
    }
}
