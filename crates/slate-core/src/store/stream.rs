//! A file object's content as a stream, checked against its id as it is
//! read. Nothing holds a whole large object in memory: checkout copies,
//! export, pull and fsck read through this.

use std::cell::RefCell;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{Error, Result};
use crate::hash::{Hasher, ObjectId};
use crate::object::{FileHeader, ObjectType};

/// Chunks of this size are read by [`FileStream::each_chunk`].
const CHUNK: usize = 256 << 10;

thread_local! {
    static CHUNK_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The content of one file object. Reading it yields exactly the header's
/// `size` bytes; the read that yields the last of them fails instead if
/// header and content do not hash to the object's id, or the stored
/// content ends early. A stream of no bytes is checked when it is opened.
pub struct FileStream<'a> {
    id: ObjectId,
    header: FileHeader,
    inner: Box<dyn Read + Send + 'a>,
    hasher: Hasher,
    left: u64,
    /// Where the content is stored, for messages about reading it.
    path: PathBuf,
}

impl std::fmt::Debug for FileStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStream")
            .field("id", &self.id)
            .field("size", &self.header.size)
            .field("left", &self.left)
            .finish()
    }
}

fn corrupt(id: &ObjectId, detail: String) -> Error {
    Error::Corrupt {
        kind: ObjectType::File,
        id: *id,
        detail,
    }
}

impl<'a> FileStream<'a> {
    /// A stream of `header.size` bytes of `inner`, checked against `id`.
    pub fn new(
        id: ObjectId,
        header: FileHeader,
        inner: Box<dyn Read + Send + 'a>,
        path: &Path,
    ) -> Result<Self> {
        let s = FileStream {
            id,
            hasher: header.hasher(),
            left: header.size,
            header,
            inner,
            path: path.to_path_buf(),
        };
        if s.left == 0 {
            s.check(s.hasher.clone())?;
        }
        Ok(s)
    }

    pub fn id(&self) -> &ObjectId {
        &self.id
    }

    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> u64 {
        self.left
    }

    fn check(&self, hasher: Hasher) -> Result<()> {
        let got = hasher.finish();
        if got != self.id {
            return Err(corrupt(
                &self.id,
                format!("content and metadata hash to {got}"),
            ));
        }
        Ok(())
    }

    /// Read the rest into memory (for small objects).
    pub fn read_all(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.left).unwrap_or(0).min(64 << 20));
        self.read_to_end(&mut out)
            .map_err(|e| Error::from_io(&self.path, e))?;
        Ok(out)
    }

    /// Call `f` with each chunk of the rest of the content, in order.
    pub fn each_chunk(&mut self, f: impl FnMut(&[u8])) -> Result<()> {
        /// A writer that hands each chunk to a function and never fails.
        struct Each<F>(F);
        impl<F: FnMut(&[u8])> io::Write for Each<F> {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                (self.0)(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        match self.copy_to(&mut Each(f)) {
            Ok(_) => Ok(()),
            Err(Err(e)) => Err(e),
            Err(Ok(e)) => Err(Error::from_io(&self.path, e)),
        }
    }

    /// Copy the rest of the content to `out` (errors writing it are
    /// `Err(Ok(e))`, errors of the object `Err(Err(e))`).
    pub fn copy_to(
        &mut self,
        out: &mut dyn io::Write,
    ) -> std::result::Result<u64, std::result::Result<io::Error, Error>> {
        let mut total = 0u64;
        CHUNK_BUF.with(|b| {
            let mut buf = b.borrow_mut();
            if buf.len() < CHUNK {
                buf.resize(CHUNK, 0);
            }
            while self.left > 0 {
                let n = self
                    .read(&mut buf[..])
                    .map_err(|e| Err(Error::from_io(&self.path, e)))?;
                out.write_all(&buf[..n]).map_err(Ok)?;
                total += n as u64;
            }
            Ok(total)
        })
    }
}

impl Read for FileStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::from_io(&self.path, e).into_io()),
                Ok(n) => break n,
            }
        };
        if n == 0 {
            let err = corrupt(
                &self.id,
                format!(
                    "content ends after {} of {} bytes",
                    self.header.size - self.left,
                    self.header.size
                ),
            );
            return Err(err.into_io());
        }
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        if self.left == 0 {
            let hasher = std::mem::take(&mut self.hasher);
            self.check(hasher).map_err(Error::into_io)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{FileKind, FileMeta};

    fn header(size: u64) -> FileHeader {
        FileHeader {
            meta: FileMeta {
                kind: FileKind::Regular,
                mode: 0o644,
                uid: 0,
                gid: 0,
                rdev: 0,
                xattrs: vec![],
            },
            size,
        }
    }

    #[test]
    fn checks_the_content_as_it_ends() {
        let h = header(5);
        let id = h.id_of(b"hello");
        let mut s = FileStream::new(id, h.clone(), Box::new(&b"hello, more"[..]), Path::new("x"))
            .expect("open");
        assert_eq!(s.read_all().expect("sound"), b"hello");
        // The last read of a corrupt object fails, whoever reads it.
        let mut s =
            FileStream::new(id, h.clone(), Box::new(&b"hellO"[..]), Path::new("x")).expect("open");
        let mut buf = [0u8; 5];
        let e = s.read_exact(&mut buf).expect_err("corrupt");
        let e = Error::from_io(Path::new("x"), e);
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        // Content that ends early.
        let mut s = FileStream::new(id, h, Box::new(&b"hel"[..]), Path::new("x")).expect("open");
        let e = s.read_all().expect_err("short");
        assert!(e.to_string().contains("ends after 3 of 5"), "{e}");
        // An empty object is checked at once.
        let h0 = header(0);
        assert!(FileStream::new(id, h0.clone(), Box::new(&b""[..]), Path::new("x")).is_err());
        let id0 = h0.id_of(b"");
        assert!(FileStream::new(id0, h0, Box::new(&b""[..]), Path::new("x")).is_ok());
    }
}
