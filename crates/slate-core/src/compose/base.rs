//! The first tree of a build: a Debian bootstrap through mmdebstrap (with
//! the manifest's packages and `.deb` files in the same run), a folder, or
//! a tarball; and the `files` inputs copied over it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use super::cache::{sha256_file, Cache, CachedDeb};
use super::lock::LockedPackage;
use super::manifest::Input;
use super::Error;

/// What the manifest asks of the package manager. Its digest is the
/// lockfile's `request`: the same request gets the same pins.
#[derive(Clone, Debug, Serialize)]
pub struct Request {
    pub suite: String,
    pub variant: String,
    pub architecture: Option<String>,
    /// Package names (with `=VERSION` when pinned in the manifest), in
    /// the manifest's order.
    pub packages: Vec<String>,
    /// `.deb` files by path, with their digests.
    #[serde(skip)]
    pub debs: Vec<PathBuf>,
    pub deb_digests: Vec<String>,
    pub sources: Vec<String>,
}

impl Request {
    /// The request of a manifest whose base is mmdebstrap, else `None`.
    pub fn of(inputs: &[Input]) -> Option<Request> {
        let Some(Input::Mmdebstrap {
            suite,
            variant,
            architecture,
            packages,
            sources,
        }) = inputs.first()
        else {
            return None;
        };
        let mut r = Request {
            suite: suite.clone(),
            variant: variant.clone(),
            architecture: architecture.clone(),
            packages: packages.clone(),
            debs: Vec::new(),
            deb_digests: Vec::new(),
            sources: sources.clone(),
        };
        for i in &inputs[1..] {
            match i {
                Input::Packages { names } => r.packages.extend(names.iter().cloned()),
                Input::Deb { path, sha256 } => {
                    r.debs.push(path.clone());
                    r.deb_digests.push(sha256.clone());
                }
                _ => {}
            }
        }
        Some(r)
    }

    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).expect("a request serializes");
        crate::hash::ObjectId::digest(&json).to_hex()
    }
}

/// How the base tree was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Made {
    /// mmdebstrap, packages from the mirror.
    Mirror,
    /// mmdebstrap, packages from the cache alone (no mirror).
    Cache,
    /// The tree of an earlier identical build, from the cache.
    CachedTree,
    Directory,
    Tarball,
    /// A container image's layers.
    Oci,
    /// None: a system extension, its OS image the base it is checked
    /// against (`[image] base`).
    Image,
}

/// The last `n` lines of a log file, for an error message.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n    ")
}

/// Set up before any package: dracut (when the image has it) builds
/// initrds for any machine, not the builder's, and byte for byte the same
/// on each build. The file stays in the image's `/etc/dracut.conf.d`.
const DRACUT_CONF_HOOK: &str = r#"mkdir -p "$1/etc/dracut.conf.d" && printf '%s\n' '# Slate image: initrds for any machine, the same on every build.' 'hostonly="no"' 'reproducible="yes"' > "$1/etc/dracut.conf.d/50-slate.conf""#;

/// After the packages: a kernel left without an initrd (dracut installed
/// after it) gets one.
const DRACUT_HOOK: &str = r#"for d in "$1"/lib/modules/*; do [ -d "$d" ] || continue; [ -x "$1/usr/bin/dracut" ] || continue; v="${d##*/}"; [ -e "$1/boot/initrd.img-$v" ] && continue; chroot "$1" dracut --force --quiet "/boot/initrd.img-$v" "$v" || exit 1; done"#;

/// Run mmdebstrap into `target`, with what `stage` holds put into the
/// tree before any package but the essential ones. With `offline`, the packages come from a
/// flat repository of the cache holding exactly `pins`; else from the
/// mirror, and every package downloaded goes into the cache. Returns the
/// packages seen (downloaded, or pinned).
#[allow(clippy::too_many_arguments)]
pub fn mmdebstrap(
    req: &Request,
    pins: Option<&[LockedPackage]>,
    offline: bool,
    cache: &Cache,
    work: &Path,
    target: &Path,
    epoch: i64,
    stage: Option<&Path>,
    detail: &mut dyn FnMut(&str),
) -> Result<Vec<CachedDeb>, Error> {
    let log = work.join("mmdebstrap.log");
    let mut cmd = Command::new("mmdebstrap");
    cmd.arg("--mode=root")
        .arg("--format=directory")
        .arg(format!("--variant={}", req.variant))
        .arg(format!("--setup-hook={DRACUT_CONF_HOOK}"))
        .arg(format!("--customize-hook={DRACUT_HOOK}"));
    if let Some(stage) = stage {
        // After the essential packages (the merged /usr is in place),
        // before the rest: dracut finds Slate's module when it runs.
        cmd.arg(format!("--essential-hook=sync-in {} /", stage.display()));
    }
    if let Some(a) = &req.architecture {
        cmd.arg(format!("--architectures={a}"));
    }
    let mut include: Vec<String> = req.packages.clone();
    include.extend(req.debs.iter().map(|p| p.display().to_string()));
    if offline {
        // The repository holds exactly the pins, one version of each:
        // asking for all of them installs that set and no other.
        for p in pins.unwrap_or_default() {
            if !include.contains(&p.name) {
                include.push(p.name.clone());
            }
        }
    }
    if !include.is_empty() {
        cmd.arg(format!("--include={}", include.join(",")));
    }
    let mut seen = Vec::new();
    if offline {
        let pins = pins.expect("an offline build has pins");
        let repo = work.join("repo");
        let shas: Vec<String> = pins.iter().map(|p| p.sha256.clone()).collect();
        cache.local_repo(&shas, &req.suite, &repo)?;
        for p in pins {
            seen.push(cache.get(&p.sha256)?);
        }
        cmd.arg("--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount")
            .arg(&req.suite)
            .arg(target)
            .arg(format!("deb [trusted=yes] file://{} ./", repo.display()));
    } else {
        // The downloaded packages stay in the tree's apt cache, to be
        // moved (not copied: the tree is in the cache's folder) into the
        // package cache.
        cmd.arg("--skip=essential/unlink")
            .arg("--skip=cleanup/apt/cache")
            .arg(&req.suite)
            .arg(target)
            .args(&req.sources);
    }
    let logf = std::fs::File::create(&log).map_err(Error::io(&log))?;
    let mut child = cmd
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .stdin(Stdio::null())
        .stdout(logf.try_clone().map_err(Error::io(&log))?)
        .stderr(logf)
        .spawn()
        .map_err(|e| Error::Tool {
            tool: "mmdebstrap".into(),
            message: format!("cannot run it (apt-get install mmdebstrap): {e}"),
        })?;
    // Its progress: the last `I:` line of its log, while it runs.
    let mut said = String::new();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(Error::io(&log))? {
            break st;
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text.lines().rev().find(|l| l.starts_with("I: ")) {
            if l != said {
                said = l.to_string();
                detail(&said[3..]);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    if !status.success() {
        return Err(Error::Tool {
            tool: "mmdebstrap".into(),
            message: format!(
                "{} ({}); its last lines:\n    {}",
                status,
                if offline {
                    "packages from the cache"
                } else {
                    "packages from the mirror"
                },
                tail(&log, 15)
            ),
        });
    }
    if !offline {
        seen.extend(cache.take_all(&target.join("var/cache/apt/archives"))?);
    }
    for d in &req.debs {
        seen.push(cache.add(d, false)?);
    }
    Ok(seen)
}

/// Copy a folder's content into `target` (modes, owners, links, xattrs).
pub fn copy_dir(src: &Path, target: &Path, keep_owners: bool) -> Result<(), Error> {
    std::fs::create_dir_all(target).map_err(Error::io(target))?;
    cp(&src.join("."), target, keep_owners)
}

/// `cp -a` of `src` to `dest` (a folder's content with `SRC/.`), reflinks
/// where the file system has them; owners kept or made the builder's.
fn cp(src: &Path, dest: &Path, keep_owners: bool) -> Result<(), Error> {
    let mut cmd = Command::new("cp");
    cmd.arg("-a").arg("--reflink=auto");
    if !keep_owners {
        cmd.arg("--no-preserve=ownership");
    }
    let out = cmd.arg(src).arg(dest).output().map_err(|e| Error::Tool {
        tool: "cp".into(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: "cp".into(),
            message: format!(
                "{} -> {}: {}",
                src.display(),
                dest.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Unpack a tar archive (plain or compressed) into `target`, owners and
/// modes as recorded.
pub fn untar(file: &Path, target: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(target).map_err(Error::io(target))?;
    let out = Command::new("tar")
        .args([
            "-x",
            "-p",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
        ])
        .arg("-f")
        .arg(file)
        .arg("-C")
        .arg(target)
        .output()
        .map_err(|e| Error::Tool {
            tool: "tar".into(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Input(format!(
            "{}: tar cannot unpack it: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// A container image's layers committed to `trees` (the compose cache's
/// repository, ref `oci/` and the image's config digest) and checked out
/// into `target`; returns the config digest (`sha256:HEX`), which the
/// lockfile pins: it names the image's layers by their diff ids.
pub fn oci_image(
    trees: &crate::store::Repo,
    path: &Path,
    tag: Option<&str>,
    target: &Path,
) -> Result<String, Error> {
    let image = crate::commit::oci::open_path(path, tag)?;
    let id = image
        .metadata
        .get("oci.image-id")
        .cloned()
        .expect("an opened image has its config digest");
    let opts = crate::commit::CommitOptions {
        branch: format!("oci/{}", id.trim_start_matches("sha256:")),
        subject: format!("container image {}", path.display()),
        body: String::new(),
        timestamp: 0,
        metadata: image.metadata.clone(),
        parent: crate::commit::ParentSpec::None,
        skip_if_unchanged: true,
    };
    let progress = crate::progress::Progress::default();
    let out = crate::commit::commit(trees, crate::commit::Source::Oci(&image), &opts, &progress)?;
    let copts = crate::checkout::CheckoutOptions {
        copy: true,
        ..Default::default()
    };
    crate::checkout::checkout(trees, &out.id, target, &copts, &progress)?;
    Ok(id)
}

/// A file's SHA-256 compared with the one the manifest pins.
pub fn check_digest(what: &str, file: &Path, want: &str) -> Result<(), Error> {
    let got = sha256_file(file)?;
    if got != want {
        return Err(Error::Input(format!(
            "{what}: {}: sha256 is {got}, the manifest pins {want}",
            file.display()
        )));
    }
    Ok(())
}

/// The digest of a folder (its Slate tree id) or of a file (SHA-256).
pub fn digest_path(p: &Path) -> Result<String, Error> {
    let m = std::fs::metadata(p).map_err(Error::io(p))?;
    if !m.is_dir() {
        return sha256_file(p);
    }
    let sink = crate::store::HashSink::new();
    let scan = crate::commit::scan_source(
        &sink,
        crate::commit::Source::Dir(p),
        &crate::progress::Progress::default(),
    )
    .map_err(|e| Error::Input(format!("{}: {e}", p.display())))?;
    Ok(format!("tree:{}", scan.root.to_hex()))
}
