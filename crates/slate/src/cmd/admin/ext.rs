//! `slate admin ext`: the system extensions of an OS's deployments.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use slate_core::sysroot::Sysroot;

use crate::output;

/// System extensions (systemd-sysext images: files under /usr and /opt
/// merged over the OS's read-only /usr at boot) of the OS's deployments.
/// Each deployment's record names its extensions, so they follow the
/// deployment booted: an upgrade takes each extension's build for the new
/// image (refused, before anything changes, when one has none, unless
/// --drop-incompatible), a rollback boots the older deployment with its
/// own. prepare-root links the booted deployment's in /run/extensions.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate admin ext add origin:ext/example/debug/x86-64\n  \
    slate admin ext add --from build-repo ext/example/debug/x86-64\n  \
    slate admin ext list\n  \
    slate admin ext remove debug"
)]
pub(super) struct ExtArgs {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Add the system extension REF names (REMOTE:REF, a ref, a commit;
    /// pulled, verified and signed as an image is) to the OS's default
    /// deployment and its staged one, replacing the extension of the same
    /// name, where it fits their image (its extension-release against
    /// their os-release; a warning names the one it does not fit, and it
    /// is refused when it fits neither). It is merged at their next boot.
    #[command(after_help = "Examples:\n  \
        slate admin ext add origin:ext/example/debug/x86-64\n  \
        slate admin ext add --from build-repo --os debian ext/example/debug/x86-64 --json")]
    Add {
        /// REMOTE:REF, a ref of the sysroot's repository (or of --from),
        /// or a commit.
        #[arg(value_name = "REF")]
        rev: String,
        /// The OS (default: the booted deployment's, or the only one).
        #[arg(long)]
        os: Option<String>,
        /// Pull the ref from this repository into the sysroot's first.
        #[arg(long, value_name = "REPO")]
        from: Option<PathBuf>,
        #[command(flatten)]
        transfer: crate::cmd::remote::MinRateArg,
        /// Print what was added (name, commit, origin, deployments) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the extension NAME from the OS's default deployment and its
    /// staged one (older deployments keep theirs: a rollback brings it
    /// back).
    #[command(
        after_help = "Examples:\n  slate admin ext remove debug\n  slate admin ext remove --os debian debug --json"
    )]
    Remove {
        name: String,
        /// The OS (default: the booted deployment's, or the only one).
        #[arg(long)]
        os: Option<String>,
        /// Print what was removed as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List each deployment's extensions, in boot order, then the staged
    /// one.
    #[command(
        after_help = "Examples:\n  slate admin ext list\n  slate admin ext list --os debian --json"
    )]
    List {
        /// Only this OS's deployments.
        #[arg(long)]
        os: Option<String>,
        /// Print the deployments with their extensions (name, commit,
        /// origin, version) as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(s: &Sysroot, a: ExtArgs) -> anyhow::Result<()> {
    match a.command {
        Cmd::Add {
            rev,
            os,
            from,
            transfer,
            json,
        } => {
            let fetch = super::source::fetcher(transfer.min_rate);
            let added = output::counted("pulled", "objects", |p| {
                s.ext_add(&rev, os.as_deref(), from.as_deref(), &*fetch, p)
            })?;
            if json {
                return output::json(&added);
            }
            eprintln!(
                "added extension {} {} ({}){} to {}{}",
                added.name,
                output::short_id(&added.commit),
                if added.version.is_empty() {
                    "no version"
                } else {
                    &added.version
                },
                added
                    .origin
                    .as_ref()
                    .map(|o| format!(" from {o}"))
                    .unwrap_or_default(),
                added.deployments.join(", "),
                added
                    .replaced
                    .as_ref()
                    .map(|c| format!(", in place of {}", output::short_id(c)))
                    .unwrap_or_default()
            );
            for n in &added.not_fitting {
                eprintln!("warning: not added to {n}");
            }
            eprintln!("it is merged at the next boot of these deployments");
            crate::outln!("{}", added.commit)
        }
        Cmd::Remove { name, os, json } => {
            let r = s.ext_remove(&name, os.as_deref())?;
            if json {
                return output::json(&r);
            }
            eprintln!(
                "removed extension {} from {}",
                r.name,
                r.deployments.join(", ")
            );
            Ok(())
        }
        Cmd::List { os, json } => {
            let l = s.ext_list(os.as_deref())?;
            if json {
                return output::json(&l);
            }
            for d in &l {
                let mut marks = Vec::new();
                if d.default {
                    marks.push("default");
                }
                if d.booted {
                    marks.push("booted");
                }
                if d.staged {
                    marks.push("staged");
                }
                let marks = if marks.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", marks.join(", "))
                };
                crate::outln!("{}{marks}", d.deployment)?;
                if d.extensions.is_empty() {
                    crate::outln!("  no extensions")?;
                }
                for e in &d.extensions {
                    crate::outln!(
                        "  {} {} {}{}",
                        output::one_line(&e.name),
                        output::short_id(&e.commit),
                        output::one_line(if e.version.is_empty() {
                            "-"
                        } else {
                            &e.version
                        }),
                        e.origin
                            .as_ref()
                            .map(|o| format!(" from {o}"))
                            .unwrap_or_default()
                    )?;
                }
            }
            Ok(())
        }
    }
}
