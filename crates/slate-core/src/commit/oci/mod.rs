//! Committing a container image: `oci-archive:FILE`, `docker-archive:FILE`
//! (what `podman save` and `docker save` write) or `oci:DIR[:TAG]` (an OCI
//! image layout folder). The image's layers are applied in order onto one
//! tree, as the OCI image spec's changesets say: `.wh.NAME` removes NAME
//! of the layers below, `.wh..wh..opq` empties its directory of them;
//! owners, modes, xattrs and hard links are kept. Each layer is read as a
//! tar archive is (`commit/tar.rs`: names that climb out, links to
//! nowhere, truncation refused), and a layer writing below a lower
//! layer's symlink is refused.
//!
//! Every blob is checked against its digest as it is read: a manifest and
//! config against the digests that name them, a layer's compressed bytes
//! against its descriptor (size and digest) and its tar stream against
//! the config's `diff_ids`. Nothing is committed until every check holds.
//! The same image gives the same tree on any machine, whatever archive
//! form it came in.

mod blobs;
pub mod spec;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::memtree::{self, Node};
use super::{Error, Result, Stats, TreeScan};
use crate::progress::Progress;
use crate::store::ObjectWrite;
use blobs::Blobs;
use spec::Compression;

/// Most bytes of one JSON document of an image (index, manifest, config).
const MAX_JSON: u64 = 4 << 20;
/// Most layers an image may have.
const MAX_LAYERS: usize = 1024;

/// Where an image is, as `slate commit --from` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    /// `oci-archive:FILE[:TAG]`: a tar of an OCI image layout.
    OciArchive { path: PathBuf, tag: Option<String> },
    /// `docker-archive:FILE`: `docker save`'s format (one image).
    DockerArchive(PathBuf),
    /// `oci:DIR[:TAG]`: an OCI image layout folder.
    OciDir { path: PathBuf, tag: Option<String> },
}

/// A path with an optional `:TAG`: the tag is taken only when the whole
/// text names no file and the part before the last `:` does.
fn path_and_tag(rest: &str) -> (PathBuf, Option<String>) {
    if !Path::new(rest).exists() {
        if let Some((p, t)) = rest.rsplit_once(':') {
            if !t.is_empty() && !t.contains('/') && Path::new(p).exists() {
                return (p.into(), Some(t.to_owned()));
            }
        }
    }
    (rest.into(), None)
}

impl ImageRef {
    /// Parse `oci-archive:FILE[:TAG]`, `docker-archive:FILE` or
    /// `oci:DIR[:TAG]`.
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        let nonempty = |rest: &str| {
            if rest.is_empty() {
                Err(format!("{text:?}: no path after the transport"))
            } else {
                Ok(())
            }
        };
        if let Some(rest) = text.strip_prefix("oci-archive:") {
            nonempty(rest)?;
            let (path, tag) = path_and_tag(rest);
            Ok(ImageRef::OciArchive { path, tag })
        } else if let Some(rest) = text.strip_prefix("docker-archive:") {
            nonempty(rest)?;
            Ok(ImageRef::DockerArchive(rest.into()))
        } else if let Some(rest) = text.strip_prefix("oci:") {
            nonempty(rest)?;
            let (path, tag) = path_and_tag(rest);
            Ok(ImageRef::OciDir { path, tag })
        } else {
            Err(format!(
                "{text:?}: expected oci-archive:FILE, docker-archive:FILE or oci:DIR[:TAG]"
            ))
        }
    }
}

/// One layer: where its blob is and what it must hash to.
#[derive(Debug)]
struct Layer {
    member: String,
    compression: Compression,
    /// The descriptor's size and digest (hex) of the compressed blob; a
    /// docker archive has none.
    blob: Option<(u64, String)>,
    /// The config's diff id (hex): the digest of the layer's tar stream.
    diff_id: String,
}

/// An image whose index, manifest and config have been read and checked;
/// its layers are read by [`scan_image`].
pub struct Image {
    blobs: Blobs,
    layers: Vec<Layer>,
    /// What a commit of it records: `oci.digest` (the manifest's, when the
    /// image has one), `oci.image-id` (the config's digest),
    /// `oci.created`, `oci.architecture`, `oci.ref-name`, and each label
    /// as `oci.label.KEY`.
    pub metadata: BTreeMap<String, String>,
    /// The config's `created` date (RFC 3339), if it has one.
    pub created: Option<String>,
}

impl Image {
    /// The number of layers.
    pub fn layers(&self) -> usize {
        self.layers.len()
    }
}

/// Open `image` and check its index, manifest and config.
pub fn open(image: &ImageRef) -> Result<Image> {
    match image {
        ImageRef::OciArchive { path, tag } => open_oci(Blobs::archive(path)?, tag.as_deref()),
        ImageRef::OciDir { path, tag } => open_oci(Blobs::Dir(path.clone()), tag.as_deref()),
        ImageRef::DockerArchive(path) => open_docker(Blobs::archive(path)?),
    }
}

/// Open the image at `path`, whichever form it has: a folder is an OCI
/// layout, an archive with `index.json` an OCI archive, one with only
/// `manifest.json` a docker archive (the compose input `oci`).
pub fn open_path(path: &Path, tag: Option<&str>) -> Result<Image> {
    let tag = tag.map(str::to_owned);
    let md = std::fs::metadata(path).map_err(|source| Error::Source {
        path: path.to_path_buf(),
        source,
    })?;
    if md.is_dir() {
        return open(&ImageRef::OciDir {
            path: path.to_path_buf(),
            tag,
        });
    }
    let blobs = Blobs::archive(path)?;
    if blobs.has("index.json") {
        open_oci(blobs, tag.as_deref())
    } else if tag.is_some() {
        Err(bad(
            &blobs,
            "a docker archive holds one image: no tag to choose",
        ))
    } else {
        open_docker(blobs)
    }
}

fn bad(blobs: &Blobs, reason: impl Into<String>) -> Error {
    Error::Image {
        image: blobs.shown(),
        reason: reason.into(),
    }
}

/// Read a JSON document of at most [`MAX_JSON`] bytes; with `want`, its
/// size and digest must be those.
fn read_json<T: serde::de::DeserializeOwned>(
    blobs: &Blobs,
    name: &str,
    want: Option<(u64, &str)>,
) -> Result<T> {
    let (r, size) = blobs.open(name)?;
    if let Some((want_size, _)) = want {
        if size != want_size {
            return Err(bad(
                blobs,
                format!("{name}: {size} bytes, its descriptor says {want_size}"),
            ));
        }
    }
    if size > MAX_JSON {
        return Err(bad(
            blobs,
            format!("{name}: {size} bytes, more than a JSON document of an image may have"),
        ));
    }
    let mut bytes = Vec::new();
    r.take(MAX_JSON)
        .read_to_end(&mut bytes)
        .map_err(|source| Error::TarRead {
            archive: format!("{}: {name}", blobs.shown()),
            source,
        })?;
    if let Some((_, hex)) = want {
        let got = hex::encode(Sha256::digest(&bytes));
        if got != hex {
            return Err(bad(
                blobs,
                format!("{name}: its sha256 is {got}, not the digest that names it"),
            ));
        }
    }
    serde_json::from_slice(&bytes).map_err(|e| bad(blobs, format!("{name}: {e}")))
}

fn blob_name(hex: &str) -> String {
    format!("blobs/sha256/{hex}")
}

/// The platform this machine runs, as OCI names it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn open_oci(blobs: Blobs, tag: Option<&str>) -> Result<Image> {
    #[derive(serde::Deserialize)]
    struct Layout {
        #[serde(rename = "imageLayoutVersion")]
        version: String,
    }
    let layout: Layout = read_json(&blobs, "oci-layout", None)?;
    if layout.version != "1.0.0" {
        return Err(bad(
            &blobs,
            format!(
                "oci-layout: imageLayoutVersion {:?} (not 1.0.0)",
                layout.version
            ),
        ));
    }
    let index: spec::Index = read_json(&blobs, "index.json", None)?;
    index
        .check()
        .map_err(|r| bad(&blobs, format!("index.json: {r}")))?;
    let mut chosen: Vec<&spec::Descriptor> = match tag {
        Some(t) => index
            .manifests
            .iter()
            .filter(|d| {
                d.annotations
                    .get(spec::REF_NAME)
                    .is_some_and(|n| n == t || n.rsplit_once(':').is_some_and(|(_, x)| x == t))
            })
            .collect(),
        None => index.manifests.iter().collect(),
    };
    let names: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.annotations.get(spec::REF_NAME).cloned())
        .collect();
    if chosen.len() != 1 {
        return Err(bad(
            &blobs,
            format!(
                "index.json lists {} images{}: name one as oci:DIR:TAG (names: {})",
                chosen.len(),
                tag.map(|t| format!(" named {t:?}")).unwrap_or_default(),
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ),
        ));
    }
    let mut desc = chosen.remove(0).clone();
    let ref_name = desc.annotations.get(spec::REF_NAME).cloned();
    if desc.media_type == spec::INDEX || desc.media_type == spec::DOCKER_LIST {
        let hex = desc.hex().map_err(|r| bad(&blobs, r))?.to_owned();
        let inner: spec::Index = read_json(&blobs, &blob_name(&hex), Some((desc.size, &hex)))?;
        inner
            .check()
            .map_err(|r| bad(&blobs, format!("image index {}: {r}", desc.digest)))?;
        desc = inner
            .manifests
            .iter()
            .find(|d| {
                (d.media_type == spec::MANIFEST || d.media_type == spec::DOCKER_MANIFEST)
                    && d.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == host_arch())
            })
            .cloned()
            .ok_or_else(|| {
                bad(
                    &blobs,
                    format!(
                        "image index {} has no image for linux/{}",
                        desc.digest,
                        host_arch()
                    ),
                )
            })?;
    }
    let hex = desc.hex().map_err(|r| bad(&blobs, r))?.to_owned();
    let manifest: spec::Manifest = read_json(&blobs, &blob_name(&hex), Some((desc.size, &hex)))?;
    manifest
        .check()
        .map_err(|r| bad(&blobs, format!("{}: {r}", desc.digest)))?;
    if manifest.layers.len() > MAX_LAYERS {
        return Err(bad(&blobs, format!("more than {MAX_LAYERS} layers")));
    }
    let chex = manifest.config.hex().map_err(|r| bad(&blobs, r))?;
    let config: spec::Config =
        read_json(&blobs, &blob_name(chex), Some((manifest.config.size, chex)))?;
    config
        .check(manifest.layers.len())
        .map_err(|r| bad(&blobs, format!("{}: {r}", manifest.config.digest)))?;
    let mut layers = Vec::new();
    for (l, diff) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let lhex = l.hex().map_err(|r| bad(&blobs, r))?;
        layers.push(Layer {
            member: blob_name(lhex),
            compression: spec::layer_compression(&l.media_type)
                .expect("the manifest's check knows every layer type"),
            blob: Some((l.size, lhex.to_owned())),
            diff_id: spec::sha256_hex(diff)
                .expect("the config's check took every diff id")
                .to_owned(),
        });
    }
    let mut metadata = meta_of(&config, &manifest.config.digest);
    metadata.insert("oci.digest".into(), desc.digest.clone());
    if let Some(n) = ref_name {
        metadata.insert("oci.ref-name".into(), n);
    }
    Ok(Image {
        blobs,
        layers,
        metadata,
        created: config.created,
    })
}

fn meta_of(config: &spec::Config, config_digest: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("oci.image-id".into(), config_digest.to_owned());
    m.insert("oci.architecture".into(), config.architecture.clone());
    if let Some(c) = &config.created {
        m.insert("oci.created".into(), c.clone());
    }
    for (k, v) in config.labels() {
        m.insert(format!("oci.label.{k}"), v);
    }
    m
}

fn open_docker(blobs: Blobs) -> Result<Image> {
    let images: Vec<spec::DockerImage> = read_json(&blobs, "manifest.json", None)?;
    let [image] = images.as_slice() else {
        return Err(bad(
            &blobs,
            format!(
                "manifest.json lists {} images; Slate commits an archive of one",
                images.len()
            ),
        ));
    };
    if image.layers.len() > MAX_LAYERS {
        return Err(bad(&blobs, format!("more than {MAX_LAYERS} layers")));
    }
    // The config is named by its digest: `HEX.json` or `blobs/sha256/HEX`.
    let file = image.config.rsplit('/').next().unwrap_or_default();
    let chex = file.strip_suffix(".json").unwrap_or(file);
    let cdigest = format!("sha256:{chex}");
    spec::sha256_hex(&cdigest).map_err(|_| {
        bad(
            &blobs,
            format!(
                "manifest.json: Config {:?} is not named by its digest",
                image.config
            ),
        )
    })?;
    let member = image.config.trim_start_matches("./").to_owned();
    let (_, csize) = blobs.open(&member)?;
    let config: spec::Config = read_json(&blobs, &member, Some((csize, chex)))?;
    config
        .check(image.layers.len())
        .map_err(|r| bad(&blobs, format!("{}: {r}", image.config)))?;
    let mut layers = Vec::new();
    for (l, diff) in image.layers.iter().zip(&config.rootfs.diff_ids) {
        if !blobs.has(l.trim_start_matches("./")) {
            return Err(bad(&blobs, format!("manifest.json: no layer member {l:?}")));
        }
        layers.push(Layer {
            member: l.trim_start_matches("./").to_owned(),
            compression: Compression::Detect,
            blob: None,
            diff_id: spec::sha256_hex(diff)
                .expect("the config's check took every diff id")
                .to_owned(),
        });
    }
    let mut metadata = meta_of(&config, &cdigest);
    if let Some(t) = image.repo_tags.as_ref().and_then(|t| t.first()) {
        metadata.insert("oci.ref-name".into(), t.clone());
    }
    Ok(Image {
        blobs,
        layers,
        metadata,
        created: config.created,
    })
}

/// Hashes and counts what is read through it.
struct Hashing<R> {
    inner: R,
    state: Rc<RefCell<(Sha256, u64)>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut s = self.state.borrow_mut();
        s.0.update(&buf[..n]);
        s.1 += n as u64;
        Ok(n)
    }
}

fn hashing<'a, R: Read + 'a>(inner: R) -> (Hashing<R>, Rc<RefCell<(Sha256, u64)>>) {
    let state = Rc::new(RefCell::new((Sha256::new(), 0)));
    (
        Hashing {
            inner,
            state: state.clone(),
        },
        state,
    )
}

fn finish(state: Rc<RefCell<(Sha256, u64)>>) -> (String, u64) {
    let (h, n) = state.take();
    (hex::encode(h.finalize()), n)
}

/// Apply the image's layers in order into `store`: the root tree.
pub fn scan_image<W: ObjectWrite + ?Sized>(
    store: &W,
    image: &Image,
    progress: &Progress,
) -> Result<TreeScan> {
    let stats = Stats::default();
    let mut root = Node::empty_dir();
    for (i, layer) in image.layers.iter().enumerate() {
        let name = format!(
            "{}: layer {} (sha256:{})",
            image.blobs.shown(),
            i + 1,
            layer.diff_id
        );
        let mut one = Node::empty_dir();
        let (raw, size) = image.blobs.open(&layer.member)?;
        if let Some((want, _)) = &layer.blob {
            if size != *want {
                return Err(bad(
                    &image.blobs,
                    format!("layer {}: {size} bytes, its descriptor says {want}", i + 1),
                ));
            }
        }
        let (raw, raw_state) = hashing(raw);
        let stream: Box<dyn Read + '_> = match layer.compression {
            Compression::None => Box::new(raw),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(raw))),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::new(raw).map_err(|source| {
                    Error::TarRead {
                        archive: name.clone(),
                        source,
                    }
                })?)
            }
            Compression::Detect => super::tar::decompressed(Box::new(raw), &name)?,
        };
        let (tar, tar_state) = hashing(stream);
        super::tar::read_members(
            store,
            Box::new(tar),
            &name,
            progress,
            &stats,
            &mut one,
            Some(&root),
        )?;
        let (raw_hex, raw_len) = finish(raw_state);
        let (diff_hex, _) = finish(tar_state);
        if let Some((want_size, want_hex)) = &layer.blob {
            if raw_len != *want_size || raw_hex != *want_hex {
                return Err(bad(
                    &image.blobs,
                    format!(
                        "layer {}: {raw_len} bytes read of {want_size}, sha256 {raw_hex}, \
                         not its digest sha256:{want_hex}",
                        i + 1
                    ),
                ));
            }
        }
        if diff_hex != layer.diff_id {
            return Err(bad(
                &image.blobs,
                format!(
                    "layer {}: its tar stream's sha256 is {diff_hex}, not the config's diff id \
                     sha256:{}",
                    i + 1,
                    layer.diff_id
                ),
            ));
        }
        memtree::merge_layer(&mut root, one)
            .map_err(|r| bad(&image.blobs, format!("layer {}: {r}", i + 1)))?;
    }
    let root_id = memtree::write_node(store, &root)?;
    Ok(TreeScan {
        root: root_id,
        stats: stats.snapshot(),
        skipped_sockets: Vec::new(),
    })
}
