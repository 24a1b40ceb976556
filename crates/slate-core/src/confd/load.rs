//! The one configuration loader of the engines. As systemd's tools read
//! theirs: the CONFIG arguments alone (names looked up in the drop-in
//! directories, absolute paths as given, `-` for standard input, or lines
//! themselves with `--inline`), or every file of the directories with the
//! arguments in place of `--replace=`'s file; then the `KIND.extra`
//! credential. Lines are handed to the engine's parser one at a time.

use std::io;

use super::{insert_replacement, lines, list, os_text, read, strip, Host, Level, Log};
use crate::fsutil::Root;

/// What to read, and how the tool names what it reads.
#[derive(Clone, Debug)]
pub struct Source<'a> {
    /// The drop-in directories, highest priority first.
    pub dirs: &'a [String],
    /// CONFIG arguments.
    pub args: &'a [String],
    /// `--replace=PATH`.
    pub replace: Option<&'a str>,
    /// The arguments are configuration lines (`--inline`).
    pub inline: bool,
    /// The credential read last (`tmpfiles.extra`, `sysusers.extra`).
    pub extra_credential: &'a str,
    /// How standard input is named in messages (`<stdin>`, `-`).
    pub stdin_name: &'a str,
    /// Appended to "Failed to open 'X'" (", ignoring" for sysusers).
    pub open_error_suffix: &'a str,
}

/// What the parser made of one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineOutcome {
    Ok,
    /// The line is invalid; the file goes on.
    Invalid,
    /// The line failed; the file counts as failed (the rest is still read).
    Failed,
}

/// A configuration that could not be read; the reason is in the log.
#[derive(Debug)]
pub struct Failed;

/// A parser of lines: (shown file name, line number, stripped text).
pub type OnLine<'p> = dyn FnMut(&str, usize, &[u8], &mut Log) -> LineOutcome + 'p;

/// Feed every line of `data` to `on_line`; whether none failed.
fn parse_text(shown: &str, data: &[u8], log: &mut Log, on_line: &mut OnLine<'_>) -> bool {
    let mut ok = true;
    for (n, line) in lines(data).into_iter().enumerate() {
        let line = strip(line);
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        if on_line(shown, n + 1, line, log) == LineOutcome::Failed {
            ok = false;
        }
    }
    ok
}

/// Read one CONFIG argument; an error opening it, or a failed line, fails.
fn open_failed(log: &mut Log, src: &Source<'_>, name: &str, e: &io::Error) -> Failed {
    log.push(
        Level::Error,
        format!(
            "Failed to open '{name}'{}: {}",
            src.open_error_suffix,
            os_text(e)
        ),
    );
    Failed
}

fn read_arg(
    root: &Root,
    src: &Source<'_>,
    host: &Host,
    name: &str,
    log: &mut Log,
    on_line: &mut OnLine<'_>,
) -> Result<(), Failed> {
    let (shown, data) = if name == "-" {
        match &host.stdin {
            Some(d) => (src.stdin_name.to_string(), d.clone()),
            None => {
                log.push(
                    Level::Error,
                    "Failed to read '-': standard input was not given".into(),
                );
                return Err(Failed);
            }
        }
    } else if name.starts_with('/') {
        // An absolute path is read as given, as systemd reads it.
        let data = std::fs::read(name).map_err(|e| open_failed(log, src, name, &e))?;
        (name.to_string(), data)
    } else {
        let (path, data) =
            super::search(root, src.dirs, name).map_err(|e| open_failed(log, src, name, &e))?;
        (root.display(&path), data)
    };
    if parse_text(&shown, &data, log, on_line) {
        Ok(())
    } else {
        Err(Failed)
    }
}

fn read_args(
    root: &Root,
    src: &Source<'_>,
    host: &Host,
    log: &mut Log,
    on_line: &mut OnLine<'_>,
) -> Result<(), Failed> {
    for (i, arg) in src.args.iter().enumerate() {
        if src.inline {
            if on_line("(argument)", i + 1, arg.as_bytes(), log) == LineOutcome::Failed {
                return Err(Failed);
            }
        } else {
            read_arg(root, src, host, arg, log, on_line)?;
        }
    }
    Ok(())
}

/// Read the configuration `src` describes, line by line into `on_line`.
/// Errors in the directories' files are reported and skipped; errors in
/// arguments end the load (`Err`).
pub fn load(
    root: &Root,
    src: &Source<'_>,
    host: &Host,
    log: &mut Log,
    on_line: &mut OnLine<'_>,
) -> Result<(), Failed> {
    if src.replace.is_some() || src.args.is_empty() {
        let mut files = list(root, src.dirs, ".conf");
        if let Some(r) = src.replace {
            insert_replacement(&mut files, src.dirs, r);
        }
        for f in files {
            if src.replace == Some(f.path.as_str()) {
                read_args(root, src, host, log, on_line)?;
                continue;
            }
            match read(root, &f) {
                Ok(data) => {
                    parse_text(&root.display(&f.path), &data, log, on_line);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    open_failed(log, src, &root.display(&f.path), &e);
                }
            }
        }
    } else {
        read_args(root, src, host, log, on_line)?;
    }
    if let Ok(Some(data)) = host.credentials.get(src.extra_credential) {
        let shown = match host.credentials.dir() {
            Some(d) => d.join(src.extra_credential).display().to_string(),
            None => src.extra_credential.to_string(),
        };
        parse_text(&shown, &data, log, on_line);
    }
    Ok(())
}
