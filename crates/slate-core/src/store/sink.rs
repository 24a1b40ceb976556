//! A hash-only store: it computes the ids of what it is given and keeps
//! trees, commits and file digests in memory instead of writing anything.
//! `diff COMMIT DIR` scans DIR into one laid over the repository, so that
//! both trees read alike.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use super::{Error, FileContent, FileStream, ObjectRead, ObjectWrite, Result, StoredFile};
use crate::hash::{Hasher, ObjectId};
use crate::object::{Commit, FileHeader, FileMeta, ObjectType, Tree};

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

#[derive(Default)]
struct Kept {
    trees: HashMap<ObjectId, Tree>,
    commits: HashMap<ObjectId, Commit>,
    /// File object id → header and SHA-256 of the content alone.
    files: HashMap<ObjectId, (FileHeader, ObjectId)>,
}

/// Objects hashed, not stored; reads fall through to `base` for what was
/// not given here.
#[derive(Default)]
pub struct HashSink<'a> {
    base: Option<&'a dyn ObjectRead>,
    kept: Mutex<Kept>,
}

impl<'a> HashSink<'a> {
    /// A sink on its own.
    pub fn new() -> Self {
        HashSink::default()
    }

    /// A sink whose reads see `base` too.
    pub fn over(base: &'a dyn ObjectRead) -> Self {
        HashSink {
            base: Some(base),
            kept: Mutex::default(),
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn base(&self, kind: ObjectType, id: &ObjectId) -> Result<&'a dyn ObjectRead> {
        self.base.ok_or(Error::Missing { kind, id: *id })
    }
}

/// Feed `size` bytes of `r` to both hashers; an error if it has fewer.
fn feed(r: &mut dyn Read, size: u64, path: &Path, h: &mut Hasher, c: &mut Hasher) -> Result<()> {
    BUF.with(|b| {
        let mut buf = b.borrow_mut();
        if buf.len() < 256 << 10 {
            buf.resize(256 << 10, 0);
        }
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match r.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(Error::Invalid(format!(
                        "{}: file changed size while it was read ({size} bytes expected)",
                        path.display()
                    )))
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::from_io(path, e)),
            };
            h.update(&buf[..n]);
            c.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(())
    })
}

impl ObjectWrite for HashSink<'_> {
    fn write_file(
        &self,
        meta: &FileMeta,
        size: u64,
        content: FileContent<'_>,
    ) -> Result<StoredFile> {
        let header = FileHeader {
            meta: meta.clone(),
            size,
        };
        let mut h = header.hasher();
        let mut c = Hasher::new();
        match content {
            FileContent::Bytes(b) => {
                if b.len() as u64 != size {
                    return Err(Error::Invalid(format!(
                        "content of {} bytes given for a size of {size}",
                        b.len()
                    )));
                }
                h.update(b);
                c.update(b);
            }
            FileContent::Fd { fd, path } => {
                let mut f =
                    std::fs::File::from(fd.try_clone_to_owned().map_err(|e| Error::io(path, e))?);
                feed(&mut f, size, path, &mut h, &mut c)?;
            }
            FileContent::Reader { reader, path } => feed(reader, size, path, &mut h, &mut c)?,
        }
        let id = h.finish();
        self.kept().files.insert(id, (header, c.finish()));
        Ok(StoredFile { id, written: false })
    }

    fn write_symlink(&self, meta: &FileMeta, target: &[u8]) -> Result<StoredFile> {
        self.write_file(meta, target.len() as u64, FileContent::Bytes(target))
    }

    fn write_special(&self, meta: &FileMeta) -> Result<StoredFile> {
        self.write_file(meta, 0, FileContent::Bytes(&[]))
    }

    fn write_tree(&self, tree: &Tree) -> Result<ObjectId> {
        let id = tree.id();
        self.kept().trees.insert(id, tree.clone());
        Ok(id)
    }

    fn write_commit(&self, commit: &Commit) -> Result<ObjectId> {
        let id = commit.id();
        self.kept().commits.insert(id, commit.clone());
        Ok(id)
    }
}

impl ObjectRead for HashSink<'_> {
    fn has_object(&self, kind: ObjectType, id: &ObjectId) -> Result<bool> {
        let here = {
            let k = self.kept();
            match kind {
                ObjectType::File => k.files.contains_key(id),
                ObjectType::Tree => k.trees.contains_key(id),
                ObjectType::Commit => k.commits.contains_key(id),
            }
        };
        match (here, self.base) {
            (true, _) => Ok(true),
            (false, Some(b)) => b.has_object(kind, id),
            (false, None) => Ok(false),
        }
    }

    fn read_tree(&self, id: &ObjectId) -> Result<Tree> {
        if let Some(t) = self.kept().trees.get(id) {
            return Ok(t.clone());
        }
        self.base(ObjectType::Tree, id)?.read_tree(id)
    }

    fn read_commit(&self, id: &ObjectId) -> Result<Commit> {
        if let Some(c) = self.kept().commits.get(id) {
            return Ok(c.clone());
        }
        self.base(ObjectType::Commit, id)?.read_commit(id)
    }

    fn file_header(&self, id: &ObjectId) -> Result<FileHeader> {
        if let Some((h, _)) = self.kept().files.get(id) {
            return Ok(h.clone());
        }
        self.base(ObjectType::File, id)?.file_header(id)
    }

    fn open_file(&self, id: &ObjectId) -> Result<FileStream<'_>> {
        if self.kept().files.contains_key(id) {
            return Err(Error::Invalid(format!(
                "file object {id} was only hashed: its content is not kept"
            )));
        }
        self.base(ObjectType::File, id)?.open_file(id)
    }

    fn content_digest(&self, id: &ObjectId) -> Result<(FileHeader, ObjectId)> {
        if let Some(d) = self.kept().files.get(id) {
            return Ok(d.clone());
        }
        self.base(ObjectType::File, id)?.content_digest(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::FileKind;

    #[test]
    fn hashes_like_a_repository_and_keeps_nothing_on_disk() {
        let meta = FileMeta {
            kind: FileKind::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            rdev: 0,
            xattrs: vec![],
        };
        let sink = HashSink::new();
        let mut r: &[u8] = b"hello world";
        let st = sink
            .write_file(
                &meta,
                11,
                FileContent::Reader {
                    reader: &mut r,
                    path: Path::new("x"),
                },
            )
            .expect("hash");
        let header = FileHeader { meta, size: 11 };
        assert_eq!(st.id, header.id_of(b"hello world"));
        assert!(sink.has_object(ObjectType::File, &st.id).expect("has"));
        assert_eq!(
            sink.content_digest(&st.id).expect("digest").1,
            ObjectId::digest(b"hello world")
        );
        assert!(sink.open_file(&st.id).is_err());
        // Fewer bytes than the size given is an error.
        let mut short: &[u8] = b"hi";
        assert!(sink
            .write_file(
                &header.meta,
                11,
                FileContent::Reader {
                    reader: &mut short,
                    path: Path::new("x"),
                },
            )
            .is_err());
    }
}
