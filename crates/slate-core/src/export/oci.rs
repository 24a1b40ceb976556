//! Exporting a commit as an OCI image archive (`oci-archive`, what `podman
//! load` and `skopeo copy oci-archive:` read): one uncompressed layer, the
//! commit's reproducible tar ([`super::export`]); a config naming its
//! diff id, with the commit's time as `created` and the commit id and its
//! metadata as labels; a manifest; `index.json` naming the image by its
//! tag; `oci-layout`. Every JSON document is written with sorted keys and
//! every tar header with the commit's time, so the same commit and tag
//! give the same bytes on any machine.
//!
//! The layer is written to a scratch file first: the archive names it by
//! its digest, which is known only once it is whole.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Error, ExportOptions, ExportStats, Format};
use crate::hash::ObjectId;
use crate::progress::Progress;
use crate::store::ObjectRead;

/// The OCI media types written (the import's `commit::oci::spec` reads
/// them back: the round-trip tests hold the two together).
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The platform this machine runs, as OCI names it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// What an OCI archive is named and where its scratch file goes.
#[derive(Clone, Debug)]
pub struct OciOptions {
    /// The image's name in `index.json`
    /// (`org.opencontainers.image.ref.name`), e.g. `localhost/os:1`.
    pub tag: String,
    /// The layer's scratch file is made in this folder.
    pub scratch: std::path::PathBuf,
}

/// Passes writes to `inner` and hashes them.
struct HashWriter<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A JSON document's bytes (keys sorted: `json!` maps are BTreeMaps).
fn doc(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value serializes")
}

/// Write `commit` as an OCI image archive to `out`.
pub fn export_oci<S: ObjectRead + ?Sized, W: Write>(
    store: &S,
    commit: &ObjectId,
    opts: &OciOptions,
    out: W,
    progress: &Progress,
) -> Result<ExportStats, Error> {
    let c = store.read_commit(commit)?;
    let scratch = tempfile::tempfile_in(&opts.scratch).map_err(|source| Error::Output {
        path: opts.scratch.clone(),
        source,
    })?;
    let mut w = HashWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, scratch),
        hash: Sha256::new(),
        len: 0,
    };
    let topts = ExportOptions {
        subpath: None,
        format: Format::Tar,
    };
    let stats = super::export(store, commit, &topts, &mut w, progress)?;
    w.flush()?;
    let (layer_hex, layer_len) = (hex::encode(w.hash.finalize()), w.len);
    let mut layer = w
        .inner
        .into_inner()
        .map_err(|e| Error::Write(e.into_error()))?;
    layer.rewind()?;

    let created = crate::date::date(c.timestamp);
    let mut labels = BTreeMap::new();
    for (k, v) in &c.metadata {
        labels.insert(format!("dev.slate.{k}"), v.clone());
    }
    labels.insert("dev.slate.commit".to_string(), commit.to_hex());
    let config = doc(&json!({
        "architecture": host_arch(),
        "os": "linux",
        "created": created,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": labels,
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_hex}")] },
        "history": [{ "created": created, "created_by": format!("slate export {commit}") }],
    }));
    let manifest = doc(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", sha256(&config)),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{layer_hex}"),
            "size": layer_len,
        }],
    }));
    let index = doc(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{
            "mediaType": MANIFEST,
            "digest": format!("sha256:{}", sha256(&manifest)),
            "size": manifest.len(),
            "annotations": { REF_NAME: opts.tag },
        }],
    }));

    let mtime = c.timestamp.max(0) as u64;
    let mut ar = tar::Builder::new(out);
    let mut put = |name: &str, size: u64, data: &mut dyn Read| -> std::io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(if name.ends_with('/') { 0o755 } else { 0o644 });
        h.set_entry_type(if name.ends_with('/') {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        h.set_path(name)?;
        h.set_cksum();
        ar.append(&h, data)
    };
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    put("oci-layout", layout.len() as u64, &mut &layout[..])?;
    put("blobs/", 0, &mut std::io::empty())?;
    put("blobs/sha256/", 0, &mut std::io::empty())?;
    let mut blobs = [(sha256(&config), config), (sha256(&manifest), manifest)];
    blobs.sort();
    put(
        &format!("blobs/sha256/{layer_hex}"),
        layer_len,
        &mut (&mut layer).take(layer_len),
    )?;
    for (hex, bytes) in &blobs {
        put(
            &format!("blobs/sha256/{hex}"),
            bytes.len() as u64,
            &mut bytes.as_slice(),
        )?;
    }
    put("index.json", index.len() as u64, &mut index.as_slice())?;
    ar.into_inner()?.flush()?;
    Ok(stats)
}

/// [`export_oci`] into the file `path`, replaced atomically once whole.
pub fn export_oci_to_path<S: ObjectRead + ?Sized>(
    store: &S,
    commit: &ObjectId,
    opts: &OciOptions,
    path: &Path,
    progress: &Progress,
) -> Result<ExportStats, Error> {
    super::write_to_path(path, |w| export_oci(store, commit, opts, w, progress))
}
