//! The fleet's database: SQLite (one file, the default) or PostgreSQL,
//! reached through one small interface so every query is the same code.
//!
//! SQL is written once, in the dialect both accept: parameters `$1`, `$2`…
//! (rewritten to SQLite's `?1`, `?2`…), integers `BIGINT`, `RETURNING`,
//! `ON CONFLICT`. Only three column types are used: `BIGINT`, `TEXT` and
//! bytes (`{BLOB}` in a migration: `BLOB` or `BYTEA`). Every use is a
//! transaction ([`Db::tx`]): committed whole when the closure returns
//! `Ok`, rolled back otherwise.

mod migrate;
mod pg;
mod sqlite;

use std::path::PathBuf;

pub use migrate::MIGRATIONS;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("SQLite database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("PostgreSQL database {target}: {source}")]
    Postgres {
        target: String,
        source: postgres::Error,
    },
    #[error("{db}: column {column} of `{sql}` is {found}, not {wanted}")]
    Type {
        db: String,
        sql: String,
        column: usize,
        found: String,
        wanted: &'static str,
    },
    #[error("{db}: the schema is at version {found}, newer than this Slate knows ({known}); use a newer Slate")]
    TooNew { db: String, found: i64, known: i64 },
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// A value bound to a parameter or read from a column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Bytes(v.to_vec())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// One row of a result.
#[derive(Clone, Debug)]
pub struct Row {
    values: Vec<Value>,
    /// For messages: the database and the query.
    origin: std::sync::Arc<(String, String)>,
}

impl Row {
    fn wrong(&self, column: usize, wanted: &'static str) -> DbError {
        DbError::Type {
            db: self.origin.0.clone(),
            sql: self.origin.1.clone(),
            column,
            found: format!("{:?}", self.values.get(column)),
            wanted,
        }
    }

    pub fn int(&self, i: usize) -> Result<i64> {
        match self.values.get(i) {
            Some(Value::Int(v)) => Ok(*v),
            _ => Err(self.wrong(i, "an integer")),
        }
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.values.get(i) {
            Some(Value::Null) => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    pub fn text(&self, i: usize) -> Result<String> {
        match self.values.get(i) {
            Some(Value::Text(v)) => Ok(v.clone()),
            _ => Err(self.wrong(i, "text")),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.values.get(i) {
            Some(Value::Null) => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    pub fn bytes(&self, i: usize) -> Result<Vec<u8>> {
        match self.values.get(i) {
            Some(Value::Bytes(v)) => Ok(v.clone()),
            _ => Err(self.wrong(i, "bytes")),
        }
    }
}

/// What a transaction can do: run a statement, run a query.
pub trait Tx {
    /// Rows changed.
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;

    fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

/// Which database, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl Target {
    pub fn parse(text: &str) -> Target {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Target::Postgres(text.to_string())
        } else {
            Target::Sqlite(PathBuf::from(text))
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Sqlite(p) => write!(f, "{}", p.display()),
            Target::Postgres(url) => write!(f, "{}", pg::redact(url)),
        }
    }
}

enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(pg::Pool),
}

/// An open database, its schema brought up to date.
pub struct Db {
    backend: Backend,
    target: Target,
}

impl Db {
    /// Open (SQLite: create) the database and run the migrations it lacks,
    /// each in one transaction.
    pub fn open(target: &Target) -> Result<Db> {
        let backend = match target {
            Target::Sqlite(path) => Backend::Sqlite(sqlite::Sqlite::open(path)?),
            Target::Postgres(url) => Backend::Postgres(pg::Pool::connect(url, 16)?),
        };
        let db = Db {
            backend,
            target: target.clone(),
        };
        migrate::run(&db)?;
        Ok(db)
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// `sqlite` or `postgresql`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgresql",
        }
    }

    /// Run `f` in one transaction: committed if it returns `Ok`, rolled
    /// back otherwise (its error returned).
    pub fn tx<T, E>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<DbError>,
    {
        match &self.backend {
            Backend::Sqlite(s) => s.tx(f),
            Backend::Postgres(p) => p.tx(f),
        }
    }

    /// A migration's SQL in this database's dialect.
    fn dialect(&self, sql: &str) -> String {
        let (id, blob) = match self.backend {
            Backend::Sqlite(_) => ("INTEGER PRIMARY KEY", "BLOB"),
            Backend::Postgres(_) => ("BIGSERIAL PRIMARY KEY", "BYTEA"),
        };
        sql.replace("{ID}", id).replace("{BLOB}", blob)
    }
}
