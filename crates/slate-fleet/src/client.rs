//! The agent's side of the API: signed requests over HTTPS, the server's
//! certificate checked against a pinned CA (the one shipped in the image)
//! rather than the system's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde::de::DeserializeOwned;

use crate::state::wire as state;
use crate::wire::{Enroll, Enrolled, ErrorBody, MachineInfo, Report, Reported};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: the server refused ({status}): {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("{url}: the answer is not what the API says: {detail}")]
    Answer { url: String, detail: String },
    #[error("{}: {detail}", path.display())]
    Ca { path: PathBuf, detail: String },
    #[error("server URL {url:?}: {detail}")]
    Url { url: String, detail: String },
}

impl ClientError {
    /// Worth trying again later: the server was not reached, or failed
    /// (5xx), or is busy.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Refused { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

pub struct Client {
    base: url::Url,
    agent: ureq::Agent,
    key: SigningKey,
}

/// A TLS configuration that trusts only the CA certificates of `path`.
fn pinned(path: &Path) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let ca = |detail: String| ClientError::Ca {
        path: path.to_path_buf(),
        detail,
    };
    let pem = std::fs::read(path).map_err(|e| ca(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| ca(format!("not a PEM certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ca(format!("not a CA certificate: {e}")))?;
        n += 1;
    }
    if n == 0 {
        return Err(ca("holds no PEM certificate".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ca(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Client {
    /// A client of the server at `server` (`https://HOST[:PORT]`; `http://`
    /// only for tests and a server behind a local proxy), signing with
    /// `key`, trusting the CA certificates of `ca` (None: the system's).
    pub fn new(server: &str, key: SigningKey, ca: Option<&Path>) -> Result<Client, ClientError> {
        let base = url::Url::parse(server).map_err(|e| ClientError::Url {
            url: server.to_string(),
            detail: e.to_string(),
        })?;
        if !matches!(base.scheme(), "https" | "http") || base.host().is_none() {
            return Err(ClientError::Url {
                url: server.to_string(),
                detail: "not an http(s)://HOST URL".into(),
            });
        }
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .redirects(0);
        if let Some(ca) = ca {
            builder = builder.tls_config(pinned(ca)?);
        }
        Ok(Client {
            base,
            agent: builder.build(),
            key,
        })
    }

    /// A client sharing `other`'s connections (and its TLS settings),
    /// signing with another key: many simulated machines, few sockets.
    pub fn sharing(other: &Client, key: SigningKey) -> Client {
        Client {
            base: other.base.clone(),
            agent: other.agent.clone(),
            key,
        }
    }

    /// The machine id this client's key enrolls as.
    pub fn machine_id(&self) -> String {
        crate::auth::key_id(self.key.verifying_key().as_bytes())
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<T, ClientError> {
        let url = self.base.join(path).map_err(|e| ClientError::Url {
            url: path.to_string(),
            detail: e.to_string(),
        })?;
        let shown = url.to_string();
        let nonce = crate::random_hex(16).map_err(|e| ClientError::Transport {
            url: shown.clone(),
            detail: format!("no random numbers: {e}"),
        })?;
        let mut req = self.agent.request_url(method, &url);
        for (name, value) in crate::auth::sign(&self.key, method, path, body, crate::now(), &nonce)
        {
            req = req.set(name, &value);
        }
        let resp = if method == "GET" {
            req.call()
        } else {
            req.set("Content-Type", "application/json").send_bytes(body)
        };
        match resp {
            Ok(r) => {
                let text = r.into_string().map_err(|e| ClientError::Transport {
                    url: shown.clone(),
                    detail: e.to_string(),
                })?;
                serde_json::from_str(&text).map_err(|e| ClientError::Answer {
                    url: shown,
                    detail: e.to_string(),
                })
            }
            Err(ureq::Error::Status(status, r)) => {
                let text = r.into_string().unwrap_or_default();
                let message = serde_json::from_str::<ErrorBody>(&text)
                    .map(|b| b.error)
                    .unwrap_or_else(|_| text.chars().take(200).collect());
                Err(ClientError::Refused {
                    url: shown,
                    status,
                    message,
                })
            }
            Err(e) => Err(ClientError::Transport {
                url: shown,
                detail: e.to_string(),
            }),
        }
    }

    fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
        serde_json::to_vec(v).expect("API types serialize")
    }

    pub fn enroll(
        &self,
        group: &str,
        token: &str,
        hostname: &str,
    ) -> Result<Enrolled, ClientError> {
        self.enroll_as(group, token, hostname, None)
    }

    /// Enroll, naming the machine's hardware id (what a replacement
    /// approved in advance waits for).
    pub fn enroll_as(
        &self,
        group: &str,
        token: &str,
        hostname: &str,
        hardware: Option<&str>,
    ) -> Result<Enrolled, ClientError> {
        let body = Self::json(&Enroll {
            group: group.to_string(),
            token: token.to_string(),
            hostname: hostname.to_string(),
            hardware: hardware.map(str::to_string),
        });
        self.call("POST", "/api/v1/enroll", &body)
    }

    /// What the group keeps and what the server holds of this machine.
    pub fn state_index(&self) -> Result<state::Index, ClientError> {
        self.call("GET", "/api/v1/state", b"")
    }

    /// Every kept file of this machine, with its content.
    pub fn state_files(&self) -> Result<state::Files, ClientError> {
        self.call("GET", "/api/v1/state/files", b"")
    }

    /// Store files (all or none).
    pub fn state_upload(&self, up: &state::Upload) -> Result<state::Stored, ClientError> {
        self.call("POST", "/api/v1/state", &Self::json(up))
    }

    pub fn report(&self, report: &Report) -> Result<Reported, ClientError> {
        self.call("POST", "/api/v1/report", &Self::json(report))
    }

    pub fn own(&self) -> Result<MachineInfo, ClientError> {
        self.call("GET", "/api/v1/self", b"")
    }
}
