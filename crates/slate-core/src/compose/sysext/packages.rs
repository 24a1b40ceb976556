//! A system extension's packages: downloaded by apt as if installed on
//! the base (its dpkg database), so what the base has is not fetched; each
//! `.deb`'s files unpacked into the extension's tree (no maintainer
//! scripts: an extension is files).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::Error;
use crate::compose::cache::{deb_control, sha256_file};
use crate::compose::lock::LockedPackage;
use crate::compose::packages::{self, STATUS};
use crate::hash::ObjectId;
use crate::store::Repo;

/// The files of the `.deb` at `deb` unpacked into `tree` (`dpkg-deb -x`).
pub(crate) fn extract(deb: &Path, tree: &Path) -> Result<(), Error> {
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(tree)
        .output()
        .map_err(|e| Error::Tool {
            tool: "dpkg-deb".into(),
            message: format!("cannot run it: {e}"),
        })?;
    if !out.status.success() {
        return Err(Error::Input(format!(
            "{}: cannot unpack it: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// `names` and what they need that the base lacks, downloaded by the
/// host's apt (its sources) into the work folder, the base's dpkg status
/// as the installed state. With `locked`, each package must be the pinned
/// version and digest. Returns each `.deb` with its pin, sorted.
pub(crate) fn download(
    repo: &Repo,
    base_tree: &ObjectId,
    names: &[String],
    work: &Path,
    locked: Option<&[LockedPackage]>,
) -> Result<Vec<(PathBuf, LockedPackage)>, Error> {
    let apt = work.join("apt");
    let archives = apt.join("archives");
    let apt_cache = apt.join("cache");
    std::fs::create_dir_all(&apt_cache).map_err(Error::io(&apt_cache))?;
    std::fs::create_dir_all(archives.join("partial")).map_err(Error::io(&archives))?;
    let status = apt.join("status");
    let base_status = [STATUS, "var/lib/dpkg/status"]
        .iter()
        .find_map(|p| {
            let (crate::object::EntryKind::File, id) =
                crate::walk::lookup(repo, base_tree, p.as_bytes()).ok()??
            else {
                return None;
            };
            crate::store::ObjectRead::read_file(repo, &id).ok().map(|f| f.1)
        })
        .ok_or_else(|| {
            Error::Input(format!(
                "the base {} has no dpkg database (/{STATUS}): packages cannot be resolved against it",
                base_tree.short(12)
            ))
        })?;
    std::fs::write(&status, &base_status).map_err(Error::io(&status))?;
    let mut asked: Vec<String> = names.to_vec();
    if let Some(pins) = locked {
        // The pinned versions, by name.
        for a in &mut asked {
            let n = a.split_once('=').map_or(a.as_str(), |(n, _)| n).to_string();
            if let Some(p) = pins.iter().find(|p| p.name == n) {
                *a = format!("{}={}", p.name, p.version);
            }
        }
    }
    let out = Command::new("apt-get")
        .args(["-q", "-y", "--download-only", "--no-install-recommends"])
        .arg(format!("-oDir::State::status={}", status.display()))
        .arg(format!("-oDir::Cache={}/", apt_cache.display()))
        .arg(format!("-oDir::Cache::archives={}/", archives.display()))
        .arg("-oDebug::NoLocking=1")
        .arg("-oAPT::Sandbox::User=root")
        .arg("install")
        .args(&asked)
        .output()
        .map_err(|e| Error::Tool {
            tool: "apt-get".into(),
            message: format!("cannot run it: {e}"),
        })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: "apt-get".into(),
            message: format!(
                "resolving {} against the base: {}",
                asked.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let mut got = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&archives)
        .map_err(Error::io(&archives))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    entries.sort();
    for deb in entries {
        let control = deb_control(&deb)?;
        let para = packages::paragraphs(&control);
        let p = para
            .first()
            .and_then(|p| packages::from_control(p))
            .ok_or_else(|| {
                Error::Input(format!(
                    "{}: no Package/Version/Architecture",
                    deb.display()
                ))
            })?;
        let sha256 = sha256_file(&deb)?;
        if let Some(pins) = locked {
            if let Some(pin) = pins.iter().find(|x| x.name == p.name) {
                if pin.sha256 != sha256 {
                    return Err(Error::Input(format!(
                        "package {} {}: sha256 {sha256}, the lockfile pins {}",
                        p.name, p.version, pin.sha256
                    )));
                }
            }
        }
        got.push((
            deb,
            LockedPackage {
                name: p.name,
                version: p.version,
                architecture: p.architecture,
                sha256,
                auto: false,
            },
        ));
    }
    Ok(got)
}
