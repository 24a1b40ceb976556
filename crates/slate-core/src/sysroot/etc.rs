//! `/etc` of a new deployment of an OS that keeps it (`--etc persistent`):
//! a three-way merge of whole files, as OSTree does it. The local changes
//! are the differences between the `/etc` of the deployment followed and
//! its image's defaults (content, type, symlink target, mode, owner and
//! xattrs all count); they are carried onto the new image's defaults.
//! Where the new image changed a path the machine changed too, the
//! machine's version is kept and the image's is saved beside it as
//! `PATH.slate-new`; the path is reported as a conflict, never silently.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::FileType;
use serde::{Deserialize, Serialize};

use super::dirs::Dir;
use super::status::Ordered;
use super::{io_err, Error, EtcMode, Result, Sysroot};
use crate::diff::{self, Change};
use crate::hash::ObjectId;
use crate::object::{name, EntryKind};
use crate::progress::Progress;
use crate::store::{HashSink, ObjectRead};
use crate::{commit, fsutil, walk};

/// Where the image's version of a conflicting path is saved.
pub const NEW_SUFFIX: &str = ".slate-new";

/// A path of `/etc` changed both by the machine and by the new image:
/// the machine's version is kept; what happened to the image's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcConflict {
    /// `/etc/...`
    pub path: String,
    pub image: ImageChange,
    /// Where the image's version was saved (`PATH.slate-new`), when it was
    /// (a file of the image's; its symlinks and folders are not saved).
    pub saved: Option<String>,
}

/// What the new image did to a path the machine changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageChange {
    /// Changed it (content, type or metadata).
    Changed,
    /// Removed it.
    Removed,
    /// A folder on both sides: changed its owner, mode or xattrs.
    FolderMetadata,
    /// A folder the machine made something else (a symlink, a file):
    /// changed what is in it, which is not deployed.
    Below,
}

impl Sysroot {
    /// Prepare `/etc` in the new deployment `staged` (already checked
    /// out: the new image's defaults) after the deployment `prev`, whose
    /// commit's tree is known. Returns the conflicts.
    ///
    /// Every path is written below the staging directory's handle: a path
    /// below something the machine made a symlink (or a file) is not
    /// there in the result, and is skipped, never written through it.
    pub(crate) fn prepare_etc(
        &self,
        staged: &Dir,
        prev: &Ordered,
        new_tree: &ObjectId,
    ) -> Result<Vec<EtcConflict>> {
        let os = &prev.record.os;
        if self.os_config(os)?.etc == EtcMode::Stateless {
            return Ok(Vec::new());
        }
        let prev_dir = self.dir(&self.deployment_path(&prev.record))?;
        match prev_dir.kind("etc")? {
            None => return Ok(Vec::new()),
            Some(FileType::Directory) => {}
            Some(_) => return Err(super::dirs::not_a_dir(&prev_dir.join("etc"))),
        }
        let local = prev_dir.join("etc");
        let prev_commit = ObjectId::from_hex(&prev.record.commit)
            .map_err(|e| Error::Refused(format!("record of {}: {e}", prev.record.name())))?;
        let old_tree = self.repo.read_commit(&prev_commit)?.tree;
        let changes = local_changes(&self.repo, &old_tree, &local)?;
        let mut conflicts = Vec::new();
        // Paths the machine made something other than a folder: nothing
        // below them is merged.
        let mut replaced: Vec<Vec<u8>> = Vec::new();
        for c in &changes {
            let rel = c.path.strip_prefix(b"/").unwrap_or(&c.path);
            if replaced
                .iter()
                .any(|r| rel.starts_with(r) && rel.get(r.len()) == Some(&b'/'))
            {
                continue;
            }
            let old = entry_at(&self.repo, &old_tree, rel)?;
            let new = entry_at(&self.repo, new_tree, rel)?;
            let src = fsutil::joined(prev_dir.path(), rel);
            let local_kind = std::fs::symlink_metadata(&src).ok().map(|m| m.file_type());
            let local_dir = local_kind.is_some_and(|t| t.is_dir());
            if c.change != Change::Removed && !local_dir {
                replaced.push(rel.to_vec());
            }
            // The parent in the new deployment, below the staging handle;
            // not there (the image removed it) or not a folder: skipped.
            let (parent_rel, name) = match rel.iter().rposition(|&b| b == b'/') {
                Some(i) => (&rel[..i], &rel[i + 1..]),
                None => (&[][..], rel),
            };
            let parent = match staged.open_rel(Path::new(OsStr::from_bytes(parent_rel))) {
                Ok(d) => d,
                Err(Error::Refused(_)) => continue,
                Err(e) if super::dirs::is_not_found(&e) => continue,
                Err(e) => return Err(e),
            };
            let name = OsStr::from_bytes(name);
            let dst = parent.join(name);
            // The image changed this path too: keep the machine's, save
            // the image's file beside it. Folders on both sides conflict
            // only in their own metadata, not through their children.
            let is_dir = |e: &Option<(EntryKind, ObjectId)>| matches!(e, Some((EntryKind::Dir, _)));
            let image = if old == new || (c.change == Change::Removed && new.is_none()) {
                None
            } else if new.is_none() {
                Some(ImageChange::Removed)
            } else if is_dir(&new) && (local_dir || (c.change == Change::Removed && is_dir(&old))) {
                (local_dir
                    && c.change == Change::Metadata
                    && dir_meta(&self.repo, old) != dir_meta(&self.repo, new))
                .then_some(ImageChange::FolderMetadata)
            } else if is_dir(&old) && is_dir(&new) {
                Some(ImageChange::Below)
            } else {
                Some(ImageChange::Changed)
            };
            if let Some(image) = image {
                let mut saved = None;
                if let Some((EntryKind::File, _)) = new {
                    let mut beside = name.to_os_string();
                    beside.push(NEW_SUFFIX);
                    parent.rename(name, &beside)?;
                    saved = Some(name::escape(&[&c.path[..], NEW_SUFFIX.as_bytes()].concat()));
                }
                conflicts.push(EtcConflict {
                    path: name::escape(&c.path),
                    image,
                    saved,
                });
            }
            match c.change {
                Change::Removed => parent.remove_tree(name)?,
                _ => take_local(&src, &dst)?,
            }
        }
        Ok(conflicts)
    }
}

/// The changes of the directory `local` (a deployment's `/etc`) against
/// the `/etc` of the tree `old`, paths absolute (`/etc/...`).
fn local_changes<S: ObjectRead>(
    repo: &S,
    old: &ObjectId,
    local: &Path,
) -> Result<Vec<diff::Entry>> {
    let sink = HashSink::over(repo);
    let scan = commit::commit_dir_tree(&sink, local, &Progress::default())
        .map_err(|e| Error::Refused(format!("scanning {}: {e}", fsutil::show(local))))?;
    let old_etc = match walk::lookup(repo, old, b"etc")? {
        Some((EntryKind::Dir, id)) => Some(id),
        _ => None,
    };
    Ok(match old_etc {
        Some(o) => diff::diff_trees(&sink, &o, &scan.root, b"etc")?,
        // No /etc in the image: all of the machine's is its own.
        None => {
            let empty = crate::object::Tree {
                meta: crate::object::DirMeta::default(),
                entries: Vec::new(),
            };
            let id = crate::store::ObjectWrite::write_tree(&sink, &empty)?;
            diff::diff_trees(&sink, &id, &scan.root, b"etc")?
        }
    })
}

fn entry_at<S: ObjectRead>(
    repo: &S,
    root: &ObjectId,
    rel: &[u8],
) -> Result<Option<(EntryKind, ObjectId)>> {
    Ok(walk::lookup(repo, root, rel)?)
}

/// The metadata of a directory entry, for comparing.
fn dir_meta<S: ObjectRead>(
    repo: &S,
    e: Option<(EntryKind, ObjectId)>,
) -> Option<crate::object::DirMeta> {
    match e {
        Some((EntryKind::Dir, id)) => repo.read_tree(&id).ok().map(|t| t.meta),
        _ => None,
    }
}

/// Remove whatever is at `p` (nothing there is fine).
fn remove_any(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).map_err(io_err(p)),
        Ok(_) => std::fs::remove_file(p).map_err(io_err(p)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(io_err(p)(e)),
    }
}

/// Make `dst` what `src` is: a directory gets `src`'s owner, mode and
/// xattrs (its entries come one by one); anything else is copied whole,
/// metadata included.
fn take_local(src: &Path, dst: &Path) -> Result<()> {
    let m = std::fs::symlink_metadata(src).map_err(io_err(src))?;
    let ft = m.file_type();
    if ft.is_dir() {
        match std::fs::symlink_metadata(dst) {
            Ok(d) if d.is_dir() => {}
            Ok(_) => {
                remove_any(dst)?;
                std::fs::create_dir(dst).map_err(io_err(dst))?;
            }
            Err(_) => std::fs::create_dir(dst).map_err(io_err(dst))?,
        }
    } else {
        remove_any(dst)?;
        if ft.is_symlink() {
            let t = std::fs::read_link(src).map_err(io_err(src))?;
            std::os::unix::fs::symlink(&t, dst).map_err(io_err(dst))?;
        } else if ft.is_file() {
            std::fs::copy(src, dst).map_err(io_err(dst))?;
        } else {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                dst,
                rustix::fs::FileType::from_raw_mode(m.mode()),
                rustix::fs::Mode::from_raw_mode(m.mode() & 0o7777),
                m.rdev(),
            )
            .map_err(|e| io_err(dst)(e.into()))?;
        }
    }
    std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid())).map_err(io_err(dst))?;
    let x = fsutil::path_xattrs(src).map_err(io_err(src))?;
    // A directory kept from the image may carry xattrs the machine's has not.
    for (k, _) in fsutil::path_xattrs(dst).map_err(io_err(dst))? {
        if !x.iter().any(|(n, _)| *n == k) {
            rustix::fs::lremovexattr(dst, k.as_slice()).map_err(|e| io_err(dst)(e.into()))?;
        }
    }
    fsutil::set_path_xattrs(dst, &x).map_err(io_err(dst))?;
    if !ft.is_symlink() {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(io_err(dst))?;
    }
    // The times too: systemd compares /etc/.updated's with /usr's.
    let ts = |s: i64, ns: i64| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        dst,
        &rustix::fs::Timestamps {
            last_access: ts(m.atime(), m.atime_nsec()),
            last_modification: ts(m.mtime(), m.mtime_nsec()),
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io_err(dst)(e.into()))
}
