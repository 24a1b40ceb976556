//! A rollout's window: a systemd calendar event (`systemd.time(7)`, as
//! `OnCalendar=` takes it) matched a minute at a time — a wave opens only
//! in a minute the event names (`Mon..Fri 02..04:*:00`: weekdays from 02:00
//! to 04:59). systemd's own parser decides (`systemd-analyze calendar`).

use std::process::Command;

/// The calendar event is one systemd reads.
pub fn check(spec: &str) -> Result<(), String> {
    if spec.is_empty() || spec.len() > 256 || spec.chars().any(char::is_control) {
        return Err(format!("--window {spec:?}: one line of at most 256 bytes"));
    }
    let out = Command::new("systemd-analyze")
        .args(["calendar", "--", spec])
        .env("TZ", "UTC")
        .output()
        .map_err(|e| format!("--window needs systemd-analyze (systemd): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "--window {spec:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// `Next elapse: Mon 2026-12-07 22:00:00 UTC` as `2026-12-07T22:00:00Z`.
fn next_elapse(text: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("Next elapse:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| w.len() == 10 && w.as_bytes()[4] == b'-' && w.as_bytes()[7] == b'-')?;
    let time = words.get(i + 1)?;
    Some(format!("{}T{}Z", words[i], time))
}

/// Whether the minute of `now` (Unix seconds, UTC) is one of the event's.
pub fn open_at(spec: &str, now: i64) -> Result<bool, String> {
    let minute = now - now.rem_euclid(60);
    let out = Command::new("systemd-analyze")
        .args(["calendar", "--iterations=1"])
        .arg(format!("--base-time=@{}", minute - 1))
        .arg("--")
        .arg(spec)
        .env("TZ", "UTC")
        .output()
        .map_err(|e| format!("systemd-analyze: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(next_elapse(&text).as_deref() == Some(slate_core::summary::date(minute).as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_elapse_is_read() {
        let text = "Normalized form: *-*-* 02..04:*:00\n    Next elapse: Tue 2026-12-08 02:00:00 UTC\n       From now: 4h left\n";
        assert_eq!(next_elapse(text).as_deref(), Some("2026-12-08T02:00:00Z"));
        assert_eq!(next_elapse("nothing"), None);
    }

    #[test]
    fn a_minute_is_in_the_window_or_not() {
        if check("*-*-* *:*:00").is_err() {
            eprintln!("SKIPPED: systemd-analyze is not installed");
            return;
        }
        // 2026-12-07 (a Monday) 02:30 and 05:30 UTC.
        let monday_0230 = 1_796_610_600;
        assert_eq!(
            slate_core::summary::date(monday_0230),
            "2026-12-07T02:30:00Z"
        );
        assert_eq!(open_at("Mon..Fri 02..04:*:00", monday_0230 + 17), Ok(true));
        assert_eq!(
            open_at("Mon..Fri 02..04:*:00", monday_0230 + 3 * 3600),
            Ok(false)
        );
        assert_eq!(open_at("Sat,Sun *-*-* *:*:00", monday_0230), Ok(false));
        assert!(check("bogus").is_err_and(|e| e.contains("bogus")));
    }
}
