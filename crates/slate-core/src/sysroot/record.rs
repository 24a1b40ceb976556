//! A deployment's record, `SYSROOT/slate/deploy/OS/ID.toml`: what it was
//! made from and how it boots. Written (atomically) after its tree is in
//! place and before its boot entry: a record whose deployment should boot
//! but has no entry is the leftover of an interrupted deploy.

use serde::{Deserialize, Serialize};

use super::{write_toml, Error, Result, Sysroot};
use crate::fsutil::show;
use crate::remotes::Origin;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub os: String,
    /// `COMMIT12.SERIAL`: the directory's name.
    pub id: String,
    pub serial: u64,
    /// The commit, 64 hex digits.
    pub commit: String,
    /// The ref it was deployed from (what `upgrade` follows), if any:
    /// `REF` or `REMOTE:REF`, as records have always held it.
    pub origin: Option<Origin>,
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
    /// `/etc` paths changed both locally and in the new image: the local
    /// version was kept.
    #[serde(default)]
    pub etc_conflicts: Vec<String>,
    /// What the image did at each of them, and where its version was
    /// saved (`PATH.slate-new`) when it was.
    #[serde(default)]
    pub etc_merge: Vec<super::EtcConflict>,
    /// The `os-release` `PRETTY_NAME` and `VERSION_ID` of the tree.
    #[serde(default)]
    pub pretty_name: String,
    #[serde(default)]
    pub version_id: String,
    /// The image's version (the commit's `slate.image.version`, else the
    /// tree's os-release `IMAGE_VERSION`); empty when it says none.
    #[serde(default)]
    pub image_version: String,
    /// Set while the deployment is staged: checked out, its kernel in
    /// the boot directory, but no boot entry yet (`finalize-staged`
    /// writes it). Absent for a deployment that boots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<Staged>,
    /// The system extensions that go with it (`sysroot/ext/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<super::ExtUse>,
    /// Its `/usr` is a verity image (`ID/.usr.verity`): what maps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usr_verity: Option<crate::verity::UsrVerity>,
}

/// What a staged deployment's finalization needs, kept in its record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    /// Unix time of the stage.
    pub at: i64,
    /// The kernel arguments asked for: merged, when it is finalized, onto
    /// those of the deployment it follows then.
    #[serde(default)]
    pub kargs: Vec<String>,
    /// Boot-counting tries of its entry.
    pub tries: u32,
    /// Keep every older deployment when it becomes the default.
    #[serde(default)]
    pub retain: bool,
    /// The `linux` line of its entry-to-be (its kernel's files in the boot
    /// directory, which no cleanup removes while it is staged).
    #[serde(default)]
    pub linux: Option<String>,
    #[serde(default)]
    pub initrd: Option<String>,
    /// Unix time of a boot that found it still staged (the shutdown
    /// before did not finalize it) and kept it.
    #[serde(default)]
    pub kept_at_boot: Option<i64>,
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
    /// Every record of `os`, in no particular order. A record is read
    /// only from a regular file `ID.toml` (never through a symlink), and
    /// must name the OS and the id its file does: a record's names become
    /// paths.
    pub fn records(&self, os: &str) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        let Some(dir) = self.dir_if_there(&self.deploy_dir(os))? else {
            return Ok(out);
        };
        for (name, _) in dir.entries()? {
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !name.ends_with(".toml") {
                continue;
            }
            let p = dir.join(name);
            let Some(b) = dir.read(name)? else { continue };
            let r: Record = super::parse_toml(&p, &b, "a deployment record")?;
            if r.os != os || format!("{}.toml", r.id) != name || !valid_id(&r.id) {
                return Err(Error::Refused(format!(
                    "{}: not a deployment record of {os}: it names {:?}/{:?}",
                    show(&p),
                    r.os,
                    r.id
                )));
            }
            out.push(r);
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
        write_toml(
            &self.dir(&self.deploy_dir(&r.os))?,
            &format!("{}.toml", r.id),
            r,
        )
    }

    pub(crate) fn deployment_path(&self, r: &Record) -> std::path::PathBuf {
        self.deploy_dir(&r.os).join(&r.id)
    }
}

/// Whether `id` may name a deployment: `COMMIT12.SERIAL` as deploy makes
/// them (letters, digits, `.`; not starting with `.`).
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}
