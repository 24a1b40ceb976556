//! Images built here, byte by byte: layers with whiteouts, opaque
//! directories, hard links and owners; OCI layouts (folder and archive)
//! and docker archives of them; and hostile ones.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::*;
use crate::hash::ObjectId;
use crate::object::{Tree, TreeEntry};
use crate::store::{ObjectRead, Repo, RepoMode, Transaction};
use crate::walk::{self, Visitor};

/// One member of a layer: path, kind, mode, uid, content or link target.
#[derive(Clone)]
enum M {
    Dir(&'static str, u32),
    File(&'static str, u32, u32, &'static [u8]),
    Link(&'static str, &'static str),
    Sym(&'static str, &'static str),
}

fn layer(members: &[M]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let (path, data): (&str, &[u8]) = match m {
            M::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                (p, b"")
            }
            M::File(p, mode, uid, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*uid as u64);
                h.set_gid(*uid as u64);
                (p, data)
            }
            M::Link(p, t) | M::Sym(p, t) => {
                h.set_entry_type(if matches!(m, M::Link(..)) {
                    tar::EntryType::Link
                } else {
                    tar::EntryType::Symlink
                });
                let l = &mut h.as_old_mut().linkname;
                l[..t.len()].copy_from_slice(t.as_bytes());
                h.set_mode(0o777);
                (p, b"")
            }
        };
        h.set_size(data.len() as u64);
        // The raw name: `set_path` refuses the `..` a hostile layer has.
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data).expect("append");
    }
    b.into_inner().expect("finish")
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// An OCI layout in `dir`: layers (tar bytes) stored as `kinds` say
/// ("tar", "gzip", "zstd"); the config and manifest written; returns
/// every file (name, bytes) of the layout.
fn layout(layers: &[Vec<u8>], kinds: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(
        "oci-layout".to_string(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    )];
    let mut descs = Vec::new();
    let mut diffs = Vec::new();
    for (l, kind) in layers.iter().zip(kinds) {
        diffs.push(format!("\"sha256:{}\"", sha(l)));
        let (blob, mt) = match *kind {
            "gzip" => (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip"),
            "zstd" => (
                zstd::encode_all(l.as_slice(), 3).expect("zstd"),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
            _ => (l.clone(), "application/vnd.oci.image.layer.v1.tar"),
        };
        descs.push(format!(
            r#"{{"mediaType":"{mt}","digest":"sha256:{}","size":{}}}"#,
            sha(&blob),
            blob.len()
        ));
        files.push((format!("blobs/sha256/{}", sha(&blob)), blob));
    }
    let config = format!(
        r#"{{"created":"2024-05-01T10:00:00Z","architecture":"amd64","os":"linux",
        "config":{{"Labels":{{"org.example.version":"7"}}}},
        "rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diffs.join(",")
    )
    .into_bytes();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":{}}},
        "layers":[{}]}}"#,
        sha(&config),
        config.len(),
        descs.join(",")
    )
    .into_bytes();
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "digest":"sha256:{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#,
        sha(&manifest),
        manifest.len()
    )
    .into_bytes();
    files.push((format!("blobs/sha256/{}", sha(&config)), config));
    files.push((format!("blobs/sha256/{}", sha(&manifest)), manifest));
    files.push(("index.json".into(), index));
    files
}

fn write_dir(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (n, b) in files {
        let p = dir.join(n);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, b).expect("write");
    }
}

fn write_tar(path: &Path, files: &[(String, Vec<u8>)]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).expect("create"));
    for (n, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_path(n).expect("path");
        h.set_cksum();
        b.append(&h, bytes.as_slice()).expect("append");
    }
    b.finish().expect("finish");
}

/// Each path of a tree with its kind, mode, uid and content.
struct Listing<'a> {
    repo: &'a Repo,
    out: BTreeMap<String, String>,
}

impl Visitor for Listing<'_> {
    type Error = crate::store::Error;
    fn tree(&mut self, path: &[u8], _: &ObjectId, t: &Tree) -> Result<(), Self::Error> {
        let p = String::from_utf8_lossy(path).into_owned();
        let m = &t.meta;
        self.out.insert(p, format!("dir {:o} {}", m.mode, m.uid));
        Ok(())
    }
    fn file(&mut self, path: &[u8], e: &TreeEntry) -> Result<(), Self::Error> {
        let mut s = self.repo.open_file(&e.id)?;
        let m = s.header().meta.clone();
        let data = s.read_all()?;
        self.out.insert(
            String::from_utf8_lossy(path).into_owned(),
            format!(
                "{:?} {:o} {} {}",
                m.kind,
                m.mode,
                m.uid,
                String::from_utf8_lossy(&data)
            ),
        );
        Ok(())
    }
}

/// Commit `image` into a new repository at `at`: the tree's listing and
/// the root tree's id.
fn import(at: &Path, image: &ImageRef) -> Result<(BTreeMap<String, String>, ObjectId)> {
    let repo = Repo::init(at, RepoMode::BareUser).expect("init");
    let img = open(image)?;
    let tx = Transaction::begin(&repo).expect("begin");
    let scan = scan_image(&tx, &img, &Progress::default())?;
    tx.commit().expect("commit");
    let mut l = Listing {
        repo: &repo,
        out: BTreeMap::new(),
    };
    walk::walk(&repo, &scan.root, b"", &mut l).expect("walk");
    Ok((l.out, scan.root))
}

fn three_layers() -> Vec<Vec<u8>> {
    vec![
        layer(&[
            M::Dir("./", 0o755),
            M::Dir("etc/", 0o755),
            M::File("etc/keep", 0o644, 0, b"keep"),
            M::File("etc/gone", 0o644, 0, b"gone"),
            M::Dir("opt/", 0o755),
            M::File("opt/old-a", 0o644, 0, b"a"),
            M::Dir("opt/sub/", 0o700),
            M::File("opt/sub/old-b", 0o644, 0, b"b"),
            M::Sym("lnk", "etc"),
        ]),
        layer(&[
            M::File("etc/.wh.gone", 0o644, 0, b""),
            M::File("opt/.wh..wh..opq", 0o644, 0, b""),
            M::File("opt/new", 0o600, 1000, b"new"),
            M::File("etc/hard", 0o640, 7, b"shared"),
            M::Link("etc/hard2", "etc/hard"),
        ]),
        layer(&[M::Link("etc/keep2", "etc/keep")]),
    ]
}

#[test]
fn layers_apply_with_whiteouts_opaque_dirs_links_and_owners() {
    let d = tempfile::tempdir().expect("tmp");
    write_dir(
        &d.path().join("img"),
        &layout(&three_layers(), &["gzip", "zstd", "tar"]),
    );
    let image = ImageRef::OciDir {
        path: d.path().join("img"),
        tag: None,
    };
    let (list, _) = import(&d.path().join("repo"), &image).expect("import");
    let want: BTreeMap<String, String> = [
        ("", "dir 755 0"),
        ("etc", "dir 755 0"),
        ("etc/hard", "Regular 640 7 shared"),
        ("etc/hard2", "Regular 640 7 shared"),
        ("etc/keep", "Regular 644 0 keep"),
        ("etc/keep2", "Regular 644 0 keep"),
        ("lnk", "Symlink 777 0 etc"),
        ("opt", "dir 755 0"),
        ("opt/new", "Regular 600 1000 new"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(list, want);
    let img = open(&image).expect("open");
    assert_eq!(img.metadata["oci.label.org.example.version"], "7");
    assert_eq!(img.metadata["oci.ref-name"], "v1");
    assert_eq!(img.created.as_deref(), Some("2024-05-01T10:00:00Z"));
    assert!(img.metadata["oci.digest"].starts_with("sha256:"));
}

#[test]
fn the_same_image_gives_the_same_tree_from_a_folder_an_archive_and_a_docker_archive() {
    let d = tempfile::tempdir().expect("tmp");
    let layers = three_layers();
    let files = layout(&layers, &["gzip", "tar", "zstd"]);
    write_dir(&d.path().join("img"), &files);
    write_tar(&d.path().join("img.tar"), &files);
    // A docker archive of the same layers (uncompressed, as docker saves).
    let oci_config = files
        .iter()
        .find(|(_, b)| b.starts_with(b"{\"created\""))
        .expect("config")
        .1
        .clone();
    let mut docker = vec![(format!("{}.json", sha(&oci_config)), oci_config.clone())];
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        names.push(format!("\"{i}/layer.tar\""));
        docker.push((format!("{i}/layer.tar"), l.clone()));
    }
    docker.push((
        "manifest.json".into(),
        format!(
            r#"[{{"Config":"{}.json","RepoTags":["localhost/t:1"],"Layers":[{}]}}]"#,
            sha(&oci_config),
            names.join(",")
        )
        .into_bytes(),
    ));
    write_tar(&d.path().join("docker.tar"), &docker);
    let a = import(
        &d.path().join("r1"),
        &ImageRef::OciDir {
            path: d.path().join("img"),
            tag: Some("v1".into()),
        },
    )
    .expect("dir");
    let b = import(
        &d.path().join("r2"),
        &ImageRef::OciArchive {
            path: d.path().join("img.tar"),
            tag: None,
        },
    )
    .expect("archive");
    let c = import(
        &d.path().join("r3"),
        &ImageRef::DockerArchive(d.path().join("docker.tar")),
    )
    .expect("docker");
    assert_eq!(a.1, b.1);
    assert_eq!(a.1, c.1);
    assert_eq!(a.0, c.0);
}

/// Replace one file of a layout (by name) with `bytes`, leaving the
/// descriptors that name it as they were.
fn tamper(files: &mut [(String, Vec<u8>)], which: impl Fn(&[u8]) -> bool, bytes: Vec<u8>) {
    let f = files.iter_mut().find(|(_, b)| which(b)).expect("file");
    f.1 = bytes;
}

#[test]
fn a_layer_that_does_not_match_its_digest_is_refused() {
    let d = tempfile::tempdir().expect("tmp");
    let layers = vec![layer(&[M::File("a", 0o644, 0, b"aaaa")])];
    let mut files = layout(&layers, &["tar"]);
    let mut evil = layers[0].clone();
    let pos = evil.windows(4).position(|w| w == b"aaaa").expect("content");
    evil[pos..pos + 4].copy_from_slice(b"evil");
    tamper(&mut files, |b| b == layers[0].as_slice(), evil);
    write_dir(&d.path().join("img"), &files);
    let e = import(
        &d.path().join("repo"),
        &ImageRef::OciDir {
            path: d.path().join("img"),
            tag: None,
        },
    )
    .expect_err("tampered layer");
    assert!(e.to_string().contains("not its digest"), "{e}");
}

#[test]
fn a_config_that_does_not_match_its_digest_is_refused() {
    let d = tempfile::tempdir().expect("tmp");
    let mut files = layout(&[layer(&[M::File("a", 0o644, 0, b"a")])], &["tar"]);
    let is_config = |b: &[u8]| b.starts_with(b"{\"created\"");
    let mut c = files
        .iter()
        .find(|(_, b)| is_config(b))
        .expect("config")
        .1
        .clone();
    let pos = c.windows(1).position(|w| w == b"7").expect("label");
    c[pos] = b'8';
    tamper(&mut files, is_config, c);
    write_dir(&d.path().join("img"), &files);
    let e = import(
        &d.path().join("repo"),
        &ImageRef::OciDir {
            path: d.path().join("img"),
            tag: None,
        },
    )
    .expect_err("tampered config");
    assert!(
        e.to_string().contains("not the digest that names it"),
        "{e}"
    );
}

#[test]
fn a_layer_writing_through_a_lower_symlink_or_climbing_out_is_refused() {
    let d = tempfile::tempdir().expect("tmp");
    for (i, (upper, want)) in [
        (
            layer(&[M::File("lnk/passwd", 0o644, 0, b"x")]),
            "lower layer made it a file or symlink",
        ),
        (layer(&[M::File("../escape", 0o644, 0, b"x")]), "climbs out"),
        (layer(&[M::Link("etc/h", "../../etc/shadow")]), "climbs out"),
    ]
    .into_iter()
    .enumerate()
    {
        let base = layer(&[M::Dir("etc/", 0o755), M::Sym("lnk", "/etc")]);
        let files = layout(&[base, upper], &["tar", "tar"]);
        let dir = d.path().join(format!("img{i}"));
        write_dir(&dir, &files);
        let e = import(
            &d.path().join(format!("repo{i}")),
            &ImageRef::OciDir {
                path: dir,
                tag: None,
            },
        )
        .expect_err("refused");
        assert!(e.to_string().contains(want), "{i}: {e}");
    }
}

#[test]
fn a_bad_digest_in_the_index_is_refused_before_any_path_is_made_of_it() {
    let d = tempfile::tempdir().expect("tmp");
    let mut files = layout(&[layer(&[M::File("a", 0o644, 0, b"a")])], &["tar"]);
    let index = files
        .iter_mut()
        .find(|(n, _)| n == "index.json")
        .expect("index");
    let text = String::from_utf8(index.1.clone()).expect("utf-8");
    let start = text.find("sha256:").expect("digest") + 7;
    index.1 = format!(
        "{}../../../../etc/passwd{}",
        &text[..start],
        &text[start + 64..]
    )
    .into_bytes();
    write_dir(&d.path().join("img"), &files);
    let e = import(
        &d.path().join("repo"),
        &ImageRef::OciDir {
            path: d.path().join("img"),
            tag: None,
        },
    )
    .expect_err("bad digest");
    assert!(e.to_string().contains("64 lowercase hex"), "{e}");
}

#[test]
fn image_refs_parse() {
    assert_eq!(
        ImageRef::parse("docker-archive:/x/y.tar").expect("ok"),
        ImageRef::DockerArchive("/x/y.tar".into())
    );
    let d = tempfile::tempdir().expect("tmp");
    let s = format!("oci:{}:v2", d.path().display());
    assert_eq!(
        ImageRef::parse(&s).expect("ok"),
        ImageRef::OciDir {
            path: d.path().to_path_buf(),
            tag: Some("v2".into())
        }
    );
    assert!(ImageRef::parse("docker://debian").is_err());
    assert!(ImageRef::parse("oci-archive:").is_err());
}

#[test]
fn a_layer_s_xattrs_are_kept_and_a_later_layer_replaces_them() {
    let with_xattr = |value: &[u8]| {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("SCHILY.xattr.user.slate", value)])
            .expect("pax");
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_mode(0o644);
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path("f").expect("path");
        h.set_cksum();
        b.append(&h, &b"x"[..]).expect("append");
        b.into_inner().expect("finish")
    };
    let d = tempfile::tempdir().expect("tmp");
    write_dir(
        &d.path().join("img"),
        &layout(&[with_xattr(b"one"), with_xattr(b"two")], &["tar", "gzip"]),
    );
    let repo = Repo::init(&d.path().join("repo"), RepoMode::BareUser).expect("init");
    let img = open(&ImageRef::OciDir {
        path: d.path().join("img"),
        tag: None,
    })
    .expect("open");
    let tx = Transaction::begin(&repo).expect("begin");
    let scan = scan_image(&tx, &img, &Progress::default()).expect("scan");
    tx.commit().expect("commit");
    let tree = repo.read_tree(&scan.root).expect("tree");
    let f = tree.get(b"f").expect("f");
    let meta = repo.file_header(&f.id).expect("header").meta;
    assert_eq!(meta.xattrs, vec![(b"user.slate".to_vec(), b"two".to_vec())]);
}
