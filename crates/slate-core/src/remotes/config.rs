//! Remotes of a repository: `REPO/remotes/NAME/config.toml` (the mirrors'
//! URLs and the keys its summaries and commits must be signed with) and
//! `REPO/remotes/NAME/state.toml` (the timestamp of the last summary
//! accepted, so an older one is refused as a replay). Files only: nothing
//! here touches the network.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Error;
use crate::fsutil;
use crate::sign::PublicKey;
use crate::store::Repo;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteConfig {
    /// Base URLs, tried in order (mirrors).
    pub urls: Vec<String>,
    /// Trusted public keys (PEM). Empty: signatures are not checked.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Signatures are not required (said explicitly at `remote add`).
    #[serde(default)]
    pub no_sign_verify: bool,
}

impl RemoteConfig {
    pub fn public_keys(&self) -> Result<Vec<PublicKey>, Error> {
        self.keys
            .iter()
            .map(|k| {
                PublicKey::from_pem(k)
                    .map_err(|e| Error::Config(format!("a key of the remote: {e}")))
            })
            .collect()
    }
    pub fn verifies(&self) -> bool {
        !self.no_sign_verify
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteState {
    /// The timestamp of the newest summary accepted from the remote.
    pub summary_timestamp: i64,
}

/// Letters, digits, `.`, `_`, `-`; not starting with `.` or `-`.
pub fn validate_name(name: &str) -> Result<(), Error> {
    if is_name(name) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{name:?} is not a remote name: use letters, digits, '.', '_' and '-'"
        )))
    }
}

pub(crate) fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn dir(repo: &Repo, name: &str) -> PathBuf {
    repo.path().join("remotes").join(name)
}

fn write_toml<T: Serialize>(dir: &Path, file: &str, v: &T) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let fd = fsutil::open_dir(dir).map_err(|e| Error::io(dir, e))?;
    let text = toml::to_string(v).expect("plain data serializes");
    fsutil::atomic_write_at(&fd, file, text.as_bytes(), 0o644)
        .map_err(|e| Error::io(&dir.join(file), e))
}

/// Add a remote (an error if it exists).
pub fn add(repo: &Repo, name: &str, cfg: &RemoteConfig) -> Result<(), Error> {
    validate_name(name)?;
    if cfg.urls.is_empty() {
        return Err(Error::Config("a remote needs at least one URL".into()));
    }
    for u in &cfg.urls {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(Error::Config(format!(
                "{u:?}: a remote's URL starts with http:// or https://"
            )));
        }
    }
    if cfg.keys.is_empty() && !cfg.no_sign_verify {
        return Err(Error::Config(
            "say how the remote's signatures are checked: --sign-verify PUBKEY (repeatable), or --no-sign-verify".into(),
        ));
    }
    if dir(repo, name).join("config.toml").exists() {
        return Err(Error::Config(format!(
            "remote {name} exists already (delete it first)"
        )));
    }
    cfg.public_keys()?;
    write_toml(&dir(repo, name), "config.toml", cfg)
}

/// The configuration of remote `name`: [`Error::NoSuchRemote`] when the
/// repository has none of that name.
pub fn get(repo: &Repo, name: &str) -> Result<RemoteConfig, Error> {
    validate_name(name)?;
    let p = dir(repo, name).join("config.toml");
    match std::fs::read_to_string(&p) {
        Ok(t) => toml::from_str(&t).map_err(|e| Error::Config(format!("{}: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NoSuchRemote {
            name: name.to_string(),
            repo: repo.path().to_path_buf(),
        }),
        Err(e) => Err(Error::io(&p, e)),
    }
}

/// Whether the repository has a remote `name` (a configuration file).
pub fn exists(repo: &Repo, name: &str) -> bool {
    is_name(name) && dir(repo, name).join("config.toml").is_file()
}

pub fn list(repo: &Repo) -> Result<Vec<(String, RemoteConfig)>, Error> {
    let d = repo.path().join("remotes");
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&d) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().join("config.toml").exists() {
            out.push((name.clone(), get(repo, &name)?));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

pub fn delete(repo: &Repo, name: &str) -> Result<(), Error> {
    get(repo, name)?;
    let d = dir(repo, name);
    std::fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))
}

pub fn state(repo: &Repo, name: &str) -> RemoteState {
    std::fs::read_to_string(dir(repo, name).join("state.toml"))
        .ok()
        .and_then(|t| toml::from_str(&t).ok())
        .unwrap_or_default()
}

pub fn set_state(repo: &Repo, name: &str, s: &RemoteState) -> Result<(), Error> {
    write_toml(&dir(repo, name), "state.toml", s)
}

/// Where a pull keeps what it has downloaded (to resume): below the
/// remote's directory, never in `tmp/` (cleared whenever the lock is taken).
pub fn cache_dir(repo: &Repo, name: &str) -> PathBuf {
    dir(repo, name).join("cache")
}

/// The local ref that tracks `REF` of remote `NAME`.
pub fn tracking_ref(name: &str, r: &str) -> String {
    format!("remotes/{name}/{r}")
}
