//! The state key file, kept apart from the database (`--state-key FILE`,
//! 0600): one key a line, `ID HEX`, an id of 16 hex digits and a
//! ChaCha20-Poly1305 key of 64; `#` starts a comment. The first key seals,
//! every key opens. A rotation writes a new first line (atomically); a
//! running server sees the file change (its inode, size and time) and
//! reads it again before it seals or opens, so a rotation needs no restart.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use slate_core::fsutil::AtomicFile;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("state key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state key file {}, line {line}: {why}", path.display())]
    Bad {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("state key file {}: readable by others (mode {mode:o}); chmod 600 it", path.display())]
    Open { path: PathBuf, mode: u32 },
    #[error("state key file {}: no key {id} (a row sealed by a key since removed)", path.display())]
    Unknown { path: PathBuf, id: String },
}

/// One key.
#[derive(Clone)]
pub struct Key {
    pub id: String,
    pub bytes: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A new key from the kernel's random numbers.
pub fn generate() -> std::io::Result<Key> {
    let mut bytes = [0u8; 32];
    rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty())?;
    Ok(Key {
        id: crate::random_hex(8)?,
        bytes,
    })
}

/// The keys of a file's text, first the sealing one.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Key>, KeyError> {
    let mut keys: Vec<Key> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |why: &str| KeyError::Bad {
            path: path.to_path_buf(),
            line: i + 1,
            why: why.to_string(),
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_ascii_whitespace();
        let (Some(id), Some(hexkey), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad("not `ID HEXKEY`"));
        };
        if id.len() != 16 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad("the id is not 16 lowercase hex digits"));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hexkey, &mut bytes)
            .map_err(|_| bad("the key is not 64 hex digits"))?;
        if keys.iter().any(|k| k.id == id) {
            return Err(bad("the id is given twice"));
        }
        keys.push(Key {
            id: id.to_string(),
            bytes,
        });
    }
    if keys.is_empty() {
        return Err(KeyError::Bad {
            path: path.to_path_buf(),
            line: 0,
            why: "holds no key".into(),
        });
    }
    Ok(keys)
}

/// The file's text for `keys`.
pub fn render(keys: &[Key]) -> String {
    let mut t = String::from(
        "# Slate fleet state keys (docs/format/fleet.md): the first seals, all open.\n",
    );
    for k in keys {
        t.push_str(&format!("{} {}\n", k.id, hex::encode(k.bytes)));
    }
    t
}

fn write(path: &Path, keys: &[Key]) -> Result<(), KeyError> {
    let mut f = AtomicFile::create(path, 0o600).map_err(io(path))?;
    f.write_all(render(keys).as_bytes()).map_err(io(path))?;
    f.commit().map_err(io(path))
}

type Stamp = (u64, u64, i64, i64, u64);

/// The file read, checked not to be readable by others; its stamp.
fn read(path: &Path) -> Result<(Vec<Key>, Stamp), KeyError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let m = std::fs::metadata(path).map_err(io(path))?;
    if m.mode() & 0o077 != 0 {
        return Err(KeyError::Open {
            path: path.to_path_buf(),
            mode: m.mode() & 0o7777,
        });
    }
    Ok((parse(path, &text)?, stamp(&m)))
}

fn stamp(m: &std::fs::Metadata) -> Stamp {
    (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size())
}

/// Read the key file, or make it (one new key, 0600) when it is missing.
pub fn load_or_create(path: &Path) -> Result<Vec<Key>, KeyError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keys = vec![generate().map_err(io(path))?];
            write(path, &keys)?;
            Ok(keys)
        }
        _ => Ok(read(path)?.0),
    }
}

/// Put a new key first (it seals from now on); the old ones still open.
/// The new key.
pub fn rotate(path: &Path) -> Result<Key, KeyError> {
    let (mut keys, _) = read(path)?;
    let new = generate().map_err(io(path))?;
    keys.insert(0, new.clone());
    write(path, &keys)?;
    Ok(new)
}

/// Drop every key but the first and those of `keep`; the ids dropped.
pub fn retire(path: &Path, keep: &[String]) -> Result<Vec<String>, KeyError> {
    let (keys, _) = read(path)?;
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (i, k) in keys.into_iter().enumerate() {
        if i == 0 || keep.contains(&k.id) {
            kept.push(k);
        } else {
            dropped.push(k.id);
        }
    }
    write(path, &kept)?;
    Ok(dropped)
}

/// A server's keys: the file read again whenever it changed.
#[derive(Debug)]
pub struct KeyRing {
    path: PathBuf,
    held: Mutex<(Vec<Key>, Stamp)>,
}

impl KeyRing {
    /// The keys of `path` (made when missing).
    pub fn open(path: &Path) -> Result<KeyRing, KeyError> {
        load_or_create(path)?;
        let held = read(path)?;
        Ok(KeyRing {
            path: path.to_path_buf(),
            held: Mutex::new(held),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keys as the file holds them now.
    fn fresh(&self) -> Result<Vec<Key>, KeyError> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::fs::metadata(&self.path).map_err(io(&self.path))?;
        if stamp(&now) != held.1 {
            *held = read(&self.path)?;
        }
        Ok(held.0.clone())
    }

    /// The key that seals.
    pub fn current(&self) -> Result<Key, KeyError> {
        self.fresh()?
            .into_iter()
            .next()
            .ok_or_else(|| KeyError::Bad {
                path: self.path.clone(),
                line: 0,
                why: "holds no key".into(),
            })
    }

    /// The key of `id`.
    pub fn get(&self, id: &str) -> Result<Key, KeyError> {
        self.fresh()?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| KeyError::Unknown {
                path: self.path.clone(),
                id: id.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_0600_rotated_and_read_again_by_a_running_ring() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.key");
        let ring = KeyRing::open(&path).expect("made");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let first = ring.current().expect("current");
        let new = rotate(&path).expect("rotated");
        assert_ne!(first.id, new.id);
        assert_eq!(ring.current().expect("current").id, new.id);
        assert_eq!(ring.get(&first.id).expect("old opens").bytes, first.bytes);
        assert_eq!(retire(&path, &[]).expect("retired"), vec![first.id.clone()]);
        assert!(matches!(ring.get(&first.id), Err(KeyError::Unknown { .. })));
    }

    #[test]
    fn a_bad_file_is_refused_with_its_line() {
        let p = Path::new("k");
        let e = parse(p, "# c\n0123456789abcdef zz\n").expect_err("bad");
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(parse(p, "").is_err());
        let k = format!("0123456789abcdef {}\n", "00".repeat(32));
        assert!(parse(p, &format!("{k}{k}")).is_err());
        assert_eq!(parse(p, &k).expect("one").len(), 1);
        let dir = tempfile::tempdir().expect("tempdir");
        let open = dir.path().join("k");
        std::fs::write(&open, &k).expect("write");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(KeyRing::open(&open), Err(KeyError::Open { .. })));
    }
}
