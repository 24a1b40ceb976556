//! Slate's fleet server: machines enroll with a group's token and report
//! their status, signed by their own Ed25519 key; the server keeps every
//! report in a database (SQLite, or PostgreSQL for a larger fleet) and
//! answers a JSON API. The agent's side of the API is [`client`].
//!
//! Layers: `db` (the two databases behind one interface, migrations) →
//! `records` (groups, machines, reports; every rule of who may write
//! what) → `server` (HTTP: request limits, signatures, routes). `wire`
//! is the JSON both sides speak, `auth` the request signatures; `state`
//! the machines' kept files, sealed at rest.

pub mod agent;
pub mod auth;
pub mod bench;
pub mod client;
pub mod db;
pub mod operators;
pub mod page;
pub mod records;
pub mod rollout;
pub mod server;
pub mod state;
pub mod wire;

pub use db::{Db, DbError, Target};
pub use records::{Error, MachineRow};

/// Unix time now, in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `n` random bytes from the kernel, as hex.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    let mut b = vec![0u8; n];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())?;
    Ok(hex::encode(b))
}
