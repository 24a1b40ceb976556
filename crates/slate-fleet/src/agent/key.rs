//! The machine's key and its enrollment, kept in the agent's folder.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use slate_core::fsutil::AtomicFile;

use super::AgentError;

const KEY: &str = "machine.key";
const ENROLLED: &str = "enrolled.json";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |source| AgentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn write(path: &Path, data: &[u8], mode: u32) -> Result<(), AgentError> {
    let mut f = AtomicFile::create(path, mode).map_err(io(path))?;
    f.write_all(data).map_err(io(path))?;
    f.commit().map_err(io(path))
}

/// The machine's key: read, or made from the kernel's random numbers and
/// written (0600, atomically) in a folder made 0700.
pub fn load_or_make(state: &Path) -> Result<SigningKey, AgentError> {
    let path = state.join(KEY);
    match std::fs::read_to_string(&path) {
        Ok(pem) => {
            return SigningKey::from_pkcs8_pem(&pem).map_err(|e| AgentError::BadFile {
                path: path.clone(),
                detail: format!("not an Ed25519 private key in PEM: {e}"),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path)(e)),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state)
        .map_err(io(state))?;
    let mut seed = [0u8; 32];
    rustix::rand::getrandom(&mut seed, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| io(&path)(e.into()))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| AgentError::BadFile {
            path: path.clone(),
            detail: e.to_string(),
        })?;
    write(&path, pem.as_bytes(), 0o600)?;
    Ok(key)
}

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Enrolled {
    server: String,
    group: String,
    machine: String,
}

/// Enrolled with this server into this group already.
pub fn enrolled(state: &Path, server: &str, group: &str) -> Result<bool, AgentError> {
    let path: PathBuf = state.join(ENROLLED);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(&path)(e)),
    };
    let e: Enrolled = serde_json::from_str(&text).map_err(|e| AgentError::BadFile {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    Ok(e.server == server && e.group == group)
}

pub fn mark_enrolled(
    state: &Path,
    server: &str,
    group: &str,
    machine: &str,
) -> Result<(), AgentError> {
    let e = Enrolled {
        server: server.to_string(),
        group: group.to_string(),
        machine: machine.to_string(),
    };
    let text = serde_json::to_vec_pretty(&e).expect("serializes");
    write(&state.join(ENROLLED), &text, 0o600)
}

use std::os::unix::fs::DirBuilderExt;
