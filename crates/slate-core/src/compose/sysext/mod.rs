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
use crate::progress::Progress;
use crate::store::{ObjectRead, Repo};

pub use crate::ext_release::{check_tree, ext_release, os_release, Release, RELEASE_DIR};

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
    if m.deploy.usr == crate::image_meta::UsrMode::Verity {
        return Err((
            0,
            "[deploy] usr = \"verity\" is an OS image's: a system extension is merged over \
             the /usr of its base"
                .into(),
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
    let base_rev = m
        .image
        .base
        .as_ref()
        .map(|b| b.get_ref().clone())
        .unwrap_or_default();
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
    let os = os_release(repo, &base_tree)?
        .filter(|r| !r.id.is_empty())
        .ok_or_else(|| {
            Error::Input(format!(
                "[image] base {base_rev} ({}): no usr/lib/os-release with ID=",
                base.to_hex()
            ))
        })?;
    let request = ObjectId::digest(format!("sysext over {}", base.to_hex()).as_bytes()).to_hex();
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
                // The pins of a lockfile made over the same base only.
                let locked = old_lock
                    .as_ref()
                    .filter(|l| !opts.update && l.request == request)
                    .map(|l| l.packages.as_slice());
                for (deb, pin) in packages::download(repo, &base_tree, names, work.path(), locked)?
                {
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
        request,
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
        usr_root_hash: None,
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
