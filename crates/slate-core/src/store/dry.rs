//! Hash-only repositories: a second handle on a repository that computes
//! the ids of what it is given and keeps trees and file digests in memory
//! instead of writing them. `slate diff COMMIT DIR` scans DIR through one.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;

use super::{Error, FileContent, Repo, Result, StoredFile};
use crate::hash::{Hasher, ObjectId};
use crate::object::{FileHeader, FileMeta, Tree};

#[derive(Default)]
pub(crate) struct DryStore {
    trees: HashMap<ObjectId, Tree>,
    /// File object id → header and SHA-256 of the content alone.
    files: HashMap<ObjectId, (FileHeader, ObjectId)>,
}

fn lock(m: &Mutex<DryStore>) -> std::sync::MutexGuard<'_, DryStore> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Repo {
    /// Open `path` as a hash-only repository: reads see the stored objects
    /// and everything "written" through this handle; nothing is written.
    pub fn open_hash_only(path: &std::path::Path) -> Result<Repo> {
        let mut r = Repo::open(path)?;
        r.dry = Some(Mutex::new(DryStore::default()));
        Ok(r)
    }

    pub(crate) fn dry_write_file(
        &self,
        dry: &Mutex<DryStore>,
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
        let mut feed = |r: &mut dyn Read, path: &std::path::Path| -> Result<()> {
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                let n = r.read(&mut buf).map_err(|e| Error::io(path, e))?;
                if n == 0 || total >= size {
                    break;
                }
                let n = n.min((size - total) as usize);
                h.update(&buf[..n]);
                c.update(&buf[..n]);
                total += n as u64;
            }
            if total != size {
                return Err(Error::Invalid(format!(
                    "{}: file changed size while it was read",
                    path.display()
                )));
            }
            Ok(())
        };
        let r = match content {
            FileContent::Bytes(b) => feed(&mut &b[..], std::path::Path::new("<memory>")),
            FileContent::Fd { fd, path } => {
                let mut f =
                    std::fs::File::from(fd.try_clone_to_owned().map_err(|e| Error::io(path, e))?);
                feed(&mut f, path)
            }
            FileContent::Reader { reader, path } => feed(reader, path),
        };
        r?;
        let id = h.finish();
        lock(dry).files.insert(id, (header, c.finish()));
        Ok(StoredFile { id, written: false })
    }

    pub(crate) fn dry_write_tree(&self, tree: &Tree) -> Option<ObjectId> {
        let dry = self.dry.as_ref()?;
        let id = tree.id();
        lock(dry).trees.insert(id, tree.clone());
        Some(id)
    }

    pub(crate) fn dry_tree(&self, id: &ObjectId) -> Option<Tree> {
        lock(self.dry.as_ref()?).trees.get(id).cloned()
    }

    /// A file object's header and the SHA-256 of its content alone.
    pub fn file_digest(&self, id: &ObjectId) -> Result<(FileHeader, ObjectId)> {
        if let Some(d) = self
            .dry
            .as_ref()
            .and_then(|d| lock(d).files.get(id).cloned())
        {
            return Ok(d);
        }
        let (h, content) = self.read_file(id)?;
        Ok((h, ObjectId::digest(&content)))
    }
}
