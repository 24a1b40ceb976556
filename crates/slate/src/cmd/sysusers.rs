//! `slate sysusers`: systemd-sysusers' command line on Slate's engine.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use slate_core::sysusers::{self, Level, Log, Options};

use crate::output;

/// Create system users and groups from sysusers.d rules (drop-in for
/// systemd-sysusers).
///
/// Without CONFIG, every *.conf of /etc/sysusers.d, /run/sysusers.d,
/// /usr/local/lib/sysusers.d and /usr/lib/sysusers.d is read (inside
/// --root); a file in an earlier directory overrides a same-named one in a
/// later one, and a symlink to /dev/null or an empty file masks it. CONFIG
/// names a file looked up in those directories, an absolute path, or `-`
/// for standard input.
#[derive(Args)]
#[command(after_help = "Examples:\n  slate sysusers --root=/srv/sysroot\n  \
    slate sysusers --root=/srv/sysroot --dry-run --json\n  \
    echo 'u web - \"Web server\" /var/lib/web' | slate sysusers --root=/srv/sysroot -\n  \
    slate sysusers --root=/srv/sysroot --replace=/usr/lib/sysusers.d/web.conf --inline 'u web -'")]
pub struct SysusersArgs {
    /// Operate on this directory as the root filesystem.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Treat the arguments as a replacement for this configuration file.
    #[arg(long, value_name = "PATH")]
    replace: Option<String>,
    /// Treat the arguments as configuration lines, not file names.
    #[arg(long)]
    inline: bool,
    /// Show the configuration files, in the order they are read.
    #[arg(long)]
    cat_config: bool,
    /// Show what would be created; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Accepted for compatibility; Slate never pipes into a pager.
    #[arg(long)]
    no_pager: bool,
    /// Print the plan (users and groups created, with their IDs) as JSON.
    #[arg(long)]
    json: bool,
    /// Configuration files, or lines with --inline.
    #[arg(value_name = "CONFIG")]
    config: Vec<String>,
}

fn print_log(log: &Log) {
    let mut err = std::io::stderr().lock();
    for (_, text) in &log.messages {
        let _ = writeln!(err, "{text}");
    }
}

pub fn run(a: SysusersArgs) -> anyhow::Result<ExitCode> {
    let opts = Options {
        root: a.root.clone(),
        replace: a.replace.clone(),
        inline: a.inline,
        dry_run: a.dry_run,
        args: a.config.clone(),
    };
    if let Err(e) = opts.validate(a.cat_config) {
        eprintln!("{e}");
        return Ok(ExitCode::from(1));
    }
    if a.cat_config {
        let root = opts.open_root()?;
        let files = sysusers::config_files(&root, &opts);
        let mut out = std::io::stdout().lock();
        slate_core::confd::cat(&root, &files, &mut out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut log = Log::default();
    let result = sysusers::run(&opts, &mut log);
    print_log(&log);
    let failed = result.is_err();
    if a.json {
        let errors: Vec<&str> = log
            .messages
            .iter()
            .filter(|(l, _)| *l == Level::Error)
            .map(|(_, t)| t.as_str())
            .collect();
        let outcome = result.unwrap_or_default();
        output::json(&serde_json::json!({
            "dry_run": a.dry_run,
            "ok": !failed,
            "groups": outcome.plan.groups,
            "users": outcome.plan.users,
            "members": outcome.plan.members,
            "files": outcome.files,
            "errors": errors,
        }))?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
