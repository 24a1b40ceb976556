//! The `Range` header of a GET, as RFC 9110 (section 14) asks a server to
//! read it: one range of `bytes` is served (206); a header it does not
//! understand — another unit, several ranges, bad syntax — is ignored (the
//! whole file, 200); only a valid `bytes` range that selects nothing of the
//! file is answered 416.

/// What to send for a request's `Range`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ranged {
    /// The whole file (200).
    Whole,
    /// Bytes `start..end` (206).
    Part(u64, u64),
    /// A valid range past the file's end (416).
    Unsatisfiable,
}

/// Digits only (`u64::from_str` would take a leading `+`).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `value` (a `Range` header) for a file of `len` bytes.
pub(super) fn ranged(value: &str, len: u64) -> Ranged {
    let Some((unit, set)) = value.split_once('=') else {
        return Ranged::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return Ranged::Whole;
    }
    let Some((a, b)) = set.trim().split_once('-') else {
        return Ranged::Whole;
    };
    if len == 0 {
        // No byte to select: the (empty) file whole.
        return Ranged::Whole;
    }
    if a.is_empty() {
        // The last N bytes.
        return match number(b) {
            None => Ranged::Whole,
            Some(0) => Ranged::Unsatisfiable,
            Some(n) => Ranged::Part(len.saturating_sub(n), len),
        };
    }
    let Some(start) = number(a) else {
        return Ranged::Whole;
    };
    let end = if b.is_empty() {
        len
    } else {
        match number(b) {
            Some(last) if last >= start => last.saturating_add(1).min(len),
            // A last byte before the first: not a valid range.
            _ => return Ranged::Whole,
        }
    };
    if start >= len {
        return Ranged::Unsatisfiable;
    }
    Ranged::Part(start, end)
}

#[cfg(test)]
mod tests {
    use super::Ranged::*;
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(ranged("bytes=0-9", 100), Part(0, 10));
        assert_eq!(ranged("bytes=90-", 100), Part(90, 100));
        assert_eq!(ranged("bytes=-10", 100), Part(90, 100));
        assert_eq!(ranged("bytes=-1000", 100), Part(0, 100));
        assert_eq!(ranged("bytes=95-200", 100), Part(95, 100));
        assert_eq!(ranged("Bytes=1-1", 100), Part(1, 2));
        assert_eq!(ranged("bytes= 5-6 ", 100), Part(5, 7));
        // Valid, but nothing of the file: 416.
        assert_eq!(ranged("bytes=100-", 100), Unsatisfiable);
        assert_eq!(ranged("bytes=500-600", 100), Unsatisfiable);
        assert_eq!(ranged("bytes=-0", 100), Unsatisfiable);
        // Not understood: ignored.
        for v in [
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=5-3",
            "bytes=x-1",
            "bytes=+1-2",
            "bytes=1",
            "bytes",
            "",
            "bytes=-",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(ranged(v, 100), Whole, "{v:?}");
        }
        assert_eq!(ranged("bytes=0-", 0), Whole);
    }
}
