//! `slate fleet rollout`: a group's machines moved to a commit in waves.

use clap::{Args, Subcommand};
use slate_fleet::rollout::{self, Action, Rollout, Waves};

use super::DbArg;
use crate::output;

#[derive(Subcommand)]
pub enum RolloutCommand {
    Start(StartArgs),
    Status(GroupArgs),
    Pause(GroupArgs),
    Resume(ResumeArgs),
    Abort(GroupArgs),
}

/// Start moving a group's machines to COMMIT in waves. Each machine's wave
/// follows from a stable hash of its id; the next wave opens when every
/// machine of the open ones runs COMMIT blessed, or failed (COMMIT went
/// bad on it and boot counting put it back). At --max-failures failures
/// the rollout pauses itself.
#[derive(Args)]
#[command(
    after_help = "Example:\n  slate fleet rollout start --db fleet.db web 3f2a…(64 hex) --waves 5,25,100 --max-failures 2"
)]
pub struct StartArgs {
    #[command(flatten)]
    db: DbArg,
    group: String,
    /// The commit (64 hex digits) to move to; default: the head of the
    /// group's ref (REF of its REMOTE:REF) in --repo.
    commit: Option<String>,
    /// The publishing repository whose ref gives the commit.
    #[arg(long, value_name = "DIR", required_unless_present = "commit")]
    repo: Option<std::path::PathBuf>,
    /// Cumulative percentages of the group, the last 100.
    #[arg(long, default_value = "5,25,100")]
    waves: String,
    /// Failures at which the rollout pauses itself.
    #[arg(long, default_value_t = 1)]
    max_failures: u64,
    /// Open waves only in the minutes of this calendar event
    /// (systemd.time(7), as OnCalendar= takes it; UTC), e.g.
    /// 'Mon..Fri 02..04:*:00'.
    #[arg(long, value_name = "CALENDAR")]
    window: Option<String>,
    /// Print the rollout as JSON (as `rollout status --json`).
    #[arg(long)]
    json: bool,
}

/// A group's latest rollout: its state and each wave's progress
/// (`pause`: no further wave opens; `abort`: the machines of the open
/// waves are sent back to the commit the group ran before).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate fleet rollout status --db fleet.db web --json\n  \
    slate fleet rollout abort --db fleet.db web"
)]
pub struct GroupArgs {
    #[command(flatten)]
    db: DbArg,
    group: String,
    /// Print the rollout as JSON: {id, group, commit, previous, window,
    /// waves, max_failures, state, opened, failures, counts: [{machines,
    /// done, failed}], created, updated} (null: none).
    #[arg(long)]
    json: bool,
}

/// Resume a paused rollout, optionally with a new failure limit.
#[derive(Args)]
#[command(after_help = "Example:\n  slate fleet rollout resume --db fleet.db web --max-failures 3")]
pub struct ResumeArgs {
    #[command(flatten)]
    db: DbArg,
    group: String,
    /// A new failure limit.
    #[arg(long)]
    max_failures: Option<u64>,
    /// Print the rollout as JSON (as `rollout status --json`).
    #[arg(long)]
    json: bool,
}

pub fn run(c: RolloutCommand) -> anyhow::Result<()> {
    let now = slate_fleet::now();
    let (r, json) = match c {
        RolloutCommand::Start(a) => {
            let waves = Waves::parse(&a.waves).map_err(|e| anyhow::anyhow!("--waves: {e}"))?;
            let db = a.db.open()?;
            let commit = match (&a.commit, &a.repo) {
                (Some(c), _) => c.clone(),
                (None, Some(dir)) => head_of_group_ref(&db, &a.group, dir)?,
                (None, None) => anyhow::bail!("which commit? give COMMIT or --repo DIR"),
            };
            (
                Some(rollout::start(
                    &db,
                    &a.group,
                    &commit,
                    &waves,
                    a.max_failures,
                    a.window.as_deref(),
                    now,
                )?),
                a.json,
            )
        }
        RolloutCommand::Status(a) => (rollout::status(&a.db.open()?, &a.group, now)?, a.json),
        RolloutCommand::Pause(a) => (
            Some(rollout::act(&a.db.open()?, &a.group, Action::Pause, now)?),
            a.json,
        ),
        RolloutCommand::Abort(a) => (
            Some(rollout::act(&a.db.open()?, &a.group, Action::Abort, now)?),
            a.json,
        ),
        RolloutCommand::Resume(a) => (
            Some(rollout::act(
                &a.db.open()?,
                &a.group,
                Action::Resume(a.max_failures),
                now,
            )?),
            a.json,
        ),
    };
    if json {
        return output::json(&r);
    }
    let Some(r) = r else {
        crate::outln!("no rollout")?;
        return Ok(());
    };
    show(&r)
}

/// The head of REF (of the group's REMOTE:REF) in the repository `dir`.
fn head_of_group_ref(
    db: &slate_fleet::Db,
    group: &str,
    dir: &std::path::Path,
) -> anyhow::Result<String> {
    let groups = slate_fleet::records::groups(db)?;
    let Some(g) = groups.iter().find(|g| g.name == group) else {
        anyhow::bail!("no group {group:?}");
    };
    let r = g
        .follows
        .split_once(':')
        .map_or(g.follows.as_str(), |(_, r)| r);
    let repo = super::super::RepoArg {
        repo: dir.to_path_buf(),
    }
    .open()?;
    let head = repo.read_ref(r)?.ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no ref {r} (group {group} follows {})",
            dir.display(),
            g.follows
        )
    })?;
    Ok(head.to_hex())
}

fn show(r: &Rollout) -> anyhow::Result<()> {
    if let Some(w) = &r.window {
        eprintln!("waves open only in the minutes of {w:?} (UTC)");
    }
    crate::outln!(
        "rollout {} of group {}: {} to {} ({} failures of {} allowed)",
        r.id,
        r.group,
        r.state,
        r.commit,
        r.failures,
        r.max_failures
    )?;
    let percents: Vec<&str> = r.waves.split(',').collect();
    for (i, c) in r.counts.iter().enumerate() {
        crate::outln!(
            "  wave {} ({:>3}%) {:<6} {}/{} done, {} failed",
            i + 1,
            percents.get(i).unwrap_or(&"?"),
            if (i as u64) < r.opened {
                "open"
            } else {
                "closed"
            },
            c.done,
            c.machines,
            c.failed
        )?;
    }
    Ok(())
}
