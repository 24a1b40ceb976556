//! Hostile or damaged tar input: every case fails with a clear error and
//! moves no ref.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// A small tar made by the `tar` crate: a directory, two files, the end
/// blocks.
fn small_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, name, data).expect("append");
    };
    add(&mut b, "etc/os-release", b"ID=slate\n");
    add(&mut b, "usr/bin/tool", &vec![7u8; 20_000]);
    b.into_inner().expect("finish")
}

/// Compress with the `gzip` or `zstd` tool; `None` when it is missing.
fn compress(tool: &str, data: &[u8]) -> Option<Vec<u8>> {
    if !have(tool) {
        skip(&format!("{tool} missing: its damaged streams are untested"));
        return None;
    }
    use std::io::Write;
    let mut child = Command::new(tool)
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write");
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success());
    Some(o.stdout)
}

/// Commit `bytes` as a tar file: it must fail, naming `expect`, with no
/// branch made.
fn refused(repo: &Path, dir: &Path, name: &str, bytes: &[u8], expect: &str) {
    let f = dir.join(name);
    std::fs::write(&f, bytes).expect("write");
    let o = slate(repo, &["commit", "-b", "main", f.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{name} was committed");
    assert_ne!(o.status.code(), Some(101), "{name}: panic: {err}");
    assert!(err.contains(expect), "{name}: {err}");
    assert_eq!(ok(repo, &["refs"]), "", "{name} moved a ref");
}

#[test]
fn damaged_compressed_and_cut_archives_are_refused() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = init(t.path(), "bare-user");
    let tar = small_tar();
    // A sound archive of each kind commits (the cases below can fail).
    let sound = t.path().join("sound.tar");
    std::fs::write(&sound, &tar).expect("write");
    ok(
        &repo,
        &["commit", "-b", "probe", sound.to_str().expect("utf-8")],
    );
    ok(&repo, &["refs", "--delete", "probe"]);

    // Plain tar: cut at a member boundary (no end blocks), and trailing
    // data that is not zeros.
    let end = tar.len() - 1024;
    assert!(
        tar[end..].iter().all(|&b| b == 0),
        "the crate writes end blocks"
    );
    refused(&repo, t.path(), "cut.tar", &tar[..end], "end-of-archive");
    let mut garbage = tar.clone();
    garbage.extend_from_slice(b"not a tar member");
    refused(&repo, t.path(), "garbage.tar", &garbage, "not zeros");

    if let Some(gz) = compress("gzip", &tar) {
        let mut flipped = gz.clone();
        let mid = gz.len() / 2;
        flipped[mid] ^= 0x55;
        refused(&repo, t.path(), "flipped.tar.gz", &flipped, "");
        let mut crc = gz.clone();
        let n = crc.len();
        crc[n - 8..n - 4].fill(0);
        refused(&repo, t.path(), "crc.tar.gz", &crc, "");
        refused(&repo, t.path(), "trailer.tar.gz", &gz[..gz.len() - 8], "");
        let mut tail = gz.clone();
        tail.extend_from_slice(b"trailing garbage");
        refused(&repo, t.path(), "tail.tar.gz", &tail, "");
    }
    if let Some(zst) = compress("zstd", &tar) {
        let mut flipped = zst.clone();
        let n = flipped.len();
        flipped[n - 2] ^= 0x55; // the frame's checksum
        refused(&repo, t.path(), "flipped.tar.zst", &flipped, "");
        refused(&repo, t.path(), "cut.tar.zst", &zst[..zst.len() - 6], "");
        let mut tail = zst.clone();
        tail.extend_from_slice(b"trailing garbage");
        refused(&repo, t.path(), "tail.tar.zst", &tail, "");
    }
}

#[test]
fn a_truncated_member_names_the_member_not_an_object() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = init(t.path(), "bare-user");
    let tar = small_tar();
    // Cut inside the second member's content.
    let cut = &tar[..512 + 512 + 512 + 5000];
    let f = t.path().join("short.tar");
    std::fs::write(&f, cut).expect("write");
    let err = fails(&repo, &["commit", "-b", "main", f.to_str().expect("utf-8")]);
    assert!(
        err.contains("usr/bin/tool") && err.contains("truncated"),
        "{err}"
    );
    assert!(
        !err.contains("objects/"),
        "the message names an object file: {err}"
    );
}

#[test]
#[cfg_attr(
    not(test_have = "tar"),
    ignore = "GNU tar is not installed (it makes the sparse archives)"
)]
fn sparse_members_are_refused() {
    if !have("tar") {
        skip("GNU tar missing: sparse archives are untested");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    // A file with a hole, which `tar --sparse` stores as a sparse member.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(src.join("holes")).expect("create");
        f.write_all(b"start").expect("write");
        f.seek(SeekFrom::Start(8 << 20)).expect("seek");
        f.write_all(b"end").expect("write");
    }
    let repo = init(t.path(), "bare-user");
    for (name, format) in [("pax.tar", "pax"), ("gnu.tar", "gnu")] {
        let out = t.path().join(name);
        let st = Command::new("tar")
            .args(["--sparse", &format!("--format={format}"), "-cf"])
            .arg(&out)
            .arg("-C")
            .arg(&src)
            .arg("holes")
            .status()
            .expect("tar");
        assert!(st.success());
        let err = fails(
            &repo,
            &["commit", "-b", "main", out.to_str().expect("utf-8")],
        );
        assert!(err.contains("sparse"), "{format}: {err}");
        assert_eq!(ok(&repo, &["refs"]), "");
    }
}

#[test]
fn a_repeated_metadata_key_is_an_error() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = init(t.path(), "bare-user");
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let err = fails(
        &repo,
        &[
            "commit",
            "-b",
            "main",
            "--add-metadata",
            "version=1",
            "--add-metadata",
            "version=2",
            src.to_str().expect("utf-8"),
        ],
    );
    assert!(err.contains("\"version\" is given twice"), "{err}");
}
