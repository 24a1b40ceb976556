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

/// The most URLs and keys one remote may list.
const MAX_URLS: usize = 16;
const MAX_KEYS: usize = 16;

impl RemoteConfig {
    /// Whether the configuration is usable: one to 16 `http(s)://` URLs
    /// (no whitespace or control characters), keys that are Ed25519
    /// public keys (at most 16), and either keys or `no_sign_verify`.
    pub fn check(&self) -> Result<(), Error> {
        if self.urls.is_empty() {
            return Err(Error::Config("a remote needs at least one URL".into()));
        }
        if self.urls.len() > MAX_URLS || self.keys.len() > MAX_KEYS {
            return Err(Error::Config(format!(
                "a remote lists at most {MAX_URLS} URLs and {MAX_KEYS} keys"
            )));
        }
        for u in &self.urls {
            let rest = u
                .strip_prefix("http://")
                .or_else(|| u.strip_prefix("https://"));
            if rest.is_none_or(str::is_empty)
                || u.len() > 2048
                || u.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(Error::Config(format!(
                    "{u:?}: a remote's URL starts with http:// or https:// and has no spaces or control characters"
                )));
            }
        }
        if self.keys.is_empty() && !self.no_sign_verify {
            return Err(Error::Config(
                "say how the remote's signatures are checked: --sign-verify PUBKEY (repeatable), or --no-sign-verify".into(),
            ));
        }
        self.public_keys()?;
        Ok(())
    }

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
    cfg.check()?;
    if dir(repo, name).join("config.toml").exists() {
        return Err(Error::Config(format!(
            "remote {name} exists already (delete it first)"
        )));
    }
    write_toml(&dir(repo, name), "config.toml", cfg)
}

/// The file of a remote the repository's own configuration names.
const CONFIG: &str = "config.toml";
/// The file of a remote an image provides (`/usr/lib/slate/remotes.d/`),
/// copied by the sysroot ([`set_provided`]); the repository's own
/// configuration of the same name wins over it.
const PROVIDED: &str = "provided.toml";

/// Where a remote's configuration comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// The repository's own (`slate remote add`, `slate admin remote add`).
    Repo,
    /// An image's `/usr/lib/slate/remotes.d/NAME.toml` (`from`: the
    /// deployment and file it was read from).
    Image { from: String },
}

/// A provided remote as the repository keeps it.
#[derive(Serialize, Deserialize)]
struct Provided {
    from: String,
    #[serde(flatten)]
    config: RemoteConfig,
}

fn read_file(repo: &Repo, name: &str, file: &str) -> Result<Option<String>, Error> {
    let p = dir(repo, name).join(file);
    match std::fs::read_to_string(&p) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&p, e)),
    }
}

/// The configuration of remote `name` and where it comes from: the
/// repository's own, else one an image provides; [`Error::NoSuchRemote`]
/// when there is neither.
pub fn get_with_source(repo: &Repo, name: &str) -> Result<(RemoteConfig, Source), Error> {
    validate_name(name)?;
    let bad = |file: &str, e: &dyn std::fmt::Display| {
        Error::Config(format!("{}: {e}", dir(repo, name).join(file).display()))
    };
    if let Some(t) = read_file(repo, name, CONFIG)? {
        let c = toml::from_str(&t).map_err(|e| bad(CONFIG, &e))?;
        return Ok((c, Source::Repo));
    }
    if let Some(t) = read_file(repo, name, PROVIDED)? {
        let p: Provided = toml::from_str(&t).map_err(|e| bad(PROVIDED, &e))?;
        p.config.check().map_err(|e| bad(PROVIDED, &e))?;
        return Ok((p.config, Source::Image { from: p.from }));
    }
    Err(Error::NoSuchRemote {
        name: name.to_string(),
        repo: repo.path().to_path_buf(),
    })
}

/// The configuration of remote `name`: [`Error::NoSuchRemote`] when the
/// repository has none of that name.
pub fn get(repo: &Repo, name: &str) -> Result<RemoteConfig, Error> {
    get_with_source(repo, name).map(|(c, _)| c)
}

/// Whether the repository has a remote `name` (its own configuration or
/// one an image provides).
pub fn exists(repo: &Repo, name: &str) -> bool {
    is_name(name)
        && (dir(repo, name).join(CONFIG).is_file() || dir(repo, name).join(PROVIDED).is_file())
}

/// Every remote, its configuration and where it comes from, by name.
pub fn list_with_source(repo: &Repo) -> Result<Vec<(String, RemoteConfig, Source)>, Error> {
    let d = repo.path().join("remotes");
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&d) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if exists(repo, &name) {
            let (c, src) = get_with_source(repo, &name)?;
            out.push((name, c, src));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

pub fn list(repo: &Repo) -> Result<Vec<(String, RemoteConfig)>, Error> {
    Ok(list_with_source(repo)?
        .into_iter()
        .map(|(n, c, _)| (n, c))
        .collect())
}

/// Remove the repository's own configuration of `name`, with its state
/// and cache; a remote an image provides stays (it is the image's: a
/// configuration of the same name overrides it).
pub fn delete(repo: &Repo, name: &str) -> Result<(), Error> {
    let (_, src) = get_with_source(repo, name)?;
    let d = dir(repo, name);
    if let Source::Image { from } = src {
        return Err(Error::Config(format!(
            "remote {name} is provided by the image ({from}): it cannot be removed; \
             `remote add {name} ...` overrides it"
        )));
    }
    if d.join(PROVIDED).is_file() {
        let p = d.join(CONFIG);
        return std::fs::remove_file(&p).map_err(|e| Error::io(&p, e));
    }
    std::fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))
}

/// Make the remotes images provide exactly `provided` (name,
/// configuration, where it was read): each written (atomically) where it
/// differs, the others of earlier images removed. Their state (the last
/// summary's time) is kept while the name is provided or configured.
/// Whether anything changed.
pub fn set_provided(
    repo: &Repo,
    provided: &[(String, RemoteConfig, String)],
) -> Result<bool, Error> {
    // The repository may be a disk's: its remotes' folders are written
    // in only where they are folders, never through a symlink.
    let no_link = |p: &Path| match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() || !m.is_dir() => Err(Error::Config(format!(
            "{}: not a folder (a symlink or a file): the image's remotes are not written there",
            p.display()
        ))),
        _ => Ok(()),
    };
    no_link(&repo.path().join("remotes"))?;
    for (name, _, _) in provided {
        if is_name(name) {
            no_link(&dir(repo, name))?;
        }
    }
    let mut changed = false;
    for (name, config, from) in provided {
        validate_name(name)?;
        config.check()?;
        let text = toml::to_string(&Provided {
            from: from.clone(),
            config: config.clone(),
        })
        .expect("plain data serializes");
        if read_file(repo, name, PROVIDED)?.as_deref() != Some(text.as_str()) {
            let d = dir(repo, name);
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
            let fd = fsutil::open_dir(&d).map_err(|e| Error::io(&d, e))?;
            fsutil::atomic_write_at(&fd, PROVIDED, text.as_bytes(), 0o644)
                .map_err(|e| Error::io(&d.join(PROVIDED), e))?;
            changed = true;
        }
    }
    let d = repo.path().join("remotes");
    let Ok(rd) = std::fs::read_dir(&d) else {
        return Ok(changed);
    };
    for e in rd.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let rd = dir(repo, &name);
        if !is_name(&name)
            || !rd.join(PROVIDED).is_file()
            || provided.iter().any(|(n, _, _)| *n == name)
        {
            continue;
        }
        if rd.join(CONFIG).is_file() {
            let p = rd.join(PROVIDED);
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        } else {
            std::fs::remove_dir_all(&rd).map_err(|e| Error::io(&rd, e))?;
        }
        changed = true;
    }
    Ok(changed)
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
