//! `config`: a small TOML file naming the repository's format and mode.

use serde::Deserialize;

/// How file objects are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepoMode {
    /// Real inodes with real owners, modes and xattrs (needs root).
    Bare,
    /// Regular files owned by the writer; metadata the inode cannot carry is
    /// kept in the `user.slate.meta` xattr.
    BareUser,
    /// Header plus zstd-compressed content, for serving over HTTP.
    Archive,
}

impl RepoMode {
    pub fn name(self) -> &'static str {
        match self {
            RepoMode::Bare => "bare",
            RepoMode::BareUser => "bare-user",
            RepoMode::Archive => "archive",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "bare" => Some(RepoMode::Bare),
            "bare-user" => Some(RepoMode::BareUser),
            "archive" => Some(RepoMode::Archive),
            _ => None,
        }
    }
}

impl std::fmt::Display for RepoMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub const FORMAT_VERSION: u32 = 1;
pub const DEFAULT_ZSTD_LEVEL: i32 = 6;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    core: Core,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Core {
    format: u32,
    mode: String,
    #[serde(default)]
    compression_level: Option<i32>,
}

#[derive(Debug)]
pub struct Config {
    pub mode: RepoMode,
    pub compression_level: i32,
}

pub fn render(mode: RepoMode) -> String {
    format!(
        "[core]\nformat = {FORMAT_VERSION}\nmode = \"{}\"\n",
        mode.name()
    )
}

pub fn parse(text: &str) -> Result<Config, String> {
    let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
    if f.core.format != FORMAT_VERSION {
        return Err(format!(
            "repository format {} is not supported (this Slate reads format {FORMAT_VERSION})",
            f.core.format
        ));
    }
    let mode = RepoMode::from_name(&f.core.mode)
        .ok_or_else(|| format!("unknown mode {:?}", f.core.mode))?;
    let level = f.core.compression_level.unwrap_or(DEFAULT_ZSTD_LEVEL);
    if !(1..=22).contains(&level) {
        return Err(format!("compression_level {level} is outside 1..=22"));
    }
    Ok(Config {
        mode,
        compression_level: level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        for m in [RepoMode::Bare, RepoMode::BareUser, RepoMode::Archive] {
            assert_eq!(parse(&render(m)).expect("parses").mode, m);
        }
        assert!(parse("[core]\nformat = 2\nmode = \"bare\"\n")
            .expect_err("v2")
            .contains("format 2"));
        assert!(parse("[core]\nformat = 1\nmode = \"zip\"\n")
            .expect_err("mode")
            .contains("zip"));
    }
}
