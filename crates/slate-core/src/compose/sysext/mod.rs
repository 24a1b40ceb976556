//! System extensions (`[image] kind = "sysext"`): an image of files under
//! `/usr` and `/opt` that `systemd-sysext` merges over an OS image at
//! boot. Composed against its OS image (`[image] base`, a ref or commit of
//! the repository composed into): the inputs (`files`, `.deb` files,
//! packages downloaded by apt against the base's dpkg database, so what
//! the base has is not fetched again) are put into an empty tree; a path
//! outside `/usr` and `/opt`, or one the base has with other content, is
//! refused naming it; a file the base has as it is, is left out; then
//! `usr/lib/extension-release.d/extension-release.NAME` is written with
//! the base's `ID=` and its `SYSEXT_LEVEL=` (else `VERSION_ID=`), and the
//! tree committed with the image's name in its metadata.

mod confine;
mod packages;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::base::{self, Made};
use super::build::{Composed, Event, Options, Timer};
use super::image::Added;
use super::lock::{LockedInput, LockedPackage, Lockfile, VERSION};
use super::manifest::{Image, Input, Manifest};
use super::Error;
use crate::commit::{CommitOptions, ParentSpec, Source};
use crate::hash::ObjectId;
use crate::image_name::{self, Kind};
use crate::object::EntryKind;
use crate::progress::Progress;
use crate::store::{ObjectRead, Repo};
use crate::walk;

pub use confine::check_tree;

/// Where an extension's release file is, below its tree.
pub const RELEASE_DIR: &str = "usr/lib/extension-release.d";

/// What a system extension is.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Extension {
    /// Its name (`extension-release.NAME`).
    pub name: String,
    /// The OS image's commit it was checked against.
    pub base: ObjectId,
    /// Its release file's lines (`ID=`, and `SYSEXT_LEVEL=` or
    /// `VERSION_ID=`).
    pub release: Vec<String>,
    /// Files the inputs gave that the base has, the same: left out.
    pub left_out: Vec<String>,
    /// Paths of the extension (files, links).
    pub files: usize,
}

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

/// `[image]` checked and completed: a vendor and architecture that are
/// name parts, the default ref from the name when none is given; a
/// system extension's name and base. Errors at an offset of the file.
pub(crate) fn check_image(image: &mut Image) -> Result<(), (usize, String)> {
    for f in [&image.vendor, &image.arch].into_iter().flatten() {
        if !image_name::valid_part(f.get_ref()) {
            return Err((
                f.span().start,
                format!(
                    "{:?} is not a part of a name: letters, digits, '.', '_', '-', '+', '~'",
                    f.get_ref()
                ),
            ));
        }
    }
    if image.vendor.is_some() && !image_name::valid_part(image.version.get_ref()) {
        return Err((
            image.version.span().start,
            "with a vendor the version is a part of the image's name: letters, digits, \
             '.', '_', '-', '+', '~'"
                .into(),
        ));
    }
    match (image.kind, &image.base) {
        (Kind::Os, Some(b)) => {
            return Err((
                b.span().start,
                "base is a system extension's (kind = \"sysext\")".into(),
            ))
        }
        (Kind::Sysext, None) => {
            return Err((
                image.name.span().start,
                "a system extension needs base = \"REF\" (its OS image, a ref or commit)".into(),
            ))
        }
        (Kind::Sysext, Some(b)) if b.get_ref().is_empty() || b.get_ref().contains(':') => {
            return Err((
                b.span().start,
                "base is a ref or commit of the repository composed into".into(),
            ))
        }
        _ => {}
    }
    if image.kind == Kind::Sysext && !image_name::valid_ext_name(image.name.get_ref()) {
        return Err((
            image.name.span().start,
            "a system extension's name is its file name (extension-release.NAME): \
             letters, digits, '.', '_', '-'"
                .into(),
        ));
    }
    if image.branch.get_ref().is_empty() {
        let Some(n) = image.name_parts() else {
            return Err((
                0,
                "[image]: give ref = \"REF\", or vendor = \"VENDOR\" to name it (usr/VENDOR/ARCH)"
                    .into(),
            ));
        };
        image.branch = toml::Spanned::new(0..0, n.default_ref());
    }
    Ok(())
}

/// A system extension's inputs: at least one; none that makes a tree.
pub(crate) fn check_inputs(m: &Manifest) -> Result<(), (usize, String)> {
    if m.inputs.is_empty() {
        return Err((
            0,
            "a system extension needs inputs: packages, deb or files".into(),
        ));
    }
    for (i, input) in m.inputs.iter().enumerate() {
        if input.get_ref().is_base() {
            return Err((
                input.span().start,
                format!(
                    "input {} ({}): a system extension's inputs are packages, deb and files; \
                     its base is [image] base",
                    i + 1,
                    input.get_ref().kind()
                ),
            ));
        }
    }
    Ok(())
}

/// Compose the system extension of `opts.manifest` into `repo`.
pub fn compose(
    repo: &Repo,
    opts: &Options,
    report: &mut dyn FnMut(Event<'_>),
) -> Result<Composed, Error> {
    let m = &opts.manifest.manifest;
    let name = m.image.name.get_ref().clone();
    let base_rev = m.image.base.as_ref().map(|b| b.get_ref().clone()).unwrap_or_default();
    let mut timer = Timer {
        steps: Vec::new(),
        at: Instant::now(),
        current: String::new(),
        report,
    };
    timer.start(&format!("base: the image {base_rev}"));
    let base = repo.rev_parse(&base_rev).map_err(|e| {
        Error::Input(format!(
            "{}: [image] base {base_rev:?}: {e}",
            opts.manifest.path.display()
        ))
    })?;
    let base_tree = repo.read_commit(&base)?.tree;
    let os = os_release(repo, &base_tree)?.filter(|r| !r.id.is_empty()).ok_or_else(|| {
        Error::Input(format!(
            "[image] base {base_rev} ({}): no usr/lib/os-release with ID=",
            base.to_hex()
        ))
    })?;
    let request = format!("sysext over {}", base.to_hex());
    let old_lock = Lockfile::read(&opts.lockfile)?;
    if opts.locked && old_lock.is_none() {
        return Err(Error::NoLockfile(opts.lockfile.clone()));
    }
    let cache = super::cache::Cache::open(&opts.cache_dir)?;
    let work = cache.work_dir()?;
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).map_err(Error::io(&tree))?;
    let mut inputs = Vec::new();
    let mut pins = Vec::new();
    for (i, input) in m.inputs.iter().enumerate() {
        match input.get_ref() {
            Input::Files { source, target } => {
                timer.start(&format!("files: {} -> {target}", source.display()));
                inputs.push(LockedInput {
                    kind: "files".into(),
                    path: target.clone(),
                    digest: base::digest_path(source)?,
                });
                super::files::add(&tree, source, target, &opts.manifest.files_roots)?;
            }
            Input::Deb { path, sha256 } => {
                timer.start(&format!("deb: {}", path.display()));
                base::check_digest(&format!("input {} (deb)", i + 1), path, sha256)?;
                inputs.push(LockedInput {
                    kind: "deb".into(),
                    path: path.display().to_string(),
                    digest: sha256.clone(),
                });
                packages::extract(path, &tree)?;
            }
            Input::Packages { names } => {
                timer.start(&format!("packages: {} against the base's", names.join(" ")));
                let locked = old_lock
                    .as_ref()
                    .filter(|_| !opts.update)
                    .map(|l| l.packages.as_slice());
                for (deb, pin) in packages::download(repo, &base_tree, names, work.path(), locked)? {
                    packages::extract(&deb, &tree)?;
                    pins.push(pin);
                }
            }
            other => {
                return Err(Error::Input(format!(
                    "input {} ({}): not an input of a system extension",
                    i + 1,
                    other.kind()
                )))
            }
        }
    }
    pins.sort();
    let built = Lockfile {
        version: VERSION,
        request: ObjectId::digest(request.as_bytes()).to_hex(),
        sources: None,
        inputs,
        packages: pins,
    };
    if opts.locked {
        let d = old_lock.as_ref().expect("checked").differences(&built);
        if !d.is_empty() {
            return Err(Error::Locked {
                path: opts.lockfile.clone(),
                differences: d,
            });
        }
    }

    timer.start("checked against the base");
    let checked = confine::against_base(repo, &base_tree, &tree)?;
    let release = os.extension_lines();
    confine::write_release(&tree, &name, &release)?;

    timer.start(&format!("commit to {}", m.image.branch.get_ref()));
    let out = commit(repo, opts, &tree, &base)?;
    timer.start("lockfile");
    let lock_written = !opts.locked && old_lock.as_ref() != Some(&built);
    if lock_written {
        built.write(&opts.lockfile, &opts.manifest.path)?;
    }
    drop(work);
    timer.finish();
    Ok(Composed {
        id: out.id,
        parent: out.parent,
        unchanged: out.unchanged,
        branch: m.image.branch.get_ref().clone(),
        base: Made::Image,
        packages: built.packages.iter().map(LockedPackage::package).collect(),
        lock_written,
        removed_noise: Vec::new(),
        etc_left_out: Vec::new(),
        etc_lines: 0,
        var_lines: 0,
        users_lines: 0,
        units_moved: 0,
        added: Added::default(),
        lint: Default::default(),
        steps: timer.steps,
        name: m.image.name_parts().map(|n| n.full()),
        extension: Some(Extension {
            name,
            base,
            release,
            left_out: checked.left_out,
            files: checked.files,
        }),
    })
}

/// The extension's tree committed to the manifest's branch, with its
/// name, version, base and name parts in the metadata.
fn commit(
    repo: &Repo,
    opts: &Options,
    tree: &Path,
    base: &ObjectId,
) -> Result<crate::commit::CommitOutcome, Error> {
    let m = &opts.manifest.manifest;
    let mut metadata = BTreeMap::new();
    metadata.insert(
        crate::image_meta::NAME.into(),
        m.image.name.get_ref().clone(),
    );
    metadata.insert(
        crate::image_meta::VERSION.into(),
        m.image.version.get_ref().clone(),
    );
    metadata.insert(image_name::KIND.into(), Kind::Sysext.as_str().into());
    metadata.insert(image_name::EXT_NAME.into(), m.image.name.get_ref().clone());
    metadata.insert(image_name::EXT_BASE.into(), base.to_hex());
    if let Some(n) = m.image.name_parts() {
        n.write(&mut metadata);
    }
    let copts = CommitOptions {
        branch: m.image.branch.get_ref().clone(),
        subject: format!(
            "{} {} (system extension)",
            m.image.name.get_ref(),
            m.image.version.get_ref()
        ),
        body: String::new(),
        timestamp: opts.epoch,
        metadata,
        parent: ParentSpec::Auto,
        skip_if_unchanged: !opts.always_commit,
    };
    Ok(crate::commit::commit(
        repo,
        Source::Dir(tree),
        &copts,
        &Progress::default(),
    )?)
}

#[cfg(test)]
mod tests;
