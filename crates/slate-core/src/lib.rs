//! Slate's library: a content-addressed store of operating-system trees and
//! the engines around it. Layers, lowest first (a layer never imports a
//! higher one):
//!
//! ```text
//! hash → object → store → walk → { checkout, commit, diff, export, fsck, prune } → pull
//!      → sysroot (deployments, boot entries, /etc merge) → install (an image on a GPT disk: the use case, and `install::disk`)
//! { checkout, commit } → compose (manifest, stateless steps; not sysroot)
//! object → image_meta (an image's commit metadata: deploy modes) → { sysroot, compose }
//! update_policy (an image's [update]: policy file, calendar checks) → { sysroot, compose }
//! store, walk → sign, summary, delta (publishing: signatures, the summary, static deltas)
//! confd → userdb → { sysusers, tmpfiles }   (engines: load, plan, apply; host facts passed in)
//! fsutil → vm (QEMU's arguments)
//! fsutil, sys, progress, version, date: leaves used by all
//! ```
//!
//! See `docs/architecture.md`.

pub mod checkout;
pub mod commit;
pub mod compose;
pub mod confd;
pub mod date;
pub mod delta;
pub mod diff;
pub mod export;
pub mod ext_release;
pub mod fsck;
pub mod fsutil;
pub mod hash;
pub mod image_meta;
pub mod image_name;
pub mod install;
pub mod object;
pub mod progress;
pub mod prune;
pub mod pull;
pub mod remotes;
pub mod sign;
pub mod store;
pub mod summary;
pub mod sys;
pub mod sysroot;
pub mod sysusers;
pub mod tmpfiles;
pub mod update_policy;
pub mod userdb;
pub mod verity;
pub mod version;
pub mod vm;
pub mod walk;
