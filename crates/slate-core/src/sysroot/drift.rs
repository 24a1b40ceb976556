//! `config-diff`: how far a machine has drifted from its image. `/etc`
//! against the image's `/etc` (every path added, modified or removed,
//! metadata included); `/var`: every path no tmpfiles.d line of the image
//! declares (the top-most one of an undeclared subtree).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::status::Ordered;
use super::{io_err, Error, EtcMode, Result, Sysroot, VarMode};
use crate::confd::Host;
use crate::diff;
use crate::hash::ObjectId;
use crate::object::EntryKind;
use crate::progress::Progress;
use crate::store::ObjectRead;
use crate::{tmpfiles, walk};

#[derive(Clone, Debug, Serialize)]
pub struct Drift {
    /// `OS/ID`.
    pub deployment: String,
    /// The directory compared as `/etc` (none: a stateless `/etc` of a
    /// deployment not running has nothing to compare).
    pub etc_dir: Option<String>,
    pub etc: Vec<diff::Entry>,
    /// The directory read as `/var` (none: volatile and not running).
    pub var_dir: Option<String>,
    /// Paths of `/var` no tmpfiles.d line declares.
    pub var: Vec<String>,
}

/// What the image's tmpfiles.d lines name: plain paths and globs.
struct Declared {
    paths: Vec<String>,
    globs: Vec<(String, tmpfiles::fs::Matcher)>,
}

impl Declared {
    fn of(deployment: &Path) -> Declared {
        let opts = tmpfiles::Options {
            root: Some(deployment.to_path_buf()),
            create: true,
            ..tmpfiles::Options::default()
        };
        let mut log = tmpfiles::Log::default();
        let host = Host::for_image();
        let config = opts
            .open_root()
            .ok()
            .and_then(|root| tmpfiles::load(&root, &opts, &host, &mut log).ok())
            .unwrap_or_default();
        Declared {
            paths: config.items.keys().cloned().collect(),
            globs: config
                .globs
                .keys()
                .map(|g| (g.clone(), tmpfiles::fs::Matcher::new(g)))
                .collect(),
        }
    }

    fn declares(&self, p: &str) -> bool {
        self.paths.iter().any(|x| x == p) || self.globs.iter().any(|(_, m)| m.matches(p))
    }

    /// Whether something declared lies below `p`.
    fn below(&self, p: &str) -> bool {
        let prefix = format!("{p}/");
        self.paths.iter().any(|x| x.starts_with(&prefix))
            || self.globs.iter().any(|(g, _)| g.starts_with(&prefix))
    }
}

impl Sysroot {
    /// Whether `d` is the deployment running this process (not merely
    /// named as booted).
    fn is_running(&self, d: &Ordered) -> bool {
        self.running && self.booted.as_deref() == Some(d.record.name().as_str())
    }

    /// The drift of a deployment (an index, `OS/ID` or ID; by default the
    /// booted one, else the default).
    pub fn config_diff(&self, which: Option<&str>) -> Result<Drift> {
        let order = self.ordered()?;
        let d = match which {
            Some(w) => self.find(&order, w)?,
            None => match self.booted.as_deref() {
                Some(b) => self.find(&order, b)?,
                None => order
                    .first()
                    .cloned()
                    .ok_or_else(|| Error::Refused("there are no deployments".into()))?,
            },
        };
        let cfg = self.os_config(&d.record.os)?;
        let running = self.is_running(&d);
        let dep = self.deployment_path(&d.record);
        let etc_dir: Option<PathBuf> = match (running, cfg.etc) {
            (true, _) => Some("/etc".into()),
            (false, EtcMode::Persistent) => Some(dep.join("etc")),
            (false, EtcMode::Stateless) => None,
        };
        let var_dir: Option<PathBuf> = match (running, cfg.var) {
            (true, _) => Some("/var".into()),
            (false, VarMode::Persistent) => Some(self.state_dir(&d.record.os).join("var")),
            (false, VarMode::Volatile) => None,
        };
        let commit = ObjectId::from_hex(&d.record.commit)
            .map_err(|e| Error::Refused(format!("record of {}: {e}", d.record.name())))?;
        let tree = self.repo.read_commit(&commit)?.tree;
        let etc = match &etc_dir {
            Some(dir) if dir.is_dir() => match walk::lookup(&self.repo, &tree, b"etc")? {
                Some((EntryKind::Dir, etc_tree)) => {
                    diff::diff_dir(&self.repo, &etc_tree, dir, None, &Progress::default())
                        .map(|v| rebase(v, b"/etc"))
                        .map_err(|e| Error::Refused(format!("comparing {}: {e}", dir.display())))?
                }
                // No /etc in the image: everything there is the machine's.
                _ => all_added(dir)?,
            },
            _ => Vec::new(),
        };
        let var = match &var_dir {
            Some(dir) if dir.is_dir() => undeclared(dir, &Declared::of(&dep))?,
            _ => Vec::new(),
        };
        Ok(Drift {
            deployment: d.record.name(),
            etc_dir: etc_dir.map(|p| p.display().to_string()),
            etc,
            var_dir: var_dir.map(|p| p.display().to_string()),
            var,
        })
    }
}

/// `diff_dir` of the whole tree against the `/etc` directory compares the
/// image's root with it; compare its `/etc` instead and name paths below
/// `/etc`.
fn rebase(entries: Vec<diff::Entry>, base: &[u8]) -> Vec<diff::Entry> {
    entries
        .into_iter()
        .map(|mut e| {
            let mut p = base.to_vec();
            if e.path != b"/" {
                p.extend_from_slice(&e.path);
            }
            e.path = p;
            e
        })
        .collect()
}

/// The top-most paths below `dir` (shown as `/var/...`) that `d` does not
/// declare.
fn undeclared(dir: &Path, d: &Declared) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), "/var".to_string())];
    while let Some((path, shown)) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&path)
            .map_err(io_err(&path))?
            .filter_map(|e| e.ok())
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names.into_iter().rev() {
            let name = e.file_name().to_string_lossy().into_owned();
            let p = format!("{shown}/{name}");
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if d.declares(&p) || d.below(&p) {
                if is_dir {
                    stack.push((e.path(), p));
                }
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Every path below `dir`, as added below `/etc`.
fn all_added(dir: &Path) -> Result<Vec<diff::Entry>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), b"/etc".to_vec())];
    while let Some((path, shown)) = stack.pop() {
        for e in std::fs::read_dir(&path).map_err(io_err(&path))?.flatten() {
            let mut p = shown.clone();
            p.push(b'/');
            p.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(
                e.file_name().as_os_str(),
            ));
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            out.push(diff::Entry {
                change: diff::Change::Added,
                path: p.clone(),
                dir: is_dir,
            });
            if is_dir {
                stack.push((e.path(), p));
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
