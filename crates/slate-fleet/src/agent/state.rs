//! The machine's kept state, synced with the server on each run: a file
//! the machine changed is uploaded; a file the server changed (a
//! replacement gave this machine another's state) is restored, unless
//! the machine changed it too since the last sync: then it is left as it
//! is and reported. What was last synced is kept in `STATE/state.json`
//! (each path's SHA-256 and the server's version of it).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use sha2::{Digest, Sha256};
use slate_core::fsutil::Root;

use super::restore::{self, Local};
use super::AgentError;
use crate::client::{Client, ClientError};
use crate::state::path;
use crate::state::wire::{File, Index, Upload};

const RECORD: &str = "state.json";

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Synced {
    sha256: String,
    version: String,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    files: BTreeMap<String, Synced>,
}

/// A file left as it is, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    pub path: String,
    pub why: String,
}

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StateSync {
    /// Restored from the server (where each landed, inside the root).
    pub restored: Vec<String>,
    pub uploaded: Vec<String>,
    pub conflicts: Vec<Conflict>,
    /// `systemctl try-restart ssh.service` after SSH host keys came back.
    pub ssh_restarted: bool,
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn read_record(state: &Path) -> Result<Record, AgentError> {
    let p = state.join(RECORD);
    match std::fs::read_to_string(&p) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| AgentError::BadFile {
            path: p,
            detail: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Record::default()),
        Err(source) => Err(AgentError::Io { path: p, source }),
    }
}

fn write_record(state: &Path, r: &Record) -> Result<(), AgentError> {
    let p = state.join(RECORD);
    let text = serde_json::to_vec_pretty(r).map_err(|e| AgentError::BadFile {
        path: p.clone(),
        detail: e.to_string(),
    })?;
    super::key::write(&p, &text, 0o600)
}

/// The machine's files that the group's patterns name.
fn local_files(
    root: &Root,
    keep: &[String],
    max: u64,
    conflicts: &mut Vec<Conflict>,
) -> Result<BTreeMap<String, Local>, AgentError> {
    let io = |p: &str| {
        let shown = root.display(p);
        move |source| AgentError::Io {
            path: shown.into(),
            source,
        }
    };
    let mut out = BTreeMap::new();
    for pattern in keep {
        let paths: Vec<String> = if pattern.contains('*') {
            let (dir, _) = pattern.rsplit_once('/').unwrap_or(("/", pattern));
            restore::list(root, dir)
                .map_err(io(dir))?
                .into_iter()
                .map(|n| format!("{dir}/{n}"))
                .filter(|p| path::matches(pattern, p) && path::check("path", p).is_ok())
                .collect()
        } else {
            vec![pattern.clone()]
        };
        for p in paths {
            match restore::read(root, &p, max) {
                Ok(Some(l)) => {
                    out.insert(p, l);
                }
                Ok(None) => {}
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => conflicts.push(Conflict {
                    path: p,
                    why: e.to_string(),
                }),
                Err(e) => return Err(io(&p)(e)),
            }
        }
    }
    Ok(out)
}

/// One sync. `restart_ssh`: restart sshd when host keys came back (not
/// at early boot, where sshd has not started yet).
pub fn sync(
    client: &Client,
    state: &Path,
    root: &Root,
    restart_ssh: bool,
) -> Result<StateSync, AgentError> {
    let index: Index = client.state_index()?;
    index.check().map_err(|e| AgentError::Answer {
        what: "the server's state index",
        detail: e.to_string(),
    })?;
    let mut record = read_record(state)?;
    let mut out = StateSync::default();
    let local = local_files(
        root,
        &index.keep,
        index.limits.file_bytes,
        &mut out.conflicts,
    )?;
    let mut restore_paths = Vec::new();
    let mut upload = Vec::new();
    for m in &index.files {
        let l = local.get(&m.path);
        let lsha = l.map(|l| sha(&l.content));
        match record.files.get(&m.path) {
            Some(r) if r.version == m.version => match &lsha {
                None => restore_paths.push(m.path.clone()),
                Some(s) if *s != r.sha256 => upload.push(m.path.clone()),
                Some(_) => {}
            },
            Some(r) => {
                // The server's copy changed (a replacement).
                if lsha.is_none() || lsha.as_deref() == Some(r.sha256.as_str()) {
                    restore_paths.push(m.path.clone());
                } else {
                    out.conflicts.push(Conflict {
                        path: m.path.clone(),
                        why: "changed here since the last sync, and on the server: left as it is"
                            .into(),
                    });
                }
            }
            None => match lsha {
                None => restore_paths.push(m.path.clone()),
                // Compared with the server's content below.
                Some(_) => restore_paths.push(m.path.clone()),
            },
        }
    }
    for p in local.keys() {
        if !index.files.iter().any(|m| &m.path == p) && !out.conflicts.iter().any(|c| &c.path == p)
        {
            upload.push(p.clone());
        }
    }
    if !restore_paths.is_empty() {
        let files = client.state_files()?;
        for p in &restore_paths {
            let Some(f) = files.files.iter().find(|f| &f.path == p) else {
                continue;
            };
            let content = f.check(0, &index.limits).map_err(|e| AgentError::Answer {
                what: "the server's state files",
                detail: e.to_string(),
            })?;
            let version = f.version.clone().unwrap_or_default();
            let ssha = sha(&content);
            let l = local.get(p);
            let lsha = l.map(|l| sha(&l.content));
            let known = record.files.get(p).map(|r| r.sha256.clone());
            if lsha.as_deref() == Some(ssha.as_str()) {
                // Already the same: only the record changes.
            } else if lsha.is_some() && known.is_none() {
                out.conflicts.push(Conflict {
                    path: p.clone(),
                    why: "made here, never synced, and the server holds another: left as it is"
                        .into(),
                });
                continue;
            } else if lsha.is_some() && lsha != known {
                out.conflicts.push(Conflict {
                    path: p.clone(),
                    why: "changed here since the last sync: left as it is".into(),
                });
                continue;
            } else {
                let landed = restore::write(
                    root,
                    p,
                    &Local {
                        content: content.clone(),
                        mode: f.mode,
                        uid: f.uid,
                        gid: f.gid,
                    },
                )
                .map_err(|source| AgentError::Io {
                    path: root.display(p).into(),
                    source,
                })?;
                out.restored.push(landed);
            }
            record.files.insert(
                p.clone(),
                Synced {
                    sha256: ssha,
                    version,
                },
            );
            // Every restored file is recorded at once: a later failure
            // does not make it look changed here.
            write_record(state, &record)?;
        }
    }
    if !upload.is_empty() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let files: Vec<File> = upload
            .iter()
            .filter_map(|p| local.get(p).map(|l| (p, l)))
            .map(|(p, l)| File {
                path: p.clone(),
                mode: l.mode,
                uid: l.uid,
                gid: l.gid,
                content: b64.encode(&l.content),
                version: None,
            })
            .collect();
        let stored = client.state_upload(&Upload { files })?;
        for m in stored.files {
            if let Some(l) = local.get(&m.path) {
                record.files.insert(
                    m.path.clone(),
                    Synced {
                        sha256: sha(&l.content),
                        version: m.version,
                    },
                );
                out.uploaded.push(m.path);
            }
        }
        write_record(state, &record)?;
    }
    if restart_ssh && out.restored.iter().any(|p| p.contains("/ssh")) {
        out.ssh_restarted = std::process::Command::new("systemctl")
            .args(["try-restart", "ssh.service"])
            .status()
            .is_ok_and(|s| s.success());
    }
    Ok(out)
}

/// Whether an error means the server keeps no state (an older server, or
/// one started without `--state-key`): the run goes on without it.
pub fn not_kept(e: &AgentError) -> bool {
    matches!(
        e,
        AgentError::Client(ClientError::Refused {
            status: 503 | 404,
            ..
        })
    )
}
