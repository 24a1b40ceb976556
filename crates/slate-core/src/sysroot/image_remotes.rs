//! What an image says of its version and of where its updates come from,
//! read by the sysroot: the version shown by `status` and in boot entry
//! titles, the origin a first deployment records (`REMOTE:REF` of the
//! image's `slate.image.origin`), and the remotes its
//! `/usr/lib/slate/remotes.d/` provides (copied into the repository's
//! remotes; a remote the repository configures itself wins).

use super::{Result, Sysroot};
use crate::hash::ObjectId;
use crate::image_meta;
use crate::object::{Commit, EntryKind};
use crate::remotes::{self, image as remote_image, Origin, RemoteConfig};
use crate::store::{ObjectRead, Repo};
use crate::walk;

/// The image's version: its commit's `slate.image.version`, written by
/// compose with the commit (and so covered by its signature), else the
/// tree's os-release `IMAGE_VERSION` (an image made otherwise). One line
/// of at most 128 characters, else nothing.
pub(crate) fn image_version(repo: &Repo, c: &Commit) -> String {
    let v = c
        .metadata
        .get(image_meta::VERSION)
        .cloned()
        .or_else(|| os_release_field(repo, &c.tree, "IMAGE_VERSION"))
        .unwrap_or_default();
    let v = v.trim();
    if v.len() > 128 || v.chars().any(char::is_control) {
        return String::new();
    }
    v.to_string()
}

/// A field of the tree's os-release (`/usr/lib/os-release`, else
/// `/etc/os-release`; files only, at most 64 KiB).
fn os_release_field(repo: &Repo, tree: &ObjectId, key: &str) -> Option<String> {
    for p in [&b"usr/lib/os-release"[..], b"etc/os-release"] {
        let Some(text) = small_file(repo, tree, p, 64 << 10) else {
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        return text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches(['"', '\'']).to_string());
    }
    None
}

/// The content of the regular file at `path` of `tree`, when it is at
/// most `max` bytes.
fn small_file(repo: &Repo, tree: &ObjectId, path: &[u8], max: u64) -> Option<Vec<u8>> {
    let Ok(Some((EntryKind::File, id))) = walk::lookup(repo, tree, path) else {
        return None;
    };
    if repo.file_header(&id).ok()?.size > max {
        return None;
    }
    repo.open_file(&id).and_then(|mut s| s.read_all()).ok()
}

/// A boot entry's title: the image's name, its version, the deployment.
pub(crate) fn entry_title(pretty: &str, version: &str, os: &str, id: &str) -> String {
    let version: String = version.chars().filter(|c| !c.is_control()).collect();
    match (pretty.is_empty(), version.is_empty()) {
        (true, true) => format!("{os} {id}"),
        (true, false) => format!("{os} {version} ({id})"),
        (false, true) => format!("{pretty} ({os} {id})"),
        (false, false) => format!("{pretty} {version} ({os} {id})"),
    }
}

/// The origin the image names for its machines' updates: its commit's
/// `slate.image.origin` (`REMOTE:REF`), when its tree provides that
/// remote (a `remotes.d` file that reads as one).
pub(crate) fn image_origin(repo: &Repo, c: &Commit) -> Option<Origin> {
    let o: Origin = c.metadata.get(image_meta::ORIGIN)?.parse().ok()?;
    let Origin::Remote { remote, .. } = &o else {
        return None;
    };
    let path = format!("{}/{remote}.toml", remote_image::REMOTES_D);
    let bytes = small_file(repo, &c.tree, path.as_bytes(), remote_image::MAX_FILE)?;
    remote_image::parse_file(&path, &bytes).ok()?;
    Some(o)
}

/// The remotes the tree of `commit` provides: each file of its
/// `remotes.d`, checked; the first error names the file.
pub(crate) fn tree_remotes(
    repo: &Repo,
    commit: &ObjectId,
    what: &str,
) -> Result<Vec<(String, RemoteConfig, String)>> {
    let c = repo.read_commit(commit)?;
    let Some((EntryKind::Dir, dir)) =
        walk::lookup(repo, &c.tree, remote_image::REMOTES_D.as_bytes())?
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in repo.read_tree(&dir)?.entries {
        let Some(name) = remote_image::file_remote(&e.name) else {
            continue;
        };
        let from = format!("{what}:/{}/{name}.toml", remote_image::REMOTES_D);
        if out.len() == remote_image::MAX_FILES {
            return Err(super::Error::Refused(format!(
                "{what}: more than {} files in /{}",
                remote_image::MAX_FILES,
                remote_image::REMOTES_D
            )));
        }
        if e.kind != EntryKind::File {
            return Err(remotes::Error::Config(format!("{from}: not a regular file")).into());
        }
        if repo.file_header(&e.id)?.size > remote_image::MAX_FILE {
            return Err(remotes::Error::Config(format!(
                "{from}: larger than {} bytes",
                remote_image::MAX_FILE
            ))
            .into());
        }
        let bytes = repo.open_file(&e.id)?.read_all()?;
        let cfg = remote_image::parse_file(&from, &bytes)?;
        out.push((name.to_string(), cfg, from));
    }
    Ok(out)
}

impl Sysroot {
    /// The remotes the images provide: those of each OS's default
    /// deployment (the first of the OS in the boot order), the earlier
    /// in the boot order winning a name two provide.
    pub fn image_remotes(&self) -> Result<Vec<(String, RemoteConfig, String)>> {
        let mut out: Vec<(String, RemoteConfig, String)> = Vec::new();
        let mut seen_os = Vec::new();
        for d in self.ordered()? {
            if seen_os.contains(&d.record.os) {
                continue;
            }
            seen_os.push(d.record.os.clone());
            let Ok(commit) = ObjectId::from_hex(&d.record.commit) else {
                continue;
            };
            for r in tree_remotes(&self.repo, &commit, &d.record.name())? {
                if !out.iter().any(|x| x.0 == r.0) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Bring the repository's copies of the images' remotes up to date
    /// ([`Sysroot::image_remotes`]): what `upgrade`, `resolve` and the
    /// remote commands read. Whether anything changed.
    pub fn sync_image_remotes(&self) -> Result<bool> {
        let provided = self.image_remotes()?;
        Ok(remotes::config::set_provided(&self.repo, &provided)?)
    }
}

#[cfg(test)]
mod tests {
    use super::entry_title;

    #[test]
    fn titles_show_the_version_where_there_is_one() {
        assert_eq!(
            entry_title("Debian", "12.1", "os", "ab.0"),
            "Debian 12.1 (os ab.0)"
        );
        assert_eq!(entry_title("Debian", "", "os", "ab.0"), "Debian (os ab.0)");
        assert_eq!(entry_title("", "", "os", "ab.0"), "os ab.0");
        assert_eq!(entry_title("", "2\n", "os", "ab.0"), "os 2 (ab.0)");
    }
}
