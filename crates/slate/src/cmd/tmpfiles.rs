//! `slate tmpfiles`: systemd-tmpfiles' command line on Slate's engine.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use slate_core::tmpfiles::{self, Log, Options};

use crate::output;

/// Create, remove and clean files and directories from tmpfiles.d rules
/// (drop-in for systemd-tmpfiles).
///
/// Without CONFIG, every *.conf of /etc/tmpfiles.d, /run/tmpfiles.d,
/// /usr/local/lib/tmpfiles.d and /usr/lib/tmpfiles.d is read (inside
/// --root); a file in an earlier directory overrides a same-named one in a
/// later one, and a symlink to /dev/null masks it. CONFIG names a file
/// looked up in those directories, an absolute path, or `-` for standard
/// input. Every path resolves inside --root: a symlink pointing to an
/// absolute path or climbing with `..` is followed as if the root were `/`.
///
/// Exit status: 0; 65 when a line is invalid (the other lines still
/// apply); 73 when something could not be created, removed or cleaned;
/// 1 when the run could not start.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  slate tmpfiles --create --boot --root=/srv/sysroot\n  \
    slate tmpfiles --create --remove --boot -E --root=/srv/sysroot\n  \
    slate tmpfiles --clean\n  \
    echo 'd /run/web 0750 www-data www-data 10d' | slate tmpfiles --create --root=/srv/sysroot -\n  \
    slate tmpfiles --cat-config --root=/srv/sysroot"
)]
pub struct TmpfilesArgs {
    /// Create and adjust what the lines describe.
    #[arg(long)]
    create: bool,
    /// Remove old files from directories that have an age.
    #[arg(long)]
    clean: bool,
    /// Remove what `r`, `R` and `D` lines name (and empty `D` directories).
    #[arg(long)]
    remove: bool,
    /// Also apply lines marked with `!` (safe only at boot).
    #[arg(long)]
    boot: bool,
    /// Operate on this directory as the root filesystem.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Only apply lines whose path starts with PATH (repeatable).
    #[arg(long, value_name = "PATH")]
    prefix: Vec<String>,
    /// Skip lines whose path starts with PATH (repeatable).
    #[arg(long, value_name = "PATH")]
    exclude_prefix: Vec<String>,
    /// Skip lines below /dev, /proc, /run and /sys.
    #[arg(short = 'E')]
    exclude_api: bool,
    /// Treat the arguments as a replacement for this configuration file.
    #[arg(long, value_name = "PATH")]
    replace: Option<String>,
    /// Show the configuration files, in the order they are read.
    #[arg(long)]
    cat_config: bool,
    /// Skip lines naming users or groups that do not exist, quietly.
    #[arg(long)]
    graceful: bool,
    /// Accepted for compatibility; Slate never pipes into a pager.
    #[arg(long)]
    no_pager: bool,
    /// Print the exit status and every message as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Configuration files.
    #[arg(value_name = "CONFIG")]
    config: Vec<String>,
}

pub fn run(a: TmpfilesArgs) -> anyhow::Result<ExitCode> {
    let mut exclude = a.exclude_prefix.clone();
    if a.exclude_api {
        exclude.extend(["/dev", "/proc", "/run", "/sys"].map(String::from));
    }
    let opts = Options {
        root: a.root.clone(),
        create: a.create,
        clean: a.clean,
        remove: a.remove,
        boot: a.boot,
        prefix: a.prefix.clone(),
        exclude_prefix: exclude,
        replace: a.replace.clone(),
        graceful: a.graceful,
        args: a.config.clone(),
    };
    if let Err(e) = opts.validate(a.cat_config) {
        eprintln!("{e}");
        return Ok(ExitCode::from(1));
    }
    if a.cat_config {
        let root = opts.open_root()?;
        let files = tmpfiles::config_files(&root, &opts);
        let mut out = std::io::stdout().lock();
        slate_core::confd::cat(&root, &files, &mut out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut log = Log::default();
    let status = tmpfiles::run(&opts, &mut log);
    {
        let mut err = std::io::stderr().lock();
        for (_, text) in &log.messages {
            let _ = writeln!(err, "{text}");
        }
    }
    if a.json {
        let messages: Vec<_> = log
            .messages
            .iter()
            .map(|(level, text)| serde_json::json!({"level": level, "text": text}))
            .collect();
        output::json(&serde_json::json!({
            "status": status,
            "messages": messages,
        }))?;
    }
    Ok(ExitCode::from(status))
}
