//! `slate admin verify`: a deployment's verity `/usr` image re-read
//! against its hash tree, offline.

use clap::Args;
use slate_core::sysroot::Sysroot;

use crate::output;

/// Re-read a deployment's /usr image (a verity deployment's) against its
/// dm-verity hash tree and the root hash its commit signed, without the
/// device mapper; name the first damaged block and the file it belongs
/// to. Exits with status 1 when the image is damaged.
#[derive(Args)]
#[command(after_help = "Examples:\n  slate admin verify\n  \
    slate admin verify debian/3f2a1b0c9d8e.4\n  \
    slate admin --sysroot /mnt/disk verify --json 1")]
pub(super) struct VerifyArgs {
    /// The deployment (index, OS/ID or ID; default: the booted one, else
    /// the default).
    deployment: Option<String>,
    /// Print the result as JSON on standard output (one document;
    /// messages stay on standard error) instead of text.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(s: &Sysroot, a: VerifyArgs) -> anyhow::Result<()> {
    let v = s.verify_usr(a.deployment.as_deref())?;
    if a.json {
        output::json(&v)?;
    } else if v.ok {
        crate::outln!(
            "ok: {} ({} data blocks) matches root hash {}",
            v.image,
            v.data_blocks,
            v.root_hash
        )?;
    } else {
        if let Some(b) = &v.first_bad {
            crate::outln!(
                "damaged: block {} of {} ({}): {}",
                b.block,
                v.image,
                b.block * 4096,
                b.what
            )?;
        }
        crate::outln!(
            "{} damaged data blocks{}, {} damaged hash blocks (root hash {})",
            v.bad_blocks.len(),
            if v.bad_blocks.len() >= 64 {
                " or more"
            } else {
                ""
            },
            v.bad_hash_blocks.len(),
            v.root_hash
        )?;
    }
    if !v.ok {
        std::process::exit(1);
    }
    Ok(())
}
