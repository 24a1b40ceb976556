//! Compose: a declarative manifest becomes an image. This layer sits above
//! `sysroot` (it names the deploy modes an image asks for). Today it holds
//! the manifest (`manifest.rs`, `docs/format/manifest.md`) and the first
//! steps of the stateless transformation (`units.rs` and `users.rs`, then
//! `etc.rs`;
//! `docs/stateless.md`);
//! building the tree, the other steps, the lint and the lockfile come next.

pub mod etc;
pub mod manifest;
pub mod units;
pub mod users;

pub use manifest::{Input, Loaded, Manifest};

#[cfg(test)]
mod tests;
