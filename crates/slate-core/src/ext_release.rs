//! What a system extension says it fits, and what an OS image says it
//! is: `extension-release.NAME` and `os-release` read from a tree of the
//! store, compared as `systemd-sysext` 252 compares them; the shape of an
//! extension's tree. Used by compose (which writes the release) and by
//! sysroot (which checks it before an extension goes with a deployment).

use crate::hash::ObjectId;
use crate::image_name;
use crate::object::EntryKind;
use crate::store::ObjectRead;
use crate::walk;

/// The top-level folders an extension may have.
pub const ALLOWED: [&str; 2] = ["usr", "opt"];

/// Where an extension's release file is, below its tree.
pub const RELEASE_DIR: &str = "usr/lib/extension-release.d";

/// What a system extension is.
/// The fields of an OS image's os-release an extension must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Release {
    pub id: String,
    pub version_id: Option<String>,
    pub sysext_level: Option<String>,
}

impl Release {
    /// `KEY=VALUE` lines of an os-release or extension-release file
    /// (quotes taken off); unknown keys ignored.
    pub fn parse(text: &str) -> Release {
        let mut r = Release::default();
        for line in text.lines() {
            let Some((k, v)) = line.trim().split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches(['"', '\'']).to_string();
            match k.trim() {
                "ID" => r.id = v,
                "VERSION_ID" => r.version_id = Some(v),
                "SYSEXT_LEVEL" => r.sysext_level = Some(v),
                _ => {}
            }
        }
        r
    }

    /// The lines an extension of an OS with this os-release carries:
    /// `ID=`, and its `SYSEXT_LEVEL=` when it has one, else `VERSION_ID=`
    /// (what `systemd-sysext` compares).
    pub fn extension_lines(&self) -> Vec<String> {
        let mut out = vec![format!("ID={}", self.id)];
        match (&self.sysext_level, &self.version_id) {
            (Some(l), _) => out.push(format!("SYSEXT_LEVEL={l}")),
            (None, Some(v)) => out.push(format!("VERSION_ID={v}")),
            (None, None) => {}
        }
        out
    }

    /// Whether an extension whose release is `self` may be merged over an
    /// OS whose os-release is `os`, as systemd 252 decides: the same `ID`
    /// (or `_any`), then `SYSEXT_LEVEL` when the extension has one (the
    /// OS's, else its `VERSION_ID`), else its `VERSION_ID` (the OS's).
    pub fn matches(&self, os: &Release) -> Result<(), String> {
        if self.id != "_any" && self.id != os.id {
            return Err(format!(
                "it is for ID={}, the image is ID={}",
                self.id, os.id
            ));
        }
        if self.id == "_any" {
            return Ok(());
        }
        if let Some(l) = &self.sysext_level {
            let theirs = os.sysext_level.as_ref().or(os.version_id.as_ref());
            return match theirs {
                Some(t) if t == l => Ok(()),
                Some(t) => Err(format!("it is for SYSEXT_LEVEL={l}, the image has {t}")),
                None => Err(format!(
                    "it is for SYSEXT_LEVEL={l}, the image has no SYSEXT_LEVEL or VERSION_ID"
                )),
            };
        }
        match (&self.version_id, &os.version_id) {
            (Some(v), Some(t)) if v == t => Ok(()),
            (Some(v), Some(t)) => Err(format!("it is for VERSION_ID={v}, the image has {t}")),
            (Some(v), None) => Err(format!(
                "it is for VERSION_ID={v}, the image has no VERSION_ID"
            )),
            (None, _) => Err("its release names neither SYSEXT_LEVEL nor VERSION_ID".into()),
        }
    }
}

/// At most this many bytes of an os-release or extension-release file.
const RELEASE_MAX: u64 = 64 << 10;

/// A file of the tree `root`, when it is a regular file of at most
/// [`RELEASE_MAX`] bytes.
fn small_file<S: ObjectRead + ?Sized>(
    store: &S,
    root: &ObjectId,
    path: &[u8],
) -> Result<Option<Vec<u8>>, crate::store::Error> {
    let Some((EntryKind::File, id)) = walk::lookup(store, root, path)? else {
        return Ok(None);
    };
    let h = store.file_header(&id)?;
    if h.meta.kind != crate::object::FileKind::Regular || h.size > RELEASE_MAX {
        return Ok(None);
    }
    Ok(Some(store.read_file(&id)?.1))
}

/// The os-release of an OS image's tree (`usr/lib/os-release`, else
/// `etc/os-release`).
pub fn os_release<S: ObjectRead + ?Sized>(
    store: &S,
    root: &ObjectId,
) -> Result<Option<Release>, crate::store::Error> {
    for p in [&b"usr/lib/os-release"[..], b"etc/os-release"] {
        if let Some(b) = small_file(store, root, p)? {
            return Ok(Some(Release::parse(&String::from_utf8_lossy(&b))));
        }
    }
    Ok(None)
}

/// A system extension's name and release, read from its tree: the one
/// file of `usr/lib/extension-release.d/` (`extension-release.NAME`).
pub fn ext_release<S: ObjectRead + ?Sized>(
    store: &S,
    root: &ObjectId,
) -> Result<Option<(String, Release)>, crate::store::Error> {
    let Some((EntryKind::Dir, dir)) = walk::lookup(store, root, RELEASE_DIR.as_bytes())? else {
        return Ok(None);
    };
    let t = store.read_tree(&dir)?;
    let mut found = None;
    for e in &t.entries {
        let Some(name) = std::str::from_utf8(&e.name)
            .ok()
            .and_then(|n| n.strip_prefix("extension-release."))
            .filter(|n| image_name::valid_ext_name(n))
        else {
            continue;
        };
        if found.is_some() {
            // Two: which one systemd-sysext takes depends on the name it
            // is given; Slate names it by its one file.
            return Ok(None);
        }
        let path = format!("{RELEASE_DIR}/{}", String::from_utf8_lossy(&e.name));
        let Some(b) = small_file(store, root, path.as_bytes())? else {
            return Ok(None);
        };
        found = Some((
            name.to_string(),
            Release::parse(&String::from_utf8_lossy(&b)),
        ));
    }
    Ok(found)
}

/// Whether the tree `root` (of a commit said to be a system extension)
/// has only `usr` and `opt` at its top, both folders: what `ext add` and
/// `run --extension` check before they use it.
pub fn check_tree<S: ObjectRead + ?Sized>(store: &S, root: &ObjectId) -> Result<(), String> {
    let t = store.read_tree(root).map_err(|e| e.to_string())?;
    for e in &t.entries {
        let name = String::from_utf8_lossy(&e.name);
        if !ALLOWED.contains(&name.as_ref()) || e.kind != EntryKind::Dir {
            return Err(format!(
                "/{}: a system extension has folders /usr and /opt only",
                crate::object::name::escape(&e.name)
            ));
        }
    }
    Ok(())
}
