//! Checking a summary a server sent, field by field, and its expiry.

use std::collections::HashSet;

use super::{Error, Summary};
use crate::delta;
use crate::hash::ObjectId;
use crate::store::validate_ref_name;

/// The largest pack index a summary may announce (`idx_size`): 2^24
/// objects of 57 bytes and more.
pub const MAX_INDEX: u64 = 1 << 30;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A field that must be 64 lowercase hex digits (an object id, a digest).
fn hex64(field: &str, v: &str) -> Result<ObjectId, Error> {
    ObjectId::from_hex(v).map_err(|_| {
        invalid(
            field,
            format!("{:?} is not 64 lowercase hex digits", shorten(v)),
        )
    })
}

/// A value shown in a message, cut to a readable length.
fn shorten(v: &str) -> String {
    match v.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &v[..i]),
        None => v.to_string(),
    }
}

impl Summary {
    /// Every field checked (see [`Summary::from_bytes`]).
    pub(super) fn check(&self) -> Result<(), Error> {
        if self.format != 1 {
            return Err(invalid(
                "format",
                format!("{} is not a format this version reads (1)", self.format),
            ));
        }
        for (name, r) in &self.refs {
            let field = format!("refs.{:?}", shorten(name));
            validate_ref_name(name).map_err(|e| invalid(&field, e.to_string()))?;
            hex64(&format!("{field}.commit"), &r.commit)?;
            if r.object.is_some() && r.inline_commit().is_none() {
                return Err(invalid(
                    format!("{field}.object"),
                    format!("not the canonical bytes of commit {}", r.commit),
                ));
            }
        }
        let mut packs = HashSet::new();
        for (i, p) in self.packs.iter().enumerate() {
            let field = format!("packs[{i}]");
            let id = hex64(&format!("{field}.name"), &p.name)?;
            hex64(&format!("{field}.idx_sha256"), &p.idx_sha256)?;
            if let Some(n) = p.idx_size {
                if n > MAX_INDEX {
                    return Err(invalid(
                        format!("{field}.idx_size"),
                        format!("{n} bytes, more than the {MAX_INDEX} an index may have"),
                    ));
                }
            }
            if !packs.insert(id) {
                return Err(invalid(
                    format!("{field}.name"),
                    format!("pack {id} is listed twice"),
                ));
            }
        }
        let mut deltas = HashSet::new();
        for (i, d) in self.deltas.iter().enumerate() {
            let field = format!("deltas[{i}]");
            let to = hex64(&format!("{field}.to"), &d.to)?;
            let from = d
                .from
                .as_deref()
                .map(|f| hex64(&format!("{field}.from"), f))
                .transpose()?;
            if from == Some(to) {
                return Err(invalid(&field, format!("a delta from {to} to itself")));
            }
            let want = delta::rel_path(from.as_ref(), &to);
            if d.path != want {
                return Err(invalid(
                    format!("{field}.path"),
                    format!(
                        "{:?} is not {want}, the place of its delta",
                        shorten(&d.path)
                    ),
                ));
            }
            hex64(&format!("{field}.sha256"), &d.sha256)?;
            if !deltas.insert((from, to)) {
                return Err(invalid(&field, format!("{want} is listed twice")));
            }
        }
        Ok(())
    }
}

/// A summary whose expiry time has passed.
#[derive(Debug, thiserror::Error)]
#[error("its summary expired at {} (now {})", date(*expires), date(*now))]
pub struct Expired {
    pub expires: i64,
    pub now: i64,
}

/// The date formatter, a leaf of its own (`crate::date`): export uses it too.
pub use crate::date::date;

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> String {
        c.to_string().repeat(64)
    }

    /// A summary of an older version: no `idx_size`, no `expires`.
    fn old_summary() -> String {
        format!(
            r#"{{"format": 1, "timestamp": 1700000000,
            "refs": {{"os/main": {{"commit": "{a}", "timestamp": 1, "size": 10}}}},
            "packs": [{{"name": "{b}", "size": 5, "idx_sha256": "{c}"}}],
            "deltas": [{{"from": null, "to": "{a}", "path": "deltas/{a}/empty.delta",
                        "size": 3, "sha256": "{c}"}}]}}"#,
            a = id('a'),
            b = id('b'),
            c = id('c')
        )
    }

    #[test]
    fn a_summary_of_an_older_version_parses() {
        let s = Summary::from_bytes(old_summary().as_bytes()).expect("parses");
        assert_eq!(s.packs[0].idx_size, None);
        assert_eq!(s.expires, None);
        assert!(s.check_expiry(i64::MAX).is_ok());
        // And it is written back without the fields it lacked.
        let again = String::from_utf8(s.to_bytes()).expect("utf-8");
        assert!(!again.contains("idx_size") && !again.contains("expires"));
    }

    fn refused(from: &str, to: &str, field: &str) {
        let text = old_summary().replace(from, to);
        let e = Summary::from_bytes(text.as_bytes()).expect_err(&text);
        let msg = e.to_string();
        assert!(msg.starts_with(field), "{msg}");
    }

    #[test]
    fn every_field_from_a_server_is_checked() {
        let b = id('b');
        refused(
            &format!(r#""name": "{b}""#),
            r#""name": "../../../../tmp/x/PWNED""#,
            "packs[0].name",
        );
        refused(
            &format!(r#""name": "{b}""#),
            r#""name": "/tmp/x/PWNED""#,
            "packs[0].name",
        );
        refused(
            &format!(r#""name": "{b}""#),
            &format!(r#""name": "{}""#, b.to_uppercase()),
            "packs[0].name",
        );
        refused(
            r#""idx_sha256": "cccc"#,
            r#""idx_sha256": "zzzz"#,
            "packs[0].idx_sha256",
        );
        refused(r#""os/main""#, r#""../../etc/x""#, r#"refs."../../etc/x""#);
        refused(
            r#""commit": "aaaa"#,
            r#""commit": "Aaaa"#,
            "refs.\"os/main\".commit",
        );
        refused(
            r#""path": "deltas/"#,
            r#""path": "../../"#,
            "deltas[0].path",
        );
        refused(r#""to": "aaaa"#, r#""to": "/aaa"#, "deltas[0].to");
        refused(r#""from": null"#, r#""from": "x""#, "deltas[0].from");
        refused(
            r#""sha256": "cccc"#,
            r#""sha256": "ccc"#,
            "deltas[0].sha256",
        );
        refused(r#""format": 1"#, r#""format": 2"#, "format");
        refused(
            r#""size": 10}"#,
            r#""size": 10, "object": "AAAA"}"#,
            "refs.\"os/main\".object",
        );
        refused(
            r#""size": 5,"#,
            &format!(r#""size": 5, "idx_size": {},"#, MAX_INDEX + 1),
            "packs[0].idx_size",
        );
        refused(r#""format": 1"#, r#""format": "1""#, "(the JSON)");
    }

    #[test]
    fn expiry() {
        let text = old_summary().replace(
            r#""timestamp": 1700000000,"#,
            r#""timestamp": 1700000000, "expires": 1700604800,"#,
        );
        let s = Summary::from_bytes(text.as_bytes()).expect("parses");
        assert!(s.check_expiry(1700604800).is_ok());
        let e = s.check_expiry(1700604801).expect_err("expired");
        assert_eq!(
            e.to_string(),
            "its summary expired at 2023-11-21T22:13:20Z (now 2023-11-21T22:13:21Z)"
        );
    }

    proptest::proptest! {
        /// Any bytes: a summary or an error, never a panic; what parses
        /// holds only checked names.
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(s) = Summary::from_bytes(&bytes) {
                for p in &s.packs {
                    proptest::prop_assert!(p.id().is_ok());
                }
            }
        }

        /// A byte of a sound summary changed: it still parses only with
        /// every name checked.
        #[test]
        fn a_changed_byte_never_lets_a_bad_name_through(at in 0usize..1000, to: u8) {
            let mut b = old_summary().into_bytes();
            let at = at % b.len();
            b[at] = to;
            if let Ok(s) = Summary::from_bytes(&b) {
                for p in &s.packs {
                    proptest::prop_assert!(p.id().is_ok());
                    proptest::prop_assert!(ObjectId::from_hex(&p.idx_sha256).is_ok());
                }
                for d in &s.deltas {
                    let to = ObjectId::from_hex(&d.to).expect("checked");
                    let from = d.from.as_deref().map(|f| ObjectId::from_hex(f).expect("checked"));
                    proptest::prop_assert_eq!(&d.path, &delta::rel_path(from.as_ref(), &to));
                }
                for (name, r) in &s.refs {
                    proptest::prop_assert!(validate_ref_name(name).is_ok());
                    proptest::prop_assert!(ObjectId::from_hex(&r.commit).is_ok());
                }
            }
        }
    }

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01T00:00:00Z");
        assert_eq!(date(-1), "1969-12-31T23:59:59Z");
        assert!(date(i64::MAX).starts_with('+'));
        assert!(date(i64::MIN).starts_with('-'));
    }
}
