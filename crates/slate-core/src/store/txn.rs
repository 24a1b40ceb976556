//! Write transactions. Every change to a repository goes through one: it
//! takes the writer lock, keeps the pack being written (archive mode), a
//! listing of the objects present (`looseidx.rs`) and the ref changes
//! asked for, and ends in [`Transaction::commit`]: the pack is linked
//! into place, one `syncfs` makes every object durable, then each ref is
//! compared with the value its caller read and moved (a ref that moved
//! meanwhile is an error, not a lost update).
//!
//! A transaction dropped before it commits (an error, a panic) drops its
//! pack and removes the loose objects it linked: the repository is left as
//! it was. (A process killed meanwhile leaves objects no ref reaches;
//! `prune` removes them.)

use std::collections::HashSet;
use std::sync::Mutex;

use super::lock::WriteLock;
use super::looseidx::LooseIndex;
use super::objects::rel_path;
use super::packwrite::PackWriter;
use super::tmpobj::TmpObject;
use super::{Error, FileContent, ObjectRead, ObjectWrite, Repo, RepoMode, Result, StoredFile};
use crate::fsutil;
use crate::hash::ObjectId;
use crate::object::{Commit, FileHeader, FileMeta, ObjectType, Tree};

/// A ref to move when the transaction commits: from `old` (what the
/// caller read; `None` for a ref that must not exist yet) to `new`
/// (`None` deletes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefChange {
    pub name: String,
    pub old: Option<ObjectId>,
    pub new: Option<ObjectId>,
}

pub struct Transaction<'r> {
    pub(super) repo: &'r Repo,
    _lock: WriteLock,
    pack: Option<PackWriter>,
    listing: LooseIndex,
    /// Loose objects this transaction linked, in order.
    created: Mutex<Vec<(ObjectType, ObjectId)>>,
    refs: Vec<RefChange>,
    /// Set once refs start moving: from then on nothing is undone.
    finished: bool,
}

impl<'r> Transaction<'r> {
    /// Wait for the writer lock and start a transaction.
    pub fn begin(repo: &'r Repo) -> Result<Self> {
        let lock = repo.lock()?;
        if repo.mode == RepoMode::Bare {
            // Repositories made before objects were kept private.
            Repo::restrict(&repo.root, &repo.path)?;
        }
        let pack = match repo.mode {
            RepoMode::Archive => Some(PackWriter::begin(repo)?),
            _ => None,
        };
        Ok(Transaction {
            repo,
            _lock: lock,
            pack,
            listing: LooseIndex::new(),
            created: Mutex::new(Vec::new()),
            refs: Vec::new(),
            finished: false,
        })
    }

    pub fn repo(&self) -> &'r Repo {
        self.repo
    }

    pub(super) fn pack(&self) -> Option<&PackWriter> {
        self.pack.as_ref()
    }

    /// Whether an object is present: in the repository, or written by
    /// this transaction (a pack being written counts once it holds it).
    pub fn has_object(&self, kind: ObjectType, id: &ObjectId) -> Result<bool> {
        self.repo.has_loose_or_packed(kind, id, Some(&self.listing))
    }

    /// Link a finished temporary object under its name; notes it as this
    /// transaction's.
    pub(super) fn link(&self, tmp: TmpObject, kind: ObjectType, id: &ObjectId) -> Result<bool> {
        let linked = self.repo.link_tmp(tmp, kind, id)?;
        self.noted(kind, id, linked);
        Ok(linked)
    }

    /// Rename a finished temporary file (in `tmp/`) to its final name.
    pub(super) fn publish(&self, tmp_name: &str, kind: ObjectType, id: &ObjectId) -> Result<()> {
        rustix::fs::renameat(
            &self.repo.tmp,
            tmp_name,
            &self.repo.objects,
            rel_path(kind, id).as_str(),
        )
        .map_err(|e| Error::io(&self.repo.object_path(kind, id), e.into()))?;
        self.noted(kind, id, true);
        Ok(())
    }

    fn noted(&self, kind: ObjectType, id: &ObjectId, linked: bool) {
        self.listing.insert(kind, id);
        if linked {
            self.created
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((kind, *id));
        }
    }

    /// Store `bytes` as the loose object `id`, whether or not a pack holds it.
    pub(super) fn write_loose_bytes(
        &self,
        kind: ObjectType,
        id: &ObjectId,
        bytes: &[u8],
    ) -> Result<()> {
        let path = self.repo.object_path(kind, id);
        let tmp = self.repo.create_tmp().map_err(|e| Error::io(&path, e))?;
        if let Err(e) = fsutil::write_all_fd(tmp.fd(), bytes).and_then(|()| {
            Ok(rustix::fs::fchmod(
                tmp.fd(),
                rustix::fs::Mode::from_raw_mode(0o644),
            )?)
        }) {
            self.repo.drop_tmp(tmp);
            return Err(Error::io(&path, e));
        }
        self.link(tmp, kind, id).map(drop)
    }

    /// Store canonical bytes of a tree or commit under `id`, unless present.
    fn write_meta_object(&self, kind: ObjectType, id: &ObjectId, bytes: &[u8]) -> Result<bool> {
        if self.has_object(kind, id)? {
            return Ok(false);
        }
        if kind == ObjectType::Tree {
            if let Some(pw) = self.pack() {
                pw.add(
                    self.repo,
                    kind,
                    *id,
                    bytes,
                    &[],
                    super::packwrite::TREE_BUCKET,
                )
                .map_err(|e| Error::io(&self.repo.path.join("tmp"), e))?;
                return Ok(true);
            }
        }
        self.write_loose_bytes(kind, id, bytes)?;
        Ok(true)
    }

    /// Store an archive-mode file object as a loose object.
    fn write_loose_file(&self, header: &FileHeader, content: &[u8]) -> Result<()> {
        let id = header.id_of(content);
        let mut bytes = header.encode();
        bytes.extend_from_slice(
            &self
                .repo
                .compress(content)
                .map_err(|e| Error::io(&self.repo.object_path(ObjectType::File, &id), e))?,
        );
        self.write_loose_bytes(ObjectType::File, &id, &bytes)
    }

    /// Delete a loose object (absent is fine).
    pub fn delete_object(&self, kind: ObjectType, id: &ObjectId) -> Result<()> {
        self.repo.delete_object(kind, id)
    }

    /// Delete a pack: its index first, which makes it invisible, then the pack.
    pub fn delete_pack(&self, name: &str) -> Result<()> {
        self.repo.delete_pack(name)
    }

    /// Move a corrupt loose object to `REPO/corrupt/ID.TYPE`, so that it no
    /// longer counts as present. Returns false for a packed object.
    pub fn move_aside(&self, kind: ObjectType, id: &ObjectId) -> Result<bool> {
        self.repo.move_aside(kind, id)
    }

    /// Rewrite every sound object of pack `name` (those not in `bad`) as a
    /// loose object, then move the pack and its index to `REPO/corrupt/`.
    pub fn evacuate_pack(&self, name: &str, bad: &HashSet<ObjectId>) -> Result<()> {
        let Some((_, ids, _)) = self
            .repo
            .pack_contents()?
            .into_iter()
            .find(|(n, _, _)| n == name)
        else {
            return Ok(());
        };
        for id in ids.iter().filter(|id| !bad.contains(id)) {
            if self.repo.has_stored(ObjectType::Tree, id)? {
                self.write_loose_bytes(ObjectType::Tree, id, &self.repo.read_tree(id)?.encode())?;
            } else {
                let (h, content) = self.repo.read_file(id)?;
                self.write_loose_file(&h, &content)?;
            }
        }
        self.repo.move_pack_aside(name)
    }

    /// The commit a ref names now, or `None`.
    pub fn read_ref(&self, name: &str) -> Result<Option<ObjectId>> {
        self.repo.read_ref(name)
    }

    /// Move `name` from `old` (what the caller read; `None`: it must not
    /// exist) to `new` when the transaction commits.
    pub fn set_ref(&mut self, name: &str, old: Option<ObjectId>, new: ObjectId) -> Result<()> {
        super::validate_ref_name(name)?;
        self.refs.push(RefChange {
            name: name.to_owned(),
            old,
            new: Some(new),
        });
        Ok(())
    }

    /// Create `name` at `new` when the transaction commits; an error then
    /// if it exists.
    pub fn create_ref(&mut self, name: &str, new: ObjectId) -> Result<()> {
        self.set_ref(name, None, new)
    }

    /// Delete `name`, which must still name `old`, when the transaction commits.
    pub fn delete_ref(&mut self, name: &str, old: ObjectId) -> Result<()> {
        super::validate_ref_name(name)?;
        self.refs.push(RefChange {
            name: name.to_owned(),
            old: Some(old),
            new: None,
        });
        Ok(())
    }

    /// Make everything written durable, then move the refs. Every ref is
    /// compared before any moves: if one is not what its caller read,
    /// nothing moves.
    pub fn commit(mut self) -> Result<Vec<RefChange>> {
        if let Some(pw) = self.pack.take() {
            pw.finish(self.repo)?;
        }
        self.repo.sync()?;
        for c in &self.refs {
            let now = self.repo.read_ref(&c.name)?;
            if now != c.old {
                return Err(Error::RefMoved {
                    name: c.name.clone(),
                    expected: c.old,
                    found: now,
                });
            }
        }
        self.finished = true;
        for c in &self.refs {
            match c.new {
                Some(id) => self.repo.write_ref(&c.name, &id)?,
                None => {
                    self.repo.remove_ref(&c.name)?;
                }
            }
        }
        Ok(std::mem::take(&mut self.refs))
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(pw) = self.pack.take() {
            pw.abort(self.repo);
        }
        let created = std::mem::take(&mut *self.created.lock().unwrap_or_else(|p| p.into_inner()));
        // Newest first: a commit goes before the trees and files it names.
        for (kind, id) in created.iter().rev() {
            let _ = self.repo.delete_object(*kind, id);
        }
    }
}

impl ObjectWrite for Transaction<'_> {
    fn write_file(
        &self,
        meta: &FileMeta,
        size: u64,
        content: FileContent<'_>,
    ) -> Result<StoredFile> {
        self.store_file(meta, size, content)
    }
    fn write_symlink(&self, meta: &FileMeta, target: &[u8]) -> Result<StoredFile> {
        self.store_symlink(meta, target)
    }
    fn write_special(&self, meta: &FileMeta) -> Result<StoredFile> {
        self.store_special(meta)
    }
    fn write_tree(&self, tree: &Tree) -> Result<ObjectId> {
        let bytes = tree.encode();
        let id = ObjectId::digest(&bytes);
        self.write_meta_object(ObjectType::Tree, &id, &bytes)?;
        Ok(id)
    }
    fn write_commit(&self, commit: &Commit) -> Result<ObjectId> {
        let bytes = commit.encode();
        let id = ObjectId::digest(&bytes);
        self.write_meta_object(ObjectType::Commit, &id, &bytes)?;
        Ok(id)
    }
    fn rereads_files(&self) -> bool {
        self.pack.is_some()
    }
}

/// A transaction reads what its repository holds.
impl ObjectRead for Transaction<'_> {
    fn has_object(&self, kind: ObjectType, id: &ObjectId) -> Result<bool> {
        Transaction::has_object(self, kind, id)
    }
    fn read_tree(&self, id: &ObjectId) -> Result<Tree> {
        self.repo.read_tree(id)
    }
    fn read_commit(&self, id: &ObjectId) -> Result<Commit> {
        self.repo.read_commit(id)
    }
    fn file_header(&self, id: &ObjectId) -> Result<FileHeader> {
        self.repo.file_header(id)
    }
    fn open_file(&self, id: &ObjectId) -> Result<super::FileStream<'_>> {
        self.repo.open_file(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{DirMeta, EntryKind, FileKind, TreeEntry};

    fn count_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.map(|e| {
                    let e = e.expect("entry");
                    if e.file_type().expect("type").is_dir() {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
            })
            .unwrap_or(0)
    }

    /// Write a file, a tree and a commit; returns the commit.
    fn write_some(tx: &Transaction<'_>, n: u8) -> ObjectId {
        let meta = FileMeta {
            kind: FileKind::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            rdev: 0,
            xattrs: vec![],
        };
        let f = tx
            .write_file(&meta, 3, FileContent::Bytes(&[n, n, n]))
            .expect("file");
        let tree = tx
            .write_tree(&Tree {
                meta: DirMeta::default(),
                entries: vec![TreeEntry {
                    name: b"f".to_vec(),
                    kind: EntryKind::File,
                    id: f.id,
                }],
            })
            .expect("tree");
        tx.write_commit(&Commit {
            parent: None,
            tree,
            timestamp: n as i64,
            subject: String::new(),
            body: String::new(),
            metadata: Default::default(),
        })
        .expect("commit")
    }

    #[test]
    fn a_transaction_dropped_or_panicking_leaves_nothing() {
        for mode in [RepoMode::BareUser, RepoMode::Archive] {
            let t = tempfile::tempdir().expect("tempdir");
            let repo = Repo::init(&t.path().join("r"), mode).expect("init");
            let objects = repo.path().join("objects");
            let before = count_files(&objects);
            let tx = Transaction::begin(&repo).expect("begin");
            let c = write_some(&tx, 1);
            drop(tx);
            assert_eq!(count_files(&objects), before, "{mode}: objects left");
            assert!(!repo.has_object(ObjectType::Commit, &c).expect("has"));
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let tx = Transaction::begin(&repo).expect("begin");
                write_some(&tx, 2);
                panic!("a writer fails");
            }));
            assert!(r.is_err());
            assert_eq!(
                count_files(&objects),
                before,
                "{mode}: objects left by a panic"
            );
            assert_eq!(count_files(&repo.path().join("tmp")), 0);
            // The lock was released: a new transaction commits.
            let mut tx = Transaction::begin(&repo).expect("begin");
            let c = write_some(&tx, 3);
            tx.create_ref("main", c).expect("ref");
            tx.commit().expect("commit");
            assert_eq!(repo.read_ref("main").expect("read"), Some(c));
            assert!(repo.read_commit(&c).is_ok());
        }
    }

    #[test]
    fn refs_move_only_from_what_their_caller_read() {
        let t = tempfile::tempdir().expect("tempdir");
        let repo = Repo::init(&t.path().join("r"), RepoMode::BareUser).expect("init");
        let mut tx = Transaction::begin(&repo).expect("begin");
        let c1 = write_some(&tx, 1);
        tx.create_ref("a", c1).expect("ref");
        tx.create_ref("b", c1).expect("ref");
        tx.commit().expect("commit");

        let mut tx = Transaction::begin(&repo).expect("begin");
        let c2 = write_some(&tx, 2);
        tx.set_ref("a", Some(c1), c2).expect("ref");
        // `b` was read as absent: it exists, so nothing moves.
        tx.create_ref("b", c2).expect("ref");
        match tx.commit() {
            Err(Error::RefMoved {
                name,
                expected,
                found,
            }) => {
                assert_eq!((name.as_str(), expected, found), ("b", None, Some(c1)));
            }
            other => panic!("a ref that moved was overwritten: {other:?}"),
        }
        assert_eq!(
            repo.read_ref("a").expect("read"),
            Some(c1),
            "a moved anyway"
        );
        assert_eq!(repo.read_ref("b").expect("read"), Some(c1));
        // The failed transaction's objects are gone too.
        assert!(!repo.has_object(ObjectType::Commit, &c2).expect("has"));

        let mut tx = Transaction::begin(&repo).expect("begin");
        tx.delete_ref("a", c1).expect("delete");
        tx.commit().expect("commit");
        assert_eq!(repo.read_ref("a").expect("read"), None);
    }
}
