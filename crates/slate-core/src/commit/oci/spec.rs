//! The JSON documents of a container image, parsed field by field: the
//! OCI layout's `index.json`, image indexes and manifests, the image's
//! config, and a docker archive's `manifest.json`. Fields Slate does not
//! use are ignored (the formats allow more); every field it uses is
//! checked: media types known, digests `sha256:` and 64 lowercase hex
//! digits, sizes those of the blobs.

use std::collections::BTreeMap;

use serde::Deserialize;

pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// The annotation naming an image of an OCI layout (its tag).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    /// Told by its first bytes (a docker archive's layers have no media type).
    Detect,
}

/// A layer's media type: its compression, or `None` for a type that is
/// not a layer Slate reads.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    Some(match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Compression::Zstd,
        _ => return None,
    })
}

/// The lowercase hex of a `sha256:` digest, or why it is not one.
pub fn sha256_hex(digest: &str) -> Result<&str, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("digest {digest:?} is not a sha256: digest"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "digest {digest:?} is not sha256: and 64 lowercase hex digits"
        ));
    }
    Ok(hex)
}

#[derive(Clone, Debug, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// The digest's hex, checked.
    pub fn hex(&self) -> Result<&str, String> {
        sha256_hex(&self.digest)
    }
}

/// An image index (the layout's `index.json`, or a multi-platform image).
#[derive(Debug, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl Index {
    pub fn check(&self) -> Result<(), String> {
        if self.schema_version != 2 {
            return Err(format!(
                "index: schemaVersion {} (not 2)",
                self.schema_version
            ));
        }
        if let Some(m) = &self.media_type {
            if m != INDEX && m != DOCKER_LIST {
                return Err(format!("index: mediaType {m:?} is not an image index"));
            }
        }
        for d in &self.manifests {
            d.hex()?;
            if d.media_type != MANIFEST
                && d.media_type != DOCKER_MANIFEST
                && d.media_type != INDEX
                && d.media_type != DOCKER_LIST
            {
                return Err(format!(
                    "index: entry {}: mediaType {:?} is neither a manifest nor an index",
                    d.digest, d.media_type
                ));
            }
        }
        Ok(())
    }
}

impl Manifest {
    pub fn check(&self) -> Result<(), String> {
        if self.schema_version != 2 {
            return Err(format!(
                "manifest: schemaVersion {} (not 2)",
                self.schema_version
            ));
        }
        if let Some(m) = &self.media_type {
            if m != MANIFEST && m != DOCKER_MANIFEST {
                return Err(format!(
                    "manifest: mediaType {m:?} is not an image manifest"
                ));
            }
        }
        self.config.hex()?;
        if !CONFIGS.contains(&self.config.media_type.as_str()) {
            return Err(format!(
                "manifest: config mediaType {:?} is not an image config",
                self.config.media_type
            ));
        }
        for l in &self.layers {
            l.hex()?;
            if layer_compression(&l.media_type).is_none() {
                return Err(format!(
                    "manifest: layer {}: mediaType {:?} is not a layer Slate reads (tar, \
                     tar+gzip or tar+zstd)",
                    l.digest, l.media_type
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

/// The image's config: what Slate keeps of it.
#[derive(Debug, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

impl Config {
    /// Checked against the manifest's `layers` (one diff id each).
    pub fn check(&self, layers: usize) -> Result<(), String> {
        if self.os != "linux" {
            return Err(format!("config: os {:?}: only linux images", self.os));
        }
        if self.rootfs.kind != "layers" {
            return Err(format!(
                "config: rootfs.type {:?} (not \"layers\")",
                self.rootfs.kind
            ));
        }
        if self.rootfs.diff_ids.len() != layers {
            return Err(format!(
                "config: {} diff_ids for {layers} layers",
                self.rootfs.diff_ids.len()
            ));
        }
        for d in &self.rootfs.diff_ids {
            sha256_hex(d).map_err(|e| format!("config: rootfs.diff_ids: {e}"))?;
        }
        if let Some(c) = &self.created {
            if c.is_empty() || c.len() > 64 || c.chars().any(char::is_control) {
                return Err("config: created is not a date".into());
            }
        }
        Ok(())
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        self.config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default()
    }
}

/// One image of a docker archive's `manifest.json`.
#[derive(Debug, Deserialize)]
pub struct DockerImage {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_and_64_lowercase_hex() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(sha256_hex(&good).expect("good"), "ab".repeat(32));
        for bad in [
            format!("sha512:{}", "ab".repeat(32)),
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha256:{}", "ab".repeat(31)),
            format!("sha256:../{}", "ab".repeat(31)),
            "sha256:".to_string(),
        ] {
            assert!(sha256_hex(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_manifest_with_an_unknown_layer_type_is_refused() {
        let d = format!("sha256:{}", "0".repeat(64));
        let json = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{d}","size":2}},
            "layers":[{{"mediaType":"application/x-foreign","digest":"{d}","size":3}}]}}"#,
            CONFIGS[0]
        );
        let m: Manifest = serde_json::from_str(&json).expect("parses");
        let e = m.check().expect_err("unknown layer type");
        assert!(e.contains("application/x-foreign"), "{e}");
    }
}
