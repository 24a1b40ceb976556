//! Signatures: Ed25519 over a commit's id (its 64 hex digits, as text) and
//! over a repository's summary, with keys in the PEM forms OpenSSL uses
//! (`openssl genpkey -algorithm ed25519` makes a key Slate reads; `openssl
//! pkeyutl -verify -rawin` checks what Slate signs).
//!
//! A commit's signatures are detached: `REPO/signatures/COMMIT/KEYID.sig`,
//! 64 raw bytes each, where KEYID is the first 16 hex digits of the SHA-256
//! of the public key's 32 bytes. One commit may carry several.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::fsutil::{self, show};
use crate::hash::ObjectId;
use crate::store::Repo;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", show(path))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not an Ed25519 {what} in PEM ({detail}); make one with `slate keygen` or `openssl genpkey -algorithm ed25519`", show(path))]
    BadKey {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A private signing key.
pub struct SecretKey(SigningKey);

/// A public key that checks signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl SecretKey {
    /// A new key from the kernel's random numbers.
    pub fn generate() -> std::io::Result<SecretKey> {
        let mut b = [0u8; 32];
        rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())?;
        Ok(SecretKey(SigningKey::from_bytes(&b)))
    }

    pub fn from_pem(text: &str) -> std::result::Result<SecretKey, String> {
        SigningKey::from_pkcs8_pem(text)
            .map(SecretKey)
            .map_err(|e| e.to_string())
    }

    /// PKCS#8 v1 (`BEGIN PRIVATE KEY`), the form OpenSSL reads.
    pub fn to_pem(&self) -> String {
        let kb = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        };
        kb.to_pkcs8_pem(Default::default())
            .expect("an Ed25519 key encodes")
            .to_string()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn sign(&self, data: &[u8]) -> [u8; 64] {
        self.0.sign(data).to_bytes()
    }
}

impl PublicKey {
    pub fn from_pem(text: &str) -> std::result::Result<PublicKey, String> {
        VerifyingKey::from_public_key_pem(text)
            .map(PublicKey)
            .map_err(|e| e.to_string())
    }

    /// A key written inline as base64: its 32 raw bytes, or its
    /// SubjectPublicKeyInfo (what a PEM file holds between its lines).
    pub fn from_base64(text: &str) -> std::result::Result<PublicKey, String> {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("not base64: {e}"))?;
        match <[u8; 32]>::try_from(b.as_slice()) {
            Ok(raw) => VerifyingKey::from_bytes(&raw)
                .map(PublicKey)
                .map_err(|e| e.to_string()),
            Err(_) => VerifyingKey::from_public_key_der(&b)
                .map(PublicKey)
                .map_err(|e| format!("neither 32 key bytes nor a public key's DER: {e}")),
        }
    }

    /// SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`).
    pub fn to_pem(&self) -> String {
        self.0
            .to_public_key_pem(Default::default())
            .expect("an Ed25519 key encodes")
    }

    /// The first 16 hex digits of the SHA-256 of the key's 32 bytes.
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..8])
    }

    pub fn verify(&self, data: &[u8], sig: &[u8]) -> bool {
        Signature::from_slice(sig)
            .map(|s| self.0.verify(data, &s).is_ok())
            .unwrap_or(false)
    }
}

/// Read a private key from a PEM file.
pub fn load_secret(path: &Path) -> Result<SecretKey> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    SecretKey::from_pem(&text).map_err(|detail| Error::BadKey {
        path: path.to_path_buf(),
        what: "private key",
        detail,
    })
}

/// Read a public key from a PEM file (or the public half of a private key).
pub fn load_public(path: &Path) -> Result<PublicKey> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    PublicKey::from_pem(&text)
        .or_else(|e| {
            SecretKey::from_pem(&text)
                .map(|k| k.public())
                .map_err(|_| e)
        })
        .map_err(|detail| Error::BadKey {
            path: path.to_path_buf(),
            what: "public key",
            detail,
        })
}

/// At most this many signatures of one commit are copied from another
/// repository.
const MAX_SIGNATURES_COPIED: usize = 256;

/// What a commit's signature signs: its id as 64 hex digits.
pub fn commit_message(commit: &ObjectId) -> Vec<u8> {
    commit.to_hex().into_bytes()
}

impl Repo {
    /// `REPO/signatures/COMMIT/KEYID.sig`, relative to the repository.
    pub fn signature_rel(commit: &ObjectId, key_id: &str) -> String {
        format!("signatures/{}/{key_id}.sig", commit.to_hex())
    }

    /// Sign `commit` with `key`; returns the signature's path.
    pub fn sign_commit(&self, commit: &ObjectId, key: &SecretKey) -> Result<PathBuf> {
        let sig = key.sign(&commit_message(commit));
        self.store_signature(commit, &key.public().key_id(), &sig)
    }

    /// Keep a signature (checked by the caller) of `commit`.
    pub fn store_signature(&self, commit: &ObjectId, key_id: &str, sig: &[u8]) -> Result<PathBuf> {
        let rel = Self::signature_rel(commit, key_id);
        let path = self.path().join(&rel);
        let dir = path
            .parent()
            .expect("a signature has a directory")
            .to_path_buf();
        let io = |source| Error::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let fd = fsutil::open_dir(&dir).map_err(io)?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("an ASCII name");
        fsutil::atomic_write_at(&fd, name, sig, 0o644).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Copy the signatures `from` keeps of `commit` (`signatures/COMMIT/KEYID.sig`:
    /// regular files of 64 bytes, named by a 16-digit key id; anything else
    /// there is left) into this repository; returns how many. They are not
    /// checked here: whoever relies on one checks it with its key
    /// ([`Repo::verified_signer`]).
    pub fn copy_signatures(&self, from: &Repo, commit: &ObjectId) -> Result<usize> {
        use std::os::unix::fs::MetadataExt;
        let dir = from.path().join("signatures").join(commit.to_hex());
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => return Err(Error::Io { path: dir, source }),
        };
        let mut n = 0;
        for e in rd.take(MAX_SIGNATURES_COPIED) {
            let e = e.map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            let name = e.file_name();
            let Some(key_id) = name.to_str().and_then(|n| n.strip_suffix(".sig")) else {
                continue;
            };
            if key_id.len() != 16 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            // Not followed: a link or anything but a small regular file is left.
            let Ok(md) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if !md.file_type().is_file() || md.size() != 64 {
                continue;
            }
            let sig = std::fs::read(e.path()).map_err(|source| Error::Io {
                path: e.path(),
                source,
            })?;
            if sig.len() == 64 {
                self.store_signature(commit, key_id, &sig)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The key (of `keys`) whose signature of `commit` this repository
    /// holds and checks, if any.
    pub fn verified_signer(&self, commit: &ObjectId, keys: &[PublicKey]) -> Option<String> {
        keys.iter().find_map(|k| {
            let p = self.path().join(Self::signature_rel(commit, &k.key_id()));
            let sig = std::fs::read(p).ok()?;
            k.verify(&commit_message(commit), &sig).then(|| k.key_id())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_signatures_check() {
        let k = SecretKey::generate().expect("random");
        let again = SecretKey::from_pem(&k.to_pem()).expect("pem");
        assert_eq!(again.public(), k.public());
        let p = PublicKey::from_pem(&k.public().to_pem()).expect("public pem");
        let sig = k.sign(b"data");
        assert!(p.verify(b"data", &sig));
        assert!(!p.verify(b"datA", &sig));
        assert!(!p.verify(b"data", &sig[..63]));
        let other = SecretKey::generate().expect("random");
        assert!(!other.public().verify(b"data", &sig));
        assert_eq!(p.key_id().len(), 16);
        assert!(SecretKey::from_pem("not a key").is_err());
    }

    #[test]
    fn signatures_are_copied_and_nothing_else() {
        use crate::store::{Repo, RepoMode};
        let d = tempfile::tempdir().expect("tmp");
        let from = Repo::init(&d.path().join("from"), RepoMode::Archive).expect("from");
        let to = Repo::init(&d.path().join("to"), RepoMode::BareUser).expect("to");
        let commit = crate::hash::ObjectId::from_hex(&"ab".repeat(32)).expect("id");
        let k = SecretKey::generate().expect("random");
        assert_eq!(to.copy_signatures(&from, &commit).expect("none"), 0);
        from.sign_commit(&commit, &k).expect("sign");
        let dir = from.path().join("signatures").join(commit.to_hex());
        // A link, a wrong size, a name that is no key id: left.
        std::os::unix::fs::symlink("/etc/passwd", dir.join("0123456789abcdef.sig")).expect("ln");
        std::fs::write(dir.join("fedcba9876543210.sig"), [0u8; 63]).expect("short");
        std::fs::write(dir.join("../x.sig"), [0u8; 64]).expect("outside");
        std::fs::write(dir.join("not-a-key-id.sig"), [0u8; 64]).expect("name");
        assert_eq!(to.copy_signatures(&from, &commit).expect("copied"), 1);
        assert_eq!(
            to.verified_signer(&commit, &[k.public()]),
            Some(k.public().key_id())
        );
        let kept: Vec<_> = std::fs::read_dir(to.path().join("signatures").join(commit.to_hex()))
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
    }
}
