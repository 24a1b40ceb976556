//! `slate serve`: a small read-only HTTP/1.1 server for a repository's
//! folder (keep-alive, `Range` requests, `HEAD`). Paths resolve inside the
//! folder: `..` and symlinks never leave it; only regular files are
//! served; nothing below `tmp/`, `remotes/`, `lock` or `corrupt/`.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use slate_core::fsutil::Root;
use tiny_http::{Header, Method, Response, Server, StatusCode};

use crate::Error;

/// Counts of what was served.
#[derive(Debug, Default)]
pub struct Served {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
}

pub struct ServeHandle {
    pub addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    server: Arc<Server>,
    pub served: Arc<Served>,
}

impl ServeHandle {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
    }
}

/// What is never served: the writer's temporary files and lock, the
/// repository's configuration, the remotes' configuration and caches,
/// objects set aside.
fn private(path: &str) -> bool {
    let first = path.split('/').next().unwrap_or("");
    matches!(first, "tmp" | "remotes" | "lock" | "corrupt" | "config")
}

/// `bytes=A-B`, `bytes=A-`, `bytes=-N` of a file of `len` bytes.
fn parse_range(v: &str, len: u64) -> Option<(u64, u64)> {
    let r = v.strip_prefix("bytes=")?;
    if r.contains(',') {
        return None; // one range only; the whole file is sent instead
    }
    let (a, b) = r.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        (len.saturating_sub(n), len)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            len
        } else {
            b.parse::<u64>().ok()?.saturating_add(1).min(len)
        };
        (start, end)
    };
    (start < end || (start == 0 && len == 0)).then_some((start, end))
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("ASCII header")
}

/// Serve `repo` on `bind` in threads; returns at once.
pub fn start(repo: &Path, bind: &str, threads: usize) -> Result<ServeHandle, Error> {
    let root = Arc::new(Root::new(repo).map_err(|e| Error::io(repo, e))?);
    let server = Arc::new(
        Server::http(bind).map_err(|e| Error::Config(format!("cannot listen on {bind}: {e}")))?,
    );
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| Error::Config(format!("{bind}: not an IP address")))?;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(Served::default());
    for _ in 0..threads.max(1) {
        let (server, root, stop, served) =
            (server.clone(), root.clone(), stop.clone(), served.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok(req) = server.recv() else { break };
                served.requests.fetch_add(1, Ordering::Relaxed);
                let _ = handle(&root, req, &served);
            }
        });
    }
    Ok(ServeHandle {
        addr,
        stop,
        server,
        served,
    })
}

fn handle(root: &Root, req: tiny_http::Request, served: &Served) -> std::io::Result<()> {
    let head = *req.method() == Method::Head;
    if !(head || *req.method() == Method::Get) {
        return req
            .respond(Response::empty(StatusCode(405)).with_header(header("Allow", "GET, HEAD")));
    }
    let url = req.url().split(['?', '#']).next().unwrap_or("").to_string();
    let path = percent_decode(&url);
    let clean = path.trim_start_matches('/');
    let bad = clean.split('/').any(|c| c == ".." || c == ".") || clean.contains('\0');
    if bad || clean.is_empty() || private(clean) {
        return req.respond(Response::empty(StatusCode(404)));
    }
    let file = match root.open(clean, rustix::fs::OFlags::RDONLY, 0) {
        Ok(fd) => std::fs::File::from(fd),
        Err(_) => return req.respond(Response::empty(StatusCode(404))),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return req.respond(Response::empty(StatusCode(404)));
    }
    let len = meta.len();
    let range = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Range"))
        .map(|h| h.value.as_str().to_string());
    let (status, start, end) = match range {
        Some(r) => match parse_range(&r, len) {
            Some((s, e)) => (206, s, e),
            None if r.contains(',') => (200, 0, len),
            None => {
                return req.respond(
                    Response::empty(StatusCode(416))
                        .with_header(header("Content-Range", &format!("bytes */{len}"))),
                )
            }
        },
        None => (200, 0, len),
    };
    let mut file = file;
    file.seek(SeekFrom::Start(start))?;
    let body: Box<dyn Read + Send> = if head {
        Box::new(std::io::empty())
    } else {
        Box::new(file.take(end - start))
    };
    if !head {
        served.bytes.fetch_add(end - start, Ordering::Relaxed);
    }
    let mut resp = Response::new(
        StatusCode(status),
        Vec::new(),
        body,
        Some((end - start) as usize),
        None,
    )
    .with_header(header("Accept-Ranges", "bytes"))
    .with_header(header("Content-Type", "application/octet-stream"));
    if status == 206 {
        resp = resp.with_header(header(
            "Content-Range",
            &format!("bytes {start}-{}/{len}", end.saturating_sub(1)),
        ));
    }
    req.respond(resp)
}

/// `%XX` escapes of a request path decoded (bytes that are not UTF-8 make
/// the path unservable).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| "\0".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 100)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(percent_decode("/a%2Fb"), "/a/b");
        assert_eq!(percent_decode("/a%2"), "/a%2");
        assert!(private("tmp/x") && private("remotes/a/config.toml") && !private("objects/aa/b"));
    }
}
