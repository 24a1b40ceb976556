//! The operator's page: sign-in, the machines (paginated), each group's
//! rollout with its waves and buttons, a machine's history. Every form
//! that changes something carries the session's CSRF token, checked; the
//! session cookie is `HttpOnly`, `SameSite=Strict`, and `Secure` under TLS.

mod html;
mod state;

pub use html::esc;

use subtle::ConstantTimeEq;
use tiny_http::{Header, Request, Response};

use crate::db::Db;
use crate::operators::{self, Session};
use crate::rollout::{self, Action};
use crate::{records, server::routes};

const COOKIE: &str = "slate_session";
/// Machines on a page.
pub const PER_PAGE: u64 = 100;

struct Page {
    status: u16,
    body: String,
    location: Option<String>,
    cookie: Option<String>,
}

fn html(status: u16, body: String) -> Page {
    Page {
        status,
        body,
        location: None,
        cookie: None,
    }
}

fn redirect(to: &str) -> Page {
    Page {
        status: 303,
        body: String::new(),
        location: Some(to.to_string()),
        cookie: None,
    }
}

fn error(status: u16, message: &str) -> Page {
    html(
        status,
        html::layout(
            "Refused",
            None,
            &format!("<p class=\"bad\">{}</p>", esc(message)),
        ),
    )
}

pub(crate) fn cookie_of(req: &Request) -> Option<String> {
    let header = routes::header(req, "Cookie")?;
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == COOKIE).then(|| v.to_string())
    })
}

fn form(req: &mut Request) -> Result<Vec<(String, String)>, Page> {
    let body = routes::body(req).map_err(|r| error(r.status, &r.message))?;
    Ok(url::form_urlencoded::parse(&body).into_owned().collect())
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn csrf_ok(f: &[(String, String)], s: &Session) -> bool {
    field(f, "csrf").is_some_and(|t| bool::from(t.as_bytes().ct_eq(s.csrf.as_bytes())))
}

pub fn answer(db: &Db, mut req: Request, secure: bool) {
    let page = route(db, &mut req, secure).unwrap_or_else(|e| e);
    let h = |k: &str, v: &str| Header::from_bytes(k, v).expect("a valid header");
    let mut resp = Response::from_string(page.body)
        .with_status_code(page.status)
        .with_header(h("Content-Type", "text/html; charset=utf-8"))
        .with_header(h(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ))
        .with_header(h("X-Content-Type-Options", "nosniff"))
        .with_header(h("Referrer-Policy", "same-origin"))
        .with_header(h("Cache-Control", "no-store"));
    if let Some(l) = &page.location {
        resp = resp.with_header(h("Location", l));
    }
    if let Some(c) = &page.cookie {
        let secure = if secure { "; Secure" } else { "" };
        resp = resp.with_header(h(
            "Set-Cookie",
            &format!("{COOKIE}={c}; Path=/; HttpOnly; SameSite=Strict{secure}"),
        ));
    }
    let _ = req.respond(resp);
}

fn db_error(e: records::Error) -> Page {
    eprintln!("fleet page: {e}");
    match e {
        records::Error::Db(_) => error(500, "the server's database failed; see its log"),
        other => error(400, &other.to_string()),
    }
}

fn route(db: &Db, req: &mut Request, _secure: bool) -> Result<Page, Page> {
    let method = req.method().as_str().to_string();
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let now = crate::now();
    if (method.as_str(), path) == ("GET", "/login") {
        return Ok(html(200, html::login(None)));
    }
    if (method.as_str(), path) == ("POST", "/login") {
        let f = form(req)?;
        let (name, password) = (
            field(&f, "name").unwrap_or(""),
            field(&f, "password").unwrap_or(""),
        );
        return match operators::login(db, name, password, now).map_err(db_error)? {
            Some((cookie, _)) => Ok(Page {
                cookie: Some(cookie),
                ..redirect("/")
            }),
            None => Ok(html(403, html::login(Some("Wrong name or password.")))),
        };
    }
    let cookie = cookie_of(req);
    let session = match &cookie {
        Some(c) => operators::session(db, c, now).map_err(db_error)?,
        None => None,
    };
    let Some(session) = session else {
        return Ok(if method == "GET" {
            redirect("/login")
        } else {
            error(403, "Sign in first.")
        });
    };
    match (method.as_str(), path) {
        ("GET", "/") => {
            let page: u64 = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "page")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0)
                .min(1_000_000);
            let (machines, total) =
                records::machines(db, page * PER_PAGE, PER_PAGE).map_err(db_error)?;
            let mut groups = Vec::new();
            for g in records::groups(db).map_err(db_error)? {
                let r = rollout::status(db, &g.name, now).map_err(db_error)?;
                groups.push((g, r));
            }
            Ok(html(
                200,
                html::machines(&html::MachinesPage {
                    machines: &machines,
                    total,
                    page,
                    per_page: PER_PAGE,
                    groups: &groups,
                    session: &session,
                }),
            ))
        }
        ("GET", p) if p.starts_with("/machine/") => {
            let id = &p["/machine/".len()..];
            let m = match records::machine(db, id) {
                Ok(m) => m,
                Err(records::Error::NoMachine(_)) => return Err(error(404, "No such machine.")),
                Err(e) => return Err(db_error(e)),
            };
            let history = records::history(db, &m.machine, 50).map_err(db_error)?;
            let kept = crate::state::operator::list(db, &m.machine).map_err(db_error)?;
            Ok(html(200, html::machine(&m, &history, &kept, &session)))
        }
        ("POST", "/logout") => {
            let f = form(req)?;
            if !csrf_ok(&f, &session) {
                return Err(error(403, "The form's token is missing or wrong."));
            }
            if let Some(c) = &cookie {
                operators::logout(db, c).map_err(db_error)?;
            }
            Ok(Page {
                cookie: Some(String::new()),
                ..redirect("/login")
            })
        }
        ("POST", p) if p.starts_with("/machine/") && p.ends_with("/replace") => {
            let f = form(req)?;
            if !csrf_ok(&f, &session) {
                return Err(error(403, "The form's token is missing or wrong."));
            }
            let old = &p["/machine/".len()..p.len() - "/replace".len()];
            let by = format!("operator {}", session.operator);
            let done = match (field(&f, "new"), field(&f, "hardware")) {
                (Some(n), _) if !n.is_empty() => {
                    crate::state::operator::replace(db, old, n.trim(), &by, now).map(drop)
                }
                (_, Some(h)) if !h.is_empty() => {
                    crate::state::operator::replace_by_hardware(db, old, h.trim(), &by, now)
                }
                _ => return Err(error(400, "Give a machine id or a hardware id.")),
            };
            match done {
                Ok(()) => Ok(redirect(&format!("/machine/{}", html::esc(old)))),
                Err(
                    e @ (records::Error::Refused(_)
                    | records::Error::NoMachine(_)
                    | records::Error::BadValue { .. }),
                ) => Err(error(409, &e.to_string())),
                Err(e) => Err(db_error(e)),
            }
        }
        ("POST", p) if p.starts_with("/rollout/") => {
            let f = form(req)?;
            if !csrf_ok(&f, &session) {
                return Err(error(403, "The form's token is missing or wrong."));
            }
            let rest = &p["/rollout/".len()..];
            let Some((group, action)) = rest.split_once('/') else {
                return Err(error(404, "No such page."));
            };
            let action = match action {
                "pause" => Action::Pause,
                "resume" => Action::Resume(None),
                "abort" => Action::Abort,
                _ => return Err(error(404, "No such action.")),
            };
            rollout::act(db, group, action, now).map_err(db_error)?;
            Ok(redirect("/"))
        }
        _ => Err(error(404, "No such page.")),
    }
}
