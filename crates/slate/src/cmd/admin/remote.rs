//! `slate admin remote`: the remotes of a sysroot's repository, without
//! `--repo SYSROOT/slate/repo`, with those its images provide
//! (`/usr/lib/slate/remotes.d/` of each OS's default deployment).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use slate_core::remotes::config::{self as remotes, RemoteConfig, Source};
use slate_core::sign;
use slate_core::sysroot::Sysroot;

use crate::output;

/// The remotes a sysroot updates from: its repository's own (what
/// `slate remote add` writes there) and those its images provide
/// (`/usr/lib/slate/remotes.d/NAME.toml`, from each OS's default
/// deployment). A remote the sysroot configures overrides an image's of
/// the same name.
#[derive(Args)]
#[command(after_help = "Examples:\n  slate admin remote list\n  \
    slate admin remote add origin https://updates.example.org/os --sign-verify /etc/slate/os.pub\n  \
    slate admin remote show origin --json\n  \
    slate admin --sysroot /mnt/disk remote remove origin")]
pub(super) struct AdminRemoteArgs {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Add a remote to the sysroot (overriding an image's of the same
    /// name): one or more URLs (mirrors, tried in order) and how its
    /// signatures are checked.
    #[command(after_help = "Examples:\n  \
        slate admin remote add origin https://updates.example.org/os --sign-verify /etc/slate/os.pub\n  \
        slate admin remote add lab http://10.0.0.2:8080 http://10.0.0.3:8080 --no-sign-verify")]
    Add {
        name: String,
        #[arg(required = true)]
        urls: Vec<String>,
        /// A trusted public key (PEM file; repeatable): summaries and
        /// commits must carry its signature.
        #[arg(long = "sign-verify", value_name = "PUBKEY")]
        keys: Vec<PathBuf>,
        /// Pull without checking signatures.
        #[arg(long, conflicts_with = "keys")]
        no_sign_verify: bool,
    },
    /// List the remotes; those an image provides are marked `image`.
    #[command(
        after_help = "Examples:\n  slate admin remote list\n  slate admin remote list --json"
    )]
    List {
        /// Print the remotes (name, URLs, keys, where each comes from) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a remote: its URLs, trusted keys and where it comes from.
    #[command(
        after_help = "Examples:\n  slate admin remote show origin\n  slate admin remote show origin --json"
    )]
    Show {
        name: String,
        /// Print the remote (URLs, keys, where it comes from) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the sysroot's own remote (an image's cannot be removed: a
    /// remote added with its name overrides it).
    #[command(
        after_help = "Examples:\n  slate admin remote remove origin\n  slate admin --sysroot /mnt/disk remote remove lab"
    )]
    Remove { name: String },
}

fn source_text(src: &Source) -> String {
    match src {
        Source::Repo => "sysroot".into(),
        Source::Image { from } => format!("image ({})", output::one_line(from)),
    }
}

pub(super) fn run(s: &Sysroot, a: AdminRemoteArgs) -> anyhow::Result<()> {
    // The images' remotes as the deployments provide them now.
    s.sync_image_remotes()?;
    let repo = s.repo();
    match a.command {
        Cmd::Add {
            name,
            urls,
            keys,
            no_sign_verify,
        } => {
            let keys = keys
                .iter()
                .map(|p| sign::load_public(p).map(|k| k.to_pem()))
                .collect::<Result<Vec<_>, _>>()?;
            let cfg = RemoteConfig {
                urls,
                keys,
                no_sign_verify,
            };
            let overrides = matches!(
                remotes::get_with_source(repo, &name),
                Ok((_, Source::Image { .. }))
            );
            remotes::add(repo, &name, &cfg)?;
            eprintln!(
                "added remote {name} to the sysroot{}",
                if overrides {
                    " (it overrides the image's of that name)"
                } else {
                    ""
                }
            );
        }
        Cmd::List { json } => {
            let all = remotes::list_with_source(repo)?;
            if json {
                return output::json(
                    &all.iter()
                        .map(|(n, c, src)| {
                            serde_json::json!({"name": n, "urls": c.urls,
                                "sign_verify": c.verifies(), "source": src})
                        })
                        .collect::<Vec<_>>(),
                );
            }
            for (n, c, src) in all {
                let mark = match src {
                    Source::Repo => "sysroot",
                    Source::Image { .. } => "image",
                };
                crate::outln!("{n} {mark} {}", c.urls.join(" "))?;
            }
        }
        Cmd::Show { name, json } => {
            let (c, src) = remotes::get_with_source(repo, &name)?;
            let st = remotes::state(repo, &name);
            let ids: Vec<String> = c.public_keys()?.iter().map(|k| k.key_id()).collect();
            if json {
                return output::json(&serde_json::json!({
                    "name": name, "urls": c.urls, "key_ids": ids, "source": src,
                    "sign_verify": c.verifies(), "summary_timestamp": st.summary_timestamp
                }));
            }
            crate::outln!("{name}")?;
            crate::outln!("  from {}", source_text(&src))?;
            for u in &c.urls {
                crate::outln!("  url {u}")?;
            }
            if c.verifies() {
                for k in &ids {
                    crate::outln!("  trusted key {k}")?;
                }
            } else {
                crate::outln!("  signatures not checked")?;
            }
            crate::outln!("  last summary {}", st.summary_timestamp)?;
        }
        Cmd::Remove { name } => {
            remotes::delete(repo, &name)?;
            eprintln!("removed remote {name} from the sysroot");
        }
    }
    Ok(())
}
