//! The routes of kept state: a machine's own (signed by its key), and
//! the operator's (the page's session cookie, and for a change the
//! session's CSRF token in `X-Slate-CSRF`).

use tiny_http::Request;

use super::routes::{body, body_within, header, parse, refuse, to_json, Refusal};
use crate::auth;
use crate::db::Db;
use crate::records::{Caller, Error};
use crate::state::{operator, store, Service};

const CSRF_HEADER: &str = "X-Slate-CSRF";

/// The body of an operator's request to change a machine's state.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Forget {
    path: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Replace {
    new: Option<String>,
    hardware: Option<String>,
}

pub(crate) fn route(
    db: &Db,
    state: Option<&Service>,
    req: &mut Request,
) -> Result<(u16, Vec<u8>), Refusal> {
    let method = req.method().as_str().to_string();
    let path = req.url().to_string();
    if path.len() > 1024 {
        return Err(refuse(414, "path longer than 1024 bytes"));
    }
    let now = crate::now();
    if let Some(rest) = path.strip_prefix("/api/v1/machines/") {
        return operator_route(db, req, &method, rest, now);
    }
    let svc = state.ok_or(Error::NoState)?;
    let body = match (method.as_str(), path.as_str()) {
        ("POST", "/api/v1/state") => body_within(req, svc.limits.max_body())?,
        ("GET", "/api/v1/state" | "/api/v1/state/files") => body(req)?,
        _ => return Err(refuse(404, format!("no route {method} {path}"))),
    };
    let v = auth::verify(|h| header(req, h), &method, &path, &body, now)?;
    let who = Caller {
        public: &v.public,
        key_id: &v.key_id,
        nonce: &v.nonce,
    };
    if method == "GET" && !body.is_empty() {
        return Err(refuse(400, "GET with a body"));
    }
    match path.as_str() {
        "/api/v1/state" if method == "POST" => {
            to_json(&store::upload(db, svc, &who, &parse(&body)?, now)?)
        }
        "/api/v1/state" => to_json(&store::index(db, svc, &who, now)?),
        _ => to_json(&store::files(db, svc, &who, now)?),
    }
}

fn operator_route(
    db: &Db,
    req: &mut Request,
    method: &str,
    rest: &str,
    now: i64,
) -> Result<(u16, Vec<u8>), Refusal> {
    let session = match crate::page::cookie_of(req) {
        Some(c) => crate::operators::session(db, &c, now)?,
        None => None,
    };
    let Some(session) = session else {
        return Err(refuse(
            401,
            "sign in first (POST /login; the session cookie)",
        ));
    };
    let Some((id, action)) = rest.split_once('/') else {
        return Err(refuse(
            404,
            format!("no route {method} /api/v1/machines/{rest}"),
        ));
    };
    let body = body(req)?;
    if method == "GET" && action == "state" {
        return to_json(&operator::list(db, id)?);
    }
    if method != "POST" {
        return Err(refuse(
            404,
            format!("no route {method} /api/v1/machines/{rest}"),
        ));
    }
    let csrf = header(req, CSRF_HEADER).unwrap_or_default();
    let same: bool = subtle::ConstantTimeEq::ct_eq(csrf.as_bytes(), session.csrf.as_bytes()).into();
    if !same {
        return Err(refuse(
            403,
            format!("header {CSRF_HEADER} missing or wrong"),
        ));
    }
    let by = format!("operator {}", session.operator);
    match action {
        "state/forget" => {
            let f: Forget = parse(&body)?;
            let n = operator::forget(db, id, f.path.as_deref(), &by, now)?;
            to_json(&serde_json::json!({ "forgotten": n }))
        }
        "replace" => {
            let r: Replace = parse(&body)?;
            match (r.new, r.hardware) {
                (Some(new), None) => {
                    let n = operator::replace(db, id, &new, &by, now)?;
                    to_json(&serde_json::json!({ "moved": n }))
                }
                (None, Some(h)) => {
                    operator::replace_by_hardware(db, id, &h, &by, now)?;
                    to_json(&serde_json::json!({ "approved": h }))
                }
                _ => Err(refuse(400, "give one of new or hardware")),
            }
        }
        _ => Err(refuse(
            404,
            format!("no route {method} /api/v1/machines/{rest}"),
        )),
    }
}
