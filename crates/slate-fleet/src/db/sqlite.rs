//! SQLite: one connection (SQLite writes one transaction at a time), in
//! WAL mode, so a process killed at any moment leaves the last committed
//! transaction and nothing of the one under way.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use super::{DbError, Result, Row, Tx, Value};

pub struct Sqlite {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

/// `$1` → `?1`: SQLite numbers `?NNN` parameters as written.
fn dialect(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Sqlite> {
        let err = |source| DbError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        // WAL: readers do not wait for the writer, and a commit is one
        // append. synchronous=NORMAL in WAL mode keeps every commit whole
        // after a crash of the process (a power loss may lose the last
        // ones, never half of one).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        Ok(Sqlite {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    pub fn tx<T, E>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<DbError>,
    {
        let err = |source| DbError::Sqlite {
            path: self.path.clone(),
            source,
        };
        // A panic in another request's transaction rolled it back (the
        // transaction's drop): the connection is usable.
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let txn = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let mut t = SqliteTx {
            txn: &txn,
            path: &self.path,
        };
        let out = f(&mut t)?;
        txn.commit().map_err(err)?;
        Ok(out)
    }
}

struct SqliteTx<'a> {
    txn: &'a rusqlite::Transaction<'a>,
    path: &'a Path,
}

impl SqliteTx<'_> {
    fn err(&self, source: rusqlite::Error) -> DbError {
        DbError::Sqlite {
            path: self.path.to_path_buf(),
            source,
        }
    }
}

impl Tx for SqliteTx<'_> {
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut stmt = self
            .txn
            .prepare_cached(&dialect(sql))
            .map_err(|e| self.err(e))?;
        let n = stmt
            .execute(rusqlite::params_from_iter(params.iter()))
            .map_err(|e| self.err(e))?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut stmt = self
            .txn
            .prepare_cached(&dialect(sql))
            .map_err(|e| self.err(e))?;
        let n = stmt.column_count();
        let origin = Arc::new((self.path.display().to_string(), sql.to_string()));
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                let v = r.get_ref(i).map_err(|e| self.err(e))?;
                values.push(match v {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(x) => Value::Int(x),
                    ValueRef::Real(x) => Value::Int(x as i64),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
                });
            }
            out.push(Row {
                values,
                origin: origin.clone(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parameters_are_numbered_for_sqlite() {
        assert_eq!(
            super::dialect("SELECT a FROM t WHERE b = $1 AND c = $12"),
            "SELECT a FROM t WHERE b = ?1 AND c = ?12"
        );
    }
}
