//! `slate sysusers`: systemd-sysusers' command line on Slate's engine.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use slate_core::confd::Host;
use slate_core::sysusers::{self, Log, Options};

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
    let mut host = Host::from_system();
    if !a.inline {
        host.read_stdin_for(&opts.args)?;
    }
    let mut log = Log::default();
    let result = sysusers::run(&opts, &host, &mut log);
    output::print_events(&log);
    let status: u8 = if result.is_err() { 1 } else { 0 };
    if a.json {
        let o = result.unwrap_or_default();
        let plan = serde_json::json!({
            "groups": o.plan.groups,
            "users": o.plan.users,
            "members": o.plan.members,
            "files": o.files,
        });
        output::engine_json("sysusers", a.dry_run, status, &plan, &log)?;
    }
    Ok(ExitCode::from(status))
}
