//! Revisions: a ref name, a full commit id, or a unique prefix of one (at
//! least 4 hex digits), followed by any number of `^` (parent) and `~N`
//! (N-th ancestor) suffixes.

use super::{Error, ObjectRead, Repo, Result};
use crate::hash::{is_lower_hex, ObjectId};
use crate::object::ObjectType;

impl Repo {
    /// Resolve a revision to a commit id.
    pub fn rev_parse(&self, rev: &str) -> Result<ObjectId> {
        let base_end = rev.find(['^', '~']).unwrap_or(rev.len());
        let (base, mut suffix) = rev.split_at(base_end);
        let mut id = self.resolve_base(base, rev)?;
        while !suffix.is_empty() {
            let (steps, rest) = if let Some(r) = suffix.strip_prefix('^') {
                (1usize, r)
            } else if let Some(r) = suffix.strip_prefix('~') {
                let digits = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                let n = if digits == 0 {
                    1
                } else {
                    r[..digits].parse().map_err(|_| Error::UnknownRev {
                        rev: rev.to_owned(),
                    })?
                };
                (n, &r[digits..])
            } else {
                return Err(Error::UnknownRev {
                    rev: rev.to_owned(),
                });
            };
            for _ in 0..steps {
                let c = self.read_commit(&id)?;
                id = c.parent.ok_or_else(|| {
                    Error::Invalid(format!("revision {rev:?}: commit {id} has no parent"))
                })?;
            }
            suffix = rest;
        }
        if !self.has_object(ObjectType::Commit, &id)? {
            // A parent pruned away, or a ref to a commit not pulled.
            return Err(Error::Missing {
                kind: ObjectType::Commit,
                id,
            });
        }
        Ok(id)
    }

    fn resolve_base(&self, base: &str, rev: &str) -> Result<ObjectId> {
        if base.is_empty() {
            return Err(Error::UnknownRev {
                rev: rev.to_owned(),
            });
        }
        if base.len() == ObjectId::HEX_LEN && is_lower_hex(base) {
            let id = ObjectId::from_hex(base).map_err(|_| Error::UnknownRev {
                rev: rev.to_owned(),
            })?;
            if self.has_object(ObjectType::Commit, &id)? {
                return Ok(id);
            }
            return Err(Error::Missing {
                kind: ObjectType::Commit,
                id,
            });
        }
        if super::validate_ref_name(base).is_ok() {
            if let Some(id) = self.read_ref(base)? {
                return Ok(id);
            }
        }
        if base.len() >= 4 && is_lower_hex(base) {
            let found = self.objects_with_prefix(ObjectType::Commit, base)?;
            match found.len() {
                0 => {}
                1 => return Ok(found[0]),
                _ => {
                    return Err(Error::Ambiguous {
                        prefix: base.to_owned(),
                        candidates: found.iter().map(|i| i.to_hex()).collect(),
                    })
                }
            }
        }
        Err(Error::UnknownRev {
            rev: rev.to_owned(),
        })
    }
}
