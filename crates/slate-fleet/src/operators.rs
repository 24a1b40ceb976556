//! Operators of the page: a name and a password (Argon2id, in the PHC
//! string form), and their sessions (a random cookie, stored as its
//! SHA-256, with a CSRF token, for 12 hours).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};

use crate::db::Db;
use crate::records::{Error, Result};

/// How long a session lasts, in seconds.
pub const SESSION_SECS: i64 = 12 * 3600;

fn check_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadValue {
            what: format!("operator name {name:?}"),
            why: "1 to 64 of A-Z a-z 0-9 - _ . @".into(),
        })
    }
}

/// Add an operator, or set the password of one.
pub fn set(db: &Db, name: &str, password: &str, now: i64) -> Result<()> {
    check_name(name)?;
    if password.chars().count() < 12 || password.len() > 1024 {
        return Err(Error::BadValue {
            what: format!("the password of {name:?}"),
            why: "12 to 1024 characters".into(),
        });
    }
    let mut salt = [0u8; 16];
    rustix::rand::getrandom(&mut salt, rustix::rand::GetRandomFlags::empty()).map_err(|e| {
        Error::BadValue {
            what: "a salt".into(),
            why: e.to_string(),
        }
    })?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::BadValue {
        what: "a salt".into(),
        why: e.to_string(),
    })?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::BadValue {
            what: "hashing the password".into(),
            why: e.to_string(),
        })?
        .to_string();
    db.tx(|tx| {
        tx.exec(
            "INSERT INTO operators (name, password_hash, created) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash",
            &[name.into(), hash.into(), now.into()],
        )?;
        Ok(())
    })
}

/// A logged-in operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub operator: String,
    pub csrf: String,
}

fn digest(cookie: &str) -> Vec<u8> {
    Sha256::digest(cookie.as_bytes()).to_vec()
}

/// Check a name and password; a new session's cookie value and its
/// session. A wrong name is checked against a dummy hash, so both
/// refusals take as long.
pub fn login(db: &Db, name: &str, password: &str, now: i64) -> Result<Option<(String, Session)>> {
    let stored = db.tx(|tx| -> Result<Option<(i64, String)>> {
        tx.query_one(
            "SELECT id, password_hash FROM operators WHERE name = $1",
            &[name.into()],
        )?
        .map(|r| Ok((r.int(0)?, r.text(1)?)))
        .transpose()
    })?;
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        SaltString::encode_b64(b"slate-fleet-dummy")
            .ok()
            .and_then(|salt| {
                Argon2::default()
                    .hash_password(b"-", &salt)
                    .ok()
                    .map(|h| h.to_string())
            })
            .unwrap_or_default()
    });
    let phc = stored.as_ref().map_or(dummy.as_str(), |s| s.1.as_str());
    let good = PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false);
    let Some((operator, _)) = stored.filter(|_| good) else {
        return Ok(None);
    };
    let cookie = crate::random_hex(32).map_err(|e| Error::BadValue {
        what: "a session".into(),
        why: e.to_string(),
    })?;
    let csrf = crate::random_hex(32).map_err(|e| Error::BadValue {
        what: "a session".into(),
        why: e.to_string(),
    })?;
    db.tx(|tx| -> Result<()> {
        tx.exec("DELETE FROM sessions WHERE expires < $1", &[now.into()])?;
        tx.exec(
            "INSERT INTO sessions (id_hash, operator, csrf, expires) VALUES ($1, $2, $3, $4)",
            &[
                digest(&cookie).into(),
                operator.into(),
                csrf.as_str().into(),
                (now + SESSION_SECS).into(),
            ],
        )?;
        Ok(())
    })?;
    Ok(Some((
        cookie,
        Session {
            operator: name.to_string(),
            csrf,
        },
    )))
}

/// The session of a cookie value, if it is live.
pub fn session(db: &Db, cookie: &str, now: i64) -> Result<Option<Session>> {
    if cookie.len() != 64 || !cookie.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    db.tx(|tx| {
        tx.query_one(
            "SELECT o.name, s.csrf FROM sessions s JOIN operators o ON o.id = s.operator
             WHERE s.id_hash = $1 AND s.expires >= $2",
            &[digest(cookie).into(), now.into()],
        )?
        .map(|r| {
            Ok(Session {
                operator: r.text(0)?,
                csrf: r.text(1)?,
            })
        })
        .transpose()
    })
}

pub fn logout(db: &Db, cookie: &str) -> Result<()> {
    db.tx(|tx| {
        tx.exec(
            "DELETE FROM sessions WHERE id_hash = $1",
            &[digest(cookie).into()],
        )?;
        Ok(())
    })
}
