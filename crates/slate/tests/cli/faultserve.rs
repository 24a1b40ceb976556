//! A static HTTP server for tests that misbehaves on purpose: it serves a
//! real repository's folder and, for paths that match, a given number of
//! times, cuts responses short, flips bytes, answers 404, stalls, replaces
//! a file's bytes with chosen ones (a hostile publisher or mirror),
//! redirects, trickles a byte at a time, or sends a body without end.
//! It counts requests and bytes.

use std::io::{BufRead, BufReader, Cursor, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

#[derive(Clone, Debug)]
pub enum Fault {
    /// Send only this many bytes of the body, then close.
    Truncate(u64),
    /// Flip a bit of the body at this offset (of the bytes sent).
    Corrupt(u64),
    /// Answer 404.
    NotFound,
    /// Send the headers, then nothing (until stopped).
    Stall,
    /// Ignore a Range header: answer 200 with the whole file.
    NoRanges,
    /// Serve these bytes as the file's content (ranges apply to them); the
    /// file need not exist.
    Replace(Vec<u8>),
    /// Answer `302 Found` with this `Location`.
    Redirect(String),
    /// Send the body one byte per this many milliseconds.
    Trickle(u64),
    /// Send this status line (e.g. "500 Internal Server Error") and an empty body.
    Status(String),
    /// Claim this Content-Length (0: none, the body ends when the connection
    /// closes) and send bytes of the file's content, then zeros, without end
    /// (until the client goes away or the server stops).
    Endless(u64),
}

#[derive(Clone, Debug)]
pub struct Rule {
    /// Applies to request paths containing this.
    pub path: String,
    pub fault: Fault,
    /// How many more requests it applies to (u64::MAX: always).
    pub times: u64,
}

pub struct FaultServer {
    pub url: String,
    pub requests: Arc<AtomicU64>,
    pub bytes: Arc<AtomicU64>,
    pub rules: Arc<Mutex<Vec<Rule>>>,
    /// The path of every request, in order.
    pub log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FaultServer {
    pub fn start(root: PathBuf) -> FaultServer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        let s = FaultServer {
            url,
            requests: Arc::new(AtomicU64::new(0)),
            bytes: Arc::new(AtomicU64::new(0)),
            rules: Arc::new(Mutex::new(Vec::new())),
            log: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (req, bytes, rules, stop, log) = (
            s.requests.clone(),
            s.bytes.clone(),
            s.rules.clone(),
            s.stop.clone(),
            s.log.clone(),
        );
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (root, req, bytes, rules, stop, log) = (
                    root.clone(),
                    req.clone(),
                    bytes.clone(),
                    rules.clone(),
                    stop.clone(),
                    log.clone(),
                );
                std::thread::spawn(move || {
                    let _ = serve(conn, &root, &req, &bytes, &rules, &stop, &log);
                });
            }
        });
        s
    }

    pub fn rule(&self, path: &str, fault: Fault, times: u64) {
        self.rules.lock().expect("lock").push(Rule {
            path: path.into(),
            fault,
            times,
        });
    }

    pub fn clear(&self) {
        self.rules.lock().expect("lock").clear();
    }

    /// The paths asked for since the last call, and the log emptied.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().expect("lock"))
    }

    pub fn counts(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::SeqCst),
            self.bytes.load(Ordering::SeqCst),
        )
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

fn serve(
    conn: TcpStream,
    root: &std::path::Path,
    requests: &AtomicU64,
    bytes: &AtomicU64,
    rules: &Mutex<Vec<Rule>>,
    stop: &AtomicBool,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut range: Option<(u64, Option<u64>)> = None;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h
                .strip_prefix("Range: bytes=")
                .or_else(|| h.strip_prefix("range: bytes="))
            {
                if let Some((a, b)) = v.split_once('-') {
                    range = Some((a.parse().unwrap_or(0), b.parse::<u64>().ok().map(|e| e + 1)));
                }
            }
        }
        requests.fetch_add(1, Ordering::SeqCst);
        log.lock().expect("lock").push(path.clone());
        let fault = {
            let mut r = rules.lock().expect("lock");
            let hit = r.iter_mut().find(|x| x.times > 0 && path.contains(&x.path));
            hit.map(|x| {
                if x.times != u64::MAX {
                    x.times -= 1;
                }
                x.fault.clone()
            })
        };
        match &fault {
            Some(Fault::Redirect(to)) => {
                let head =
                    format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n");
                w.write_all(head.as_bytes())?;
                continue;
            }
            Some(Fault::Status(line)) => {
                let head = format!("HTTP/1.1 {line}\r\nContent-Length: 0\r\n\r\n");
                w.write_all(head.as_bytes())?;
                continue;
            }
            _ => {}
        }
        // The request path is the test's own (a client under test may send
        // anything): never let it climb out of the served folder.
        let rel = path.trim_start_matches('/');
        let file = if rel.split('/').any(|c| c == "..") {
            root.join("..nonexistent")
        } else {
            root.join(rel)
        };
        // The body's source: the chosen bytes, or the file (read by range).
        let mut source: Box<dyn ReadSeek> = match (&fault, std::fs::File::open(&file)) {
            (Some(Fault::Replace(bytes)), _) => Box::new(Cursor::new(bytes.clone())),
            (Some(Fault::NotFound), _) | (_, Err(_)) => {
                w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
                continue;
            }
            (_, Ok(f)) => Box::new(f),
        };
        let len = source.seek(SeekFrom::End(0))?;
        if let Some(Fault::Endless(claim)) = fault {
            let mut head = String::from("HTTP/1.1 200 OK\r\n");
            if claim > 0 {
                head += &format!("Content-Length: {claim}\r\n");
            } else {
                head += "Connection: close\r\n";
            }
            head += "\r\n";
            w.write_all(head.as_bytes())?;
            source.seek(SeekFrom::Start(0))?;
            std::io::copy(&mut source, &mut w)?;
            let zeros = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::SeqCst) {
                w.write_all(&zeros)?;
                bytes.fetch_add(zeros.len() as u64, Ordering::SeqCst);
            }
            return Ok(());
        }
        let (status, start, end) = match range {
            Some(_) if matches!(fault, Some(Fault::NoRanges)) => (200, 0, len),
            Some((s, e)) => (206, s, e.unwrap_or(len).min(len)),
            None => (200, 0, len),
        };
        let start = start.min(end);
        let mut body = Vec::new();
        source.seek(SeekFrom::Start(start))?;
        source.take(end - start).read_to_end(&mut body)?;
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n",
            if status == 206 {
                "Partial Content"
            } else {
                "OK"
            },
            body.len()
        );
        if status == 206 {
            head += &format!(
                "Content-Range: bytes {start}-{}/{len}\r\n",
                end.saturating_sub(1)
            );
        }
        head += "\r\n";
        w.write_all(head.as_bytes())?;
        match fault {
            Some(Fault::Truncate(n)) => {
                let n = (n as usize).min(body.len());
                w.write_all(&body[..n])?;
                bytes.fetch_add(n as u64, Ordering::SeqCst);
                return Ok(()); // the connection closes
            }
            Some(Fault::Corrupt(at)) => {
                if let Some(b) = body.get_mut(at as usize) {
                    *b ^= 0x40;
                }
            }
            Some(Fault::Trickle(ms)) => {
                for b in &body {
                    if stop.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    w.write_all(std::slice::from_ref(b))?;
                    w.flush()?;
                    bytes.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
                continue;
            }
            Some(Fault::Stall) => {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                return Ok(());
            }
            _ => {}
        }
        w.write_all(&body)?;
        bytes.fetch_add(body.len() as u64, Ordering::SeqCst);
    }
}
