//! `slate tmpfiles`: systemd-tmpfiles' command line on Slate's engine.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use slate_core::confd::Host;
use slate_core::tmpfiles::{self, Effect, Log, Options};

use crate::output;

/// Create, remove and clean files and directories from tmpfiles.d rules
/// (drop-in for systemd-tmpfiles).
///
/// Without CONFIG, every *.conf of /etc/tmpfiles.d, /run/tmpfiles.d,
/// /usr/local/lib/tmpfiles.d and /usr/lib/tmpfiles.d is read (inside
/// --root; with --user, user-tmpfiles.d of $XDG_CONFIG_DIRS, ~/.config,
/// $XDG_RUNTIME_DIR, ~/.local/share and $XDG_DATA_DIRS); a file in an earlier directory overrides a same-named one in a
/// later one, and a symlink to /dev/null masks it. CONFIG names a file
/// looked up in those directories, an absolute path, or `-` for standard
/// input. Every path resolves inside --root: a symlink pointing to an
/// absolute path or climbing with `..` is followed as if the root were `/`.
///
/// Exit status: 0; 65 when a line is invalid (the other lines still
/// apply); 73 when something could not be created, removed or cleaned;
/// 1 when the run could not start.
///
/// A file with several hard links (a checkout's file shared with its
/// repository) is replaced by a copy of its own before it is changed;
/// removal stops at mount points.
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
    /// Act for the user running the command: read user-tmpfiles.d from
    /// the XDG configuration and data directories, and take %h %t %S %C %L
    /// from $HOME and $XDG_RUNTIME_DIR, $XDG_CONFIG_HOME, $XDG_CACHE_HOME;
    /// %u %U %g %G are the user's. Not with --root.
    #[arg(long)]
    user: bool,
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
    /// Show what would be done, step by step; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the plan, the exit status and every event as JSON on stdout.
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
        dry_run: a.dry_run,
        user: a.user,
    };
    if let Err(e) = opts.validate(a.cat_config) {
        eprintln!("{e}");
        return Ok(ExitCode::from(1));
    }
    let mut host = Host::from_system();
    if a.cat_config {
        let root = opts.open_root()?;
        let files = tmpfiles::config_files(&root, &opts, &host);
        let mut out = std::io::stdout().lock();
        slate_core::confd::cat(&root, &files, &mut out)?;
        return Ok(ExitCode::SUCCESS);
    }
    host.read_stdin_for(&opts.args)?;
    let mut log = Log::default();
    let outcome = tmpfiles::run(&opts, &host, &mut log);
    // systemd-tmpfiles' exit statuses.
    let status: u8 = match &outcome {
        Err(_) => 1,
        Ok(o) if o.invalid_config => tmpfiles::EXIT_DATAERR,
        Ok(o) if o.failed => tmpfiles::EXIT_CANTCREAT,
        Ok(_) => 0,
    };
    output::print_events(&log);
    let plan = outcome.map(|o| o.plan).unwrap_or_default();
    if a.json {
        output::engine_json("tmpfiles", a.dry_run, status, &plan, &log)?;
    } else if a.dry_run {
        let mut out = std::io::stdout().lock();
        for s in &plan {
            if s.effect == Effect::Nothing {
                continue;
            }
            let effect = serde_json::to_value(s.effect)?;
            let effect = effect.as_str().unwrap_or("?");
            let paths = if s.matches.is_empty() {
                vec![s.path.clone()]
            } else {
                s.matches.clone()
            };
            for p in paths {
                writeln!(out, "{effect:<9} {p}\t{} {}", s.kind, s.line)?;
            }
        }
    }
    Ok(ExitCode::from(status))
}
