//! The parts of a tmpfiles.d line that need nothing of the parser's
//! state: its columns, the type's modifiers, a base64 argument, the mode
//! and age columns; and the message of a rejected line.

use base64::Engine as _;

use super::item::Item;
use super::parse::{parse_sec, Rejected};
use super::values::{item_text, parse_age_by, parse_mode};
use super::{Level, Log};
use crate::confd::words::{self, Flags};
use crate::confd::Kind;

/// A rejected line's message, logged at `FILE:LINE`.
pub(super) fn reject(log: &mut Log, at: &str, msg: String, invalid: bool) -> Rejected {
    log.event(
        Level::Error,
        Kind::InvalidLine,
        None,
        format!("{at}: {msg}"),
    );
    Rejected { invalid }
}

/// A column's bytes, unquoted.
type Column = Vec<u8>;

/// A line's first six columns (type, path, mode, user, group, age) and
/// the rest, the argument (`None` when empty or `-`).
pub(super) fn split_columns(text: &[u8]) -> Result<(Vec<Column>, Option<Vec<u8>>), String> {
    let mut rest = Some(text);
    let flags = Flags {
        unquote: true,
        cunescape: false,
    };
    let cols = words::extract_many(&mut rest, 6, flags)
        .map_err(|e| format!("Failed to parse line: {e}"))?;
    if cols.len() < 2 {
        return Err("Syntax error.".into());
    }
    let raw_arg = rest.filter(|r| !r.is_empty() && *r != b"-").map(Vec::from);
    Ok((cols, raw_arg))
}

/// The modifiers after a line's type letter (`!+-=~^`), each at most once.
#[derive(Default)]
pub(super) struct Modifiers {
    pub(super) boot: bool,
    pub(super) force: bool,
    pub(super) allow_failure: bool,
    pub(super) replace: bool,
    pub(super) unbase64: bool,
    pub(super) cred: bool,
}

impl Modifiers {
    pub(super) fn parse(action: &str) -> Result<Modifiers, String> {
        if action.is_empty() {
            return Err(format!("Command too short '{action}'."));
        }
        let mut m = Modifiers::default();
        for c in action.bytes().skip(1) {
            let flag = match c {
                b'!' => &mut m.boot,
                b'+' => &mut m.force,
                b'-' => &mut m.allow_failure,
                b'=' => &mut m.replace,
                b'~' => &mut m.unbase64,
                b'^' => &mut m.cred,
                _ => return Err(format!("Unknown modifiers in command '{action}'")),
            };
            if *flag {
                return Err(format!("Unknown modifiers in command '{action}'"));
            }
            *flag = true;
        }
        Ok(m)
    }
}

/// `~`: the argument is base64 (whitespace ignored, padding optional).
pub(super) fn decode_base64(item: &mut Item, at: &str, log: &mut Log) -> Result<(), Rejected> {
    let Some(a) = &item.argument else {
        return Ok(());
    };
    let clean: Vec<u8> = a
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    match engine.decode(&clean) {
        Ok(d) => item.argument = Some(d),
        Err(_) => {
            let msg = format!(
                "Failed to base64 decode specified argument '{}': Invalid argument",
                item_text(a)
            );
            return Err(reject(log, at, msg, false));
        }
    }
    Ok(())
}

/// The mode column (`~`: masked by the existing mode, `:`: only when the
/// line creates); without one, 0755 for directories and 0644 otherwise.
pub(super) fn mode_column(
    item: &mut Item,
    mode: Option<String>,
    at: &str,
    log: &mut Log,
) -> Result<(), Rejected> {
    let Some(mode) = mode else {
        item.mode = if b"dDvqQ".contains(&item.kind) {
            0o755
        } else {
            0o644
        };
        return Ok(());
    };
    let mut mm = mode.as_str();
    loop {
        if let Some(r) = mm.strip_prefix('~') {
            item.mask_perms = true;
            mm = r;
        } else if let Some(r) = mm.strip_prefix(':') {
            item.mode_only_create = true;
            mm = r;
        } else {
            break;
        }
    }
    match parse_mode(mm) {
        Some(m) => {
            item.mode = m;
            item.mode_set = true;
            Ok(())
        }
        None => Err(reject(log, at, format!("Invalid mode '{mode}'."), true)),
    }
}

/// The age column: `~` keeps the first level, `BY:` names the
/// timestamps compared, then the age.
pub(super) fn age_column(
    item: &mut Item,
    age: Option<String>,
    at: &str,
    log: &mut Log,
) -> Result<(), Rejected> {
    let Some(age) = age else {
        return Ok(());
    };
    let mut a = age.as_str();
    if let Some(r) = a.strip_prefix('~') {
        item.keep_first_level = true;
        a = r;
    }
    if let Some((by, secs)) = a.split_once(':') {
        match parse_age_by(by) {
            Some((f, d)) => {
                item.age_by_file = f;
                item.age_by_dir = d;
            }
            None => return Err(reject(log, at, format!("Invalid age-by '{by}'."), true)),
        }
        a = secs;
    }
    match parse_sec(a) {
        Some(v) => item.age = Some(v),
        None => return Err(reject(log, at, format!("Invalid age '{a}'."), true)),
    }
    Ok(())
}
