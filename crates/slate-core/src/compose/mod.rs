//! Compose: a declarative manifest becomes an image. This layer sits above
//! `commit` and `checkout`; the deploy modes an image asks for are written
//! with `image_meta` (it does not import `sysroot`). The manifest (`manifest.rs`, `docs/format/manifest.md`) says
//! what the image is; `build.rs` runs one compose: the base tree
//! (`base.rs`: mmdebstrap, a folder, a tarball; `cache.rs`: packages by
//! digest and base trees), the lockfile (`lock.rs`), what the manifest
//! adds (`image.rs`; `files.rs`: the `files` inputs, confined), the stateless transformation (`users.rs`,
//! `units.rs`, `etc.rs`, `var.rs`; `docs/stateless.md`), versions and updates
//! (`updates.rs`: os-release, `[remote]`, `[update]`), the lint
//! (`lint.rs`) and the commit. `packages.rs` reads an image's packages.

pub mod base;
pub mod build;
pub mod cache;
pub mod etc;
pub mod files;
pub mod fleet;
pub mod image;
pub mod initrd_keys;
pub mod lint;
pub mod lock;
pub mod manifest;
pub mod packages;
pub mod run;
pub mod sysext;
pub mod units;
pub mod updates;
pub mod users;
pub mod var;
mod verity;

use std::path::{Path, PathBuf};

pub use build::{compose, Composed, Event, Options};
pub use manifest::{Input, Loaded, Manifest};

/// Why a compose stopped. Nothing was committed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] manifest::Error),
    /// The verity image of `/usr` could not be made.
    #[error("the verity image of /usr: {0}")]
    Verity(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{tool}: {message}")]
    Tool { tool: String, message: String },
    #[error("{0}")]
    Input(String),
    /// `--locked` and no lockfile at this path.
    #[error("--locked: no lockfile at {}", .0.display())]
    NoLockfile(PathBuf),
    #[error("--locked: the build differs from {}:\n  {}", path.display(), differences.join("\n  "))]
    Locked {
        path: PathBuf,
        differences: Vec<String>,
    },
    #[error("--strict: {} path(s) of /etc and /var accounted for by nothing (a factory copy, a tmpfiles.d or sysusers.d line, or [lint] exclude):\n  {}", .0.len(), .0.join("\n  "))]
    Lint(Vec<String>),
    #[error(transparent)]
    Etc(#[from] etc::Error),
    #[error(transparent)]
    Units(#[from] units::Error),
    #[error(transparent)]
    Users(#[from] users::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Commit(#[from] crate::commit::Error),
    #[error(transparent)]
    Checkout(#[from] crate::checkout::Error),
}

impl Error {
    pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod update_tests;
