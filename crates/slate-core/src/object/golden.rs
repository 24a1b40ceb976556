//! Golden digests: the ids of known objects are pinned here. A change to the
//! encoding that alters any of them must fail: update `docs/format/` and
//! bump the format version instead of editing these values.

use std::collections::BTreeMap;

use super::*;
use crate::hash::ObjectId;

fn hello_file() -> (FileHeader, &'static [u8]) {
    let h = FileHeader {
        meta: FileMeta {
            kind: FileKind::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            rdev: 0,
            xattrs: vec![(b"user.test".to_vec(), b"1".to_vec())],
        },
        size: 6,
    };
    (h, b"hello\n")
}

fn symlink() -> FileHeader {
    FileHeader {
        meta: FileMeta {
            kind: FileKind::Symlink,
            mode: 0o777,
            uid: 0,
            gid: 0,
            rdev: 0,
            xattrs: vec![],
        },
        size: 11,
    }
}

fn tree() -> Tree {
    let (h, c) = hello_file();
    let mut t = Tree {
        meta: DirMeta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            xattrs: vec![],
        },
        entries: vec![
            TreeEntry {
                name: b"hello".to_vec(),
                kind: EntryKind::File,
                id: h.id_of(c),
            },
            TreeEntry {
                name: b"link".to_vec(),
                kind: EntryKind::File,
                id: symlink().id_of(b"hello/../hi"),
            },
        ],
    };
    t.sort();
    t
}

fn commit() -> Commit {
    let mut metadata = BTreeMap::new();
    metadata.insert("version".into(), "1".into());
    Commit {
        parent: None,
        tree: tree().id(),
        timestamp: 1_700_000_000,
        subject: "golden".into(),
        body: String::new(),
        metadata,
    }
}

#[test]
fn golden_file_header_bytes() {
    let (h, _) = hello_file();
    assert_eq!(
        hex::encode(h.encode()),
        concat!(
            "534c415445463100", // magic "SLATEF1\0"
            "66",               // type 'f'
            "000001a4",         // mode 0644
            "00000000",         // uid
            "00000000",         // gid
            "0000000000000000", // rdev
            "00000001",         // one xattr
            "00000009",
            "757365722e74657374", // "user.test"
            "00000001",
            "31",               // "1"
            "0000000000000006", // content length
        )
    );
}

#[test]
fn golden_ids() {
    let (h, c) = hello_file();
    let got = [
        ("file", h.id_of(c)),
        ("symlink", symlink().id_of(b"hello/../hi")),
        ("tree", tree().id()),
        ("commit", commit().id()),
    ];
    let want = [
        (
            "file",
            "a3369b9186376c05b1ec4aba790d75815b687c9345d8a97200f5007e1e22c00f",
        ),
        (
            "symlink",
            "a0ddb356718ee8f7f54e73a5472190b097ad0d3b38298027bfc09cb41f433690",
        ),
        (
            "tree",
            "0956472983a7234907530dbbc1a27fc1ca4a153f740bed1a29b973ce51937a39",
        ),
        (
            "commit",
            "7c7eab3e8fcd5628e7e29db2f5fef4b35ecd0258af8bc73fd3acbff1ff147ae7",
        ),
    ];
    for ((name, id), (_, w)) in got.iter().zip(want.iter()) {
        assert_eq!(id.to_hex(), *w, "golden id of the {name} object changed");
    }
    let _ = ObjectId::digest(b"");
}
