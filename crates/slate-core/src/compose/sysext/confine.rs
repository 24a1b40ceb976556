//! What a system extension may hold: files under `/usr` and `/opt` that
//! its OS image does not have (one it has, the same, is left out; one it
//! has otherwise is refused), and its release file.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::{Error, RELEASE_DIR};
use crate::ext_release::ALLOWED;
use crate::hash::ObjectId;
use crate::object::{EntryKind, FileKind};
use crate::store::{ObjectRead, Repo};
use crate::walk;

/// What the check against the base found.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    pub(crate) left_out: Vec<String>,
    pub(crate) files: usize,
}

/// Check the extension's tree on disk at `tree` against the base's tree
/// `base`: paths outside `/usr` and `/opt` and paths the base has
/// otherwise are refused, all of them named; files the base has the same
/// are removed (and folders the base has that are left empty).
pub(crate) fn against_base(repo: &Repo, base: &ObjectId, tree: &Path) -> Result<Checked, Error> {
    let mut out = Checked::default();
    let mut refused = Vec::new();
    visit(repo, base, tree, b"", &mut out, &mut refused)?;
    if !refused.is_empty() {
        let n = refused.len();
        refused.truncate(50);
        return Err(Error::Input(format!(
            "{n} path(s) of the system extension are refused (its base is {}):\n  {}",
            base.short(12),
            refused.join("\n  ")
        )));
    }
    out.left_out.sort();
    Ok(out)
}

fn visit(
    repo: &Repo,
    base: &ObjectId,
    dir: &Path,
    rel: &[u8],
    out: &mut Checked,
    refused: &mut Vec<String>,
) -> Result<(), Error> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(Error::io(dir))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let relp = crate::object::name::join(rel, name.as_bytes());
        let shown = crate::object::name::escape(&crate::object::name::absolute(&relp));
        let md = std::fs::symlink_metadata(&path).map_err(Error::io(&path))?;
        if rel.is_empty()
            && !(ALLOWED.iter().any(|a| a.as_bytes() == name.as_bytes()) && md.is_dir())
        {
            refused.push(format!("{shown}: outside /usr and /opt"));
            continue;
        }
        let theirs = walk::lookup(repo, base, &relp)?;
        if md.is_dir() {
            if matches!(theirs, Some((EntryKind::File, _))) {
                refused.push(format!("{shown}: a folder where the base has a file"));
                continue;
            }
            visit(repo, base, &path, &relp, out, refused)?;
            let empty = std::fs::read_dir(&path)
                .map_err(Error::io(&path))?
                .next()
                .is_none();
            if empty && matches!(theirs, Some((EntryKind::Dir, _))) {
                std::fs::remove_dir(&path).map_err(Error::io(&path))?;
            }
            continue;
        }
        match theirs {
            None => out.files += 1,
            Some((EntryKind::Dir, _)) => {
                refused.push(format!("{shown}: a file where the base has a folder"))
            }
            Some((EntryKind::File, id)) => {
                if same(repo, &id, &path, &md)? {
                    std::fs::remove_file(&path).map_err(Error::io(&path))?;
                    out.left_out.push(shown);
                } else {
                    refused.push(format!("{shown}: changes a file of the base"));
                }
            }
        }
    }
    Ok(())
}

/// Whether the file at `path` is the base's object `id`: kind, mode,
/// owner and content (a symlink's target).
fn same(repo: &Repo, id: &ObjectId, path: &Path, md: &std::fs::Metadata) -> Result<bool, Error> {
    let h = repo.file_header(id)?;
    if h.meta.uid != md.uid()
        || h.meta.gid != md.gid()
        || (h.meta.kind != FileKind::Symlink
            && h.meta.mode & 0o7777 != md.permissions().mode() & 0o7777)
    {
        return Ok(false);
    }
    match h.meta.kind {
        FileKind::Symlink if md.file_type().is_symlink() => {
            let target = std::fs::read_link(path).map_err(Error::io(path))?;
            Ok(repo.read_file(id)?.1 == target.as_os_str().as_bytes())
        }
        FileKind::Regular if md.is_file() && md.len() == h.size => {
            let mut f = std::fs::File::open(path).map_err(Error::io(path))?;
            let mut s = repo.open_file(id)?;
            let mut equal = true;
            let mut buf = Vec::new();
            s.each_chunk(|chunk| {
                if !equal {
                    return;
                }
                buf.resize(chunk.len(), 0);
                equal = f.read_exact(&mut buf).is_ok() && buf == chunk;
            })?;
            Ok(equal)
        }
        _ => Ok(false),
    }
}

/// `usr/lib/extension-release.d/extension-release.NAME` with `lines`,
/// its folders made as real folders (an input's symlink on the way, or a
/// release file an input put there, is refused).
pub(crate) fn write_release(tree: &Path, name: &str, lines: &[String]) -> Result<(), Error> {
    let mut p = tree.to_path_buf();
    for comp in RELEASE_DIR.split('/') {
        p.push(comp);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::Input(format!(
                    "/{RELEASE_DIR}: an input put something other than a folder on the way"
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&p).map_err(Error::io(&p))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                    .map_err(Error::io(&p))?;
            }
            Err(e) => return Err(Error::io(&p)(e)),
        }
    }
    let dir = p.clone();
    let existing = std::fs::read_dir(&dir)
        .map_err(Error::io(&dir))?
        .next()
        .is_some();
    if existing {
        return Err(Error::Input(format!(
            "/{RELEASE_DIR}: the inputs put files there; Slate writes the extension's release file"
        )));
    }
    p.push(format!("extension-release.{name}"));
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&p, text).map_err(Error::io(&p))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).map_err(Error::io(&p))
}
