//! `slate run`: an image in a container on systemd-nspawn, the fast test
//! of statelessness. The image is checked out once per commit into the
//! cache (`run/COMMIT`, hard links: nspawn's volatile modes never write
//! to it) or, for `--volatile=no`, copied into `run/COMMIT-rw`, which the
//! container may change.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::checkout::{self, CheckoutOptions};
use crate::hash::ObjectId;
use crate::progress::Progress;
use crate::store::Repo;

use super::Error;

/// nspawn's `--volatile=` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Volatile {
    /// The tree itself, writable.
    No,
    /// `/var` a tmpfs; the rest of the tree read-only.
    State,
    /// The root a tmpfs with the tree's `/usr` read-only: `/etc` and
    /// `/var` start empty.
    Yes,
    /// A tmpfs overlay over the tree.
    Overlay,
}

impl Volatile {
    pub fn name(self) -> &'static str {
        match self {
            Volatile::No => "no",
            Volatile::State => "state",
            Volatile::Yes => "yes",
            Volatile::Overlay => "overlay",
        }
    }
}

impl std::str::FromStr for Volatile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "no" => Volatile::No,
            "state" => Volatile::State,
            "yes" => Volatile::Yes,
            "overlay" => Volatile::Overlay,
            _ => return Err(format!("{s:?}: expected no, state, yes or overlay")),
        })
    }
}

/// The tree of `commit` for a container in `volatile` mode, checked out
/// into `cache/run/` unless it is there already. The checkout is made
/// under a temporary name and renamed: a present tree is whole.
pub fn tree_for(
    repo: &Repo,
    commit: &ObjectId,
    volatile: Volatile,
    cache: &Path,
) -> Result<PathBuf, Error> {
    let dir = cache.join("run");
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let writable = volatile == Volatile::No;
    let name = if writable {
        format!("{}-rw", commit.to_hex())
    } else {
        commit.to_hex()
    };
    let dest = dir.join(&name);
    if dest.is_dir() {
        return Ok(dest);
    }
    let tmp = dir.join(crate::fsutil::tmp_name(&name));
    let opts = CheckoutOptions {
        copy: writable,
        ..Default::default()
    };
    if let Err(e) = checkout::checkout(repo, commit, &tmp, &opts, &Progress::default()) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, &dest).map_err(Error::io(&dest))?;
    Ok(dest)
}

/// Whether systemd runs this machine (then nspawn registers with
/// machined); else nspawn needs `--register=no --keep-unit`.
pub fn host_runs_systemd() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The arguments of `systemd-nspawn` for `tree`.
pub fn nspawn_args(
    tree: &Path,
    volatile: Volatile,
    boot: bool,
    private_network: bool,
    interactive: bool,
    command: &[String],
) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![
        "--quiet".into(),
        format!("--directory={}", tree.display()).into(),
        format!("--volatile={}", volatile.name()).into(),
    ];
    if !host_runs_systemd() {
        a.push("--register=no".into());
        a.push("--keep-unit".into());
    }
    if !interactive {
        a.push("--console=pipe".into());
    }
    if private_network {
        a.push("--private-network".into());
    }
    if boot {
        a.push("--boot".into());
    }
    if !command.is_empty() {
        if !boot {
            a.push("--".into());
        }
        a.extend(command.iter().map(OsString::from));
    }
    a
}
