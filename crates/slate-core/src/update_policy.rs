//! How a machine updates itself, as its image says (`[update]` of the
//! manifest, kept in the image as `/usr/lib/slate/update.toml`) and a
//! machine may override (`/etc/slate/update.toml`): the policy, the
//! timer's calendar, the reboot. Read by `slate admin upgrade --auto`,
//! written by compose. Pure but for [`check_calendar_with_systemd`].

use serde::{Deserialize, Serialize};

/// The image's policy file, below its root.
pub const IMAGE_FILE: &str = "usr/lib/slate/update.toml";
/// A machine's override, below a deployment's root (its `/etc`).
pub const ETC_FILE: &str = "etc/slate/update.toml";
/// The largest policy file read.
pub const MAX_FILE: usize = 16 << 10;

/// What the update timer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Check and report (the journal, the OS's last-check record).
    Check,
    /// Download and stage the update: it becomes the OS at the next boot.
    Stage,
    /// Stage, then reboot into it (now, or in the reboot window).
    Apply,
}

/// When `apply` reboots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reboot {
    /// As soon as the update is staged.
    Now,
    /// At the next time of the window's calendar.
    Window,
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::Check => "check",
            Policy::Stage => "stage",
            Policy::Apply => "apply",
        })
    }
}

/// The policy file's keys; in an override each one replaces the image's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicyFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// The timer's `OnCalendar=` (informative here: the timer reads its
    /// drop-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub randomized_delay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<Reboot>,
    /// A calendar (systemd.time(7)): when `apply` with `reboot =
    /// "window"` reboots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// The policy in force: the image's file with the machine's over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Effective {
    pub policy: Policy,
    pub reboot: Reboot,
    pub window: Option<String>,
    pub schedule: Option<String>,
    /// Which files said it (`/usr/lib/slate/update.toml`, ...).
    pub from: Vec<String>,
}

impl PolicyFile {
    /// `text`, the file `what`, checked: known keys, calendars and time
    /// spans of systemd's syntax, a window when `reboot = "window"` asks
    /// for one. Errors name `what:line`.
    pub fn parse(what: &str, text: &str) -> Result<PolicyFile, String> {
        if text.len() > MAX_FILE {
            return Err(format!("{what}: larger than {MAX_FILE} bytes"));
        }
        let f: PolicyFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            });
            format!("{what}:{line}: {}", e.message())
        })?;
        for (key, v) in [("schedule", &f.schedule), ("window", &f.window)] {
            if let Some(v) = v {
                check_calendar(v).map_err(|m| format!("{what}: {key}: {m}"))?;
            }
        }
        if let Some(d) = &f.randomized_delay {
            check_timespan(d).map_err(|m| format!("{what}: randomized-delay: {m}"))?;
        }
        Ok(f)
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut t = String::from(
            "# How this OS updates itself (slate compose, [update]); read by\n\
             # `slate admin upgrade --auto`. /etc/slate/update.toml overrides it key by key.\n",
        );
        t.push_str(&toml::to_string(self).expect("plain data serializes"));
        t
    }

    /// The image's file with `over` (the machine's) over it; `None` when
    /// neither names a policy.
    pub fn effective(image: Option<&PolicyFile>, over: Option<&PolicyFile>) -> Option<Effective> {
        let pick = |f: &dyn Fn(&PolicyFile) -> Option<String>| {
            over.and_then(f).or_else(|| image.and_then(f))
        };
        let policy = over
            .and_then(|o| o.policy)
            .or_else(|| image.and_then(|i| i.policy))?;
        let reboot = over
            .and_then(|o| o.reboot)
            .or_else(|| image.and_then(|i| i.reboot))
            .unwrap_or(Reboot::Now);
        let mut from = Vec::new();
        if image.is_some() {
            from.push(format!("/{IMAGE_FILE}"));
        }
        if over.is_some() {
            from.push(format!("/{ETC_FILE}"));
        }
        Some(Effective {
            policy,
            reboot,
            window: pick(&|f| f.window.clone()),
            schedule: pick(&|f| f.schedule.clone()),
            from,
        })
    }
}

/// A calendar expression's shape (systemd.time(7)): one line of the
/// characters its syntax uses, at most 256 of them. The full grammar is
/// systemd's: [`check_calendar_with_systemd`] asks it where it is.
pub fn check_calendar(s: &str) -> Result<(), String> {
    let t = s.trim();
    if t.is_empty() || t.len() > 256 {
        return Err(format!(
            "{s:?}: a calendar is one line of 1 to 256 characters"
        ));
    }
    let ok = t
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " *,.:~/+-_".contains(c));
    if !ok {
        return Err(format!(
            "{s:?} is not a calendar expression (systemd.time(7), e.g. \"daily\" or \"Mon..Fri 03:00\")"
        ));
    }
    Ok(())
}

/// What `systemd-analyze calendar` says of `s`: `Ok(true)` valid,
/// `Err(why)` refused, `Ok(false)` when the tool cannot be run.
pub fn check_calendar_with_systemd(s: &str) -> Result<bool, String> {
    let out = match std::process::Command::new("systemd-analyze")
        .args(["calendar", "--iterations=1", "--", s])
        .output()
    {
        Ok(o) => o,
        Err(_) => return Ok(false),
    };
    if out.status.success() {
        return Ok(true);
    }
    let why = String::from_utf8_lossy(&out.stderr);
    Err(format!(
        "{s:?} is not a calendar expression (systemd-analyze calendar: {})",
        why.trim()
    ))
}

/// A time span as systemd reads it (`90`, `30min`, `1h 30min`, `2d`).
pub fn check_timespan(s: &str) -> Result<(), String> {
    const UNITS: &[&str] = &[
        "", "us", "usec", "ms", "msec", "s", "sec", "second", "seconds", "m", "min", "minute",
        "minutes", "h", "hr", "hour", "hours", "d", "day", "days", "w", "week", "weeks", "M",
        "month", "months", "y", "year", "years",
    ];
    let bad = || format!("{s:?} is not a time span (e.g. \"90\", \"30min\", \"1h 30min\")");
    let t = s.trim();
    if t.is_empty() || t.len() > 64 {
        return Err(bad());
    }
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(bad());
        }
        rest = rest[digits..].trim_start();
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        if !UNITS.contains(&&rest[..unit_len]) {
            return Err(bad());
        }
        rest = rest[unit_len..].trim_start();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_parse_and_the_machine_overrides_the_image() {
        let img = PolicyFile::parse(
            "img",
            "policy = \"apply\"\nschedule = \"daily\"\nreboot = \"window\"\nwindow = \"Sun 03:00\"\n",
        )
        .expect("parses");
        assert_eq!(PolicyFile::parse("x", &img.render()).expect("again"), img);
        let over = PolicyFile::parse("etc", "policy = \"check\"\n").expect("parses");
        let e = PolicyFile::effective(Some(&img), Some(&over)).expect("a policy");
        assert_eq!(e.policy, Policy::Check);
        assert_eq!(e.reboot, Reboot::Window);
        assert_eq!(e.window.as_deref(), Some("Sun 03:00"));
        assert_eq!(e.from.len(), 2);
        assert!(PolicyFile::effective(None, None).is_none());
    }

    #[test]
    fn bad_files_name_the_line() {
        for (text, want) in [
            ("policy = \"check\"\npolicy2 = 1\n", "x:2:"),
            ("\npolicy = \"sometimes\"\n", "x:2:"),
            ("policy = \"check\"\nschedule = \"daily; rm\"\n", "schedule"),
            (
                "policy = \"check\"\nrandomized-delay = \"soon\"\n",
                "time span",
            ),
        ] {
            let e = PolicyFile::parse("x", text).expect_err(text);
            assert!(e.contains(want), "{text:?}: {e}");
        }
        for ok in ["90", "30min", "1h 30min", "2d"] {
            check_timespan(ok).expect(ok);
        }
        for bad in ["", "h", "1 parsec", "-1"] {
            assert!(check_timespan(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Any text: an error naming the file, or a policy that reads
        /// back the same once written.
        #[test]
        fn any_text_is_refused_or_read_back(text in "((policy|schedule|reboot|window|randomized-delay) = \"[a-z0-9: .*,~/-]{0,12}\"\n){0,4}") {
            match PolicyFile::parse("u.toml", &text) {
                Ok(f) => proptest::prop_assert_eq!(PolicyFile::parse("again", &f.render()).expect("again"), f),
                Err(e) => proptest::prop_assert!(e.starts_with("u.toml")),
            }
        }

        #[test]
        fn spans_and_calendars_never_panic(s in "\\PC{0,40}") {
            let _ = check_timespan(&s);
            let _ = check_calendar(&s);
        }
    }
}
