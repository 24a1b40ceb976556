//! The first step of making a tree stateless (`docs/stateless.md`): its
//! `/etc` becomes factory defaults. Everything in it moves to
//! `/usr/share/factory/etc`, and one tmpfiles.d line per entry of `/etc`
//! (`C` for a file or folder, `L` for a symlink) rebuilds it on a machine
//! whose `/etc` is empty. What belongs to one machine, and what
//! systemd-sysusers writes, is not shipped at all.
//!
//! The tree is worked on below a directory handle; nothing outside it is
//! touched.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Paths of `/etc` (relative to it) that a machine makes for itself: its
/// identity, its mounts, its clock, its name resolution, and the user
/// databases systemd-sysusers writes.
pub const PER_MACHINE: &[&str] = &[
    "machine-id",
    "hostname",
    "resolv.conf",
    "fstab",
    "mtab",
    "adjtime",
    "passwd",
    "passwd-",
    "group",
    "group-",
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    ".pwd.lock",
];

/// Whether `rel` (below `/etc`) is made per machine: one of
/// [`PER_MACHINE`], or an SSH host key.
pub fn per_machine(rel: &str) -> bool {
    PER_MACHINE.contains(&rel)
        || rel
            .strip_prefix("ssh/")
            .is_some_and(|k| k.starts_with("ssh_host_"))
}

/// The tmpfiles.d file that rebuilds `/etc`.
pub const TMPFILES: &str = "usr/lib/tmpfiles.d/slate-etc.conf";
/// Where `/etc`'s content goes.
pub const FACTORY: &str = "usr/share/factory/etc";

#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct Error {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// What moving `/etc` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Moved {
    /// The tmpfiles.d lines written, one per entry of `/etc`.
    pub lines: Vec<String>,
    /// Paths below `/etc` left out of the image, as made per machine.
    pub left_out: Vec<String>,
}

fn err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error {
        path: path.to_path_buf(),
        source,
    }
}

/// A tmpfiles.d field: quoted when it holds a space, a quote or a
/// backslash (as systemd-tmpfiles reads fields); none for a name with a
/// control character or that is not UTF-8.
fn field(p: &std::ffi::OsStr) -> Option<String> {
    tmpfiles_field(p.to_str()?)
}

/// [`field`] of text (shared with the `/var` step).
pub(crate) fn tmpfiles_field(p: &str) -> Option<String> {
    if p.chars().any(char::is_control) {
        return None;
    }
    if !p.contains([' ', '"', '\\', '\'']) {
        return Some(p.to_string());
    }
    Some(format!(
        "\"{}\"",
        p.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// Remove the per-machine paths below `etc` (`rel` is the path so far).
/// Names are bytes: one that is not UTF-8 is never a per-machine path.
fn drop_per_machine(etc: &Path, rel: &Path, left_out: &mut Vec<String>) -> Result<(), Error> {
    let dir = etc.join(rel);
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&dir)
        .map_err(err(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(err(&dir))?;
    names.sort();
    for name in names {
        let r = rel.join(name);
        let p = etc.join(&r);
        let meta = std::fs::symlink_metadata(&p).map_err(err(&p))?;
        match r.to_str().filter(|t| per_machine(t)) {
            Some(t) => {
                if meta.is_dir() {
                    std::fs::remove_dir_all(&p).map_err(err(&p))?;
                } else {
                    std::fs::remove_file(&p).map_err(err(&p))?;
                }
                left_out.push(format!("/etc/{t}"));
            }
            None if meta.is_dir() => drop_per_machine(etc, &r, left_out)?,
            None => {}
        }
    }
    Ok(())
}

/// Move the `/etc` of the tree at `root` to the factory and write the
/// tmpfiles.d lines that rebuild it. `/etc` is left as an empty folder.
pub fn move_etc(root: &Path) -> Result<Moved, Error> {
    let etc = root.join("etc");
    let factory = root.join(FACTORY);
    let mut moved = Moved::default();
    if !etc.is_dir() {
        return Ok(moved);
    }
    drop_per_machine(&etc, Path::new(""), &mut moved.left_out)?;
    if factory.exists() {
        return Err(Error {
            path: factory,
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the tree has a factory /etc already (made stateless before?)",
            ),
        });
    }
    let parent = factory.parent().expect("FACTORY has a parent");
    std::fs::create_dir_all(parent).map_err(err(parent))?;
    let meta = std::fs::metadata(&etc).map_err(err(&etc))?;
    std::fs::rename(&etc, &factory).map_err(err(&etc))?;
    std::fs::create_dir(&etc).map_err(err(&etc))?;
    std::fs::set_permissions(&etc, meta.permissions()).map_err(err(&etc))?;

    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&factory)
        .map_err(err(&factory))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(err(&factory))?;
    names.sort();
    for name in names {
        let p = factory.join(&name);
        let mut full = std::ffi::OsString::from("/etc/");
        full.push(&name);
        let unwritable = |what: &Path| Error {
            path: what.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a name with a control character, or not UTF-8, has no tmpfiles.d line",
            ),
        };
        let shown = field(&full).ok_or_else(|| unwritable(&p))?;
        let meta = std::fs::symlink_metadata(&p).map_err(err(&p))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p).map_err(err(&p))?;
            let target = field(target.as_os_str()).ok_or_else(|| unwritable(&p))?;
            moved.lines.push(format!("L {shown} - - - - {target}"));
        } else {
            moved.lines.push(format!("C {shown} - - - -"));
        }
    }
    let conf = root.join(TMPFILES);
    let conf_dir = conf.parent().expect("TMPFILES has a parent");
    std::fs::create_dir_all(conf_dir).map_err(err(conf_dir))?;
    let mut text =
        String::from("# /etc rebuilt from the image's factory defaults (slate compose).\n");
    for l in &moved.lines {
        text.push_str(l);
        text.push('\n');
    }
    let dir = crate::fsutil::open_dir(conf_dir).map_err(err(conf_dir))?;
    crate::fsutil::atomic_write_at(&dir, "slate-etc.conf", text.as_bytes(), 0o644)
        .map_err(err(&conf))?;
    Ok(moved)
}
