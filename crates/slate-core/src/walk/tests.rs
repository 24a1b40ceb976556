//! The walk: order, skipping, damage, depth; lookups and listings.

use super::*;
use crate::object::{DirMeta, FileKind, FileMeta};
use crate::store::{FileContent, HashSink, ObjectWrite};

fn file(sink: &HashSink<'_>, content: &[u8]) -> ObjectId {
    let meta = FileMeta {
        kind: FileKind::Regular,
        mode: 0o644,
        uid: 0,
        gid: 0,
        rdev: 0,
        xattrs: vec![],
    };
    sink.write_file(&meta, content.len() as u64, FileContent::Bytes(content))
        .expect("hash")
        .id
}

fn tree(sink: &HashSink<'_>, entries: Vec<(&[u8], EntryKind, ObjectId)>) -> ObjectId {
    let mut t = Tree {
        meta: DirMeta::default(),
        entries: entries
            .into_iter()
            .map(|(n, kind, id)| TreeEntry {
                name: n.to_vec(),
                kind,
                id,
            })
            .collect(),
    };
    t.sort();
    sink.write_tree(&t).expect("tree")
}

/// Records what a walk calls, in order.
#[derive(Default)]
struct Trace {
    calls: Vec<String>,
    skip: Vec<Vec<u8>>,
}

impl Visitor for Trace {
    type Error = store::Error;
    fn enter(&mut self, path: &[u8], _id: &ObjectId) -> Result<Visit, store::Error> {
        self.calls.push(format!("enter {}", name::escape(path)));
        Ok(if self.skip.iter().any(|s| s == path) {
            Visit::Skip
        } else {
            Visit::Descend
        })
    }
    fn file(&mut self, path: &[u8], _e: &TreeEntry) -> Result<(), store::Error> {
        self.calls.push(format!("file {}", name::escape(path)));
        Ok(())
    }
    fn leave(&mut self, path: &[u8], _id: &ObjectId) -> Result<(), store::Error> {
        self.calls.push(format!("leave {}", name::escape(path)));
        Ok(())
    }
    fn unreadable(
        &mut self,
        path: &[u8],
        _id: &ObjectId,
        e: store::Error,
    ) -> Result<(), store::Error> {
        self.calls.push(format!(
            "unreadable {}: {}",
            name::escape(path),
            matches!(e, store::Error::Missing { .. })
        ));
        Ok(())
    }
}

#[test]
fn walks_in_tree_order_with_byte_names_and_skips() {
    let sink = HashSink::new();
    let f = file(&sink, b"x");
    let sub = tree(
        &sink,
        vec![
            (b"b\xff", EntryKind::File, f),
            (b"a\nb", EntryKind::File, f),
        ],
    );
    let skipped = tree(&sink, vec![(b"hidden", EntryKind::File, f)]);
    let root = tree(
        &sink,
        vec![
            (b"sub", EntryKind::Dir, sub),
            (b"top", EntryKind::File, f),
            (b"skip", EntryKind::Dir, skipped),
        ],
    );
    let mut t = Trace {
        skip: vec![b"skip".to_vec()],
        ..Trace::default()
    };
    walk(&sink, &root, b"", &mut t).expect("walk");
    assert_eq!(
        t.calls,
        [
            "enter ",
            "enter skip",
            "enter sub",
            "file sub/a\\nb",
            "file sub/b\\xff",
            "leave sub",
            "file top",
            "leave ",
        ]
    );
    // A base path prefixes every path.
    let mut t = Trace::default();
    walk(&sink, &sub, b"usr/lib", &mut t).expect("walk");
    assert_eq!(t.calls[1], "file usr/lib/a\\nb");
}

#[test]
fn a_missing_tree_is_reported_and_the_walk_goes_on() {
    let sink = HashSink::new();
    let f = file(&sink, b"x");
    let gone = ObjectId::digest(b"no such tree");
    let root = tree(
        &sink,
        vec![(b"a", EntryKind::Dir, gone), (b"b", EntryKind::File, f)],
    );
    let mut t = Trace::default();
    walk(&sink, &root, b"", &mut t).expect("walk");
    assert_eq!(
        t.calls,
        [
            "enter ",
            "enter a",
            "unreadable a: true",
            "file b",
            "leave "
        ]
    );
    // By default, a missing tree ends the walk with its error.
    struct Plain;
    impl Visitor for Plain {
        type Error = store::Error;
    }
    assert!(matches!(
        walk(&sink, &root, b"", &mut Plain),
        Err(store::Error::Missing { .. })
    ));
}

#[test]
fn a_deep_tree_walks_in_bounded_stack() {
    let sink = HashSink::new();
    let f = file(&sink, b"deep");
    let mut id = tree(&sink, vec![(b"leaf", EntryKind::File, f)]);
    let depth = 20_000;
    for _ in 0..depth {
        id = tree(&sink, vec![(b"d", EntryKind::Dir, id)]);
    }
    struct Count(usize, usize);
    impl Visitor for Count {
        type Error = store::Error;
        fn file(&mut self, path: &[u8], _e: &TreeEntry) -> Result<(), store::Error> {
            self.0 += 1;
            self.1 = path.len();
            Ok(())
        }
    }
    let mut c = Count(0, 0);
    // A small stack: recursion per level would overflow it.
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn_scoped(s, || walk(&sink, &id, b"", &mut c))
            .expect("spawn")
            .join()
            .expect("the walk does not panic")
    })
    .expect("walk");
    assert_eq!(c.0, 1);
    assert_eq!(c.1, depth * 2 + 4);
}

#[test]
fn lookups_lists_and_zips() {
    let sink = HashSink::new();
    let f = file(&sink, b"content");
    let etc = tree(&sink, vec![(b"os-release", EntryKind::File, f)]);
    let root = tree(&sink, vec![(b"etc", EntryKind::Dir, etc)]);
    assert_eq!(
        lookup(&sink, &root, b"/etc//./os-release").expect("lookup"),
        Some((EntryKind::File, f))
    );
    assert_eq!(
        lookup(&sink, &root, b"/").expect("lookup"),
        Some((EntryKind::Dir, root))
    );
    assert_eq!(
        lookup(&sink, &root, b"/etc/os-release/x").expect("lookup"),
        None
    );
    assert_eq!(lookup(&sink, &root, b"/nope").expect("lookup"), None);
    assert_eq!(normalize(b"//a/./b/"), b"a/b");

    let all = list(&sink, &root, b"/", true).expect("list").expect("path");
    let paths: Vec<_> = all.iter().map(|l| name::escape(&l.path)).collect();
    assert_eq!(paths, ["/etc", "/etc/os-release"]);
    assert_eq!(all[1].size, 7);
    let one = list(&sink, &root, b"etc/os-release", false)
        .expect("list")
        .expect("path");
    assert_eq!(one.len(), 1);
    assert!(list(&sink, &root, b"/missing", false)
        .expect("list")
        .is_none());

    let e = |n: &[u8]| TreeEntry {
        name: n.to_vec(),
        kind: EntryKind::File,
        id: f,
    };
    let a = [e(b"a"), e(b"c"), e(b"d")];
    let b = [e(b"b"), e(b"c")];
    let z: Vec<_> = zip(&a, &b).collect();
    assert_eq!(
        z,
        [
            (Some(0), None),
            (None, Some(0)),
            (Some(1), Some(1)),
            (Some(2), None)
        ]
    );
}
