//! One compose, start to end: the base tree (from the tree cache, the
//! package cache or the mirror), the other inputs, the manifest's
//! additions, the stateless transformation, the lint, the commit, and
//! the lockfile. The tree is built below the cache's `work/` and removed
//! after; nothing reaches the repository unless every step passed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::base::{self, Made, Request};
use super::cache::Cache;
use super::image::{self, Added};
use super::lint::{self, Report};
use super::lock::{LockedInput, LockedPackage, Lockfile, VERSION};
use super::manifest::{Input, Loaded};
use super::packages::{self, Package};
use super::{etc, units, users, var, Error};
use crate::commit::{CommitOptions, ParentSpec, Source};
use crate::hash::ObjectId;
use crate::image_meta::{self, ImageDeploy};
use crate::progress::Progress;
use crate::store::Repo;

#[derive(Clone, Debug)]
pub struct Options {
    pub manifest: Loaded,
    pub lockfile: PathBuf,
    /// Refuse any difference from the lockfile, and never write it.
    pub locked: bool,
    /// Ignore the lockfile's pins: take what the mirror has now.
    pub update: bool,
    /// Fail on unaccounted paths.
    pub strict: bool,
    pub cache_dir: PathBuf,
    /// Reuse (and keep) base trees in the cache.
    pub tree_cache: bool,
    /// Commit time, and SOURCE_DATE_EPOCH for the tools.
    pub epoch: i64,
    /// Commit even when the branch's commit has the same tree and
    /// metadata (by default the compose then returns that commit).
    pub always_commit: bool,
    /// The Slate binary put into images whose manifest asks for it
    /// (`[image] install-slate`, the default); `None`: none is.
    pub slate_bin: Option<PathBuf>,
    /// Slate for the initrd (a build without network code), put at
    /// `usr/lib/slate/slate-initrd`; dracut's module takes it in place of
    /// `usr/bin/slate` where it is there.
    pub initrd_bin: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub name: String,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Composed {
    pub id: ObjectId,
    pub parent: Option<ObjectId>,
    /// The branch's commit had this image already: no commit was made.
    pub unchanged: bool,
    /// The dm-verity root hash of `/usr`'s image (`[deploy] usr =
    /// "verity"`), recorded in the commit's metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usr_root_hash: Option<String>,
    pub branch: String,
    pub base: Made,
    pub packages: Vec<Package>,
    /// Whether the lockfile was written (new or changed).
    pub lock_written: bool,
    pub removed_noise: Vec<String>,
    pub etc_left_out: Vec<String>,
    pub etc_lines: usize,
    pub var_lines: usize,
    pub users_lines: usize,
    pub units_moved: usize,
    pub added: Added,
    pub lint: Report,
    pub steps: Vec<Step>,
    /// The image's name (`image_name`), when the manifest gives a vendor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What a system extension is (none for an OS image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<super::sysext::Extension>,
}

/// What a compose tells its caller while it runs.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// A step starts.
    Step(&'a str),
    /// What the running step's tool last said (mmdebstrap's `I:` lines).
    Detail(&'a str),
}

pub(super) struct Timer<'a> {
    pub(super) steps: Vec<Step>,
    pub(super) at: Instant,
    pub(super) current: String,
    pub(super) report: &'a mut dyn FnMut(Event<'_>),
}

impl Timer<'_> {
    pub(super) fn start(&mut self, name: &str) {
        self.finish();
        self.current = name.to_string();
        self.at = Instant::now();
        (self.report)(Event::Step(name));
    }
    pub(super) fn finish(&mut self) {
        if !self.current.is_empty() {
            self.steps.push(Step {
                name: std::mem::take(&mut self.current),
                seconds: self.at.elapsed().as_secs_f64(),
            });
        }
    }
}

/// The `SOURCE_DATE_EPOCH` mmdebstrap (and dracut inside it) makes a
/// base tree with, whatever the build's: the epoch only sets times in the
/// tree (which a Slate object does not hold) and the times of the files
/// packed in the initrd (`reproducible="yes"`), so a fixed one gives
/// the same base tree for every epoch and lets the tree cache serve builds
/// of any epoch. The build's epoch dates the commit.
pub(crate) const BASE_EPOCH: i64 = 0;

/// The key of a base tree in the tree cache: what makes the tree (the
/// base request, the packages by digest, this Slate), not the build's
/// `SOURCE_DATE_EPOCH` ([`BASE_EPOCH`]).
fn tree_key(request: &str, pins: &[LockedPackage], slate: &str) -> String {
    let mut h = crate::hash::Hasher::new();
    h.update(b"slate compose base tree 3\n");
    h.update(request.as_bytes());
    h.update(slate.as_bytes());
    for p in pins {
        h.update(p.sha256.as_bytes());
    }
    h.finish().to_hex()
}

const EXTENDED_STATES: &str = "var/lib/apt/extended_states";

/// The packages apt marks as installed automatically, by name and
/// architecture.
fn auto_installed(tree: &Path) -> Result<Vec<(String, String)>, Error> {
    let p = tree.join(EXTENDED_STATES);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&p)(e)),
    };
    let mut out = Vec::new();
    for para in packages::paragraphs(&text) {
        let get = |k: &str| para.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        if get("Auto-Installed").as_deref() == Some("1") {
            if let (Some(n), Some(a)) = (get("Package"), get("Architecture")) {
                out.push((n, a));
            }
        }
    }
    Ok(out)
}

/// apt's `extended_states` written from the pins, sorted: apt writes it
/// in the order it resolved, which differs from a build to the next.
fn write_extended_states(tree: &Path, pins: &[LockedPackage]) -> Result<(), Error> {
    let p = tree.join(EXTENDED_STATES);
    if !p.exists() && pins.iter().all(|x| !x.auto) {
        return Ok(());
    }
    let mut auto: Vec<&LockedPackage> = pins.iter().filter(|x| x.auto).collect();
    auto.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    let mut text = String::new();
    for x in auto {
        text.push_str(&format!(
            "Package: {}\nArchitecture: {}\nAuto-Installed: 1\n\n",
            x.name, x.architecture
        ));
    }
    std::fs::write(&p, text).map_err(Error::io(&p))
}

/// The packages of `tree` with the digests of the `.deb`s they came from.
fn locked_packages(
    tree: &Path,
    seen: &[super::cache::CachedDeb],
) -> Result<Vec<LockedPackage>, Error> {
    let auto = auto_installed(tree)?;
    let status = tree.join("var/lib/dpkg/status");
    let text = std::fs::read_to_string(&status).map_err(Error::io(&status))?;
    let by_pkg: BTreeMap<&Package, &str> = seen
        .iter()
        .map(|d| (&d.package, d.sha256.as_str()))
        .collect();
    let mut out = Vec::new();
    for p in packages::installed(&text) {
        let Some(sha) = by_pkg.get(&p) else {
            return Err(Error::Input(format!(
                "package {} {} ({}) is installed but no .deb of it was seen",
                p.name, p.version, p.architecture
            )));
        };
        out.push(LockedPackage {
            auto: auto
                .iter()
                .any(|(n, a)| *n == p.name && *a == p.architecture),
            sha256: sha.to_string(),
            name: p.name,
            version: p.version,
            architecture: p.architecture,
        });
    }
    Ok(out)
}

/// Build, make stateless, lint and commit the image of `opts.manifest`
/// into `repo`. `report` is told each step as it starts, and what the
/// tools say while they run.
pub fn compose(
    repo: &Repo,
    opts: &Options,
    report: &mut dyn FnMut(Event<'_>),
) -> Result<Composed, Error> {
    let m = &opts.manifest.manifest;
    if m.image.kind == crate::image_name::Kind::Sysext {
        return super::sysext::compose(repo, opts, report);
    }
    let inputs: Vec<Input> = m.inputs.iter().map(|i| i.get_ref().clone()).collect();
    let request = Request::of(&inputs);
    check_inputs(opts, &inputs, request.as_ref())?;
    let request_digest = request
        .as_ref()
        .map(Request::digest)
        .unwrap_or_else(|| "none".into());
    let old_lock = read_lock(opts, &request_digest)?;
    let pins: Option<&Lockfile> = old_lock
        .as_ref()
        .filter(|l| !opts.update && l.request == request_digest);

    let cache = Cache::open(&opts.cache_dir)?;
    let work = cache.work_dir()?;
    let stage = match (&opts.slate_bin, m.image.install_slate) {
        (Some(bin), true) => {
            let s = work.path().join("slate");
            image::stage_slate(&s, bin, opts.initrd_bin.as_deref())?;
            Some(s)
        }
        _ => None,
    };
    let slate_digest = match (&opts.slate_bin, &opts.initrd_bin) {
        (Some(bin), None) if m.image.install_slate => super::cache::sha256_file(bin)?,
        (Some(bin), Some(initrd)) if m.image.install_slate => format!(
            "{}+{}",
            super::cache::sha256_file(bin)?,
            super::cache::sha256_file(initrd)?
        ),
        _ => "none".into(),
    };
    let b = Build {
        opts,
        tree: work.path().join("tree"),
        work: work.path().to_path_buf(),
        cache,
        stage,
        request_digest,
        slate_digest,
    };
    let tree = &b.tree;
    let mut timer = Timer {
        steps: Vec::new(),
        at: Instant::now(),
        current: String::new(),
        report,
    };

    // 1. The base.
    let mut base = b.base(&mut timer, &inputs, request.as_ref(), pins)?;
    if let (Some(s), Made::Directory | Made::Tarball | Made::Oci) = (&b.stage, base.made) {
        base::copy_dir(s, tree, false)?;
    }

    // 2. The other inputs.
    other_inputs(
        tree,
        &mut timer,
        &inputs,
        &mut base.inputs,
        &opts.manifest.files_roots,
    )?;
    let built = Lockfile {
        version: VERSION,
        request: b.request_digest.clone(),
        sources: base.sources.clone(),
        inputs: base.inputs,
        packages: base.packages,
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

    // 3. What the manifest adds.
    timer.start("manifest: lines, units, kernel arguments; first boot; kernel");
    let mut added = Added::default();
    image::apply_manifest(tree, m, &mut added)?;
    super::updates::os_release(tree, m, &mut added)?;
    super::updates::update_and_remote(tree, m, &mut added)?;
    if let Some(f) = &m.fleet {
        super::fleet::apply(tree, f, &opts.manifest.files_roots, &mut added)?;
    }
    image::first_boot(tree, &mut added)?;
    added.kernel = image::move_kernel(tree)?;
    // The trusted keys of `[remote]` into the initrd (made with the base).
    super::initrd_keys::add_trusted_keys(tree)?;

    // 4. Stateless.
    timer.start("stateless: noise out, users, units, /etc, /var");
    let removed_noise = var::remove_noise(tree)?;
    let before = lint::listing(tree)?;
    let declared = users::declare(tree)?;
    let moved_units = units::move_units(tree)?;
    let moved_etc = etc::move_etc(tree)?;
    let moved_var = var::move_var(tree)?;

    timer.start("lint");
    let excludes: Vec<String> = m.lint.exclude.iter().map(|x| x.get_ref().clone()).collect();
    let lint = lint::check(tree, &before, &excludes)?;
    if opts.strict && !lint.unaccounted.is_empty() {
        return Err(Error::Lint(lint.unaccounted.clone()));
    }

    // 5. Commit.
    timer.start(&format!("commit to {}", m.image.branch.get_ref()));
    let out = commit_image(repo, opts, tree)?;
    let (out, usr_root_hash) = if m.deploy.usr == image_meta::UsrMode::Verity {
        timer.start("verity: the image of /usr, its root hash into the commit");
        let (o, h) = super::verity::seal(
            repo,
            &b.work,
            m.image.branch.get_ref(),
            out,
            !opts.always_commit,
        )?;
        (o, Some(h))
    } else {
        (out, None)
    };

    timer.start("lockfile");
    let lock_written = !opts.locked && old_lock.as_ref() != Some(&built);
    if lock_written {
        built.write(&opts.lockfile, &opts.manifest.path)?;
    }
    timer.start("clean up");
    drop(b);
    drop(work);
    timer.finish();
    Ok(Composed {
        id: out.id,
        parent: out.parent,
        unchanged: out.unchanged,
        usr_root_hash,
        branch: m.image.branch.get_ref().clone(),
        base: base.made,
        packages: built.packages.iter().map(LockedPackage::package).collect(),
        lock_written,
        removed_noise,
        etc_left_out: moved_etc.left_out,
        etc_lines: moved_etc.lines.len(),
        var_lines: moved_var.lines.len(),
        users_lines: declared.lines.len(),
        units_moved: moved_units.moved.len(),
        added,
        lint,
        steps: timer.steps,
        name: m.image.name_parts().map(|n| n.full()),
        extension: None,
    })
}

/// Packages and `.deb` files are installed by an mmdebstrap base only.
fn check_inputs(opts: &Options, inputs: &[Input], request: Option<&Request>) -> Result<(), Error> {
    if request.is_some() {
        return Ok(());
    }
    if let Some(i) = inputs
        .iter()
        .position(|i| matches!(i, Input::Packages { .. } | Input::Deb { .. }))
    {
        return Err(Error::Input(format!(
            "{}: input {} ({}): packages are installed by an mmdebstrap base; this base is a {}",
            opts.manifest.path.display(),
            i + 1,
            inputs[i].kind(),
            inputs[0].kind()
        )));
    }
    Ok(())
}

/// The lockfile, if there is one; with `--locked`, one there is, made for
/// the same base request.
fn read_lock(opts: &Options, request_digest: &str) -> Result<Option<Lockfile>, Error> {
    let old_lock = Lockfile::read(&opts.lockfile)?;
    if !opts.locked {
        return Ok(old_lock);
    }
    let Some(l) = old_lock else {
        return Err(Error::NoLockfile(opts.lockfile.clone()));
    };
    if l.request != request_digest {
        return Err(Error::Locked {
            path: opts.lockfile.clone(),
            differences: vec![
                "the manifest's base, packages or .deb files changed since the lockfile was written"
                    .into(),
            ],
        });
    }
    Ok(Some(l))
}

/// What one compose works with besides its steps' results.
struct Build<'a> {
    opts: &'a Options,
    cache: Cache,
    /// The compose's work folder, and the image's tree below it.
    work: PathBuf,
    tree: PathBuf,
    /// The Slate binary staged for the image, if it gets one.
    stage: Option<PathBuf>,
    /// What keys the lockfile and the tree cache: the base request's
    /// digest and the staged binary's.
    request_digest: String,
    slate_digest: String,
}

/// The base tree as made, and what the lockfile records of it.
struct Base {
    made: Made,
    packages: Vec<LockedPackage>,
    sources: Option<String>,
    inputs: Vec<LockedInput>,
}

impl Build<'_> {
    /// The base tree (the manifest's first input) into `self.tree`.
    fn base(
        &self,
        timer: &mut Timer<'_>,
        inputs: &[Input],
        request: Option<&Request>,
        pins: Option<&Lockfile>,
    ) -> Result<Base, Error> {
        let tree = &self.tree;
        let from_folder = |made: Made, input: LockedInput| Base {
            made,
            packages: Vec::new(),
            sources: None,
            inputs: vec![input],
        };
        match (&inputs[0], request) {
            (Input::Mmdebstrap { suite, .. }, Some(req)) => {
                self.mmdebstrap(timer, suite, req, pins)
            }
            (Input::Directory { path }, _) => {
                timer.start(&format!("base: folder {}", path.display()));
                let input = LockedInput {
                    kind: "directory".into(),
                    path: path.display().to_string(),
                    digest: base::digest_path(path)?,
                };
                base::copy_dir(path, tree, true)?;
                Ok(from_folder(Made::Directory, input))
            }
            (Input::Tarball { path, sha256 }, _) => {
                timer.start(&format!("base: tarball {}", path.display()));
                base::check_digest("input 1 (tarball)", path, sha256)?;
                let input = LockedInput {
                    kind: "tarball".into(),
                    path: path.display().to_string(),
                    digest: sha256.clone(),
                };
                base::untar(path, tree)?;
                Ok(from_folder(Made::Tarball, input))
            }
            (Input::Oci { path, tag }, _) => {
                timer.start(&format!("base: container image {}", path.display()));
                let digest = base::oci_image(&self.cache.trees()?, path, tag.as_deref(), tree)?;
                let input = LockedInput {
                    kind: "oci".into(),
                    path: path.display().to_string(),
                    digest,
                };
                Ok(from_folder(Made::Oci, input))
            }
            _ => unreachable!("the manifest check puts a base first"),
        }
    }

    /// An mmdebstrap base: the cached tree of these pins if the tree
    /// cache has it; else mmdebstrap, from the package cache alone when
    /// it has every pinned package, then kept in the tree cache.
    fn mmdebstrap(
        &self,
        timer: &mut Timer<'_>,
        suite: &str,
        req: &Request,
        pins: Option<&Lockfile>,
    ) -> Result<Base, Error> {
        let (opts, tree) = (self.opts, &self.tree);
        let pinned = pins.map(|l| l.packages.as_slice());
        let key = pinned.map(|p| tree_key(&self.request_digest, p, &self.slate_digest));
        let trees = if opts.tree_cache {
            Some(self.cache.trees()?)
        } else {
            None
        };
        let cached = match (&trees, &key) {
            (Some(t), Some(k)) => t.read_ref(&format!("base/{k}"))?,
            _ => None,
        };
        if let (Some(id), Some(t)) = (cached, &trees) {
            timer.start(&format!("base: the cached tree of this lockfile ({suite})"));
            let copts = crate::checkout::CheckoutOptions {
                copy: true,
                ..Default::default()
            };
            crate::checkout::checkout(t, &id, tree, &copts, &Progress::default())?;
            return Ok(Base {
                made: Made::CachedTree,
                packages: pinned.expect("a key has pins").to_vec(),
                sources: pins.and_then(|l| l.sources.clone()),
                inputs: Vec::new(),
            });
        }
        let offline = pinned.is_some_and(|p| p.iter().all(|x| self.cache.has(&x.sha256)));
        timer.start(&format!(
            "base: mmdebstrap {suite} ({}, {} packages asked, from the {})",
            req.variant,
            req.packages.len() + req.debs.len(),
            if offline { "package cache" } else { "mirror" }
        ));
        let seen = base::mmdebstrap(
            req,
            pinned,
            offline,
            &self.cache,
            &self.work,
            tree,
            BASE_EPOCH,
            self.stage.as_deref(),
            &mut |d| (timer.report)(Event::Detail(d)),
        )?;
        let mut packages = locked_packages(tree, &seen)?;
        if offline {
            // Every pin was asked for by name; the marks are the lock's.
            let pins = pinned.expect("offline has pins");
            for p in &mut packages {
                p.auto = pins.iter().any(|x| x.name == p.name && x.auto);
            }
        }
        write_extended_states(tree, &packages)?;
        let sl = tree.join("etc/apt/sources.list");
        let sources = match pins.and_then(|l| l.sources.clone()).filter(|_| offline) {
            Some(text) => {
                std::fs::write(&sl, &text).map_err(Error::io(&sl))?;
                Some(text)
            }
            None => std::fs::read_to_string(&sl).ok(),
        };
        if let Some(t) = &trees {
            timer.start("base: kept in the tree cache");
            let k = tree_key(&self.request_digest, &packages, &self.slate_digest);
            let copts = CommitOptions {
                branch: format!("base/{k}"),
                subject: format!("base of {}", opts.manifest.manifest.image.name.get_ref()),
                body: String::new(),
                timestamp: BASE_EPOCH,
                metadata: BTreeMap::new(),
                parent: ParentSpec::None,
                skip_if_unchanged: false,
            };
            crate::commit::commit(t, Source::Dir(tree), &copts, &Progress::default())?;
        }
        Ok(Base {
            made: if offline { Made::Cache } else { Made::Mirror },
            packages,
            sources,
            inputs: Vec::new(),
        })
    }
}

/// The inputs after the base: `files` copied in (and locked by digest),
/// `.deb` files checked against their digests (mmdebstrap installed them).
fn other_inputs(
    tree: &Path,
    timer: &mut Timer<'_>,
    inputs: &[Input],
    locked: &mut Vec<LockedInput>,
    roots: &[std::path::PathBuf],
) -> Result<(), Error> {
    for (i, input) in inputs.iter().enumerate().skip(1) {
        match input {
            Input::Files { source, target } => {
                timer.start(&format!("files: {} -> {target}", source.display()));
                locked.push(LockedInput {
                    kind: "files".into(),
                    path: target.clone(),
                    digest: base::digest_path(source)?,
                });
                super::files::add(tree, source, target, roots)?;
            }
            Input::Deb { path, sha256 } => {
                base::check_digest(&format!("input {} (deb)", i + 1), path, sha256)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The tree committed to the manifest's branch, with the image's name,
/// version and deploy modes in the commit's metadata.
fn commit_image(
    repo: &Repo,
    opts: &Options,
    tree: &Path,
) -> Result<crate::commit::CommitOutcome, Error> {
    let m = &opts.manifest.manifest;
    let mut metadata = BTreeMap::new();
    metadata.insert(image_meta::NAME.into(), m.image.name.get_ref().clone());
    metadata.insert(
        image_meta::VERSION.into(),
        m.image.version.get_ref().clone(),
    );
    if let Some(r) = &m.remote {
        metadata.insert(
            image_meta::ORIGIN.into(),
            format!(
                "{}:{}",
                r.get_ref().name.get_ref(),
                m.image.branch.get_ref()
            ),
        );
    }
    if let Some(n) = m.image.name_parts() {
        n.write(&mut metadata);
    }
    ImageDeploy {
        etc: Some(m.deploy.etc),
        var: Some(m.deploy.var),
    }
    .write(&mut metadata);
    let copts = CommitOptions {
        branch: m.image.branch.get_ref().clone(),
        subject: format!("{} {}", m.image.name.get_ref(), m.image.version.get_ref()),
        body: String::new(),
        timestamp: opts.epoch,
        metadata,
        parent: ParentSpec::Auto,
        // A verity image's commit is sealed after (`verity::seal`), which
        // keeps the previous one when nothing changed.
        skip_if_unchanged: !opts.always_commit && m.deploy.usr != image_meta::UsrMode::Verity,
    };
    Ok(crate::commit::commit(
        repo,
        Source::Dir(tree),
        &copts,
        &Progress::default(),
    )?)
}
