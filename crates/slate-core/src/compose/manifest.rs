//! The manifest (`docs/format/manifest.md`): what an image is, read from
//! TOML with every error naming the file, line and column, and checked
//! before anything is built: a base first, known keys only, inputs that
//! exist, digests that are digests, names that are names.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::image_meta::{EtcMode, UsrMode, VarMode};
use crate::remotes::RemoteConfig;
use crate::update_policy::{self, Policy, Reboot};

/// An error in a manifest, at a place in it.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", path.display())]
pub struct Error {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub image: Image,
    #[serde(default, rename = "input")]
    pub inputs: Vec<Spanned<Input>>,
    #[serde(default)]
    pub sysusers: Lines,
    #[serde(default)]
    pub tmpfiles: Lines,
    #[serde(default)]
    pub units: Units,
    #[serde(default)]
    pub kernel: Kernel,
    #[serde(default)]
    pub deploy: Deploy,
    #[serde(default)]
    pub lint: Lint,
    /// The fleet server the image's machines report to (`slate agent`).
    pub fleet: Option<super::fleet::Fleet>,
    /// Where the image's machines update from.
    #[serde(default)]
    pub remote: Option<Spanned<RemoteSection>>,
    /// How the image's machines update themselves (the update timer).
    #[serde(default)]
    pub update: Option<Spanned<Update>>,
}

/// `[remote]`: baked into the image as `/usr/lib/slate/remotes.d/NAME.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RemoteSection {
    pub name: Spanned<String>,
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    pub urls: Vec<Spanned<String>>,
    /// Trusted public keys: a PEM file below the manifest's folder
    /// (`files/slate.pub`), PEM text, or base64 (32 key bytes or DER).
    #[serde(default)]
    pub keys: Vec<Spanned<String>>,
    /// Signatures are not checked (said explicitly).
    #[serde(default)]
    pub no_sign_verify: bool,
    /// The remote's configuration, once checked.
    #[serde(skip)]
    pub config: Option<RemoteConfig>,
}

/// `[update]`: kept in the image as `/usr/lib/slate/update.toml`, the
/// timer's schedule in its drop-in.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Update {
    pub policy: Policy,
    /// systemd calendar syntax (default `daily`).
    #[serde(default)]
    pub schedule: Option<Spanned<String>>,
    /// A systemd time span (`RandomizedDelaySec=`).
    #[serde(default)]
    pub randomized_delay: Option<Spanned<String>>,
    #[serde(default)]
    pub reboot: Option<Reboot>,
    /// systemd calendar syntax: when `reboot = "window"` reboots.
    #[serde(default)]
    pub window: Option<Spanned<String>>,
}

impl Update {
    /// The image's policy file.
    pub fn file(&self) -> update_policy::PolicyFile {
        update_policy::PolicyFile {
            policy: Some(self.policy),
            schedule: Some(self.schedule()),
            randomized_delay: self.randomized_delay.as_ref().map(|d| d.get_ref().clone()),
            reboot: self.reboot,
            window: self.window.as_ref().map(|w| w.get_ref().clone()),
        }
    }

    /// The timer's calendar.
    pub fn schedule(&self) -> String {
        self.schedule
            .as_ref()
            .map_or_else(|| "daily".to_string(), |s| s.get_ref().trim().to_string())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub name: Spanned<String>,
    pub version: Spanned<String>,
    /// The branch the image is committed to; empty in the file: derived
    /// from the image's name (`image_name`), which then needs a vendor.
    #[serde(rename = "ref", default = "no_ref")]
    pub branch: Spanned<String>,
    /// What the image is: an OS (the default) or a system extension.
    #[serde(default)]
    pub kind: crate::image_name::Kind,
    /// A system extension's OS image: a ref or commit of the repository
    /// composed into.
    #[serde(default)]
    pub base: Option<Spanned<String>>,
    /// Who makes the image (the name's second part).
    #[serde(default)]
    pub vendor: Option<Spanned<String>>,
    /// systemd's name of its architecture (default: the host's).
    #[serde(default)]
    pub arch: Option<Spanned<String>>,
    /// Put Slate itself into the image (`/usr/bin/slate`, and its dracut
    /// module so the initrd runs `slate admin prepare-root`).
    #[serde(default = "yes", rename = "install-slate")]
    pub install_slate: bool,
}

fn yes() -> bool {
    true
}

fn no_ref() -> Spanned<String> {
    Spanned::new(0..0, String::new())
}

impl Image {
    /// The image's name, when the manifest gives a vendor.
    pub fn name_parts(&self) -> Option<crate::image_name::Name> {
        let vendor = self.vendor.as_ref()?.get_ref().clone();
        Some(crate::image_name::Name {
            kind: self.kind,
            vendor,
            ext: (self.kind == crate::image_name::Kind::Sysext)
                .then(|| self.name.get_ref().clone()),
            arch: self.arch.as_ref().map_or_else(
                || crate::image_name::host_arch().to_string(),
                |a| a.get_ref().clone(),
            ),
            version: self.version.get_ref().clone(),
        })
    }
}

/// One input, in the order the tree is built.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Input {
    /// A Debian bootstrap through mmdebstrap (a base).
    Mmdebstrap {
        suite: String,
        #[serde(default = "minbase")]
        variant: String,
        #[serde(default)]
        architecture: Option<String>,
        #[serde(default)]
        packages: Vec<String>,
        /// apt source lines (`deb URI SUITE COMPONENTS`); none: the host's.
        #[serde(default)]
        sources: Vec<String>,
    },
    /// A directory's tree (a base).
    Directory { path: PathBuf },
    /// A tar archive, plain or compressed, pinned by its SHA-256 (a base).
    Tarball { path: PathBuf, sha256: String },
    /// A container image (OCI archive or layout folder, docker archive),
    /// its layers applied; pinned by its digests (a base).
    Oci {
        path: PathBuf,
        #[serde(default)]
        tag: Option<String>,
    },
    /// More Debian packages, installed with apt.
    Packages { names: Vec<String> },
    /// A `.deb` file pinned by its SHA-256.
    Deb { path: PathBuf, sha256: String },
    /// A file or folder copied into the tree at `target`.
    Files { source: PathBuf, target: String },
}

fn minbase() -> String {
    "minbase".into()
}

impl Input {
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Mmdebstrap { .. } => "mmdebstrap",
            Input::Directory { .. } => "directory",
            Input::Tarball { .. } => "tarball",
            Input::Oci { .. } => "oci",
            Input::Packages { .. } => "packages",
            Input::Deb { .. } => "deb",
            Input::Files { .. } => "files",
        }
    }

    /// Whether it makes the first tree (and may only come first).
    pub fn is_base(&self) -> bool {
        matches!(
            self,
            Input::Mmdebstrap { .. }
                | Input::Directory { .. }
                | Input::Tarball { .. }
                | Input::Oci { .. }
        )
    }

    /// The local files it reads, as written in the manifest.
    fn paths(&self) -> Vec<&Path> {
        match self {
            Input::Directory { path }
            | Input::Tarball { path, .. }
            | Input::Oci { path, .. }
            | Input::Deb { path, .. } => {
                vec![path.as_path()]
            }
            Input::Files { source, .. } => vec![source.as_path()],
            _ => Vec::new(),
        }
    }
}

/// sysusers.d or tmpfiles.d lines the image gets.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lines {
    #[serde(default)]
    pub lines: Vec<Spanned<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Units {
    #[serde(default)]
    pub enable: Vec<Spanned<String>>,
    #[serde(default)]
    pub disable: Vec<Spanned<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    #[serde(default)]
    pub args: Vec<Spanned<String>>,
}

/// How deployments of the image keep `/etc` and `/var`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    #[serde(default = "persistent_etc")]
    pub etc: EtcMode,
    #[serde(default = "persistent_var")]
    pub var: VarMode,
    /// `verity`: `/usr` deployed as an EROFS image mounted through
    /// dm-verity, its root hash in the commit's metadata.
    #[serde(default)]
    pub usr: UsrMode,
}

fn persistent_etc() -> EtcMode {
    EtcMode::Persistent
}
fn persistent_var() -> VarMode {
    VarMode::Persistent
}

impl Default for Deploy {
    fn default() -> Self {
        Deploy {
            etc: EtcMode::Persistent,
            var: VarMode::Persistent,
            usr: UsrMode::Plain,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lint {
    /// Paths under `/etc` and `/var` the lint accepts without a factory
    /// copy or a line (absolute; a trailing `/` covers a whole folder).
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
}

/// A manifest read and checked, with its inputs' paths made absolute
/// (relative ones are taken from the manifest's folder).
#[derive(Clone, Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// The folders `files` sources may be below (canonical): the
    /// manifest's, and those the builder allows.
    pub files_roots: Vec<PathBuf>,
}

/// Line and column (from 1) of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A Debian package name (Debian Policy 5.6.7), optionally `=VERSION`.
fn is_package(s: &str) -> bool {
    let name = s.split_once('=').map_or(s, |(n, _)| n);
    name.len() >= 2
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
        })
}

fn is_unit(s: &str) -> bool {
    const KINDS: &[&str] = &[
        ".service",
        ".socket",
        ".timer",
        ".target",
        ".path",
        ".mount",
        ".automount",
        ".swap",
        ".slice",
    ];
    KINDS.iter().any(|k| s.ends_with(k) && s.len() > k.len())
        && !s.contains('/')
        && s.bytes().all(|b| b.is_ascii_graphic())
}

impl Loaded {
    /// Read and check the manifest at `path`.
    pub fn read(path: &Path) -> Result<Loaded, Error> {
        Loaded::read_allowing(path, &[])
    }

    /// Read and check the manifest at `path`, its `files` sources below
    /// its folder or one of `allowed`.
    pub fn read_allowing(path: &Path, allowed: &[PathBuf]) -> Result<Loaded, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            message: e.to_string(),
        })?;
        Loaded::parse_allowing(path, &text, allowed)
    }

    /// Check `text`, the manifest at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Loaded, Error> {
        Loaded::parse_allowing(path, text, &[])
    }

    /// Check `text`, the manifest at `path`, its `files` sources below its
    /// folder or one of `allowed`.
    pub fn parse_allowing(path: &Path, text: &str, allowed: &[PathBuf]) -> Result<Loaded, Error> {
        let at = |offset: usize, message: String| {
            let (line, column) = line_col(text, offset);
            Error {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let mut m: Manifest = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at(offset, e.message().to_string())
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let files_roots =
            super::files::roots(dir, allowed).map_err(|m| at(0, format!("files sources: {m}")))?;

        for f in [&m.image.name, &m.image.version] {
            if f.get_ref().is_empty() || f.get_ref().chars().any(char::is_control) {
                return Err(at(
                    f.span().start,
                    "must be a non-empty line of text".into(),
                ));
            }
        }
        super::sysext::check_image(&mut m.image).map_err(|(o, msg)| at(o, msg))?;
        crate::store::validate_ref_name(m.image.branch.get_ref())
            .map_err(|e| at(m.image.branch.span().start, e.to_string()))?;
        if m.image.kind == crate::image_name::Kind::Sysext {
            super::sysext::check_inputs(&m).map_err(|(o, msg)| at(o, msg))?;
        }

        let sysext = m.image.kind == crate::image_name::Kind::Sysext;
        let Some(first) = m.inputs.first() else {
            return Err(at(
                0,
                "no [[input]]: the first one makes the tree (mmdebstrap, directory, tarball or oci)"
                    .into(),
            ));
        };
        if !sysext && !first.get_ref().is_base() {
            return Err(at(
                first.span().start,
                format!(
                    "the first input is a {}; it must make the tree: mmdebstrap, directory, tarball or oci",
                    first.get_ref().kind()
                ),
            ));
        }
        for (i, input) in m.inputs.iter_mut().enumerate() {
            let start = input.span().start;
            let what = format!("input {} ({})", i + 1, input.get_ref().kind());
            if (i > 0 || sysext) && input.get_ref().is_base() {
                return Err(at(
                    start,
                    format!("{what}: only the first input may make the tree"),
                ));
            }
            for p in input.get_ref().paths() {
                let full = dir.join(p);
                if let Err(e) = std::fs::metadata(&full) {
                    return Err(at(start, format!("{what}: {}: {e}", full.display())));
                }
            }
            match input.get_mut() {
                Input::Tarball { sha256, .. } | Input::Deb { sha256, .. } if !is_sha256(sha256) => {
                    return Err(at(
                        start,
                        format!("{what}: sha256 {sha256:?} is not 64 lowercase hex digits"),
                    ));
                }
                Input::Mmdebstrap {
                    suite, packages, ..
                } => {
                    if suite.is_empty() || suite.contains(char::is_whitespace) {
                        return Err(at(
                            start,
                            format!("{what}: suite {suite:?} is not a suite name"),
                        ));
                    }
                    if let Some(p) = packages.iter().find(|p| !is_package(p)) {
                        return Err(at(start, format!("{what}: {p:?} is not a package name")));
                    }
                }
                Input::Packages { names } => {
                    if let Some(p) = names.iter().find(|p| !is_package(p)) {
                        return Err(at(start, format!("{what}: {p:?} is not a package name")));
                    }
                }
                Input::Oci { tag: Some(t), .. }
                    if t.is_empty() || t.chars().any(|c| c.is_control() || c.is_whitespace()) =>
                {
                    return Err(at(start, format!("{what}: tag {t:?} is not an image name")));
                }
                Input::Files { source, target } => {
                    *target = super::files::normalize_target(target)
                        .map_err(|m| at(start, format!("{what}: {m}")))?;
                    *source = super::files::check_source(&dir.join(&*source), &files_roots)
                        .map_err(|m| at(start, format!("{what}: {m}")))?;
                }
                _ => {}
            }
            // Paths made absolute, so the build does not depend on the
            // current directory.
            match input.get_mut() {
                Input::Directory { path }
                | Input::Tarball { path, .. }
                | Input::Oci { path, .. }
                | Input::Deb { path, .. } => *path = dir.join(&*path),
                _ => {}
            }
        }
        for u in m.units.enable.iter().chain(&m.units.disable) {
            if !is_unit(u.get_ref()) {
                return Err(at(
                    u.span().start,
                    format!(
                        "{:?} is not a unit name (NAME.service, .socket, .timer, ...)",
                        u.get_ref()
                    ),
                ));
            }
        }
        for l in m.sysusers.lines.iter().chain(&m.tmpfiles.lines) {
            if l.get_ref().contains('\n') {
                return Err(at(l.span().start, "one line per string".into()));
            }
        }
        if let Some(f) = &mut m.fleet {
            f.check(dir, &files_roots)
                .map_err(|(offset, message)| at(offset, format!("[fleet]: {message}")))?;
        }
        for x in &m.lint.exclude {
            let p = x.get_ref();
            if !(p.starts_with("/etc") || p.starts_with("/var")) {
                return Err(at(
                    x.span().start,
                    format!("{p:?}: the lint only looks at /etc and /var"),
                ));
            }
        }
        if let Some(r) = m.remote.as_mut() {
            let start = r.span().start;
            let config = remote_config(r.get_ref(), dir, &files_roots)
                .map_err(|(offset, msg)| at(offset.unwrap_or(start), format!("[remote]: {msg}")))?;
            r.get_mut().config = Some(config);
        }
        if let Some(u) = &m.update {
            check_update(&m, u.get_ref()).map_err(|(offset, msg)| {
                at(offset.unwrap_or(u.span().start), format!("[update]: {msg}"))
            })?;
        }
        Ok(Loaded {
            path: path.to_path_buf(),
            manifest: m,
            files_roots,
        })
    }
}

/// An error at a place (`None`: the section's).
type At = (Option<usize>, String);

/// `[remote]` as a remote's configuration: the name, the URLs and the keys
/// (read from files below the manifest's folder, or inline) checked as a
/// repository's remote is.
fn remote_config(r: &RemoteSection, dir: &Path, roots: &[PathBuf]) -> Result<RemoteConfig, At> {
    crate::remotes::config::validate_name(r.name.get_ref())
        .map_err(|e| (Some(r.name.span().start), e.to_string()))?;
    let urls: Vec<String> = match (&r.url, r.urls.is_empty()) {
        (Some(u), true) => vec![u.get_ref().clone()],
        (None, false) => r.urls.iter().map(|u| u.get_ref().clone()).collect(),
        _ => {
            return Err((
                None,
                "give url = \"URL\" or urls = [...] (mirrors), one of them".into(),
            ))
        }
    };
    let mut keys = Vec::new();
    for k in &r.keys {
        let at = Some(k.span().start);
        let text = k.get_ref().trim();
        let key = if text.starts_with("-----BEGIN") {
            crate::sign::PublicKey::from_pem(text).map_err(|e| (at, format!("key: {e}")))?
        } else if let Ok(k) = crate::sign::PublicKey::from_base64(text) {
            k
        } else {
            let p = super::files::check_source(&dir.join(text), roots).map_err(|m| {
                (
                    at,
                    format!("key {text:?}: neither base64 of a key nor a key file: {m}"),
                )
            })?;
            crate::sign::load_public(&p).map_err(|e| (at, e.to_string()))?
        };
        keys.push(key.to_pem());
    }
    let config = RemoteConfig {
        urls,
        keys,
        no_sign_verify: r.no_sign_verify,
    };
    config.check().map_err(|e| {
        let msg = e.to_string().replace(
            "--sign-verify PUBKEY (repeatable), or --no-sign-verify",
            "keys = [...], or no-sign-verify = true",
        );
        (None, msg)
    })?;
    Ok(config)
}

/// `[update]`: calendars and the time span in systemd's syntax (asked of
/// `systemd-analyze calendar` where it runs), a window for `reboot =
/// "window"`, and Slate in the image (the timer runs it).
fn check_update(m: &Manifest, u: &Update) -> Result<(), At> {
    for c in [&u.schedule, &u.window].into_iter().flatten() {
        let at = Some(c.span().start);
        update_policy::check_calendar(c.get_ref()).map_err(|e| (at, e))?;
        update_policy::check_calendar_with_systemd(c.get_ref()).map_err(|e| (at, e))?;
    }
    if let Some(d) = &u.randomized_delay {
        update_policy::check_timespan(d.get_ref()).map_err(|e| (Some(d.span().start), e))?;
    }
    match (u.reboot, &u.window) {
        (Some(Reboot::Window), None) => {
            return Err((
                None,
                "reboot = \"window\" needs window = \"CALENDAR\"".into(),
            ))
        }
        (Some(Reboot::Now) | None, Some(w)) => {
            return Err((
                Some(w.span().start),
                "a window is used with reboot = \"window\" only".into(),
            ))
        }
        _ => {}
    }
    if !m.image.install_slate {
        return Err((
            None,
            "the update timer runs Slate: it needs install-slate (the default) in [image]".into(),
        ));
    }
    Ok(())
}
