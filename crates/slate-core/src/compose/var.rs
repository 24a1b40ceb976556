//! `/var` out of the image (`docs/stateless.md`): what a build leaves
//! there that differs from run to run (caches, logs, generated ids) is
//! removed; dpkg's database moves into `/usr` (the image still knows what
//! it holds); everything else becomes tmpfiles.d lines, `d` for a folder
//! and `C` from a factory copy in `/usr/share/factory/var` for content, so
//! a machine with an empty `/var` rebuilds it. Paths the tree's own
//! tmpfiles.d lines already make are left to them.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use super::etc::tmpfiles_field as field;
use super::packages::DPKG_DIR;
use super::Error;

pub const TMPFILES: &str = "usr/lib/tmpfiles.d/slate-var.conf";
pub const FACTORY: &str = "usr/share/factory/var";

/// Paths (below the root) whose content a Debian build leaves behind and
/// that differ from one build to the next, or that belong to one machine:
/// a folder listed with `/*` loses its entries (itself stays), a file is
/// removed. Logs are emptied file by file (their folders stay).
pub const NOISE: &[&str] = &[
    "var/cache/apt/*",
    "var/lib/apt/lists/*",
    "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/cache/debconf/passwords.dat-old",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/diversions-old",
    "var/lib/dpkg/statoverride-old",
    "var/lib/dpkg/available-old",
    "var/lib/dbus/machine-id",
    "var/lib/systemd/random-seed",
    "var/lib/systemd/catalog/database",
    // systemd-resolved's postinst keeps the resolv.conf it replaced by a
    // link; resolv.conf is the machine's own.
    "etc/.resolv.conf.systemd-resolved.bak",
    "var/tmp/*",
    "tmp/*",
    "run/*",
];

/// What leaving `/var` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Moved {
    /// Paths removed as build noise (absolute in the image).
    pub removed: Vec<String>,
    /// The tmpfiles.d lines written.
    pub lines: Vec<String>,
    /// Paths left to the tree's own tmpfiles.d lines.
    pub left_to_lines: Vec<String>,
}

fn remove_any(p: &Path) -> Result<(), Error> {
    let m = std::fs::symlink_metadata(p).map_err(Error::io(p))?;
    if m.is_dir() {
        std::fs::remove_dir_all(p).map_err(Error::io(p))
    } else {
        std::fs::remove_file(p).map_err(Error::io(p))
    }
}

fn sorted_names(dir: &Path) -> Result<Vec<std::ffi::OsString>, Error> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(Error::io(dir))?;
    v.sort();
    Ok(v)
}

/// Empty every regular file of the log folder (recursively), keeping the
/// folders: their owners and modes are what packages expect.
fn clear_logs(dir: &Path, root: &Path, out: &mut Vec<String>) -> Result<(), Error> {
    for name in sorted_names(dir)? {
        let p = dir.join(&name);
        let m = std::fs::symlink_metadata(&p).map_err(Error::io(&p))?;
        if m.is_dir() {
            clear_logs(&p, root, out)?;
        } else {
            std::fs::remove_file(&p).map_err(Error::io(&p))?;
            out.push(shown(root, &p));
        }
    }
    Ok(())
}

fn shown(root: &Path, p: &Path) -> String {
    format!("/{}", p.strip_prefix(root).unwrap_or(p).to_string_lossy())
}

/// Remove the build noise ([`NOISE`], the logs) from the tree at `root`.
pub fn remove_noise(root: &Path) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for n in NOISE {
        if let Some(dir) = n.strip_suffix("/*") {
            let d = root.join(dir);
            if !d.is_dir() || d.is_symlink() {
                continue;
            }
            for name in sorted_names(&d)? {
                let p = d.join(name);
                remove_any(&p)?;
                out.push(shown(root, &p));
            }
        } else {
            let p = root.join(n);
            if std::fs::symlink_metadata(&p).is_ok() {
                remove_any(&p)?;
                out.push(shown(root, &p));
            }
        }
    }
    let logs = root.join("var/log");
    if logs.is_dir() && !logs.is_symlink() {
        clear_logs(&logs, root, &mut out)?;
    }
    Ok(out)
}

/// The tree's own tmpfiles.d configuration, read as systemd-tmpfiles
/// reads it on the machine.
pub fn tree_tmpfiles(root: &Path) -> Result<crate::tmpfiles::Config, Error> {
    let opts = crate::tmpfiles::Options {
        root: Some(root.to_path_buf()),
        create: true,
        ..Default::default()
    };
    let r = opts.open_root().map_err(Error::io(root))?;
    let mut log = crate::tmpfiles::Log::default();
    crate::tmpfiles::load(&r, &opts, &crate::tmpfiles::Host::for_image(), &mut log).map_err(|_| {
        Error::Input(format!(
            "the tree's tmpfiles.d files do not load: {:?}",
            log.events
        ))
    })
}

/// Line types that make a folder (its content is still to be placed).
const DIR_TYPES: &[u8] = b"dDvqQ";
/// Line types that make a path whole.
const MAKE_TYPES: &[u8] = b"fFwLcbpC";

/// The kinds of lines configured for `path`.
fn kinds(config: &crate::tmpfiles::Config, path: &str) -> Vec<u8> {
    config
        .items
        .get(path)
        .map(|&i| config.arrays[i].items.iter().map(|x| x.kind).collect())
        .unwrap_or_default()
}

struct Walk<'a> {
    root: &'a Path,
    config: &'a crate::tmpfiles::Config,
    /// Every configured plain path, to know which folders hold one.
    configured: Vec<&'a str>,
    out: Moved,
}

impl Walk<'_> {
    fn holds_configured(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.configured.iter().any(|p| p.starts_with(&prefix))
    }

    fn to_factory(&self, rel: &str) -> Result<(), Error> {
        let from = self.root.join(rel);
        let to = self
            .root
            .join(FACTORY)
            .join(rel.strip_prefix("var/").unwrap_or(rel));
        let parent = to.parent().expect("below the factory");
        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        std::fs::rename(&from, &to).map_err(Error::io(&from))
    }

    /// Place the entries of the folder `rel` (below the root).
    fn dir(&mut self, rel: &str) -> Result<(), Error> {
        let dir = self.root.join(rel);
        for name in sorted_names(&dir)? {
            let p = dir.join(&name);
            let Some(name) = name.to_str() else {
                return Err(Error::Input(format!(
                    "{}: a name that is not UTF-8 has no tmpfiles.d line",
                    p.display()
                )));
            };
            let r = format!("{rel}/{name}");
            let abs = format!("/{r}");
            let f = field(&abs).ok_or_else(|| {
                Error::Input(format!(
                    "{}: a name with a control character has no tmpfiles.d line",
                    p.display()
                ))
            })?;
            let m = std::fs::symlink_metadata(&p).map_err(Error::io(&p))?;
            let k = kinds(self.config, &abs);
            if k.iter().any(|c| MAKE_TYPES.contains(c)) && !m.is_dir()
                || k.iter().any(|c| *c == b'C' || *c == b'L')
            {
                self.out.left_to_lines.push(abs);
                continue;
            }
            if m.is_dir() {
                let dir_line = k.iter().any(|c| DIR_TYPES.contains(c));
                let empty = std::fs::read_dir(&p)
                    .map_err(Error::io(&p))?
                    .next()
                    .is_none();
                if dir_line {
                    self.out.left_to_lines.push(abs.clone());
                    self.dir(&r)?;
                } else if empty || self.holds_configured(&abs) {
                    self.out.lines.push(format!(
                        "d {f} {:04o} {} {} -",
                        m.mode() & 0o7777,
                        m.uid(),
                        m.gid()
                    ));
                    self.dir(&r)?;
                } else {
                    self.to_factory(&r)?;
                    self.out.lines.push(format!("C {f} - - - -"));
                }
            } else if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).map_err(Error::io(&p))?;
                let t = t.to_str().and_then(field).ok_or_else(|| {
                    Error::Input(format!(
                        "{}: a link target no tmpfiles.d line can carry",
                        p.display()
                    ))
                })?;
                self.out.lines.push(format!("L {f} - - - - {t}"));
            } else {
                self.to_factory(&r)?;
                self.out.lines.push(format!("C {f} - - - -"));
            }
        }
        Ok(())
    }
}

/// Move dpkg's database into `/usr` and the rest of `/var` to tmpfiles.d
/// lines and the factory. `/var` is left an empty folder with its mode.
pub fn move_var(root: &Path) -> Result<Moved, Error> {
    let var = root.join("var");
    let mut extra = Vec::new();
    let dpkg = root.join("var/lib/dpkg");
    if dpkg.is_dir() && !dpkg.is_symlink() {
        let to = root.join(DPKG_DIR);
        let parent = to.parent().expect("DPKG_DIR has a parent");
        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        if to.exists() {
            return Err(Error::Input(format!(
                "{}: the tree has a dpkg database in /usr already (made stateless before?)",
                to.display()
            )));
        }
        std::fs::rename(&dpkg, &to).map_err(Error::io(&dpkg))?;
        extra.push(format!("L /var/lib/dpkg - - - - /{DPKG_DIR}"));
    }
    if !var.is_dir() || var.is_symlink() {
        return Ok(Moved::default());
    }
    let config = tree_tmpfiles(root)?;
    let mut w = Walk {
        root,
        config: &config,
        configured: config.items.keys().map(String::as_str).collect(),
        out: Moved::default(),
    };
    w.dir("var")?;
    let mut out = w.out;
    out.lines.extend(extra);
    // What is left in /var is made by the tree's own lines.
    for name in sorted_names(&var)? {
        remove_any(&var.join(name))?;
    }
    let conf = root.join(TMPFILES);
    let conf_dir = conf.parent().expect("TMPFILES has a parent");
    std::fs::create_dir_all(conf_dir).map_err(Error::io(conf_dir))?;
    let mut text =
        String::from("# /var rebuilt from the image's factory defaults (slate compose).\n");
    for l in &out.lines {
        text.push_str(l);
        text.push('\n');
    }
    let dir = crate::fsutil::open_dir(conf_dir).map_err(Error::io(conf_dir))?;
    crate::fsutil::atomic_write_at(&dir, "slate-var.conf", text.as_bytes(), 0o644)
        .map_err(Error::io(&conf))?;
    Ok(out)
}
