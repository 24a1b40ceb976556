//! `slate fleet state` and `slate fleet replace`: machines' kept state
//! (the SSH host keys, by default), sealed at rest on the server.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use slate_fleet::state::operator;

use super::DbArg;
use crate::output;

#[derive(Subcommand)]
pub enum StateCommand {
    List(ListArgs),
    Forget(ForgetArgs),
    Policy(PolicyArgs),
    Rekey(RekeyArgs),
}

/// A machine's kept files (paths, sizes, modes, when they last changed;
/// never their contents), its replacement and its state log.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate fleet state list --db fleet.db 3f2a9c01\n  slate fleet state list --db fleet.db 3f2a9c01 --json"
)]
pub struct ListArgs {
    #[command(flatten)]
    db: DbArg,
    /// A machine id (or 8 or more of its first digits).
    machine: String,
    /// Print JSON: {machine, replaced_by, pending_hardware, files: [{path,
    /// size, mode, uid, gid, changed, version}], log: [{at, machine, event, detail}]}.
    #[arg(long)]
    json: bool,
}

/// Forget a machine's kept files on the server (all, or one --path); the
/// machine keeps its own copies. Logged in the machine's state log.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate fleet state forget --db fleet.db 3f2a9c01\n  \
    slate fleet state forget --db fleet.db 3f2a9c01 --path /etc/ssh/ssh_host_rsa_key"
)]
pub struct ForgetArgs {
    #[command(flatten)]
    db: DbArg,
    machine: String,
    /// Only this path.
    #[arg(long, value_name = "PATH")]
    path: Option<String>,
}

/// What a group's machines keep on the server (patterns below /etc or
/// /var, one '*' allowed in the last component; default
/// /etc/ssh/ssh_host_*), and whether a machine enrolling with an old
/// one's hardware id takes its state without an operator (--auto-replace
/// on: weaker, since the hardware id is the machine's own word). Without
/// options, prints the policy.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate fleet state policy --db fleet.db web --keep '/etc/ssh/ssh_host_*' --keep /var/lib/app/id\n  \
    slate fleet state policy --db fleet.db web --auto-replace off --json"
)]
pub struct PolicyArgs {
    #[command(flatten)]
    db: DbArg,
    group: String,
    /// A path or pattern to keep (repeat; replaces the list).
    #[arg(long, value_name = "PATH")]
    keep: Vec<String>,
    /// Replacement by hardware id alone: on or off.
    #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
    auto_replace: Option<String>,
    /// Print the policy as JSON: {group, keep, auto_replace}.
    #[arg(long)]
    json: bool,
}

/// Put a new key first in the state key file, then seal every row again
/// with it, a row at a time, while the server keeps serving (it reads the
/// file again when it changes). With --retire, drop the old keys once no
/// row uses them (run it again later if a server wrote meanwhile).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate fleet state rekey --db fleet.db --state-key /var/lib/slate-fleet/state.key\n  \
    slate fleet state rekey --db fleet.db --state-key /var/lib/slate-fleet/state.key --retire --json"
)]
pub struct RekeyArgs {
    #[command(flatten)]
    db: DbArg,
    /// The server's state key file.
    #[arg(long, value_name = "FILE")]
    state_key: PathBuf,
    /// Drop the old keys from the file at the end.
    #[arg(long)]
    retire: bool,
    /// Print JSON: {key, rows, retired}.
    #[arg(long)]
    json: bool,
}

/// Give an old machine's kept state to its replacement: a machine
/// enrolled already (NEW: restored by its agent's next run, sshd
/// restarted), or the first machine of OLD's group that enrolls with
/// HARDWARE-ID (--by: DMI's product UUID; restored at its first boot,
/// before ssh.service). OLD is then marked replaced.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate fleet replace --db fleet.db 3f2a9c01 --by 4c4c4544-0042-3510-8052-b4c04f4a4d32\n  \
    slate fleet replace --db fleet.db 3f2a9c01 9b7e0d12"
)]
pub struct ReplaceArgs {
    #[command(flatten)]
    db: DbArg,
    /// The machine replaced.
    old: String,
    /// The enrolled machine replacing it.
    #[arg(required_unless_present = "by", conflicts_with = "by")]
    new: Option<String>,
    /// The hardware id of the machine to come.
    #[arg(long, value_name = "HARDWARE-ID")]
    by: Option<String>,
}

fn operator_name() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .map(|u| format!("{u} (command line)"))
        .unwrap_or_else(|_| "the command line".into())
}

pub fn run(c: StateCommand) -> anyhow::Result<()> {
    match c {
        StateCommand::List(a) => {
            let l = operator::list(&a.db.open()?, &a.machine)?;
            if a.json {
                return output::json(&l);
            }
            if let Some(by) = &l.replaced_by {
                eprintln!("machine {} was replaced by {by}", l.machine);
            }
            if let Some(h) = &l.pending_hardware {
                eprintln!("a replacement by hardware id {h} is approved");
            }
            for f in &l.files {
                crate::outln!(
                    "{:04o} {}:{} {:>8} {}  {}",
                    f.mode,
                    f.uid,
                    f.gid,
                    f.size,
                    output::date(f.changed),
                    slate_core::object::name::escape(f.path.as_bytes())
                )?;
            }
            eprintln!("{} files kept for machine {}", l.files.len(), l.machine);
            Ok(())
        }
        StateCommand::Forget(a) => {
            let n = operator::forget(
                &a.db.open()?,
                &a.machine,
                a.path.as_deref(),
                &operator_name(),
                slate_fleet::now(),
            )?;
            eprintln!("forgot {n} files of machine {}", a.machine);
            Ok(())
        }
        StateCommand::Policy(a) => {
            let db = a.db.open()?;
            let keep = (!a.keep.is_empty()).then_some(a.keep.as_slice());
            let auto = a.auto_replace.as_deref().map(|v| v == "on");
            let p = if keep.is_some() || auto.is_some() {
                operator::set_policy(&db, &a.group, keep, auto)?
            } else {
                operator::policy(&db, &a.group)?
            };
            if a.json {
                return output::json(&p);
            }
            for k in &p.keep {
                crate::outln!("keep {k}")?;
            }
            crate::outln!("auto-replace {}", if p.auto_replace { "on" } else { "off" })?;
            Ok(())
        }
        StateCommand::Rekey(a) => {
            let r = operator::rekey(&a.db.open()?, &a.state_key, a.retire)
                .with_context(|| format!("rekeying with {}", a.state_key.display()))?;
            if a.json {
                return output::json(&r);
            }
            crate::outln!("{}", r.key)?;
            eprintln!(
                "{} rows sealed again with key {}{}",
                r.rows,
                r.key,
                if r.retired.is_empty() {
                    String::new()
                } else {
                    format!("; retired {}", r.retired.join(", "))
                }
            );
            Ok(())
        }
    }
}

pub fn replace(a: ReplaceArgs) -> anyhow::Result<()> {
    let db = a.db.open()?;
    let now = slate_fleet::now();
    match (&a.new, &a.by) {
        (Some(new), _) => {
            let n = operator::replace(&db, &a.old, new, &operator_name(), now)?;
            eprintln!(
                "machine {new} replaces {}: {n} kept files, restored by its agent's next run",
                a.old
            );
        }
        (None, Some(hw)) => {
            operator::replace_by_hardware(&db, &a.old, hw, &operator_name(), now)?;
            eprintln!(
                "machine {} will be replaced by the first of its group to enroll with hardware id {hw}",
                a.old
            );
        }
        (None, None) => anyhow::bail!("give NEW or --by HARDWARE-ID"),
    }
    Ok(())
}
