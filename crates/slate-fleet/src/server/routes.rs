//! The API's routes. Every answer is JSON; every refusal a 4xx with
//! `{"error": "…"}` naming what was refused, and nothing changed.
//!
//! | route | who | body |
//! |---|---|---|
//! | `GET /api/v1/health` | anyone | – |
//! | `POST /api/v1/enroll` | a new machine's key, with its group's token | `Enroll` |
//! | `POST /api/v1/report` | an enrolled machine | `Report` |
//! | `GET /api/v1/self` | an enrolled machine: its own record only | – |
//! | `GET /api/v1/machines?page=N` | a signed-in operator (the page's cookie) | – |
//! | `GET /api/v1/groups` | a signed-in operator | – |
//! | `GET /api/v1/state`, `GET /api/v1/state/files` | an enrolled machine: its own state | – |
//! | `POST /api/v1/state` | an enrolled machine | `state::wire::Upload` |
//! | `GET /api/v1/machines/ID/state` | a signed-in operator | – |
//! | `POST /api/v1/machines/ID/state/forget`, `…/replace` | a signed-in operator, `X-Slate-CSRF` | JSON |

use std::io::Read;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tiny_http::{Header, Request, Response};

use crate::auth::{self, AuthError};
use crate::db::Db;
use crate::records::{self, Caller, Error};
use crate::state::Service;
use crate::wire::{ErrorBody, MAX_BODY};

pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) message: String,
}

pub(crate) fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Refusal {
        refuse(401, e.to_string())
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        let status = match &e {
            Error::BadToken { .. } | Error::UnknownKey { .. } => 403,
            Error::Replay { .. } => 409,
            Error::OtherGroup { .. } => 409,
            Error::Invalid { .. } | Error::BadValue { .. } | Error::BadGroupName(_) => 400,
            Error::NoGroup(_) | Error::NoMachine(_) => 404,
            Error::GroupExists(_) => 409,
            Error::TooMuch { .. } => 413,
            Error::Replaced { .. } | Error::Refused(_) => 409,
            Error::NoState => 503,
            Error::Db(_) | Error::Key(_) | Error::Seal(_) => 500,
        };
        if status == 500 {
            eprintln!("fleet: {e}");
            return refuse(500, "the server's database failed; see its log");
        }
        refuse(status, e.to_string())
    }
}

fn json_response<T: Serialize>(status: u16, value: &T) -> Response<std::io::Cursor<Vec<u8>>> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    Response::from_data(body)
        .with_status_code(status)
        .with_header(
            Header::from_bytes("Content-Type", "application/json").expect("a valid header"),
        )
}

/// The body, no more than [`MAX_BODY`] bytes.
pub(crate) fn body(req: &mut Request) -> Result<Vec<u8>, Refusal> {
    body_within(req, MAX_BODY)
}

/// The body, no more than `max` bytes, and all the bytes its length says
/// (a body cut short is refused).
pub(crate) fn body_within(req: &mut Request, max: usize) -> Result<Vec<u8>, Refusal> {
    let declared = req.body_length();
    if declared.is_some_and(|n| n > max) {
        return Err(refuse(413, format!("body larger than {max} bytes")));
    }
    let mut buf = Vec::new();
    req.as_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| refuse(400, format!("reading the body: {e}")))?;
    if buf.len() > max {
        return Err(refuse(413, format!("body larger than {max} bytes")));
    }
    if declared.is_some_and(|n| n != buf.len()) {
        return Err(refuse(400, "the body is shorter than its Content-Length"));
    }
    Ok(buf)
}

pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| refuse(400, format!("body: {e}")))
}

pub(crate) fn header(req: &Request, name: &'static str) -> Option<String> {
    let mut found = req
        .headers()
        .iter()
        .filter(|h| h.field.equiv(name))
        .map(|h| h.value.as_str().to_string());
    let first = found.next();
    // A header given twice is ambiguous: treated as missing.
    if found.next().is_some() {
        return None;
    }
    first
}

pub fn answer(db: &Db, state: Option<&Service>, mut req: Request, secure: bool) {
    if !req.url().starts_with("/api/") {
        return crate::page::answer(db, req, secure);
    }
    let out =
        if req.url().starts_with("/api/v1/state") || req.url().starts_with("/api/v1/machines/") {
            super::state_routes::route(db, state, &mut req)
        } else {
            route(db, &mut req)
        };
    let resp = match out {
        Ok((status, body)) => Response::from_data(body)
            .with_status_code(status)
            .with_header(
                Header::from_bytes("Content-Type", "application/json").expect("a valid header"),
            ),
        Err(r) => json_response(r.status, &ErrorBody { error: r.message }),
    };
    let _ = req.respond(resp);
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<(u16, Vec<u8>), Refusal> {
    serde_json::to_vec(v)
        .map(|b| (200, b))
        .map_err(|e| refuse(500, e.to_string()))
}

fn route(db: &Db, req: &mut Request) -> Result<(u16, Vec<u8>), Refusal> {
    let method = req.method().as_str().to_string();
    let path = req.url().to_string();
    if path.len() > 1024 {
        return Err(refuse(414, "path longer than 1024 bytes"));
    }
    let now = crate::now();
    match (method.as_str(), path.as_str()) {
        ("GET", "/api/v1/health") => to_json(&serde_json::json!({
            "ok": true,
            "database": db.kind(),
        })),
        ("POST", "/api/v1/enroll") | ("POST", "/api/v1/report") | ("GET", "/api/v1/self") => {
            let body = body(req)?;
            let v = auth::verify(|h| header(req, h), &method, &path, &body, now)?;
            let who = Caller {
                public: &v.public,
                key_id: &v.key_id,
                nonce: &v.nonce,
            };
            match path.as_str() {
                "/api/v1/enroll" => to_json(&records::enroll(db, &who, &parse(&body)?, now)?),
                "/api/v1/report" => to_json(&records::report(db, &who, &parse(&body)?, now)?),
                _ => {
                    if !body.is_empty() {
                        return Err(refuse(400, "GET with a body"));
                    }
                    to_json(&records::own(db, &who, now)?)
                }
            }
        }
        ("GET", p) if p == "/api/v1/groups" || p.split('?').next() == Some("/api/v1/machines") => {
            let cookie = crate::page::cookie_of(req);
            let session = match &cookie {
                Some(c) => crate::operators::session(db, c, now)?,
                None => None,
            };
            if session.is_none() {
                return Err(refuse(
                    401,
                    "sign in first (POST /login; the session cookie)",
                ));
            }
            if p == "/api/v1/groups" {
                let mut out = Vec::new();
                for g in records::groups(db)? {
                    let r = crate::rollout::status(db, &g.name, now)?;
                    out.push(serde_json::json!({ "group": g, "rollout": r }));
                }
                return to_json(&out);
            }
            let page: u64 = p
                .split_once('?')
                .map(|(_, q)| q)
                .and_then(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "page")
                        .and_then(|(_, v)| v.parse().ok())
                })
                .unwrap_or(0u64)
                .min(1_000_000);
            let per = crate::page::PER_PAGE;
            let (machines, total) = records::machines(db, page * per, per)?;
            to_json(&serde_json::json!({
                "total": total,
                "page": page,
                "per_page": per,
                "machines": machines,
            }))
        }
        (_, p) => Err(refuse(404, format!("no route {method} {p}"))),
    }
}
