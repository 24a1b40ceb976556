//! The HTTP server: `tiny_http` (a small synchronous server, already the
//! one of `slate serve`; its `ssl-rustls` feature gives TLS) with a pool
//! of worker threads, each request read within limits, checked and
//! answered by `routes.rs` (the API) or `page` (the HTML).

pub(crate) mod routes;
mod state_routes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::db::Db;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Tls { path: PathBuf, detail: String },
    #[error("listening on {bind}: {detail}")]
    Listen { bind: String, detail: String },
}

/// TLS: a PEM certificate chain and its PEM private key.
#[derive(Clone, Debug)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub bind: String,
    /// None: plain HTTP (for a test, or behind a TLS proxy).
    pub tls: Option<Tls>,
    pub threads: usize,
    /// Machines' kept state (`--state-key`): None refuses its routes.
    pub state: Option<Arc<crate::state::Service>>,
}

/// A running server.
pub struct Running {
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    ticker: (std::sync::mpsc::Sender<()>, JoinHandle<()>),
    pub addr: SocketAddr,
}

/// Every 2 seconds, the running rollouts brought up to date (waves
/// opened, paused at their failure limit), until `stop` is dropped.
fn ticker(db: Arc<Db>) -> (std::sync::mpsc::Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            stopped.recv_timeout(std::time::Duration::from_secs(2))
        {
            if let Err(e) = crate::rollout::tick_all(&db, crate::now()) {
                eprintln!("fleet: bringing rollouts up to date: {e}");
            }
        }
    });
    (stop, h)
}

fn read(path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certificate chain and key, checked here so that the TLS library
/// is only given what it reads.
fn tls_files(tls: &Tls) -> Result<tiny_http::SslConfig, ServeError> {
    let certificate = read(&tls.cert)?;
    let bad = |path: &Path, detail: &str| ServeError::Tls {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    };
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut certificate.as_slice()).collect();
    if !certs.is_ok_and(|c| !c.is_empty()) {
        return Err(bad(&tls.cert, "holds no PEM certificate"));
    }
    let private_key = read(&tls.key)?;
    let usable = rustls_pemfile::read_all(&mut private_key.as_slice()).any(|item| {
        matches!(
            item,
            Ok(rustls_pemfile::Item::Pkcs8Key(_) | rustls_pemfile::Item::Pkcs1Key(_))
        )
    });
    if !usable {
        return Err(bad(
            &tls.key,
            "holds no PKCS#8 or RSA private key in PEM (convert an EC key with \
             `openssl pkcs8 -topk8 -nocrypt`)",
        ));
    }
    Ok(tiny_http::SslConfig {
        certificate,
        private_key,
    })
}

pub fn start(db: Arc<Db>, opts: &Options) -> Result<Running, ServeError> {
    let listen = |detail: String| ServeError::Listen {
        bind: opts.bind.clone(),
        detail,
    };
    let server = match &opts.tls {
        Some(tls) => tiny_http::Server::https(opts.bind.as_str(), tls_files(tls)?),
        None => tiny_http::Server::http(opts.bind.as_str()),
    }
    .map_err(|e| listen(e.to_string()))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| listen("not an IP address".into()))?;
    let server = Arc::new(server);
    let secure = opts.tls.is_some();
    let workers = (0..opts.threads.max(1))
        .map(|_| {
            let server = server.clone();
            let db = db.clone();
            let state = opts.state.clone();
            std::thread::spawn(move || {
                // Each request's answer is its own: a panic in one (a bug)
                // ends only that request.
                while let Ok(req) = server.recv() {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        routes::answer(&db, state.as_deref(), req, secure)
                    }));
                }
            })
        })
        .collect();
    Ok(Running {
        server,
        workers,
        ticker: ticker(db),
        addr,
    })
}

impl Running {
    /// Serve until the process ends.
    pub fn wait(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }

    /// Stop taking requests; those under way finish.
    pub fn stop(self) {
        drop(self.ticker.0);
        let _ = self.ticker.1.join();
        self.server.unblock();
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
    }
}
