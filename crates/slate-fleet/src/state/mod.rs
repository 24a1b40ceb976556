//! Central per-machine state: files a group keeps (by default the SSH
//! host keys), uploaded by each machine's agent when they change, sealed
//! at rest with a key kept apart from the database, and given back to the
//! machine that replaces it (a new disk, a new VM, a factory reset) when
//! an operator approved the replacement, or, where the group allows it,
//! to a machine enrolling with the same hardware id.
//!
//! `path` (what may be kept) → `keys` (the key file) → `seal` (the AEAD)
//! → `store` (a machine's own rows, over the signed API) and `operator`
//! (listing, forgetting, replacements, rekeying). `wire` is the JSON.

pub mod keys;
pub mod operator;
pub mod path;
pub mod seal;
pub mod store;
pub mod wire;

pub use keys::{KeyError, KeyRing};
pub use seal::SealError;
pub use store::Service;
pub use wire::Limits;
