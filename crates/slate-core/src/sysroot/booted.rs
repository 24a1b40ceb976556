//! Which deployment is booted, and whether the sysroot is the running
//! system's: the kernel command line names a deployment
//! (`slate=/slate/deploy/OS/ID`); outside the initrd it counts for a
//! sysroot only when that deployment's `/usr` is the running `/usr`.
//! The host's facts (its command line, its `/usr`) are passed in.

use std::path::{Path, PathBuf};

use super::{booted_from_cmdline, Result, Sysroot};

/// How the booted deployment is told.
#[derive(Clone, Copy, Debug)]
pub enum BootedBy<'a> {
    /// A running system: its kernel command line (`/proc/cmdline`) and
    /// its `/usr`. The deployment named counts only if its `/usr` is
    /// that one; the sysroot is then the running one.
    Running { cmdline: &'a str, usr: &'a Path },
    /// The initrd: the kernel command line names the deployment about to
    /// boot, in the sysroot given.
    Initrd { cmdline: &'a str },
    /// A command line given for a sysroot that is not running (a disk).
    Cmdline(&'a str),
}

/// The sysroot when none is given: `/sysroot` when the running kernel
/// was booted from a Slate deployment (its command line names one), else
/// `/`.
pub fn default_path(proc_cmdline: &str) -> PathBuf {
    PathBuf::from(match booted_from_cmdline(proc_cmdline) {
        Some(_) => "/sysroot",
        None => "/",
    })
}

impl Sysroot {
    /// Open the sysroot at `path` with its booted deployment found as
    /// `by` says (and marked running when it is the running system's).
    pub fn open_booted(path: &Path, by: BootedBy<'_>) -> Result<Sysroot> {
        let mut s = Sysroot::open(path, None)?;
        let (booted, running) = match by {
            BootedBy::Cmdline(text) => (booted_from_cmdline(text), false),
            BootedBy::Initrd { cmdline } => (booted_from_cmdline(cmdline), false),
            BootedBy::Running { cmdline, usr } => {
                let b = booted_from_cmdline(cmdline).filter(|b| {
                    same_inode(&s.path.join("slate/deploy").join(b).join("usr"), usr)
                        || super::usr_verity::runs_verity_usr(cmdline, usr)
                });
                let running = b.is_some();
                (b, running)
            }
        };
        s.booted = booted;
        s.set_running(running);
        Ok(s)
    }
}

fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_booted_deployment_by_each_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sr");
        Sysroot::init_fs(&path, Some(Path::new("boot"))).expect("init");
        let usr = path.join("slate/deploy/os/abc.1/usr");
        std::fs::create_dir_all(&usr).expect("mkdir");
        let cl = "quiet slate=/slate/deploy/os/abc.1 ro";
        let booted = |by| {
            Sysroot::open_booted(&path, by)
                .expect("open")
                .booted()
                .map(String::from)
        };
        let named = Some("os/abc.1".to_string());
        assert_eq!(booted(BootedBy::Cmdline(cl)), named);
        assert_eq!(booted(BootedBy::Initrd { cmdline: cl }), named);
        // A running system counts only when the deployment's /usr is its.
        let other = dir.path().join("usr");
        std::fs::create_dir(&other).expect("mkdir");
        assert_eq!(
            booted(BootedBy::Running {
                cmdline: cl,
                usr: &other
            }),
            None
        );
        assert_eq!(
            booted(BootedBy::Running {
                cmdline: cl,
                usr: &usr
            }),
            named
        );
        assert_eq!(booted(BootedBy::Cmdline("quiet")), None);
        assert_eq!(default_path(cl), PathBuf::from("/sysroot"));
        assert_eq!(default_path("quiet ro"), PathBuf::from("/"));
    }
}
