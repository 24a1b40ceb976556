//! `slate serve`: a small read-only HTTP/1.1 server for an archive
//! repository's folder (keep-alive, `Range` requests, `HEAD`). Only what a
//! pull asks for is served (`allow`); another folder only when asked
//! ([`Serving::AnyFolder`]). The file opened is checked, not the URL: it is
//! opened below a handle of the folder with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, so no `..` and no symlink (planted anywhere on
//! the path) leads out of the folder or to another file in it, and only a
//! regular file is served.

mod allow;
mod range;

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use rustix::fs::{OFlags, ResolveFlags};
use slate_core::store::{Repo, RepoMode};
use tiny_http::{Header, Method, Response, Server, StatusCode};

use crate::Error;
use range::Ranged;

/// Counts of what was served.
#[derive(Debug, Default)]
pub struct Served {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
}

/// What a folder is served as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serving {
    /// An archive repository: what a pull asks for, nothing else.
    Repository,
    /// Any folder: its files but hidden ones, `*.pem` and a repository's
    /// private parts.
    AnyFolder,
}

pub struct ServeHandle {
    pub addr: std::net::SocketAddr,
    pub serving: Serving,
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

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("ASCII header")
}

/// The folder as a directory handle, checked to be what it is served as.
fn open_folder(dir: &Path, serving: Serving) -> Result<OwnedFd, Error> {
    if serving == Serving::Repository {
        let repo = Repo::open(dir).map_err(|e| {
            Error::Config(format!(
                "{e}: not served (`slate serve --any-folder` serves the files of any folder)"
            ))
        })?;
        if repo.mode() != RepoMode::Archive {
            return Err(Error::Config(format!(
                "{}: a {} repository, not an archive one: not served (clients pull archive \
                 repositories: publish into one with `slate init --mode archive` and \
                 `slate pull-local`)",
                dir.display(),
                repo.mode()
            )));
        }
    }
    slate_core::fsutil::open_dir(dir).map_err(|e| Error::io(dir, e))
}

/// Serve the folder `dir` on `bind` in threads; returns at once.
pub fn start(
    dir: &Path,
    bind: &str,
    threads: usize,
    serving: Serving,
) -> Result<ServeHandle, Error> {
    let root = Arc::new(open_folder(dir, serving)?);
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
                let _ = handle(&root, serving, req, &served);
            }
        });
    }
    Ok(ServeHandle {
        addr,
        serving,
        stop,
        server,
        served,
    })
}

/// The file at `path` below `root` if it may be served: a regular file
/// reached without `..` and without a symlink. Opened non-blocking (a FIFO
/// does not hang the thread), then checked.
fn open_file(root: &OwnedFd, serving: Serving, path: &str) -> Option<std::fs::File> {
    let allowed = match serving {
        Serving::Repository => allow::in_repository(path),
        Serving::AnyFolder => allow::in_folder(path),
    };
    if !allowed || path.split('/').any(|c| c == ".." || c == ".") || path.contains('\0') {
        return None;
    }
    let fd = rustix::fs::openat2(
        root,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY,
        rustix::fs::Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    let file = std::fs::File::from(fd);
    file.metadata().ok()?.is_file().then_some(file)
}

fn handle(
    root: &OwnedFd,
    serving: Serving,
    req: tiny_http::Request,
    served: &Served,
) -> std::io::Result<()> {
    let head = *req.method() == Method::Head;
    if !(head || *req.method() == Method::Get) {
        return req
            .respond(Response::empty(StatusCode(405)).with_header(header("Allow", "GET, HEAD")));
    }
    let url = req.url().split(['?', '#']).next().unwrap_or("").to_string();
    let path = percent_decode(&url);
    let Some(file) = path
        .strip_prefix('/')
        .and_then(|p| open_file(root, serving, p))
    else {
        return req.respond(Response::empty(StatusCode(404)));
    };
    let len = file.metadata()?.len();
    let header_of = |name: &'static str| {
        req.headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_string())
    };
    // Ranges are defined for GET only; an If-Range never matches (no
    // validators are sent), so the whole file goes.
    let ranged = match header_of("Range") {
        Some(r) if !head && header_of("If-Range").is_none() => range::ranged(&r, len),
        _ => Ranged::Whole,
    };
    let (status, start, end) = match ranged {
        Ranged::Whole => (200, 0, len),
        Ranged::Part(s, e) => (206, s, e),
        Ranged::Unsatisfiable => {
            return req.respond(
                Response::empty(StatusCode(416))
                    .with_header(header("Content-Range", &format!("bytes */{len}"))),
            )
        }
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
    fn decoding() {
        assert_eq!(percent_decode("/a%2Fb"), "/a/b");
        assert_eq!(percent_decode("/a%2"), "/a%2");
        assert_eq!(percent_decode("/%ff"), "\0");
    }
}
