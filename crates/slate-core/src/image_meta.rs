//! What an image says about itself in its commit's metadata: its name and
//! version, and how deployments of it keep `/etc` and `/var`. Compose
//! writes these keys, deploy and install read them; this module is the one
//! place that knows their names and values (`docs/format/manifest.md`).
//! Pure: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The image's name (the manifest's `image.name`).
pub const NAME: &str = "slate.image.name";
/// The image's version (the manifest's `image.version`).
pub const VERSION: &str = "slate.image.version";
/// Where machines of the image update from, `REMOTE:REF` (the manifest's
/// `[remote]` name and its `image.ref`): the origin the first deployment
/// of the image records.
pub const ORIGIN: &str = "slate.image.origin";
/// How the image asks its deployments to keep `/etc` ([`EtcMode`]).
pub const DEPLOY_ETC: &str = "slate.deploy.etc";
/// How the image asks its deployments to keep `/var` ([`VarMode`]).
pub const DEPLOY_VAR: &str = "slate.deploy.var";

/// How the image asks its deployments to keep `/usr` ([`UsrMode`]).
pub const DEPLOY_USR: &str = "slate.deploy.usr";
/// The dm-verity root hash of the image's `/usr` (64 hex digits): what
/// compose computed, covered by the commit's signature; deploy builds the
/// image again and refuses it when its root hash differs.
pub const USR_VERITY: &str = "slate.usr.verity";

/// A commit's metadata: key, value.
pub type Metadata = BTreeMap<String, String>;

/// How an OS keeps `/etc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EtcMode {
    /// An empty tmpfs at every boot, filled from the image's factory defaults.
    Stateless,
    /// Each deployment has its own `/etc`, local changes carried over by a
    /// three-way merge at deploy time.
    Persistent,
}

/// How an OS keeps `/var`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VarMode {
    /// `SYSROOT/slate/state/OS/var`, shared by the OS's deployments.
    Persistent,
    /// An empty tmpfs at every boot.
    Volatile,
}

/// How a deployment holds `/usr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsrMode {
    /// A directory of hard links to the repository's objects.
    #[default]
    Plain,
    /// An EROFS image with a dm-verity hash tree, mounted through the
    /// kernel's dm-verity.
    Verity,
}

impl UsrMode {
    pub fn is_plain(&self) -> bool {
        *self == UsrMode::Plain
    }
}

impl std::fmt::Display for UsrMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UsrMode::Plain => "plain",
            UsrMode::Verity => "verity",
        })
    }
}

impl std::str::FromStr for UsrMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plain" => Ok(UsrMode::Plain),
            "verity" => Ok(UsrMode::Verity),
            _ => Err(format!("{s:?}: /usr is plain or verity")),
        }
    }
}

/// What an image says of its `/usr`: the mode it asks for, and the root
/// hash of its verity image when compose made one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageUsr {
    pub mode: Option<UsrMode>,
    pub root_hash: Option<String>,
}

impl ImageUsr {
    /// Read and check both keys (a root hash is 64 lowercase hex digits).
    pub fn read(meta: &Metadata) -> Result<ImageUsr, Error> {
        let mode = meta
            .get(DEPLOY_USR)
            .map(|v| {
                v.parse().map_err(|message| Error {
                    key: DEPLOY_USR,
                    message,
                })
            })
            .transpose()?;
        let root_hash = match meta.get(USR_VERITY) {
            Some(h)
                if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
            {
                Some(h.clone())
            }
            Some(h) => {
                return Err(Error {
                    key: USR_VERITY,
                    message: format!("{h:?}: not a SHA-256 root hash (64 lowercase hex digits)"),
                })
            }
            None => None,
        };
        Ok(ImageUsr { mode, root_hash })
    }

    /// Into a commit's metadata (a `None` removes its key).
    pub fn write(&self, meta: &mut Metadata) {
        for (key, value) in [
            (DEPLOY_USR, self.mode.map(|m| m.to_string())),
            (USR_VERITY, self.root_hash.clone()),
        ] {
            match value {
                Some(v) => meta.insert(key.to_string(), v),
                None => meta.remove(key),
            };
        }
    }
}

impl std::fmt::Display for EtcMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EtcMode::Stateless => "stateless",
            EtcMode::Persistent => "persistent",
        })
    }
}

impl std::fmt::Display for VarMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VarMode::Persistent => "persistent",
            VarMode::Volatile => "volatile",
        })
    }
}

impl std::str::FromStr for EtcMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stateless" => Ok(EtcMode::Stateless),
            "persistent" => Ok(EtcMode::Persistent),
            _ => Err(format!("{s:?}: /etc is stateless or persistent")),
        }
    }
}

impl std::str::FromStr for VarMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "persistent" => Ok(VarMode::Persistent),
            "volatile" => Ok(VarMode::Volatile),
            _ => Err(format!("{s:?}: /var is persistent or volatile")),
        }
    }
}

/// A value of the image's metadata that is not one this Slate knows.
#[derive(Debug, thiserror::Error)]
#[error("the image's {key}: {message}")]
pub struct Error {
    /// The metadata key.
    pub key: &'static str,
    /// What is wrong with its value (the value quoted).
    pub message: String,
}

/// The deploy modes an image asks for (the manifest's `[deploy]`); `None`
/// where its commit says nothing (an image not made by `slate compose`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageDeploy {
    pub etc: Option<EtcMode>,
    pub var: Option<VarMode>,
}

impl ImageDeploy {
    /// The modes a commit's metadata asks for; an unknown mode is an error
    /// naming its key.
    pub fn read(meta: &Metadata) -> Result<ImageDeploy, Error> {
        fn mode<T: std::str::FromStr<Err = String>>(
            meta: &Metadata,
            key: &'static str,
        ) -> Result<Option<T>, Error> {
            meta.get(key)
                .map(|v| v.parse().map_err(|message| Error { key, message }))
                .transpose()
        }
        Ok(ImageDeploy {
            etc: mode(meta, DEPLOY_ETC)?,
            var: mode(meta, DEPLOY_VAR)?,
        })
    }

    /// These modes into a commit's metadata (a `None` mode removes its key).
    pub fn write(&self, meta: &mut Metadata) {
        for (key, value) in [
            (DEPLOY_ETC, self.etc.map(|m| m.to_string())),
            (DEPLOY_VAR, self.var.map(|m| m.to_string())),
        ] {
            match value {
                Some(v) => meta.insert(key.to_string(), v),
                None => meta.remove(key),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_modes_round_trip() {
        let mut meta = Metadata::new();
        meta.insert(NAME.into(), "x".into());
        assert_eq!(
            ImageDeploy::read(&meta).expect("no modes"),
            ImageDeploy::default()
        );
        let d = ImageDeploy {
            etc: Some(EtcMode::Stateless),
            var: Some(VarMode::Volatile),
        };
        d.write(&mut meta);
        assert_eq!(meta[DEPLOY_ETC], "stateless");
        assert_eq!(meta[DEPLOY_VAR], "volatile");
        assert_eq!(ImageDeploy::read(&meta).expect("known modes"), d);
        ImageDeploy { etc: None, ..d }.write(&mut meta);
        assert!(!meta.contains_key(DEPLOY_ETC));
        assert_eq!(meta[NAME], "x");
    }

    #[test]
    fn usr_mode_and_root_hash_round_trip_and_are_checked() {
        let mut meta = Metadata::new();
        assert_eq!(ImageUsr::read(&meta).expect("none"), ImageUsr::default());
        let u = ImageUsr {
            mode: Some(UsrMode::Verity),
            root_hash: Some("ab".repeat(32)),
        };
        u.write(&mut meta);
        assert_eq!(meta[DEPLOY_USR], "verity");
        assert_eq!(ImageUsr::read(&meta).expect("known"), u);
        meta.insert(USR_VERITY.into(), "AB".repeat(32));
        assert_eq!(
            ImageUsr::read(&meta).expect_err("upper case").key,
            USR_VERITY
        );
        meta.insert(USR_VERITY.into(), "ab".into());
        assert!(ImageUsr::read(&meta).is_err());
        meta.remove(USR_VERITY);
        meta.insert(DEPLOY_USR.into(), "squashfs".into());
        assert_eq!(ImageUsr::read(&meta).expect_err("unknown").key, DEPLOY_USR);
    }

    #[test]
    fn unknown_mode_names_its_key() {
        let mut meta = Metadata::new();
        meta.insert(DEPLOY_VAR.into(), "tmpfs".into());
        let e = ImageDeploy::read(&meta).expect_err("an unknown mode");
        assert_eq!(e.key, DEPLOY_VAR);
        assert_eq!(
            e.to_string(),
            "the image's slate.deploy.var: \"tmpfs\": /var is persistent or volatile"
        );
    }
}
