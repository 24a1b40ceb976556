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
    /// Enabled units known to write into `/usr`, which is read-only on a
    /// deployment ([`WRITES_USR`]): "UNIT: why (enabled by PATH)".
    pub writes_usr: Vec<String>,
    /// Backup files an editor or a package tool left in `/etc`
    /// ([`BACKUP_SUFFIXES`]): the factory defaults would carry them.
    pub backups: Vec<String>,
}

/// Units that write into `/usr` (or exist to), which is read-only on a
/// deployment: an image that has them enabled fails them at every run.
/// Disable them in the manifest (`[units] disable`).
pub const WRITES_USR: &[(&str, &str)] = &[
    (
        "apt-daily.timer",
        "downloads packages for apt, which installs into /usr",
    ),
    (
        "apt-daily-upgrade.timer",
        "runs apt's unattended upgrades, which write into /usr",
    ),
    (
        "apt-daily.service",
        "downloads packages for apt, which installs into /usr",
    ),
    (
        "apt-daily-upgrade.service",
        "runs apt's unattended upgrades, which write into /usr",
    ),
    (
        "unattended-upgrades.service",
        "installs package upgrades into /usr",
    ),
    (
        "man-db.timer",
        "rebuilds the manual page index of a /usr that never changes",
    ),
    (
        "packagekit.service",
        "installs packages into /usr on request",
    ),
];

/// How the names of backup files end: an editor's (`~`), by hand
/// (`.bak`, `.orig`), dpkg's and ucf's when a configuration file changed.
pub const BACKUP_SUFFIXES: &[&str] = &[
    ".bak",
    "~",
    ".orig",
    ".dpkg-old",
    ".dpkg-dist",
    ".dpkg-new",
    ".ucf-old",
    ".ucf-dist",
    ".ucf-new",
];

/// Whether a path of `/etc` is a backup file ([`BACKUP_SUFFIXES`]).
pub fn is_backup(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    BACKUP_SUFFIXES
        .iter()
        .any(|s| name.len() > s.len() && name.ends_with(s))
}

/// The units of [`WRITES_USR`] enabled in the tree at `root` (a link in a
/// `.wants/` or `.requires/` folder of its unit folders) and not masked.
pub fn units_writing_usr(root: &Path) -> Vec<String> {
    let dirs = ["usr/lib/systemd/system", "etc/systemd/system"];
    let masked = |unit: &str| {
        dirs.iter().any(|d| {
            std::fs::read_link(root.join(d).join(unit)).is_ok_and(|t| t == Path::new("/dev/null"))
        })
    };
    let mut out = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(root.join(d)) else {
            continue;
        };
        let mut wants: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".wants") || n.ends_with(".requires"))
            .collect();
        wants.sort();
        for w in wants {
            for (unit, why) in WRITES_USR {
                let link = root.join(d).join(&w).join(unit);
                if std::fs::symlink_metadata(&link).is_ok() && !masked(unit) {
                    out.push(format!("{unit}: {why} (enabled by /{d}/{w}/{unit})"));
                }
            }
        }
    }
    out
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
        writes_usr: units_writing_usr(root),
        backups: before
            .iter()
            .filter(|p| p.starts_with("/etc/") && is_backup(p))
            .cloned()
            .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_files_are_known_by_their_names() {
        for b in [
            "/etc/.resolv.conf.systemd-resolved.bak",
            "/etc/motd~",
            "/etc/ssh/sshd_config.ucf-old",
            "/etc/ssh/sshd_config.ucf-dist",
            "/etc/default/grub.dpkg-dist",
            "/etc/apt/sources.list.dpkg-old",
        ] {
            assert!(is_backup(b), "{b}");
        }
        for n in [
            "/etc/motd",
            "/etc/bak",
            "/etc/~",
            "/etc/x.bakery",
            "/etc/dpkg/origins",
        ] {
            assert!(!is_backup(n), "{n}");
        }
    }

    #[test]
    fn enabled_units_that_write_usr_are_found_unless_masked() {
        let d = tempfile::tempdir().expect("tempdir");
        let wants = d.path().join("usr/lib/systemd/system/timers.target.wants");
        std::fs::create_dir_all(&wants).expect("mkdir");
        std::os::unix::fs::symlink(
            "/usr/lib/systemd/system/apt-daily.timer",
            wants.join("apt-daily.timer"),
        )
        .expect("link");
        std::os::unix::fs::symlink("/x", wants.join("fstrim.timer")).expect("link");
        let found = units_writing_usr(d.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("apt-daily.timer: ")
                && found[0].contains("/usr/lib/systemd/system/timers.target.wants/apt-daily.timer"),
            "{found:?}"
        );
        let etc = d.path().join("etc/systemd/system");
        std::fs::create_dir_all(&etc).expect("mkdir");
        std::os::unix::fs::symlink("/dev/null", etc.join("apt-daily.timer")).expect("mask");
        assert!(units_writing_usr(d.path()).is_empty());
    }
}
