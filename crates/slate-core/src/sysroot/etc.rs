//! `/etc` of a new deployment of an OS that keeps it (`--etc persistent`):
//! a three-way merge of whole files, as OSTree does it. The local changes
//! are the differences between the `/etc` of the deployment followed and
//! its image's defaults (content, type, symlink target, mode, owner and
//! xattrs all count); they are carried onto the new image's defaults.
//! Where the new image changed a path the machine changed too, the
//! machine's version is kept and the image's is saved beside it as
//! `PATH.slate-new`; the path is reported as a conflict, never silently.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

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

impl Sysroot {
    /// Prepare `/etc` in the new deployment at `staging` (already checked
    /// out: the new image's defaults) after the deployment `prev`, whose
    /// commit's tree is known. Returns the conflicting paths.
    pub(crate) fn prepare_etc(
        &self,
        staging: &Path,
        prev: &Ordered,
        new_tree: &ObjectId,
    ) -> Result<Vec<String>> {
        let os = &prev.record.os;
        if self.os_config(os)?.etc == EtcMode::Stateless {
            return Ok(Vec::new());
        }
        let local = self.deployment_path(&prev.record).join("etc");
        if !local.is_dir() {
            return Ok(Vec::new());
        }
        let prev_commit = ObjectId::from_hex(&prev.record.commit)
            .map_err(|e| Error::Refused(format!("record of {}: {e}", prev.record.name())))?;
        let old_tree = self.repo.read_commit(&prev_commit)?.tree;
        let changes = local_changes(&self.repo, &old_tree, &local)?;
        let mut conflicts = Vec::new();
        for c in &changes {
            let rel = c.path.strip_prefix(b"/").unwrap_or(&c.path);
            let old = entry_at(&self.repo, &old_tree, rel)?;
            let new = entry_at(&self.repo, new_tree, rel)?;
            let dst = fsutil::joined(staging, rel);
            let src = fsutil::joined(&self.deployment_path(&prev.record), rel);
            // The image changed this path too: keep the machine's, save
            // the image's beside it. Directories conflict only in their
            // own metadata, not through their children.
            let image_changed = if c.dir {
                c.change == Change::Metadata
                    && dir_meta(&self.repo, old) != dir_meta(&self.repo, new)
            } else {
                old != new
            };
            if image_changed {
                conflicts.push(name::escape(&c.path));
                if let Some((EntryKind::File, _)) = new {
                    let mut beside = dst.clone().into_os_string();
                    beside.push(NEW_SUFFIX);
                    std::fs::rename(&dst, &beside).map_err(io_err(&dst))?;
                }
            }
            match c.change {
                Change::Removed => remove_any(&dst)?,
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
