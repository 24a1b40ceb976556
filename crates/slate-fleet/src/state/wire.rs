//! What travels for a machine's kept state (`docs/format/fleet.md`):
//! JSON, unknown fields refused, every path checked by [`super::path`],
//! contents in base64, every count bounded.

use serde::{Deserialize, Serialize};

use crate::wire::Invalid;

/// The server's limits on one machine's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Bytes of one file.
    pub file_bytes: u64,
    /// Files of one machine.
    pub files: u64,
    /// Bytes of all a machine's files.
    pub total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            file_bytes: 64 * 1024,
            files: 64,
            total_bytes: 1024 * 1024,
        }
    }
}

impl Limits {
    /// The largest upload body these limits allow: base64 of the total,
    /// and room for each file's fields.
    pub fn max_body(&self) -> usize {
        let b = self.total_bytes.saturating_mul(4) / 3 + self.files.saturating_mul(2048) + 4096;
        usize::try_from(b).unwrap_or(usize::MAX)
    }
}

/// A kept file as the server lists it (never its content).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub path: String,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Unix time of its last upload (or transfer to this machine).
    pub changed: i64,
    /// Changes whenever the server's copy does (an upload, a replacement):
    /// the agent compares it with what it last synced.
    pub version: String,
}

/// `GET /api/v1/state`: what the group keeps and what the server holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub machine: String,
    /// The group's patterns.
    pub keep: Vec<String>,
    pub limits: Limits,
    pub files: Vec<Meta>,
}

/// A file with its content (an upload, or `GET /api/v1/state/files`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Base64 (standard, padded).
    pub content: String,
    /// In an answer: the server's version of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `POST /api/v1/state`: files stored or replaced, all or none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    pub files: Vec<File>,
}

/// `GET /api/v1/state/files`: every kept file of the caller's machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Files {
    pub files: Vec<File>,
}

/// The answer to an upload: the stored files' metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    pub files: Vec<Meta>,
}

fn invalid(field: String, why: impl Into<String>) -> Invalid {
    Invalid {
        field,
        why: why.into(),
    }
}

impl File {
    /// The path's rules, the mode's bits, the content's base64 and size.
    /// The content decoded.
    pub fn check(&self, i: usize, limits: &Limits) -> Result<Vec<u8>, Invalid> {
        let f = |n: &str| format!("files[{i}].{n}");
        super::path::check(&f("path"), &self.path)?;
        if self.mode & !0o7777 != 0 {
            return Err(invalid(f("mode"), "not permission bits (0 to 07777)"));
        }
        if self.content.len() as u64 > limits.file_bytes.saturating_mul(4) / 3 + 4 {
            return Err(invalid(
                f("content"),
                format!("larger than {} bytes", limits.file_bytes),
            ));
        }
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.content)
            .map_err(|e| invalid(f("content"), format!("not base64: {e}")))?;
        if bytes.len() as u64 > limits.file_bytes {
            return Err(invalid(
                f("content"),
                format!(
                    "{} bytes, more than {} per file",
                    bytes.len(),
                    limits.file_bytes
                ),
            ));
        }
        if let Some(v) = &self.version {
            check_version(&f("version"), v)?;
        }
        Ok(bytes)
    }
}

/// A version: 16 hex digits.
pub fn check_version(field: &str, v: &str) -> Result<(), Invalid> {
    if v.len() != 16 || !v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid(field.to_string(), "not 16 lowercase hex digits"));
    }
    Ok(())
}

impl Meta {
    pub fn check(&self, i: usize) -> Result<(), Invalid> {
        super::path::check(&format!("files[{i}].path"), &self.path)?;
        if self.mode & !0o7777 != 0 {
            return Err(invalid(format!("files[{i}].mode"), "not permission bits"));
        }
        check_version(&format!("files[{i}].version"), &self.version)
    }
}

impl Index {
    /// An answer checked before the agent acts on it.
    pub fn check(&self) -> Result<(), Invalid> {
        if self.keep.len() > super::path::MAX_PATTERNS {
            return Err(invalid("keep".into(), "more than 64 patterns"));
        }
        for (i, p) in self.keep.iter().enumerate() {
            super::path::check_pattern(&format!("keep[{i}]"), p)?;
        }
        if self.files.len() as u64 > self.limits.files.min(100_000) {
            return Err(invalid("files".into(), "more than the limit"));
        }
        for (i, m) in self.files.iter().enumerate() {
            m.check(i)?;
        }
        Ok(())
    }
}
