//! A deployment's record, `SYSROOT/slate/deploy/OS/ID.toml`: what it was
//! made from and how it boots. Written (atomically) after its tree is in
//! place and before its boot entry: a record whose deployment should boot
//! but has no entry is the leftover of an interrupted deploy.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{io_err, write_toml, Result, Sysroot};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub os: String,
    /// `COMMIT12.SERIAL`: the directory's name.
    pub id: String,
    pub serial: u64,
    /// The commit, 64 hex digits.
    pub commit: String,
    /// The ref it was deployed from (what `upgrade` follows), if any.
    pub origin: Option<String>,
    /// Kernel arguments besides `slate=`.
    pub kargs: Vec<String>,
    /// The kernel release, when the tree has a kernel (then it has a boot
    /// entry).
    pub kernel: Option<String>,
    /// The place in the order among deployments: the highest is the
    /// default. For a deployment with a boot entry the entry's `version`
    /// holds the same number and wins.
    pub priority: u64,
    pub pinned: bool,
    /// Unix time of the deploy.
    pub created: i64,
    /// `/etc` files changed both locally and in the new image: the local
    /// version was kept, the image's saved beside it.
    #[serde(default)]
    pub etc_conflicts: Vec<String>,
    /// The `os-release` `PRETTY_NAME` and `VERSION_ID` of the tree.
    #[serde(default)]
    pub pretty_name: String,
    #[serde(default)]
    pub version_id: String,
}

impl Record {
    /// `OS/ID`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.os, self.id)
    }
    /// The file name of its boot entry, without counter.
    pub fn entry_id(&self) -> String {
        format!("slate-{}-{}", self.os, self.id)
    }
    /// `slate=` of its kernel command line: the deployment's path in the
    /// sysroot.
    pub fn slate_arg(&self) -> String {
        format!("/slate/deploy/{}/{}", self.os, self.id)
    }
}

impl Sysroot {
    /// Every record of `os`, in no particular order.
    pub fn records(&self, os: &str) -> Result<Vec<Record>> {
        let dir = self.deploy_dir(os);
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for ent in rd {
            let ent = ent.map_err(io_err(&dir))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !name.ends_with(".toml") {
                continue;
            }
            out.push(read_record(&ent.path())?);
        }
        Ok(out)
    }

    /// Every record of every OS.
    pub fn all_records(&self) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        for os in self.oses()? {
            out.extend(self.records(&os)?);
        }
        Ok(out)
    }

    pub(crate) fn write_record(&self, r: &Record) -> Result<()> {
        write_toml(&self.deploy_dir(&r.os), &format!("{}.toml", r.id), r)
    }

    pub(crate) fn record_path(&self, r: &Record) -> std::path::PathBuf {
        self.deploy_dir(&r.os).join(format!("{}.toml", r.id))
    }

    pub(crate) fn deployment_path(&self, r: &Record) -> std::path::PathBuf {
        self.deploy_dir(&r.os).join(&r.id)
    }
}

fn read_record(p: &Path) -> Result<Record> {
    let b = std::fs::read(p).map_err(io_err(p))?;
    super::parse_toml(p, &b, "a deployment record")
}
