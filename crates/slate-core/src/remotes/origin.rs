//! Where a deployment's commit comes from: a ref of the sysroot's
//! repository, a ref of a remote (`REMOTE:REF`, pulled first), or a commit
//! named by its id. Written in a deployment's record as text (`os/main`,
//! `origin:os/main`); records written before the origin was typed hold
//! the same text and read back the same.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::config::{is_name, tracking_ref};
use crate::hash::ObjectId;
use crate::store;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A ref of the repository deployed from (`os/main`,
    /// `remotes/REMOTE/os/main`).
    Ref(String),
    /// REF of a remote of the repository, pulled before it is deployed.
    Remote { remote: String, r#ref: String },
    /// A commit named by its id: nothing to follow.
    Commit(ObjectId),
}

/// Text that names no origin.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not an origin (REF, REMOTE:REF or a commit id): {why}")]
pub struct ParseError {
    pub text: String,
    pub why: String,
}

impl Origin {
    /// The remote whose trust rule applies to this origin's commit: the
    /// remote of `REMOTE:REF`, or of a local ref `remotes/REMOTE/...`
    /// (tracking refs are set by pulls from that remote).
    pub fn remote(&self) -> Option<&str> {
        match self {
            Origin::Remote { remote, .. } => Some(remote),
            Origin::Ref(r) => {
                let (remote, rest) = r.strip_prefix("remotes/")?.split_once('/')?;
                (is_name(remote) && !rest.is_empty()).then_some(remote)
            }
            Origin::Commit(_) => None,
        }
    }

    /// Whether there is a ref to follow (what `upgrade` needs).
    pub fn is_ref(&self) -> bool {
        !matches!(self, Origin::Commit(_))
    }

    /// The local ref the origin's commit is kept under once pulled.
    pub fn local_ref(&self) -> Option<String> {
        match self {
            Origin::Ref(r) => Some(r.clone()),
            Origin::Remote { remote, r#ref } => Some(tracking_ref(remote, r#ref)),
            Origin::Commit(_) => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Ref(r) => f.write_str(r),
            Origin::Remote { remote, r#ref } => write!(f, "{remote}:{ref}", ref = r#ref),
            Origin::Commit(c) => f.write_str(&c.to_hex()),
        }
    }
}

impl FromStr for Origin {
    type Err = ParseError;
    /// `REMOTE:REF` (a ref name has no `:`), 64 hex digits (a commit), or
    /// a ref name. Nothing is looked up: whether the remote or the ref
    /// exists is the resolver's business.
    fn from_str(text: &str) -> Result<Origin, ParseError> {
        let bad = |why: String| ParseError {
            text: text.to_string(),
            why,
        };
        if let Some((remote, r)) = text.split_once(':') {
            if !is_name(remote) {
                return Err(bad(format!("{remote:?} is not a remote name")));
            }
            store::validate_ref_name(r).map_err(|e| bad(e.to_string()))?;
            return Ok(Origin::Remote {
                remote: remote.to_string(),
                r#ref: r.to_string(),
            });
        }
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(c) = ObjectId::from_hex(text) {
                return Ok(Origin::Commit(c));
            }
        }
        store::validate_ref_name(text).map_err(|e| bad(e.to_string()))?;
        Ok(Origin::Ref(text.to_string()))
    }
}

impl Serialize for Origin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Origin, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let c = ObjectId::from_hex(&"ab".repeat(32)).expect("hex");
        for o in [
            Origin::Ref("os/main".into()),
            Origin::Ref("remotes/origin/os/main".into()),
            Origin::Remote {
                remote: "origin".into(),
                r#ref: "os/main".into(),
            },
            Origin::Commit(c),
        ] {
            let text = o.to_string();
            assert_eq!(text.parse::<Origin>().expect("parses"), o, "{text}");
        }
    }

    #[test]
    fn text_of_old_records_reads_back() {
        assert_eq!(
            "origin:os/main".parse::<Origin>().expect("remote"),
            Origin::Remote {
                remote: "origin".into(),
                r#ref: "os/main".into()
            }
        );
        assert_eq!(
            "os/main".parse::<Origin>().expect("ref"),
            Origin::Ref("os/main".into())
        );
        for bad in ["", "-x:os/main", "origin:", "origin:a b", "a:b:c", "/x"] {
            assert!(bad.parse::<Origin>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_remote_whose_rule_applies() {
        let o = |t: &str| t.parse::<Origin>().expect("parses");
        assert_eq!(o("origin:os/main").remote(), Some("origin"));
        assert_eq!(o("remotes/origin/os/main").remote(), Some("origin"));
        assert_eq!(o("os/main").remote(), None);
        assert_eq!(o("remotes/origin").remote(), None);
        assert_eq!(o(&"0".repeat(64)).remote(), None);
    }
}
