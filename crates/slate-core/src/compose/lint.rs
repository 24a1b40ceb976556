//! The lint: every path of `/etc` and `/var` of the built tree must be
//! accounted for once the tree is stateless: made by a tmpfiles.d line of
//! the image (its own path, a glob over it, or a `C`/`L` line above it
//! whose source holds it), made per machine (identity, user databases,
//! SSH host keys), or excluded by the manifest. The check reads the
//! image's tmpfiles.d files as systemd-tmpfiles does on the machine; it
//! does not trust what the transformation meant to write.

use std::path::Path;

use serde::Serialize;

use super::Error;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Paths looked at.
    pub checked: usize,
    /// Made per machine, never shipped.
    pub per_machine: Vec<String>,
    /// Accepted by the manifest's `[lint] exclude`.
    pub excluded: Vec<String>,
    /// Accounted for by nothing.
    pub unaccounted: Vec<String>,
}

/// Every path below `/etc` and `/var` of the tree at `root`, absolute in
/// the image, sorted. Names that are not UTF-8 are shown escaped.
pub fn listing(root: &Path) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for top in ["etc", "var"] {
        let dir = root.join(top);
        if dir.is_dir() && !dir.is_symlink() {
            walk(&dir, &format!("/{top}"), &mut out)?;
        }
    }
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, shown: &str, out: &mut Vec<String>) -> Result<(), Error> {
    for e in std::fs::read_dir(dir).map_err(Error::io(dir))? {
        let e = e.map_err(Error::io(dir))?;
        let name = e.file_name();
        let s = format!(
            "{shown}/{}",
            crate::object::name::escape(std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()))
        );
        let ft = e.file_type().map_err(Error::io(&e.path()))?;
        out.push(s.clone());
        if ft.is_dir() {
            walk(&e.path(), &s, out)?;
        }
    }
    Ok(())
}

fn excluded(path: &str, excludes: &[String]) -> bool {
    excludes.iter().any(|e| match e.strip_suffix('/') {
        Some(dir) => path == dir || path.starts_with(e.as_str()),
        None => path == e,
    })
}

/// Check `before` (the listing taken before the tree was made
/// stateless) against the stateless tree at `root`.
pub fn check(root: &Path, before: &[String], excludes: &[String]) -> Result<Report, Error> {
    let config = super::var::tree_tmpfiles(root)?;
    // Lines that make a whole subtree from a source: (path, source).
    let mut sources: Vec<(String, String)> = Vec::new();
    for (path, &i) in &config.items {
        for item in &config.arrays[i].items {
            let arg = item
                .argument
                .as_ref()
                .map(|a| String::from_utf8_lossy(a).into_owned());
            match item.kind {
                b'C' => sources.push((
                    path.clone(),
                    arg.filter(|a| !a.is_empty())
                        .unwrap_or_else(|| format!("/usr/share/factory{path}")),
                )),
                b'L' => {
                    if let Some(t) = arg.filter(|a| !a.is_empty()) {
                        let abs = if t.starts_with('/') {
                            t
                        } else {
                            let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
                            format!("{parent}/{t}")
                        };
                        sources.push((path.clone(), abs));
                    }
                }
                _ => {}
            }
        }
    }
    let mut r = Report {
        checked: before.len(),
        ..Default::default()
    };
    for p in before {
        if let Some(rel) = p.strip_prefix("/etc/") {
            if super::etc::per_machine(rel) {
                r.per_machine.push(p.clone());
                continue;
            }
        }
        if excluded(p, excludes) {
            r.excluded.push(p.clone());
            continue;
        }
        if config.covers(p) {
            continue;
        }
        // Units moved into /usr, where PID 1 reads them.
        let moved = super::units::MOVES.iter().any(|(from, to)| {
            p.strip_prefix(&format!("/{from}"))
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                .is_some_and(|rest| {
                    std::fs::symlink_metadata(root.join(format!("{to}{rest}"))).is_ok()
                })
        });
        if moved {
            continue;
        }
        let from_source = sources.iter().any(|(a, src)| {
            let rest = if p == a {
                Some("")
            } else {
                p.strip_prefix(a.as_str()).filter(|x| x.starts_with('/'))
            };
            rest.is_some_and(|rest| {
                let there = root.join(format!("{}{rest}", src.trim_start_matches('/')));
                std::fs::symlink_metadata(there).is_ok()
            })
        });
        if !from_source {
            r.unaccounted.push(p.clone());
        }
    }
    Ok(r)
}
