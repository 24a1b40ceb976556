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

/// How a container started by `slate run` is set up beyond its tree.
#[derive(Clone, Debug)]
pub struct NspawnOptions {
    pub volatile: Volatile,
    /// Boot the image's init instead of running a command.
    pub boot: bool,
    /// Share the host's network (its ports, addresses, routes) instead of
    /// a network of the container's own, which has only loopback.
    pub host_network: bool,
    /// A drop-in on the host ([`autologin_dropin`]) bound into the
    /// container's `/run` only, that logs root in on its console without a
    /// password: the image itself is unchanged and keeps its accounts
    /// locked.
    pub autologin: Option<PathBuf>,
    /// Standard input is a terminal.
    pub interactive: bool,
    /// The container's machine name, which is its hostname too
    /// ([`machine_name`]); nspawn's default is the folder's name, which
    /// for a checkout is the 64-digit commit id.
    pub machine: Option<String>,
    /// System extensions (name, checkout) bound read-only at
    /// `/run/extensions/NAME`, where the image's `systemd-sysext` merges
    /// them ([`extension_for`]).
    pub extensions: Vec<(String, PathBuf)>,
}

/// Where `slate run` puts a system extension in the container.
pub const EXTENSIONS_DIR: &str = "/run/extensions";

/// The system extension `rev` of `repo` for a container of the image
/// whose os-release is `os` (none: not checked): its name and its
/// checkout (in `cache/run/`, as an image's). Refused, naming it, when
/// the commit is not an extension or does not fit the image.
pub fn extension_for(
    repo: &Repo,
    rev: &str,
    os: Option<&super::sysext::Release>,
    cache: &Path,
) -> Result<(String, PathBuf), Error> {
    let id = repo
        .rev_parse(rev)
        .map_err(|e| Error::Input(format!("--extension {rev}: {e}")))?;
    let tree = crate::store::ObjectRead::read_commit(repo, &id)?.tree;
    super::sysext::check_tree(repo, &tree)
        .map_err(|m| Error::Input(format!("--extension {rev}: not a system extension: {m}")))?;
    let Some((name, release)) = super::sysext::ext_release(repo, &tree)? else {
        return Err(Error::Input(format!(
            "--extension {rev}: not a system extension: no one file /{}/extension-release.NAME",
            super::sysext::RELEASE_DIR
        )));
    };
    if let Some(os) = os {
        release.matches(os).map_err(|why| {
            Error::Input(format!(
                "--extension {rev}: extension {name} does not fit the image: {why}"
            ))
        })?;
    }
    let dir = tree_for(repo, &id, Volatile::Yes, cache)?;
    Ok((name, dir))
}

/// A machine name (and hostname) for a container from an image's name (the
/// manifest's `image.name`, or a folder's name): lowercase letters and
/// digits, other runs of characters as one '-', at most 64 characters;
/// `None` if nothing is left.
pub fn machine_name(image_name: &str) -> Option<String> {
    let mut out = String::new();
    for c in image_name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(64);
    let out = out.trim_end_matches('-').to_string();
    (!out.is_empty()).then_some(out)
}

/// Where the console autologin drop-in goes inside the container: `/run`,
/// a tmpfs of the container's own, so it exists only in this run.
pub const AUTOLOGIN_TARGET: &str =
    "/run/systemd/system/console-getty.service.d/50-slate-autologin.conf";

/// The drop-in for `console-getty.service` (the getty of a container's
/// console) that logs root in without asking: the unit's own command line
/// with `--autologin root`.
pub const AUTOLOGIN_DROPIN: &str = "\
# Written by `slate run --boot` and bound into this container's /run only:
# root logs in on the console without a password. The image is unchanged.
[Service]
ExecStart=
ExecStart=-/sbin/agetty -o '-p -f -- \\\\u' --noclear --autologin root --keep-baud - 115200,38400,9600 $TERM
";

/// The autologin drop-in in `cache/run/` (written atomically unless it
/// is there already with this content), for [`NspawnOptions::autologin`].
pub fn autologin_dropin(cache: &Path) -> Result<PathBuf, Error> {
    let dir = cache.join("run");
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let path = dir.join("console-autologin.conf");
    if std::fs::read(&path).is_ok_and(|b| b == AUTOLOGIN_DROPIN.as_bytes()) {
        return Ok(path);
    }
    let fd = crate::fsutil::open_dir(&dir).map_err(Error::io(&dir))?;
    crate::fsutil::atomic_write_at(
        &fd,
        "console-autologin.conf",
        AUTOLOGIN_DROPIN.as_bytes(),
        0o644,
    )
    .map_err(Error::io(&path))?;
    Ok(path)
}

/// The arguments of `systemd-nspawn` for `tree`.
pub fn nspawn_args(tree: &Path, o: &NspawnOptions, command: &[String]) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![
        "--quiet".into(),
        format!("--directory={}", tree.display()).into(),
        format!("--volatile={}", o.volatile.name()).into(),
    ];
    if !host_runs_systemd() {
        a.push("--register=no".into());
        a.push("--keep-unit".into());
    }
    if !o.interactive {
        a.push("--console=pipe".into());
    }
    if let Some(m) = &o.machine {
        a.push(format!("--machine={m}").into());
    }
    if !o.host_network {
        a.push("--private-network".into());
    }
    if let Some(dropin) = &o.autologin {
        let mut bind = OsString::from("--bind-ro=");
        bind.push(dropin.as_os_str());
        bind.push(":");
        bind.push(AUTOLOGIN_TARGET);
        a.push(bind);
    }
    for (name, dir) in &o.extensions {
        let mut bind = OsString::from("--bind-ro=");
        bind.push(dir.as_os_str());
        bind.push(format!(":{EXTENSIONS_DIR}/{name}"));
        a.push(bind);
    }
    if o.boot {
        a.push("--boot".into());
    }
    if !command.is_empty() {
        if !o.boot {
            a.push("--".into());
        }
        a.extend(command.iter().map(OsString::from));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> NspawnOptions {
        NspawnOptions {
            volatile: Volatile::Yes,
            boot: true,
            host_network: false,
            autologin: None,
            interactive: true,
            machine: None,
            extensions: Vec::new(),
        }
    }

    #[test]
    fn extensions_are_bound_read_only_into_run_extensions() {
        let o = NspawnOptions {
            extensions: vec![("debug".into(), PathBuf::from("/cache/run/abc"))],
            ..opts()
        };
        let a = nspawn_args(Path::new("/x"), &o, &[]);
        assert!(
            a.iter()
                .any(|x| x == "--bind-ro=/cache/run/abc:/run/extensions/debug"),
            "{a:?}"
        );
    }

    #[test]
    fn machine_names_are_hostnames() {
        assert_eq!(
            machine_name("Debian (Slate example)").as_deref(),
            Some("debian-slate-example")
        );
        assert_eq!(machine_name("--x__y--").as_deref(), Some("x-y"));
        assert_eq!(machine_name("()"), None);
        assert_eq!(machine_name(&"a".repeat(100)).map(|n| n.len()), Some(64));
        let o = NspawnOptions {
            machine: Some("debian".into()),
            ..opts()
        };
        let a = nspawn_args(Path::new("/x"), &o, &[]);
        assert!(a.iter().any(|x| x == "--machine=debian"), "{a:?}");
    }

    #[test]
    fn a_container_has_a_network_of_its_own_unless_asked() {
        let t = Path::new("/x");
        let a = nspawn_args(t, &opts(), &[]);
        assert!(a.iter().any(|x| x == "--private-network"), "{a:?}");
        let host = NspawnOptions {
            host_network: true,
            ..opts()
        };
        let a = nspawn_args(t, &host, &[]);
        assert!(!a.iter().any(|x| x == "--private-network"), "{a:?}");
    }

    #[test]
    fn autologin_is_a_dropin_bound_into_run_only() {
        let d = tempfile::tempdir().expect("tempdir");
        let dropin = autologin_dropin(d.path()).expect("dropin");
        let text = std::fs::read_to_string(&dropin).expect("read");
        assert!(text.contains("--autologin root"), "{text}");
        assert!(
            text.contains("\nExecStart=\n"),
            "the unit's command is not reset: {text}"
        );
        // Again: the same file, unchanged.
        assert_eq!(autologin_dropin(d.path()).expect("again"), dropin);
        let o = NspawnOptions {
            autologin: Some(dropin.clone()),
            ..opts()
        };
        let a = nspawn_args(Path::new("/x"), &o, &[]);
        let want = format!("--bind-ro={}:{AUTOLOGIN_TARGET}", dropin.display());
        assert!(a.iter().any(|x| *x == *want), "{a:?}");
        assert!(AUTOLOGIN_TARGET.starts_with("/run/"));
    }
}
