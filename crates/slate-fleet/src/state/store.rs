//! A machine's own state, over the signed API: what its group keeps and
//! what the server holds (`index`), every file's content (`files`), and
//! an upload (`upload`): all or nothing, within the limits, only paths
//! the group keeps, sealed before it is stored. A machine reaches only
//! its own rows; a replaced machine reaches none.

use base64::Engine;

use super::keys::KeyRing;
use super::seal::{self, Bound, Sealed};
use super::wire::{File, Files, Index, Limits, Meta, Stored, Upload};
use crate::db::{Db, Row, Tx, Value};
use crate::records::{machine_of, use_nonce, Caller, Error, Result};

/// What a server that keeps state holds: its keys and limits.
#[derive(Debug)]
pub struct Service {
    pub keys: KeyRing,
    pub limits: Limits,
}

pub(crate) const META_COLUMNS: &str = "path, size, mode, uid, gid, changed, version";

pub(crate) fn meta_of(r: &Row) -> Result<Meta> {
    let n = |i: usize| -> Result<u32> {
        u32::try_from(r.int(i)?).map_err(|_| Error::BadValue {
            what: format!("state row {}", r.text(0).unwrap_or_default()),
            why: format!("column {i} out of range"),
        })
    };
    Ok(Meta {
        path: r.text(0)?,
        size: r.int(1)?.max(0) as u64,
        mode: n(2)?,
        uid: n(3)?,
        gid: n(4)?,
        changed: r.int(5)?,
        version: r.text(6)?,
    })
}

/// A new version: 16 random hex digits.
pub(crate) fn version() -> Result<String> {
    crate::random_hex(8).map_err(|e| Error::BadValue {
        what: "a state version".into(),
        why: format!("no random numbers: {e}"),
    })
}

/// The group's patterns of a machine (by row id).
pub(crate) fn keep_of(tx: &mut dyn Tx, machine: i64) -> Result<Vec<String>> {
    let text = tx
        .query_one(
            "SELECT g.state_keep FROM machines m JOIN groups g ON g.id = m.group_id
             WHERE m.id = $1",
            &[machine.into()],
        )?
        .map(|r| r.text(0))
        .transpose()?
        .unwrap_or_default();
    super::path::parse_list(&text).map_err(|invalid| Error::Invalid {
        what: "the group's kept paths",
        invalid,
    })
}

/// The caller's machine, refused when it was replaced.
fn own_machine(tx: &mut dyn Tx, who: &Caller, now: i64) -> Result<i64> {
    let id = machine_of(tx, who)?;
    use_nonce(tx, who.key_id, who.nonce, now)?;
    let by = tx
        .query_one(
            "SELECT n.key_id FROM machines m JOIN machines n ON n.id = m.replaced_by
             WHERE m.id = $1",
            &[id.into()],
        )?
        .map(|r| r.text(0))
        .transpose()?;
    if let Some(by) = by {
        return Err(Error::Replaced {
            machine: who.key_id.to_string(),
            by,
        });
    }
    Ok(id)
}

pub(crate) fn metas(tx: &mut dyn Tx, machine: i64) -> Result<Vec<Meta>> {
    tx.query(
        &format!("SELECT {META_COLUMNS} FROM state_files WHERE machine = $1 ORDER BY path"),
        &[machine.into()],
    )?
    .iter()
    .map(meta_of)
    .collect()
}

/// `GET /api/v1/state`.
pub fn index(db: &Db, svc: &Service, who: &Caller, now: i64) -> Result<Index> {
    db.tx(|tx| {
        let m = own_machine(tx, who, now)?;
        Ok(Index {
            machine: who.key_id.to_string(),
            keep: keep_of(tx, m)?,
            limits: svc.limits,
            files: metas(tx, m)?,
        })
    })
}

/// A stored row's sealed part and what it is bound to.
pub(crate) struct SealedRow {
    pub meta: Meta,
    pub sealed_for: String,
    pub sealed: Sealed,
}

impl SealedRow {
    pub(crate) fn bound(&self) -> Bound<'_> {
        Bound {
            machine: &self.sealed_for,
            path: &self.meta.path,
            mode: self.meta.mode,
            uid: self.meta.uid,
            gid: self.meta.gid,
        }
    }
}

pub(crate) fn sealed_rows(
    tx: &mut dyn Tx,
    filter: &str,
    limit: Option<u64>,
    params: &[Value],
) -> Result<Vec<SealedRow>> {
    let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    tx.query(
        &format!(
            "SELECT {META_COLUMNS}, sealed_for, key_id, nonce, sealed, machine FROM state_files
             WHERE {filter} ORDER BY machine, path{limit}"
        ),
        params,
    )?
    .iter()
    .map(|r| {
        Ok(SealedRow {
            meta: meta_of(r)?,
            sealed_for: r.text(7)?,
            sealed: Sealed {
                key_id: r.text(8)?,
                nonce: r.bytes(9)?,
                data: r.bytes(10)?,
            },
        })
    })
    .collect()
}

/// `GET /api/v1/state/files`: every file opened.
pub fn files(db: &Db, svc: &Service, who: &Caller, now: i64) -> Result<Files> {
    let rows = db.tx(|tx| {
        let m = own_machine(tx, who, now)?;
        sealed_rows(tx, "machine = $1", None, &[m.into()])
    })?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut files = Vec::with_capacity(rows.len());
    for r in &rows {
        let key = svc.keys.get(&r.sealed.key_id)?;
        let plain = seal::open(&key, &r.bound(), &r.sealed)?;
        files.push(File {
            path: r.meta.path.clone(),
            mode: r.meta.mode,
            uid: r.meta.uid,
            gid: r.meta.gid,
            content: b64.encode(plain),
            version: Some(r.meta.version.clone()),
        });
    }
    Ok(Files { files })
}

/// `POST /api/v1/state`: the files stored (replacing those of the same
/// paths), all in one transaction, or none.
pub fn upload(db: &Db, svc: &Service, who: &Caller, up: &Upload, now: i64) -> Result<Stored> {
    let limits = &svc.limits;
    let too_much = |why: String| Error::TooMuch {
        machine: who.key_id.to_string(),
        why,
    };
    if up.files.len() as u64 > limits.files {
        return Err(too_much(format!(
            "{} files, more than {}",
            up.files.len(),
            limits.files
        )));
    }
    let key = svc.keys.current()?;
    let mut sealed = Vec::with_capacity(up.files.len());
    for (i, f) in up.files.iter().enumerate() {
        let plain = f.check(i, limits).map_err(|invalid| Error::Invalid {
            what: "state upload",
            invalid,
        })?;
        if up.files[..i].iter().any(|g| g.path == f.path) {
            return Err(Error::BadValue {
                what: format!("files[{i}].path {:?}", f.path),
                why: "given twice".into(),
            });
        }
        let b = Bound {
            machine: who.key_id,
            path: &f.path,
            mode: f.mode,
            uid: f.uid,
            gid: f.gid,
        };
        sealed.push((f, plain.len() as u64, seal::seal(&key, &b, &plain)?));
    }
    db.tx(|tx| {
        let m = own_machine(tx, who, now)?;
        let keep = keep_of(tx, m)?;
        for (f, _, _) in &sealed {
            if !keep.iter().any(|p| super::path::matches(p, &f.path)) {
                return Err(Error::BadValue {
                    what: format!("state path {}", f.path),
                    why: "not one the group keeps".into(),
                });
            }
        }
        let old = metas(tx, m)?;
        let mut total: u64 = sealed.iter().map(|s| s.1).sum();
        let mut count = sealed.len() as u64;
        for o in &old {
            if !sealed.iter().any(|s| s.0.path == o.path) {
                total += o.size;
                count += 1;
            }
        }
        if count > limits.files {
            return Err(too_much(format!(
                "{count} files kept, more than {}",
                limits.files
            )));
        }
        if total > limits.total_bytes {
            return Err(too_much(format!(
                "{total} bytes kept, more than {}",
                limits.total_bytes
            )));
        }
        for (f, size, s) in &sealed {
            tx.exec(
                "INSERT INTO state_files (machine, path, size, mode, uid, gid, changed, version,
                    sealed_for, key_id, nonce, sealed)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (machine, path) DO UPDATE SET size = excluded.size,
                    mode = excluded.mode, uid = excluded.uid, gid = excluded.gid,
                    changed = excluded.changed, version = excluded.version,
                    sealed_for = excluded.sealed_for, key_id = excluded.key_id,
                    nonce = excluded.nonce, sealed = excluded.sealed",
                &[
                    m.into(),
                    f.path.as_str().into(),
                    (*size as i64).into(),
                    i64::from(f.mode).into(),
                    i64::from(f.uid).into(),
                    i64::from(f.gid).into(),
                    now.into(),
                    version()?.into(),
                    who.key_id.into(),
                    s.key_id.as_str().into(),
                    s.nonce.clone().into(),
                    s.data.clone().into(),
                ],
            )?;
        }
        let all = metas(tx, m)?;
        Ok(Stored {
            files: all
                .into_iter()
                .filter(|x| sealed.iter().any(|s| s.0.path == x.path))
                .collect(),
        })
    })
}
