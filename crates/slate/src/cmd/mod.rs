//! One module per verb: parse, call the library, render.

pub mod checkout;
pub mod commit;
pub mod diff;
pub mod export;
pub mod fsck;
pub mod init;
pub mod log;
pub mod ls;
pub mod man;
pub mod prune;
pub mod pull;
pub mod refs;
pub mod sysusers;
pub mod tmpfiles;
