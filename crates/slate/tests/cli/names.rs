//! Names are bytes: a tree whose names are not UTF-8, or hold control
//! characters and newlines, commits, checks out, exports and commits again
//! to the same id, and every text output escapes them losslessly.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::process::Command;

use slate_core::object::name;

use crate::common::*;

/// The odd names of the tree, as bytes.
const NAMES: &[&[u8]] = &[
    b"a\xffb",
    b"ctl\x01x",
    b"new\nline",
    b"back\\slash",
    b"tab\tname",
    b"caf\xc3\xa9",
    b"lit\\xfferal",
];

fn odd_tree(root: &Path) {
    let dir = root.join(OsStr::from_bytes(b"dir\xfe\n"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (i, n) in NAMES.iter().enumerate() {
        std::fs::write(root.join(OsStr::from_bytes(n)), format!("content {i}")).expect("write");
        std::fs::write(dir.join(OsStr::from_bytes(n)), format!("inner {i}")).expect("write");
    }
    std::os::unix::fs::symlink(OsStr::from_bytes(b"target\xff"), root.join("link"))
        .expect("symlink");
}

fn slate_os(repo: &Path, args: &[&OsStr]) -> std::process::Output {
    Command::new(slate_bin())
        .env("SLATE_REPO", repo)
        .args(args)
        .output()
        .expect("run slate")
}

#[test]
fn odd_names_survive_commit_checkout_export_and_json() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    odd_tree(&src);
    let repo = init(t.path(), "bare-user");
    let s = |p: &Path| p.to_str().expect("utf-8").to_owned();
    let id = ok(
        &repo,
        &["commit", "-b", "main", "--timestamp", "7", &s(&src)],
    )
    .trim()
    .to_owned();

    // Checkout: the same names, byte for byte.
    let co = t.path().join("co");
    ok(&repo, &["checkout", "main", &s(&co)]);
    assert_same_tree(&src, &co, false);

    // Export, and commit the archive: the same tree, so the same id.
    let tar = t.path().join("x.tar");
    ok(&repo, &["export", "main", "-o", &s(&tar)]);
    let again = ok(
        &repo,
        &["commit", "-b", "from-tar", "--timestamp", "7", &s(&tar)],
    );
    assert_eq!(again.trim(), id, "the exported tar commits to another id");
    // GNU tar reads the same names from the archive.
    if have("tar") {
        let out = t.path().join("untar");
        std::fs::create_dir_all(&out).expect("mkdir");
        let st = Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&out)
            .status()
            .expect("tar");
        assert!(st.success());
        assert_same_tree(&src, &out, false);
    } else {
        skip("tar missing: the archive is not read by GNU tar");
    }

    // `ls -R --json`: every path unescapes to the bytes of the tree.
    let v: serde_json::Value =
        serde_json::from_str(&ok(&repo, &["ls", "-R", "--json", "main"])).expect("json");
    let mut got: Vec<Vec<u8>> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|e| name::unescape(e["path"].as_str().expect("path")).expect("escaped"))
        .collect();
    got.sort();
    let mut want: Vec<Vec<u8>> = vec![b"/link".to_vec(), b"/dir\xfe\n".to_vec()];
    for n in NAMES {
        want.push([b"/".as_slice(), n].concat());
        want.push([b"/dir\xfe\n/".as_slice(), n].concat());
    }
    want.sort();
    assert_eq!(got, want);
    let link = v
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["path"] == "/link")
        .expect("link listed");
    assert_eq!(link["target"], "target\\xff");

    // The text listing escapes too: one line per path, none broken.
    let text = ok(&repo, &["ls", "-R", "main"]);
    assert_eq!(text.lines().count(), want.len(), "{text}");
    assert!(
        text.contains("/a\\xffb\n") && text.contains("/new\\nline\n"),
        "{text}"
    );
    assert!(text.contains("/lit\\\\xfferal\n"), "{text}");

    // `cat` takes a path as raw bytes or as it is listed.
    let raw = OsString::from_vec(b"/dir\xfe\n/a\xffb".to_vec());
    let o = slate_os(&repo, &[OsStr::new("cat"), OsStr::new("main"), &raw]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, b"inner 0");
    assert_eq!(
        ok(&repo, &["cat", "main", "/dir\\xfe\\n/a\\xffb"]),
        "inner 0"
    );
    // A literal backslash name is found as its own bytes first.
    assert_eq!(ok(&repo, &["cat", "main", "/lit\\xfferal"]), "content 6");

    // diff against a directory: a change to an odd name, shown escaped.
    // (The checkout's files are the repository's objects: a change replaces
    // one, never writes into it.)
    std::fs::write(co.join("new"), b"changed").expect("write");
    std::fs::rename(co.join("new"), co.join(OsStr::from_bytes(b"a\xffb"))).expect("rename");
    let d: serde_json::Value =
        serde_json::from_str(&ok(&repo, &["diff", "--json", "main", &s(&co)])).expect("json");
    let paths: Vec<Vec<u8>> = d
        .as_array()
        .expect("array")
        .iter()
        .map(|e| name::unescape(e["path"].as_str().expect("path")).expect("escaped"))
        .collect();
    assert_eq!(paths, vec![b"/a\xffb".to_vec()]);
    // --subpath takes raw bytes too.
    let sub = t.path().join("sub");
    let o = slate_os(
        &repo,
        &[
            OsStr::new("checkout"),
            OsStr::new("--subpath"),
            OsStr::from_bytes(b"/dir\xfe\n"),
            OsStr::new("main"),
            sub.as_os_str(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_tree(&src.join(OsStr::from_bytes(b"dir\xfe\n")), &sub, false);
}
