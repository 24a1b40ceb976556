//! Object ids: SHA-256 digests, their hex form and unique prefixes.

use std::fmt;

use sha2::{Digest, Sha256};

/// The id of an object in a Slate repository: the SHA-256 digest of its
/// canonical encoding (see `docs/format/objects.md`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub [u8; 32]);

/// A string that is not a valid full object id.
#[derive(Debug, thiserror::Error)]
#[error("invalid object id {text:?}: expected 64 lowercase hex digits")]
pub struct ParseIdError {
    pub text: String,
}

impl ObjectId {
    /// Length of the hex form.
    pub const HEX_LEN: usize = 64;

    /// Digest of one buffer.
    pub fn digest(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse exactly 64 lowercase hex digits.
    pub fn from_hex(text: &str) -> Result<Self, ParseIdError> {
        if text.len() != Self::HEX_LEN || !is_lower_hex(text) {
            return Err(ParseIdError {
                text: text.to_owned(),
            });
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(|_| ParseIdError {
            text: text.to_owned(),
        })?;
        Ok(Self(out))
    }

    /// The first `n` hex digits, for display.
    pub fn short(&self, n: usize) -> String {
        let mut s = self.to_hex();
        s.truncate(n.min(Self::HEX_LEN));
        s
    }

    /// Whether the hex form starts with `prefix` (lowercase hex).
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.to_hex().starts_with(prefix)
    }
}

/// Whether `s` is non-empty and made only of `0-9a-f`.
pub fn is_lower_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

impl std::str::FromStr for ObjectId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

impl serde::Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// An incremental SHA-256 hasher producing an [`ObjectId`].
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Self {
        Self(Sha256::new())
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    pub fn finish(self) -> ObjectId {
        ObjectId(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_digest_is_sha256() {
        assert_eq!(
            ObjectId::digest(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hex_round_trip_and_rejects() {
        let id = ObjectId::digest(b"slate");
        assert_eq!(ObjectId::from_hex(&id.to_hex()).expect("valid"), id);
        assert!(ObjectId::from_hex(&id.to_hex().to_uppercase()).is_err());
        assert!(ObjectId::from_hex("abc").is_err());
        assert!(id.has_prefix(&id.short(7)));
    }

    #[test]
    fn incremental_matches_oneshot() {
        let mut h = Hasher::new();
        h.update(b"sla");
        h.update(b"te");
        assert_eq!(h.finish(), ObjectId::digest(b"slate"));
    }
}
