//! Refs: `refs/heads/NAME` holds a commit id and a newline. Names may have
//! `/`-separated components. A ref moves by atomic replacement.

use std::path::Path;

use super::{Error, Repo, Result};
use crate::fsutil;
use crate::hash::ObjectId;

/// Check a branch or ref name: non-empty components separated by `/`, no
/// `.` or `..` component, no leading or trailing `/`, no whitespace,
/// control characters or `~^:?*[\`, not ending in `.lock`.
pub fn validate_ref_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::BadRefName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.starts_with('/') {
        return bad("starts with '/'");
    }
    if name.ends_with('/') {
        return bad("ends with '/'");
    }
    if name.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if name.chars().any(|c| c.is_control()) {
        return bad("contains a control character");
    }
    if name.chars().any(char::is_whitespace) {
        return bad("contains whitespace");
    }
    if name.chars().any(|c| "~^:?*[\\".contains(c)) {
        return bad("contains one of ~ ^ : ? * [ \\");
    }
    if name.contains("..") {
        return bad("contains '..'");
    }
    for comp in name.split('/') {
        if comp.is_empty() {
            return bad("has an empty component ('//')");
        }
        if comp.starts_with('.') {
            return bad("has a component starting with '.'");
        }
        if comp.ends_with(".lock") {
            return bad("has a component ending in '.lock'");
        }
    }
    Ok(())
}

impl Repo {
    fn ref_rel(name: &str) -> String {
        format!("refs/heads/{name}")
    }

    /// The commit a ref names, or `None` if it does not exist.
    pub fn read_ref(&self, name: &str) -> Result<Option<ObjectId>> {
        validate_ref_name(name)?;
        let path = self.path.join(Self::ref_rel(name));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // A ref name that is a directory of other refs is not a ref.
            Err(e) if path.is_dir() => {
                let _ = e;
                return Ok(None);
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        ObjectId::from_hex(text.trim_end_matches('\n'))
            .map(Some)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }

    /// Point `name` at `id`, atomically. The caller holds the write lock
    /// and has made the objects durable (see [`Repo::sync`]).
    pub(crate) fn write_ref(&self, name: &str, id: &ObjectId) -> Result<()> {
        validate_ref_name(name)?;
        let rel = Self::ref_rel(name);
        if let Some((parent, _)) = rel.rsplit_once('/') {
            fsutil::mkdir_p_at(&self.root, parent, 0o755)
                .map_err(|e| Error::io(&self.path.join(parent), e))?;
        }
        fsutil::atomic_write_at(&self.root, &rel, format!("{id}\n").as_bytes(), 0o644)
            .map_err(|e| Error::io(&self.path.join(&rel), e))
    }

    /// Delete a ref (the caller holds the write lock).
    pub(crate) fn remove_ref(&self, name: &str) -> Result<()> {
        validate_ref_name(name)?;
        let path = self.path.join(Self::ref_rel(name));
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        // Remove directories the ref leaves empty, up to refs/heads.
        let heads = self.path.join("refs/heads");
        let mut dir = path.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == heads || std::fs::remove_dir(&d).is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        let _ = rustix::fs::fsync(fsutil::open_dir(&heads).map_err(|e| Error::io(&heads, e))?);
        Ok(())
    }

    /// All refs, sorted by name.
    pub fn list_refs(&self) -> Result<Vec<(String, ObjectId)>> {
        let heads = self.path.join("refs/heads");
        let mut out = Vec::new();
        let mut stack = vec![(heads.clone(), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            let rd = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
            for ent in rd {
                let ent = ent.map_err(|e| Error::io(&dir, e))?;
                let Ok(name) = ent.file_name().into_string() else {
                    continue;
                };
                if name.starts_with('.') {
                    continue; // temporary files of an atomic write
                }
                let full = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                let ft = ent.file_type().map_err(|e| Error::io(&ent.path(), e))?;
                if ft.is_dir() {
                    stack.push((ent.path(), full));
                } else if let Some(id) = self.read_ref(&full)? {
                    out.push((full, id));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["main", "os/x86_64/stable", "v1.0", "a-b_c"] {
            assert!(validate_ref_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/abs",
            "a/",
            "a//b",
            "a..b",
            "../x",
            "has space",
            "tab\tx",
            "ctl\u{1}",
            "x.lock",
            ".hidden",
            "a:b",
        ] {
            assert!(validate_ref_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
