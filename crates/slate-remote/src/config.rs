//! Remotes of a repository: their configuration lives in the library
//! (`slate_core::remotes::config`, files only, no network); re-exported
//! here for the pull.

pub use slate_core::remotes::config::*;
