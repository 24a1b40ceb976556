//! Integration tests of the `slate` binary: one test binary for the crate.
//! Tests that need root or an outside tool print why they skip.

mod admin;
mod common;
mod compose;
mod delivery;
mod faultserve;
mod fleet;
mod fleet_agent;
mod fleet_browser;
mod fleet_rollout;
mod hostile_fs;
mod hostile_http;
mod hostile_inputs;
mod hostile_repo;
mod hostile_server;
mod hostile_sysroot;
mod hostile_tar;
mod install;
mod json_out;
mod maintenance;
mod names;
mod os_modes;
mod progress;
mod prune;
mod store_cmds;
mod store_safety;
mod streaming;
mod sysusers;
mod sysusers_diff;
mod tmpfiles;
mod tmpfiles_diff;
mod transfer;
mod upstream;
mod vm;
