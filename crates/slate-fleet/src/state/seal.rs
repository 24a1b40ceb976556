//! Contents sealed at rest: ChaCha20-Poly1305 (RFC 8439) with a random
//! 96-bit nonce per sealing, and as associated data
//!
//! ```text
//! slate-state-v1 \0 KEY-ID \0 MACHINE \0 PATH \0 MODE \0 UID \0 GID
//! ```
//!
//! (MACHINE: the id of the machine that uploaded it; MODE in octal, UID
//! and GID in decimal), so a row moved to another path or owner, or its
//! mode changed, no longer opens.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

use super::keys::Key;

/// What a row holds of a file, besides its clear metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub data: Vec<u8>,
}

/// The clear fields the seal covers.
#[derive(Clone, Copy, Debug)]
pub struct Bound<'a> {
    pub machine: &'a str,
    pub path: &'a str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

fn aad(key_id: &str, b: &Bound) -> Vec<u8> {
    format!(
        "slate-state-v1\0{key_id}\0{}\0{}\0{:o}\0{}\0{}",
        b.machine, b.path, b.mode, b.uid, b.gid
    )
    .into_bytes()
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("no random numbers: {0}")]
    Random(std::io::Error),
    #[error("sealing {path} failed")]
    Seal { path: String },
    #[error("{path} of machine {machine} does not open with key {key_id}: the row or the key is not the one sealed")]
    Open {
        machine: String,
        path: String,
        key_id: String,
    },
}

pub fn seal(key: &Key, b: &Bound, plain: &[u8]) -> Result<Sealed, SealError> {
    let mut nonce = [0u8; 12];
    rustix::rand::getrandom(&mut nonce, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| SealError::Random(e.into()))?;
    let cipher = ChaCha20Poly1305::new((&key.bytes).into());
    let data = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad(&key.id, b),
            },
        )
        .map_err(|_| SealError::Seal {
            path: b.path.to_string(),
        })?;
    Ok(Sealed {
        key_id: key.id.clone(),
        nonce: nonce.to_vec(),
        data,
    })
}

pub fn open(key: &Key, b: &Bound, s: &Sealed) -> Result<Vec<u8>, SealError> {
    let fail = || SealError::Open {
        machine: b.machine.to_string(),
        path: b.path.to_string(),
        key_id: s.key_id.clone(),
    };
    if s.nonce.len() != 12 || s.key_id != key.id {
        return Err(fail());
    }
    let cipher = ChaCha20Poly1305::new((&key.bytes).into());
    cipher
        .decrypt(
            Nonce::from_slice(&s.nonce),
            Payload {
                msg: &s.data,
                aad: &aad(&key.id, b),
            },
        )
        .map_err(|_| fail())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, n: u8) -> Key {
        Key {
            id: id.into(),
            bytes: [n; 32],
        }
    }

    #[test]
    fn opens_only_with_its_key_machine_path_and_owner() {
        let k = key("0123456789abcdef", 1);
        let b = Bound {
            machine: "m1",
            path: "/etc/ssh/ssh_host_ed25519_key",
            mode: 0o600,
            uid: 0,
            gid: 0,
        };
        let s = seal(&k, &b, b"secret").expect("sealed");
        assert!(!s.data.windows(6).any(|w| w == b"secret"));
        assert_eq!(open(&k, &b, &s).expect("opens"), b"secret");
        for other in [
            Bound { machine: "m2", ..b },
            Bound {
                path: "/etc/ssh/x",
                ..b
            },
            Bound { mode: 0o644, ..b },
            Bound { uid: 1, ..b },
        ] {
            assert!(open(&k, &other, &s).is_err());
        }
        assert!(open(&key("0123456789abcdef", 2), &b, &s).is_err());
        let mut cut = s.clone();
        cut.data.pop();
        assert!(open(&k, &b, &cut).is_err());
    }
}
