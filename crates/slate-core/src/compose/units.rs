//! Units out of `/etc` (`docs/stateless.md`): PID 1 reads units before
//! tmpfiles rebuilds `/etc`, so what a package or the manifest enabled
//! there (`*.wants/` links, aliases, masks, drop-ins, units of their own)
//! moves into `/usr/lib/systemd`, where it is part of the image.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// The folders moved, below the tree's root, and where they go.
pub const MOVES: &[(&str, &str)] = &[
    ("etc/systemd/system", "usr/lib/systemd/system"),
    ("etc/systemd/user", "usr/lib/systemd/user"),
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} and {} differ: the image has both; remove one in the manifest", etc.display(), usr.display())]
    Conflict { etc: PathBuf, usr: PathBuf },
}

/// What moved: paths below the root, from `/etc` to `/usr`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Moved {
    pub moved: Vec<(String, String)>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether two non-directory entries are the same: symlinks with one
/// target, or regular files with one content.
fn same(a: &Path, b: &Path) -> Result<bool, Error> {
    let (ma, mb) = (
        std::fs::symlink_metadata(a).map_err(io(a))?,
        std::fs::symlink_metadata(b).map_err(io(b))?,
    );
    if ma.file_type().is_symlink() && mb.file_type().is_symlink() {
        return Ok(std::fs::read_link(a).map_err(io(a))? == std::fs::read_link(b).map_err(io(b))?);
    }
    if ma.is_file() && mb.is_file() {
        return Ok(std::fs::read(a).map_err(io(a))? == std::fs::read(b).map_err(io(b))?);
    }
    Ok(false)
}

/// Move `src` into `dst`, merging folders; an entry already in `dst`
/// must be the same as the one moved.
fn merge(root: &Path, src: &Path, dst: &Path, out: &mut Moved) -> Result<(), Error> {
    std::fs::create_dir_all(dst).map_err(io(dst))?;
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(src)
        .map_err(io(src))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io(src))?;
    names.sort();
    for name in names {
        let (s, d) = (src.join(&name), dst.join(&name));
        let meta = std::fs::symlink_metadata(&s).map_err(io(&s))?;
        let there = std::fs::symlink_metadata(&d).ok();
        if meta.is_dir() {
            match there {
                Some(t) if !t.is_dir() => {
                    return Err(Error::Conflict { etc: s, usr: d });
                }
                _ => merge(root, &s, &d, out)?,
            }
            continue;
        }
        if there.is_some() {
            if !same(&s, &d)? {
                return Err(Error::Conflict { etc: s, usr: d });
            }
            std::fs::remove_file(&s).map_err(io(&s))?;
        } else {
            std::fs::rename(&s, &d).map_err(io(&s))?;
        }
        let rel = |p: &Path| format!("/{}", p.strip_prefix(root).unwrap_or(p).to_string_lossy());
        out.moved.push((rel(&s), rel(&d)));
    }
    std::fs::remove_dir(src).map_err(io(src))?;
    Ok(())
}

/// Move the units of the tree at `root` out of `/etc`.
pub fn move_units(root: &Path) -> Result<Moved, Error> {
    let mut out = Moved::default();
    for (from, to) in MOVES {
        let src = root.join(from);
        if std::fs::symlink_metadata(&src).is_ok_and(|m| m.is_dir()) {
            merge(root, &src, &root.join(to), &mut out)?;
        }
    }
    Ok(out)
}
