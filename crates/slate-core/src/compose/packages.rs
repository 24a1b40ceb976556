//! The Debian packages of a tree: read from dpkg's status file (in the
//! image at [`STATUS`], where compose moves dpkg's database) or from a
//! `.deb`'s control file, and compared between two images.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::ObjectId;
use crate::object::EntryKind;
use crate::store::ObjectRead;
use crate::walk;

/// dpkg's database in a composed image (`/var/lib/dpkg` links to it).
pub const DPKG_DIR: &str = "usr/lib/sysimage/dpkg";
/// dpkg's status file in a composed image.
pub const STATUS: &str = "usr/lib/sysimage/dpkg/status";

/// One installed package.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
}

/// The paragraphs of a deb822 text (a control or status file): fields in
/// order, continuation lines kept with their newline.
pub fn paragraphs(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut cur: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.last_mut() {
                v.push('\n');
                v.push_str(line);
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn field<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The package a control paragraph describes.
pub fn from_control(p: &[(String, String)]) -> Option<Package> {
    Some(Package {
        name: field(p, "Package")?.to_string(),
        version: field(p, "Version")?.to_string(),
        architecture: field(p, "Architecture").unwrap_or("all").to_string(),
    })
}

/// The installed packages of a dpkg status file, sorted by name.
pub fn installed(status: &str) -> Vec<Package> {
    let mut out: Vec<Package> = paragraphs(status)
        .iter()
        .filter(|p| field(p, "Status").is_some_and(|s| s.ends_with(" installed")))
        .filter_map(|p| from_control(p))
        .collect();
    out.sort();
    out
}

/// The packages of the image `tree`, or `None` when it has no dpkg
/// database (at [`STATUS`], or at `var/lib/dpkg/status` for a tree that
/// was not composed).
pub fn of_tree<S: ObjectRead + ?Sized>(
    store: &S,
    tree: &ObjectId,
) -> crate::store::Result<Option<Vec<Package>>> {
    for path in [STATUS, "var/lib/dpkg/status"] {
        if let Some((EntryKind::File, id)) = walk::lookup(store, tree, path.as_bytes())? {
            let (_, content) = store.read_file(&id)?;
            return Ok(Some(installed(&String::from_utf8_lossy(&content))));
        }
    }
    Ok(None)
}

/// How the packages of two images differ.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub added: Vec<Package>,
    pub removed: Vec<Package>,
    /// Same name, another version or architecture: (old, new).
    pub changed: Vec<(Package, Package)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// What changed from `old` to `new` (packages keyed by name).
pub fn changes(old: &[Package], new: &[Package]) -> Changes {
    let by_name = |v: &[Package]| -> BTreeMap<String, Package> {
        v.iter().map(|p| (p.name.clone(), p.clone())).collect()
    };
    let (o, n) = (by_name(old), by_name(new));
    let mut c = Changes::default();
    for (name, p) in &n {
        match o.get(name) {
            None => c.added.push(p.clone()),
            Some(q) if q != p => c.changed.push((q.clone(), p.clone())),
            Some(_) => {}
        }
    }
    c.removed = o
        .iter()
        .filter(|(k, _)| !n.contains_key(*k))
        .map(|(_, p)| p.clone())
        .collect();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_TEXT: &str = "Package: base-files\nStatus: install ok installed\n\
Version: 12.4+deb12u5\nArchitecture: amd64\nDescription: base\n more text\n\n\
Package: gone\nStatus: deinstall ok config-files\nVersion: 1\nArchitecture: all\n\n\
Package: apt\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.6.1\n";

    #[test]
    fn installed_packages_only_sorted() {
        let p = installed(STATUS_TEXT);
        let names: Vec<_> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["apt", "base-files"]);
        assert_eq!(p[1].version, "12.4+deb12u5");
        assert_eq!(p[0].architecture, "amd64");
    }

    #[test]
    fn changes_between_lists() {
        let pk = |n: &str, v: &str| Package {
            name: n.into(),
            version: v.into(),
            architecture: "amd64".into(),
        };
        let c = changes(
            &[pk("a", "1"), pk("b", "1"), pk("c", "1")],
            &[pk("a", "1"), pk("b", "2"), pk("d", "1")],
        );
        assert_eq!(c.added, vec![pk("d", "1")]);
        assert_eq!(c.removed, vec![pk("c", "1")]);
        assert_eq!(c.changed, vec![(pk("b", "1"), pk("b", "2"))]);
        assert!(changes(&[pk("a", "1")], &[pk("a", "1")]).is_empty());
    }
}
