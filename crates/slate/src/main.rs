//! `slate`: a thin binary. Each subcommand parses, calls `slate-core`,
//! renders. Errors are printed with their whole chain and a hint.

// Doc comments here are `--help` text: `[deploy]` names a manifest's
// section, not an item to link.
#![allow(rustdoc::broken_intra_doc_links)]

mod cli;
mod cmd;
mod output;

use std::process::ExitCode;

fn main() -> ExitCode {
    slate_core::sys::restore_default_sigpipe();
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            output::print_error(&e);
            ExitCode::from(1)
        }
    }
}
