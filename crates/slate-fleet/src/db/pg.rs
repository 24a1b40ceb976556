//! PostgreSQL through the synchronous `postgres` crate: a small pool of
//! connections, each request's transaction on one of them.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Arc, Condvar, Mutex};

use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};

use super::{DbError, Result, Row, Tx, Value};

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => v.to_sql(ty, out),
            Value::Text(v) => v.to_sql(ty, out),
            Value::Bytes(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
            || <String as ToSql>::accepts(ty)
            || <Vec<u8> as ToSql>::accepts(ty)
    }

    postgres::types::to_sql_checked!();
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// A connection and the statements prepared on it (by their SQL): each
/// query is parsed and planned once per connection, not once per use.
struct Conn {
    client: Client,
    prepared: HashMap<String, Statement>,
}

impl Conn {
    fn new(client: Client) -> Conn {
        Conn {
            client,
            prepared: HashMap::new(),
        }
    }
}

pub struct Pool {
    free: Mutex<Vec<Conn>>,
    ready: Condvar,
    url: String,
    shown: String,
}

impl Pool {
    /// One connection now (so a wrong URL fails at start), more as needed
    /// up to `size`.
    pub fn connect(url: &str, size: usize) -> Result<Pool> {
        let shown = redact(url);
        let first = Client::connect(url, NoTls).map_err(|source| DbError::Postgres {
            target: shown.clone(),
            source,
        })?;
        let mut free = vec![Conn::new(first)];
        for _ in 1..size {
            match Client::connect(url, NoTls) {
                Ok(c) => free.push(Conn::new(c)),
                Err(_) => break,
            }
        }
        Ok(Pool {
            free: Mutex::new(free),
            ready: Condvar::new(),
            url: url.to_string(),
            shown,
        })
    }

    fn err(&self, source: postgres::Error) -> DbError {
        DbError::Postgres {
            target: self.shown.clone(),
            source,
        }
    }

    fn take(&self) -> Result<Conn> {
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some(c) = free.pop() {
                if c.client.is_closed() {
                    // The server restarted, or the connection broke.
                    drop(free);
                    return Client::connect(&self.url, NoTls)
                        .map(Conn::new)
                        .map_err(|e| self.err(e));
                }
                return Ok(c);
            }
            free = self
                .ready
                .wait(free)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn give(&self, c: Conn) {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(c);
        self.ready.notify_one();
    }

    pub fn tx<T, E>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<DbError>,
    {
        let mut conn = self.take()?;
        let out = self.tx_on(&mut conn, f);
        // A connection whose transaction failed half-way was rolled back
        // by the drop; it is reused unless it closed.
        self.give(conn);
        out
    }

    fn tx_on<T, E>(
        &self,
        conn: &mut Conn,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DbError>,
    {
        let txn = conn.client.transaction().map_err(|e| self.err(e))?;
        let mut t = PgTx {
            txn,
            prepared: &mut conn.prepared,
            shown: &self.shown,
        };
        let out = f(&mut t)?;
        t.txn.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }
}

struct PgTx<'a> {
    txn: postgres::Transaction<'a>,
    prepared: &'a mut HashMap<String, Statement>,
    shown: &'a str,
}

impl PgTx<'_> {
    fn err(&self, source: postgres::Error) -> DbError {
        DbError::Postgres {
            target: self.shown.to_string(),
            source,
        }
    }

    /// The statement of `sql`, prepared on this connection once.
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.txn.prepare(sql).map_err(|e| self.err(e))?;
        self.prepared.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Tx for PgTx<'_> {
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        self.txn
            .execute(&stmt, &refs(params))
            .map_err(|e| self.err(e))
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let stmt = self.statement(sql)?;
        let rows = self
            .txn
            .query(&stmt, &refs(params))
            .map_err(|e| self.err(e))?;
        let origin = Arc::new((self.shown.to_string(), sql.to_string()));
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut values = Vec::with_capacity(r.len());
            for (i, col) in r.columns().iter().enumerate() {
                let ty = col.type_();
                let get = |e| self.err(e);
                let v = if *ty == Type::INT8 {
                    r.try_get::<_, Option<i64>>(i).map_err(get)?.map(Value::Int)
                } else if *ty == Type::INT4 {
                    r.try_get::<_, Option<i32>>(i)
                        .map_err(get)?
                        .map(|x| Value::Int(x.into()))
                } else if *ty == Type::BOOL {
                    r.try_get::<_, Option<bool>>(i)
                        .map_err(get)?
                        .map(|x| Value::Int(x.into()))
                } else if *ty == Type::BYTEA {
                    r.try_get::<_, Option<Vec<u8>>>(i)
                        .map_err(get)?
                        .map(Value::Bytes)
                } else {
                    r.try_get::<_, Option<String>>(i)
                        .map_err(get)?
                        .map(Value::Text)
                };
                values.push(v.unwrap_or(Value::Null));
            }
            out.push(Row {
                values,
                origin: origin.clone(),
            });
        }
        Ok(out)
    }
}
