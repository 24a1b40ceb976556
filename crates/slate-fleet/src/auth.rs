//! Signed requests. An agent signs every request with its machine's
//! Ed25519 key over
//!
//! ```text
//! slate-fleet-v1\nMETHOD\nPATH\nTIME\nNONCE\nSHA256(BODY) in hex
//! ```
//!
//! and sends the key, time, nonce and signature in headers. The server
//! accepts a request whose time is within [`MAX_SKEW`] seconds of its own,
//! whose nonce this key has not used before (kept as long as its time is
//! accepted) and whose signature checks.

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

pub const HEADER_KEY: &str = "X-Slate-Key";
pub const HEADER_TIME: &str = "X-Slate-Time";
pub const HEADER_NONCE: &str = "X-Slate-Nonce";
pub const HEADER_SIGNATURE: &str = "X-Slate-Signature";

/// Seconds a request's time may differ from the server's.
pub const MAX_SKEW: i64 = 300;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("header {0} missing")]
    Missing(&'static str),
    #[error("header {header} is not {what}")]
    Malformed {
        header: &'static str,
        what: &'static str,
    },
    #[error("request time {time} is {skew} s away from the server's ({MAX_SKEW} s allowed); is the clock right?")]
    Stale { time: i64, skew: i64 },
    #[error("signature does not check with key {key_id}")]
    BadSignature { key_id: String },
}

/// The machine id of a public key: 32 hex digits of its SHA-256.
pub fn key_id(public: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(public)[..16])
}

/// The bytes signed.
pub fn message(method: &str, path: &str, time: i64, nonce: &str, body: &[u8]) -> Vec<u8> {
    format!(
        "slate-fleet-v1\n{method}\n{path}\n{time}\n{nonce}\n{}",
        hex::encode(Sha256::digest(body))
    )
    .into_bytes()
}

/// The four headers of a request signed by `key`.
pub fn sign(
    key: &SigningKey,
    method: &str,
    path: &str,
    body: &[u8],
    time: i64,
    nonce: &str,
) -> [(&'static str, String); 4] {
    let sig = key.sign(&message(method, path, time, nonce, body));
    let b64 = base64::engine::general_purpose::STANDARD;
    [
        (HEADER_KEY, b64.encode(key.verifying_key().as_bytes())),
        (HEADER_TIME, time.to_string()),
        (HEADER_NONCE, nonce.to_string()),
        (HEADER_SIGNATURE, b64.encode(sig.to_bytes())),
    ]
}

/// A request whose signature checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub public: [u8; 32],
    pub key_id: String,
    pub nonce: String,
    pub time: i64,
}

/// Check a request's headers (looked up by `header`, case-insensitively
/// by the caller) against its method, path and body at time `now`.
pub fn verify(
    header: impl Fn(&'static str) -> Option<String>,
    method: &str,
    path: &str,
    body: &[u8],
    now: i64,
) -> Result<Verified, AuthError> {
    let get = |h| header(h).ok_or(AuthError::Missing(h));
    let b64 = base64::engine::general_purpose::STANDARD;
    let public: [u8; 32] = b64
        .decode(get(HEADER_KEY)?.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(AuthError::Malformed {
            header: HEADER_KEY,
            what: "an Ed25519 public key in base64",
        })?;
    let time: i64 = get(HEADER_TIME)?
        .trim()
        .parse()
        .map_err(|_| AuthError::Malformed {
            header: HEADER_TIME,
            what: "Unix time in seconds",
        })?;
    let nonce = get(HEADER_NONCE)?.trim().to_string();
    if !(16..=64).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::Malformed {
            header: HEADER_NONCE,
            what: "16 to 64 hex digits",
        });
    }
    let sig: [u8; 64] = b64
        .decode(get(HEADER_SIGNATURE)?.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(AuthError::Malformed {
            header: HEADER_SIGNATURE,
            what: "an Ed25519 signature in base64",
        })?;
    let skew = time.saturating_sub(now).saturating_abs();
    if skew > MAX_SKEW {
        return Err(AuthError::Stale { time, skew });
    }
    let key_id = key_id(&public);
    let key = VerifyingKey::from_bytes(&public).map_err(|_| AuthError::BadSignature {
        key_id: key_id.clone(),
    })?;
    key.verify_strict(
        &message(method, path, time, &nonce, body),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| AuthError::BadSignature {
        key_id: key_id.clone(),
    })?;
    Ok(Verified {
        public,
        key_id,
        nonce: nonce.to_ascii_lowercase(),
        time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn headers<'a>(
        h: &'a [(&'static str, String); 4],
    ) -> impl Fn(&'static str) -> Option<String> + 'a {
        move |name| h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn a_signed_request_checks_and_names_its_key() {
        let h = sign(
            &key(),
            "POST",
            "/api/v1/report",
            b"{}",
            1000,
            "00112233445566778899",
        );
        let v = verify(headers(&h), "POST", "/api/v1/report", b"{}", 1010).expect("checks");
        assert_eq!(v.key_id, key_id(key().verifying_key().as_bytes()));
        assert_eq!(v.key_id.len(), 32);
    }

    #[test]
    fn anything_changed_fails() {
        let h = sign(
            &key(),
            "POST",
            "/api/v1/report",
            b"{}",
            1000,
            "00112233445566778899",
        );
        for (method, path, body) in [
            ("GET", "/api/v1/report", &b"{}"[..]),
            ("POST", "/api/v1/self", b"{}"),
            ("POST", "/api/v1/report", b"{ }"),
        ] {
            let e = verify(headers(&h), method, path, body, 1000).expect_err("refused");
            assert!(matches!(e, AuthError::BadSignature { .. }), "{e}");
        }
        let mut other = h.clone();
        other[1].1 = "1001".into();
        let e = verify(headers(&other), "POST", "/api/v1/report", b"{}", 1000).expect_err("time");
        assert!(matches!(e, AuthError::BadSignature { .. }), "{e}");
    }

    #[test]
    fn a_stale_time_is_refused_before_the_signature() {
        let h = sign(
            &key(),
            "GET",
            "/api/v1/self",
            b"",
            1000,
            "00112233445566778899",
        );
        assert_eq!(
            verify(headers(&h), "GET", "/api/v1/self", b"", 1000 + MAX_SKEW + 1),
            Err(AuthError::Stale {
                time: 1000,
                skew: MAX_SKEW + 1
            })
        );
        assert!(verify(headers(&h), "GET", "/api/v1/self", b"", 1000 - MAX_SKEW).is_ok());
    }

    #[test]
    fn malformed_headers_are_named() {
        let mut h = sign(&key(), "GET", "/x", b"", 1000, "00112233445566778899");
        h[2].1 = "../../etc".into();
        assert_eq!(
            verify(headers(&h), "GET", "/x", b"", 1000),
            Err(AuthError::Malformed {
                header: HEADER_NONCE,
                what: "16 to 64 hex digits"
            })
        );
        let only: [(&'static str, String); 4] = [
            (HEADER_TIME, "1".into()),
            (HEADER_TIME, "1".into()),
            (HEADER_TIME, "1".into()),
            (HEADER_TIME, "1".into()),
        ];
        assert_eq!(
            verify(headers(&only), "GET", "/x", b"", 1000),
            Err(AuthError::Missing(HEADER_KEY))
        );
    }
}
