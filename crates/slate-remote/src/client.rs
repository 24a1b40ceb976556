//! HTTP GETs against a list of mirrors: a mirror that fails is skipped, a
//! transient failure (a dropped connection, a 5xx, a stall) is retried
//! with backoff, a download resumes where it stopped (HTTP `Range`). A
//! stall is no bytes for `stall` seconds, never a limit on the whole
//! transfer. Requests and bytes are counted.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::Error;

/// Counts of what a client fetched.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
}

pub struct Client {
    agent: ureq::Agent,
    mirrors: Vec<String>,
    retries: u32,
    backoff: Duration,
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
}

impl Client {
    /// A client of `mirrors` (base URLs, tried in order); `stall` is how
    /// long a connection may deliver nothing.
    pub fn new(mirrors: &[String], stall: Duration) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(15).min(stall))
            .timeout_read(stall)
            .timeout_write(stall)
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

    fn url(&self, mirror: &str, path: &str) -> String {
        format!("{mirror}/{}", path.trim_start_matches('/'))
    }

    /// One request: the response, or why not.
    fn request(
        &self,
        url: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<ureq::Response, Attempt> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let mut req = self.agent.get(url);
        if let Some((start, end)) = range {
            let v = match end {
                Some(e) => format!("bytes={start}-{}", e - 1),
                None => format!("bytes={start}-"),
            };
            req = req.set("Range", &v);
        }
        match req.call() {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(code @ (404 | 410 | 403), _)) => {
                Err(Attempt::Absent(format!("{url}: HTTP {code}")))
            }
            Err(ureq::Error::Status(416, _)) => Err(Attempt::Absent(format!(
                "{url}: HTTP 416 (the range asked for is past its end)"
            ))),
            Err(ureq::Error::Status(code, _)) => {
                Err(Attempt::Transient(format!("{url}: HTTP {code}")))
            }
            Err(e) => Err(Attempt::Transient(format!("{url}: {e}"))),
        }
    }

    /// Try every mirror (each `retries` times, with backoff) until `f`
    /// succeeds on one.
    fn each_mirror<T>(
        &self,
        path: &str,
        mut f: impl FnMut(&str) -> Result<T, Attempt>,
    ) -> Result<T, Error> {
        let mut errors = Vec::new();
        let mut all_absent = true;
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
        if all_absent {
            Err(Error::NotFound(path.to_string(), errors.join("; ")))
        } else {
            Err(Error::Fetch(format!(
                "could not fetch {path}: {}",
                errors.join("; ")
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

    /// A small file whole (the summary, an index, a loose object).
    pub fn get(&self, path: &str, limit: u64) -> Result<Vec<u8>, Error> {
        self.each_mirror(path, |url| {
            let r = self.request(url, None)?;
            let mut out = Vec::new();
            let n = r
                .into_reader()
                .take(limit + 1)
                .read_to_end(&mut out)
                .map_err(|e| Attempt::Transient(format!("{url}: {e}")))?;
            self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
            if out.len() as u64 > limit {
                return Err(Attempt::Absent(format!("{url}: larger than {limit} bytes")));
            }
            Ok(out)
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
            let mut body = r.into_reader();
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
