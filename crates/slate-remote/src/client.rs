//! HTTP GETs against a list of mirrors: a mirror that fails is skipped, a
//! transient failure (a dropped connection, a 5xx, a stall) is retried
//! with backoff, a download resumes where it stopped (HTTP `Range`). A
//! stall is no bytes for `stall` seconds; a transfer slower than the
//! minimum rate ([`MinRate`]) is given up too, however steadily its bytes
//! trickle in. Redirects are followed here, not by the HTTP library: a
//! few hops, to `http(s)` only, each one recorded. Requests and bytes are
//! counted.

mod rate;
mod redirect;

pub use rate::MinRate;
pub use redirect::{Redirect, MAX_REDIRECTS};

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rate::Paced;

use crate::Error;

/// At most this many different redirects are kept for the report.
const MAX_RECORDED: usize = 64;

/// Counts of what a client fetched, and where redirects led.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
    /// The different redirects followed (at most `MAX_RECORDED`), in order.
    pub redirects: Mutex<Vec<Redirect>>,
}

pub struct Client {
    agent: ureq::Agent,
    mirrors: Vec<String>,
    retries: u32,
    backoff: Duration,
    stall: Duration,
    min_rate: MinRate,
    pub counters: Counters,
    /// Set once a server answered a range request with the whole file.
    no_ranges: std::sync::atomic::AtomicBool,
    /// Set once a server answered one with the part asked for.
    ranges_ok: std::sync::atomic::AtomicBool,
}

/// A failure of one attempt: retried (on this mirror, then the next) or not.
enum Attempt {
    /// 404 and the like: this mirror does not have it.
    Absent(String),
    /// Worth another try.
    Transient(String),
    /// Not worth another try on this mirror (a redirect not followed);
    /// the next mirror is asked.
    Refused(String),
    /// More than `limit` bytes, the most the caller takes of this path:
    /// the next mirror is asked; if none serves it within the limit, the
    /// file is refused as such ("not on the remote" would mislead).
    TooLarge { url: String, limit: u64 },
}

/// A transport error without the URL ureq puts in front (the caller names
/// the URL once): its kind and its cause.
fn transport_text(t: &ureq::Transport) -> String {
    let kind = t.kind().to_string().to_lowercase();
    match (std::error::Error::source(t), t.message()) {
        (Some(src), _) => format!("{kind}: {src}"),
        (None, Some(m)) => format!("{kind}: {m}"),
        (None, None) => kind,
    }
}

/// The failures of the attempts at one path, each told once (with how
/// many times it happened in a row).
#[derive(Default)]
struct Errors(Vec<(String, u32)>);

impl Errors {
    fn push(&mut self, e: String) {
        match self.0.last_mut() {
            Some((last, n)) if *last == e => *n += 1,
            _ => self.0.push((e, 1)),
        }
    }

    fn joined(&self) -> String {
        self.0
            .iter()
            .map(|(e, n)| match n {
                1 => e.clone(),
                n => format!("{e} ({n} tries)"),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Client {
    /// A client of `mirrors` (base URLs, tried in order); `stall` is how
    /// long a connection may deliver nothing. The minimum rate is
    /// [`MinRate::default`] (see [`Client::with_min_rate`]).
    pub fn new(mirrors: &[String], stall: Duration) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(15).min(stall))
            .timeout_read(stall)
            .timeout_write(stall)
            .redirects(0)
            .user_agent(concat!("slate/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent,
            mirrors: mirrors
                .iter()
                .map(|m| m.trim_end_matches('/').to_string())
                .collect(),
            retries: 3,
            backoff: Duration::from_millis(300),
            stall,
            min_rate: MinRate::default(),
            counters: Counters::default(),
            no_ranges: Default::default(),
            ranges_ok: Default::default(),
        }
    }

    /// Whether a server ignored a range request (sent the whole file):
    /// then whole files are worth fetching rather than parts.
    pub fn ranges_ignored(&self) -> bool {
        self.no_ranges.load(Ordering::Relaxed)
    }

    /// Fewer tries and shorter waits (tests of failures).
    pub fn with_retries(mut self, retries: u32, backoff: Duration) -> Client {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    /// The slowest transfer accepted.
    pub fn with_min_rate(mut self, rate: MinRate) -> Client {
        self.min_rate = rate;
        self
    }

    /// The different redirects followed so far, in order.
    pub fn redirects(&self) -> Vec<Redirect> {
        self.counters
            .redirects
            .lock()
            .expect("no panic while held")
            .clone()
    }

    fn note_redirect(&self, r: Redirect) {
        let mut all = self.counters.redirects.lock().expect("no panic while held");
        if all.len() < MAX_RECORDED && !all.contains(&r) {
            all.push(r);
        }
    }

    fn url(&self, mirror: &str, path: &str) -> String {
        format!("{mirror}/{}", path.trim_start_matches('/'))
    }

    /// Send `req` and wait for the response's headers (any status: the
    /// caller reads it). Under a minimum rate the headers must come within
    /// the stall timeout plus the rate's window (a server could send them
    /// a byte at a time): the request runs in a thread of its own, which
    /// is abandoned when the time is up (its connection ends when the
    /// server stops sending or the headers pass ureq's size limits).
    fn call(&self, req: ureq::Request) -> Result<ureq::Response, String> {
        let code = |r: Result<ureq::Response, ureq::Error>| match r {
            Ok(r) | Err(ureq::Error::Status(_, r)) => Ok(r),
            Err(ureq::Error::Transport(t)) => Err(transport_text(&t)),
        };
        if self.min_rate.is_off() {
            return code(req.call());
        }
        let limit = self.stall + self.min_rate.window;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(req.call());
        });
        match rx.recv_timeout(limit) {
            Ok(r) => code(r),
            Err(_) => Err(format!(
                "no complete response headers within {:.0} s (the stall timeout plus the \
                 minimum rate's window: {})",
                limit.as_secs_f64(),
                self.min_rate
            )),
        }
    }

    /// One request, its redirects followed: the response, or why not.
    fn request(
        &self,
        url: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<ureq::Response, Attempt> {
        let mut at = url.to_string();
        // Messages name the URL asked for, and where it led if elsewhere.
        let shown = |at: &str| {
            if at == url {
                url.to_string()
            } else {
                format!("{url} (redirected to {at})")
            }
        };
        for _ in 0..=MAX_REDIRECTS {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let mut req = self.agent.get(&at);
            if let Some((start, end)) = range {
                let v = match end {
                    Some(e) => format!("bytes={start}-{}", e - 1),
                    None => format!("bytes={start}-"),
                };
                req = req.set("Range", &v);
            }
            let r = self
                .call(req)
                .map_err(|e| Attempt::Transient(format!("{}: {e}", shown(&at))))?;
            let status = r.status();
            match status {
                200..=299 => return Ok(r),
                s if redirect::is_redirect(s) => {
                    let Some(loc) = r.header("location") else {
                        return Err(Attempt::Absent(format!(
                            "{}: HTTP {s} without a Location",
                            shown(&at)
                        )));
                    };
                    let to = redirect::target(&at, loc).map_err(|why| {
                        Attempt::Refused(format!(
                            "{}: HTTP {s} to {loc:?} not followed: {why}",
                            shown(&at)
                        ))
                    })?;
                    self.note_redirect(Redirect {
                        from: at.clone(),
                        to: to.clone(),
                        status: s,
                    });
                    at = to;
                }
                404 | 410 | 403 => {
                    return Err(Attempt::Absent(format!("{}: HTTP {status}", shown(&at))))
                }
                416 => {
                    return Err(Attempt::Absent(format!(
                        "{}: HTTP 416 (the range asked for is past its end)",
                        shown(&at)
                    )))
                }
                300..=399 => return Err(Attempt::Absent(format!("{}: HTTP {status}", shown(&at)))),
                _ => return Err(Attempt::Transient(format!("{}: HTTP {status}", shown(&at)))),
            }
        }
        Err(Attempt::Refused(format!(
            "{}: more than {MAX_REDIRECTS} redirects",
            shown(&at)
        )))
    }

    /// Try every mirror (each `retries` times, with backoff) until `f`
    /// succeeds on one.
    fn each_mirror<T>(
        &self,
        path: &str,
        mut f: impl FnMut(&str) -> Result<T, Attempt>,
    ) -> Result<T, Error> {
        let mut errors = Errors::default();
        let mut all_absent = true;
        let mut too_large = None;
        for m in &self.mirrors {
            let url = self.url(m, path);
            let mut wait = self.backoff;
            for attempt in 0..self.retries.max(1) {
                match f(&url) {
                    Ok(v) => return Ok(v),
                    Err(Attempt::Absent(e)) => {
                        errors.push(e);
                        break;
                    }
                    Err(Attempt::Refused(e)) => {
                        all_absent = false;
                        errors.push(e);
                        break;
                    }
                    Err(Attempt::TooLarge { url, limit }) => {
                        errors.push(format!("{url}: larger than {limit} bytes"));
                        too_large = Some(limit);
                        break;
                    }
                    Err(Attempt::Transient(e)) => {
                        all_absent = false;
                        errors.push(e);
                        if attempt + 1 < self.retries {
                            std::thread::sleep(wait);
                            wait *= 2;
                        }
                    }
                }
            }
        }
        if let (true, Some(limit)) = (all_absent, too_large) {
            Err(Error::Refused(format!(
                "{path} on the remote is larger than {limit} bytes: refused"
            )))
        } else if all_absent {
            Err(Error::NotFound(path.to_string(), errors.joined()))
        } else {
            Err(Error::Fetch(format!(
                "could not fetch {path}: {}",
                errors.joined()
            )))
        }
    }

    /// Ask for the first byte of `path` to learn whether the server
    /// honours range requests (remembered; a server that does not is sent
    /// requests for whole files). The body is not read.
    pub fn probe_ranges(&self, path: &str) -> Result<bool, Error> {
        if self.ranges_ignored() {
            return Ok(false);
        }
        if self.ranges_ok.load(Ordering::Relaxed) {
            return Ok(true);
        }
        self.each_mirror(path, |url| {
            let r = self.request(url, Some((0, Some(1))))?;
            Ok(r.status() == 206)
        })
        .inspect(|&ok| {
            let flag = if ok { &self.ranges_ok } else { &self.no_ranges };
            flag.store(true, Ordering::Relaxed);
        })
    }

    /// A small file whole (the summary, an index, a loose object), at most
    /// `limit` bytes: a larger one is refused as such.
    pub fn get(&self, path: &str, limit: u64) -> Result<Vec<u8>, Error> {
        self.each_mirror(path, |url| {
            let r = self.request(url, None)?;
            let mut out = Vec::new();
            let n = Paced::new(r.into_reader(), self.min_rate)
                .take(limit + 1)
                .read_to_end(&mut out)
                .map_err(|e| Attempt::Transient(format!("{url}: {e}")))?;
            self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
            if out.len() as u64 > limit {
                return Err(Attempt::TooLarge {
                    url: url.to_string(),
                    limit,
                });
            }
            Ok(out)
        })
    }

    /// A file whole into `dest` (created or emptied), at most `limit`
    /// bytes: a larger one is refused as such. For a file too large to be
    /// held in memory (a loose object), whose length is not known ahead.
    pub fn get_to_file(
        &self,
        path: &str,
        limit: u64,
        dest: &Path,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, Error> {
        self.each_mirror(path, |url| {
            let mut f = std::fs::File::create(dest)
                .map_err(|e| Attempt::Absent(format!("{}: {e}", dest.display())))?;
            let r = self.request(url, None)?;
            let mut reader = Paced::new(r.into_reader(), self.min_rate).take(limit + 1);
            let mut buf = vec![0u8; 256 << 10];
            let mut got = 0u64;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        return Err(Attempt::Transient(format!("{url}: {e} after {got} bytes")))
                    }
                };
                got += n as u64;
                self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                on_bytes(n as u64);
                if got > limit {
                    return Err(Attempt::TooLarge {
                        url: url.to_string(),
                        limit,
                    });
                }
                f.write_all(&buf[..n])
                    .map_err(|e| Attempt::Absent(format!("{}: {e}", dest.display())))?;
            }
            f.flush()
                .map_err(|e| Attempt::Absent(format!("{}: {e}", dest.display())))?;
            Ok(got)
        })
    }

    /// Bytes `start..end` of a file into `dest` (created or resumed: what
    /// is in it already is not fetched again). `expect` is the file's whole
    /// length when known (a short response is then an error, retried).
    /// `on_bytes` is told of every chunk received.
    pub fn download(
        &self,
        path: &str,
        start: u64,
        end: u64,
        dest: &Path,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(), Error> {
        self.each_mirror(path, |url| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dest)
                .map_err(|e| Attempt::Absent(format!("{}: {e}", dest.display())))?;
            let have = f
                .metadata()
                .map_err(|e| Attempt::Absent(format!("{}: {e}", dest.display())))?
                .len();
            let want = end - start;
            if have >= want {
                return Ok(());
            }
            let from = start + have;
            let r = self.request(url, Some((from, Some(end))))?;
            let whole = r.status() == 200;
            if r.status() != 206 && !whole {
                return Err(Attempt::Transient(format!(
                    "{url}: HTTP {} to a range request",
                    r.status()
                )));
            }
            let mut body = Paced::new(r.into_reader(), self.min_rate);
            if whole {
                // A server without range support sends the file from its
                // start: what comes before the part wanted is read and
                // dropped (and later reads fetch whole files).
                self.no_ranges.store(true, Ordering::Relaxed);
                let skipped = std::io::copy(&mut (&mut body).take(from), &mut std::io::sink())
                    .map_err(|e| Attempt::Transient(format!("{url}: {e}")))?;
                self.counters.bytes.fetch_add(skipped, Ordering::Relaxed);
                if skipped < from {
                    return Err(Attempt::Transient(format!(
                        "{url}: the response ended after {skipped} bytes"
                    )));
                }
            }
            let mut reader = body.take(end - from);
            let mut buf = vec![0u8; 256 << 10];
            let mut got = 0u64;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = f.flush();
                        return Err(Attempt::Transient(format!("{url}: {e} after {got} bytes")));
                    }
                };
                f.write_all(&buf[..n])
                    .map_err(|e| Attempt::Absent(format!("{}: {e}", dest.display())))?;
                got += n as u64;
                self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                on_bytes(n as u64);
            }
            f.flush()
                .map_err(|e| Attempt::Absent(format!("{}: {e}", dest.display())))?;
            if have + got < want {
                return Err(Attempt::Transient(format!(
                    "{url}: the response ended after {} of {} bytes",
                    have + got,
                    want
                )));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Instant;

    /// A server that sends its response's headers a byte every 100 ms.
    fn slow_headers() -> String {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                std::thread::spawn(move || {
                    let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: ".to_vec();
                    head.extend([b'x'; 1000]);
                    for b in &head {
                        if c.write_all(std::slice::from_ref(b)).is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                });
            }
        });
        url
    }

    #[test]
    fn headers_that_trickle_are_given_up() {
        let url = slow_headers();
        let c = Client::new(std::slice::from_ref(&url), Duration::from_secs(1))
            .with_retries(1, Duration::from_millis(1))
            .with_min_rate(MinRate {
                bytes_per_sec: 100,
                window: Duration::from_secs(1),
            });
        let t = Instant::now();
        let e = c.get("summary.json", 1024).expect_err("too slow");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("{url}/summary.json")) && msg.contains("headers"),
            "{msg}"
        );
    }

    #[test]
    fn failures_in_a_row_are_told_once() {
        let mut e = Errors::default();
        for m in ["a", "a", "b", "a"] {
            e.push(m.to_string());
        }
        assert_eq!(e.joined(), "a (2 tries); b; a");
    }
}
