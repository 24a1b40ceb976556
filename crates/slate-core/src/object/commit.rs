//! Commit objects: a root tree, an optional parent, a timestamp, a subject,
//! a body and sorted key/value metadata.

use std::collections::BTreeMap;

use crate::hash::ObjectId;

use super::codec::{put_bytes, put_u32, put_u64, DecodeError, Reader};

pub(crate) const COMMIT_MAGIC: &[u8; 8] = b"SLATEC1\0";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub parent: Option<ObjectId>,
    pub tree: ObjectId,
    /// Seconds since the Unix epoch.
    pub timestamp: i64,
    pub subject: String,
    pub body: String,
    pub metadata: BTreeMap<String, String>,
}

impl Commit {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.subject.len() + self.body.len());
        out.extend_from_slice(COMMIT_MAGIC);
        match &self.parent {
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&p.0);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.tree.0);
        put_u64(&mut out, self.timestamp as u64);
        put_bytes(&mut out, self.subject.as_bytes());
        put_bytes(&mut out, self.body.as_bytes());
        put_u32(
            &mut out,
            u32::try_from(self.metadata.len()).expect("fewer than 2^32 keys"),
        );
        for (k, v) in &self.metadata {
            put_bytes(&mut out, k.as_bytes());
            put_bytes(&mut out, v.as_bytes());
        }
        out
    }

    pub fn id(&self) -> ObjectId {
        ObjectId::digest(&self.encode())
    }

    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf, "commit object");
        r.magic(COMMIT_MAGIC)?;
        let parent = match r.u8()? {
            0 => None,
            1 => Some(r.id()?),
            c => return Err(r.err(format!("bad parent flag {c}"))),
        };
        let tree = r.id()?;
        let timestamp = r.u64()? as i64;
        let subject = r.string(1 << 20)?;
        let body = r.string(1 << 24)?;
        let n = r.u32()? as usize;
        let mut metadata = BTreeMap::new();
        let mut last: Option<String> = None;
        for _ in 0..n {
            let k = r.string(4096)?;
            let v = r.string(1 << 24)?;
            if last.as_ref().is_some_and(|l| *l >= k) {
                return Err(r.err(format!("metadata key {k:?} out of order or duplicated")));
            }
            last = Some(k.clone());
            metadata.insert(k, v);
        }
        r.finish()?;
        Ok(Commit {
            parent,
            tree,
            timestamp,
            subject,
            body,
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let mut metadata = BTreeMap::new();
        metadata.insert("version".to_string(), "1.0".to_string());
        let c = Commit {
            parent: Some(ObjectId::digest(b"p")),
            tree: ObjectId::digest(b"t"),
            timestamp: 1_700_000_000,
            subject: "subject".into(),
            body: "body\nlines".into(),
            metadata,
        };
        assert_eq!(Commit::decode(&c.encode()).expect("decodes"), c);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Commit::decode(&bytes);
        }
    }
}
