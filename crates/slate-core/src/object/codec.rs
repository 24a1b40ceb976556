//! Big-endian, length-prefixed primitives shared by every object encoding.

use crate::hash::ObjectId;

use super::Xattrs;

/// An object whose bytes are not a valid canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {offset}: {reason}")]
pub struct DecodeError {
    pub what: &'static str,
    pub offset: usize,
    pub reason: String,
}

impl DecodeError {
    /// Whether the bytes ended before the object did (more bytes may make
    /// it decode).
    pub fn is_truncated(&self) -> bool {
        self.reason.starts_with("truncated")
    }
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}
pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(
        out,
        u32::try_from(b.len()).expect("field longer than 4 GiB"),
    );
    out.extend_from_slice(b);
}
pub(crate) fn put_xattrs(out: &mut Vec<u8>, x: &Xattrs) {
    put_u32(out, u32::try_from(x.len()).expect("fewer than 2^32 xattrs"));
    for (k, v) in x {
        put_bytes(out, k);
        put_bytes(out, v);
    }
}

/// A reading cursor that reports errors with the object kind and offset.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    pub fn err(&self, reason: impl Into<String>) -> DecodeError {
        DecodeError {
            what: self.what,
            offset: self.pos,
            reason: reason.into(),
        }
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(self.err(format!(
                "truncated: need {n} bytes, {} left",
                self.buf.len() - self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn magic(&mut self, m: &[u8; 8]) -> Result<(), DecodeError> {
        let got = self.take(8)?;
        if got != m {
            self.pos -= 8;
            return Err(self.err(format!(
                "bad magic {:?}, expected {:?}",
                String::from_utf8_lossy(got),
                String::from_utf8_lossy(m)
            )));
        }
        Ok(())
    }
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub fn id(&mut self) -> Result<ObjectId, DecodeError> {
        Ok(ObjectId(self.take(32)?.try_into().expect("32 bytes")))
    }
    pub fn bytes(&mut self, max: usize) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(self.err(format!("field of {n} bytes exceeds the limit of {max}")));
        }
        self.take(n)
    }
    pub fn string(&mut self, max: usize) -> Result<String, DecodeError> {
        let b = self.bytes(max)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("string is not UTF-8"))
    }
    pub fn xattrs(&mut self) -> Result<Xattrs, DecodeError> {
        let n = self.u32()? as usize;
        if n > 65536 {
            return Err(self.err(format!("{n} xattrs exceed the limit of 65536")));
        }
        let mut out: Xattrs = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let k = self.bytes(255)?;
            if k.is_empty() || k.contains(&0) {
                return Err(self.err("empty xattr name or NUL in xattr name"));
            }
            let v = self.bytes(65536)?;
            if let Some((prev, _)) = out.last() {
                if prev.as_slice() >= k {
                    return Err(self.err("xattrs not sorted by name or duplicated"));
                }
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.pos != self.buf.len() {
            return Err(self.err(format!("{} trailing bytes", self.buf.len() - self.pos)));
        }
        Ok(())
    }
}
