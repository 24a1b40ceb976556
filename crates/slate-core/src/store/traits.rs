//! The store as an interface: what reading and writing objects takes,
//! whatever holds them. A repository on disk ([`Repo`](super::Repo) reads,
//! a [`Transaction`](super::Transaction) writes), a hash-only
//! [`HashSink`](super::HashSink), and later an HTTP remote implement these,
//! so that a scan, a walk or a pull works on any of them.

use std::io::Read;
use std::os::fd::BorrowedFd;
use std::path::Path;

use super::{FileStream, Result};
use crate::hash::{Hasher, ObjectId};
use crate::object::{Commit, FileHeader, FileMeta, ObjectType, Tree};

/// Reading objects. Every read is checked against the object's id: a tree
/// or commit when it is decoded, a file's content as it is streamed.
pub trait ObjectRead: Sync {
    /// Whether an object of `kind` with this id is here.
    fn has_object(&self, kind: ObjectType, id: &ObjectId) -> Result<bool>;
    fn read_tree(&self, id: &ObjectId) -> Result<Tree>;
    fn read_commit(&self, id: &ObjectId) -> Result<Commit>;
    /// A file object's header (metadata and size), without its content.
    fn file_header(&self, id: &ObjectId) -> Result<FileHeader>;
    /// A file object's content as a stream, checked against the id as it
    /// is read: the read that delivers the last byte fails if the object
    /// is corrupt.
    fn open_file(&self, id: &ObjectId) -> Result<FileStream<'_>>;

    /// A file object whole: header and content. For small objects
    /// (symlink targets, a file shown by `cat`); large ones are streamed.
    fn read_file(&self, id: &ObjectId) -> Result<(FileHeader, Vec<u8>)> {
        let mut s = self.open_file(id)?;
        let header = s.header().clone();
        let content = s.read_all()?;
        Ok((header, content))
    }

    /// A file object's header and the SHA-256 of its content alone (which
    /// tells a change of content from a change of metadata).
    fn content_digest(&self, id: &ObjectId) -> Result<(FileHeader, ObjectId)> {
        let mut s = self.open_file(id)?;
        let header = s.header().clone();
        let mut h = Hasher::new();
        s.each_chunk(|chunk| h.update(chunk))?;
        Ok((header, h.finish()))
    }
}

/// Where a file object's content comes from.
pub enum FileContent<'a> {
    /// Content in memory (symlink targets, small tar members).
    Bytes(&'a [u8]),
    /// An open regular file of `size` bytes; `path` names it in errors and
    /// may be read again (archive packs). It must not change while it is
    /// read.
    Fd { fd: BorrowedFd<'a>, path: &'a Path },
    /// A stream that yields at least `size` bytes (a tar member, an object
    /// of another repository).
    Reader {
        reader: &'a mut dyn Read,
        path: &'a Path,
    },
}

/// The outcome of storing one file object.
#[derive(Clone, Copy, Debug)]
pub struct StoredFile {
    pub id: ObjectId,
    /// False when the object was already present.
    pub written: bool,
}

/// Writing objects. Each write computes the object's id from what it is
/// given; an object already present is not written again.
pub trait ObjectWrite: Sync {
    /// Store a file object with metadata `meta` and `size` bytes of content.
    fn write_file(
        &self,
        meta: &FileMeta,
        size: u64,
        content: FileContent<'_>,
    ) -> Result<StoredFile>;
    /// Store a symlink object whose target is `target`.
    fn write_symlink(&self, meta: &FileMeta, target: &[u8]) -> Result<StoredFile>;
    /// Store a device node or fifo object.
    fn write_special(&self, meta: &FileMeta) -> Result<StoredFile>;
    fn write_tree(&self, tree: &Tree) -> Result<ObjectId>;
    fn write_commit(&self, commit: &Commit) -> Result<ObjectId>;
    /// Whether regular files given by handle are read again later (into an
    /// archive pack), so that reading them ahead in batches gains nothing.
    fn rereads_files(&self) -> bool {
        false
    }
}
