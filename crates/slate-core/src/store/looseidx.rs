//! Which loose objects exist, listed per fan-out directory during a commit.
//!
//! A commit asks, for every file and directory of its tree, whether the
//! object is already stored. One `stat` per object answers, but it reads
//! the object's inode: on a repository that is not in the page cache, that
//! is one disk read per file of the tree. While the writer lock is held no
//! one else adds or removes objects, so after a few questions about one
//! fan-out directory `objects/XX/`, the directory is listed once (its
//! blocks only, no inode) and the rest are answered from memory. A small
//! commit into a large repository never lists anything.
//!
//! The listing only ever says "present" for a name it saw on disk, and
//! objects this writer links are added to it. A name it misses costs a
//! rewrite of the object, whose link then finds the object present.

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::sync::Mutex;

use rustix::fs::{self as rfs, Dir, Mode, OFlags};
use rustix::io::Errno;

use crate::hash::ObjectId;
use crate::object::ObjectType;

/// Questions about one fan-out directory answered by `stat` before it is
/// listed.
const LIST_AFTER: u32 = 8;

enum Fanout {
    /// Not listed yet; this many questions asked.
    Asked(u32),
    /// The objects present.
    Listed(HashSet<(ObjectType, ObjectId)>),
}

pub(crate) struct LooseIndex {
    fanouts: Vec<Mutex<Fanout>>,
}

/// The object named `yyyy….suffix` in the fan-out directory `xx`, if the
/// name is an object's.
fn parse_name(xx: &str, name: &[u8]) -> Option<(ObjectType, ObjectId)> {
    let name = std::str::from_utf8(name).ok()?;
    let (rest, suffix) = name.split_once('.')?;
    let kind = [ObjectType::File, ObjectType::Tree, ObjectType::Commit]
        .into_iter()
        .find(|k| k.suffix() == suffix)?;
    let id = ObjectId::from_hex(&format!("{xx}{rest}")).ok()?;
    Some((kind, id))
}

fn lock(m: &Mutex<Fanout>) -> std::sync::MutexGuard<'_, Fanout> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LooseIndex {
    pub fn new() -> Self {
        LooseIndex {
            fanouts: (0..256).map(|_| Mutex::new(Fanout::Asked(0))).collect(),
        }
    }

    /// Whether the loose object is present, when the listing knows; `None`
    /// asks the caller to look on disk. `objects` is the `objects/` handle.
    pub fn lookup<Fd: AsFd>(
        &self,
        objects: Fd,
        kind: ObjectType,
        id: &ObjectId,
    ) -> std::io::Result<Option<bool>> {
        let mut f = lock(&self.fanouts[id.0[0] as usize]);
        match &mut *f {
            Fanout::Listed(set) => Ok(Some(set.contains(&(kind, *id)))),
            Fanout::Asked(n) if *n + 1 < LIST_AFTER => {
                *n += 1;
                Ok(None)
            }
            Fanout::Asked(_) => {
                let set = list(objects, id.0[0])?;
                let found = set.contains(&(kind, *id));
                *f = Fanout::Listed(set);
                Ok(Some(found))
            }
        }
    }

    /// Note an object this writer has linked into place.
    pub fn insert(&self, kind: ObjectType, id: &ObjectId) {
        if let Fanout::Listed(set) = &mut *lock(&self.fanouts[id.0[0] as usize]) {
            set.insert((kind, *id));
        }
    }
}

/// The objects in `objects/XX/` (none when the directory does not exist:
/// archive repositories create them on demand).
fn list<Fd: AsFd>(objects: Fd, first: u8) -> std::io::Result<HashSet<(ObjectType, ObjectId)>> {
    let mut set = HashSet::new();
    let name = format!("{first:02x}");
    let fd = match rfs::openat(
        objects,
        name.as_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(set),
        Err(e) => return Err(e.into()),
    };
    let mut dir = Dir::new(fd)?;
    while let Some(ent) = dir.read() {
        if let Some(k) = parse_name(&name, ent?.file_name().to_bytes()) {
            set.insert(k);
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_to_the_objects_they_name() {
        let id = ObjectId::from_hex(&"ab".repeat(32)).expect("hex");
        let name = format!("{}.tree", &"ab".repeat(32)[2..]);
        assert_eq!(
            parse_name("ab", name.as_bytes()),
            Some((ObjectType::Tree, id))
        );
        let bad = [
            format!("{}.tre", &"ab".repeat(32)[2..]),
            format!("{}.file", &"AB".repeat(32)[2..]),
            format!("{}.file", &"ab".repeat(30)),
            ".#tmp.file".to_string(),
        ];
        for b in bad {
            assert_eq!(parse_name("ab", b.as_bytes()), None, "{b}");
        }
    }

    #[test]
    fn a_fanout_is_listed_after_some_questions_and_learns_new_objects() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(t.path().join("ab")).expect("mkdir");
        let present = ObjectId::from_hex(&"ab".repeat(32)).expect("hex");
        let hex = present.to_hex();
        std::fs::write(t.path().join(format!("ab/{}.file", &hex[2..])), b"").expect("write");
        let mut other = present;
        other.0[31] ^= 1;
        let objects = crate::fsutil::open_dir(t.path()).expect("open");
        let idx = LooseIndex::new();
        for _ in 1..LIST_AFTER {
            assert_eq!(
                idx.lookup(&objects, ObjectType::File, &present)
                    .expect("lookup"),
                None
            );
        }
        let ask = |kind, id| idx.lookup(&objects, kind, id).expect("lookup");
        assert_eq!(ask(ObjectType::File, &present), Some(true));
        assert_eq!(ask(ObjectType::Tree, &present), Some(false));
        assert_eq!(ask(ObjectType::File, &other), Some(false));
        idx.insert(ObjectType::File, &other);
        assert_eq!(ask(ObjectType::File, &other), Some(true));
        // Another fan-out, absent on disk, is listed as empty.
        let mut elsewhere = present;
        elsewhere.0[0] = 0x01;
        for _ in 1..LIST_AFTER {
            assert_eq!(ask(ObjectType::File, &elsewhere), None);
        }
        assert_eq!(ask(ObjectType::File, &elsewhere), Some(false));
    }
}
