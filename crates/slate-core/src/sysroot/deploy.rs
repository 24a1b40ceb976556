//! `deploy`: a commit becomes a deployment and the default. Plan first
//! (which OS, which id, which kernel, the kernel arguments, the space it
//! needs, what it replaces), then apply, in an order where a kill at any
//! moment leaves the old default or the new one, complete:
//!
//! 1. the commit's objects are checked (those of the deployment it
//!    follows were checked before);
//! 2. the tree is checked out under a temporary name, `/etc` prepared,
//!    then renamed to `deploy/OS/ID`;
//! 3. its record is written, and a ref `deploy/OS/ID` in the repository
//!    keeps its objects from `prune`;
//! 4. the kernel and initrd are copied to the boot directory;
//! 5. its boot entry is written under a temporary name and renamed: with
//!    the highest `version`, it is the boot loader's default from then on;
//! 6. deployments no longer wanted are removed, oldest first.

use serde::Serialize;

use super::kernel::{self, Kernel};
use super::status::Ordered;
use super::{entries, BootEntry, Error, OsConfig, Record, Result, Sysroot};
use crate::hash::ObjectId;
use crate::object::EntryKind;
use crate::progress::Progress;
use crate::remotes::{self, Origin};
use crate::store::{ObjectRead, Transaction};
use crate::walk;

#[derive(Clone, Debug)]
pub struct DeployOptions {
    /// The OS to deploy to; by default the booted deployment's, or the
    /// only one set up.
    pub os: Option<String>,
    /// Kernel arguments: `KEY=VALUE` or `KEY`, replacing any of the same
    /// key inherited from the deployment this one follows.
    pub kargs: Vec<String>,
    /// Boot-counting tries of the new entry (0: not counted).
    pub tries: u32,
    /// Keep every older deployment (by default only the booted one, the
    /// previous default and pinned ones stay).
    pub retain: bool,
    /// Where the commit comes from ([`Sysroot::resolve`] says): a ref is
    /// what `upgrade` follows; a remote's (or its tracking ref) must have
    /// signed the commit when it requires signatures. `None`: a commit
    /// named by its id.
    pub origin: Option<Origin>,
    /// When space is short, remove the oldest deployments that are
    /// neither booted nor pinned, one at a time, until it is not.
    pub auto_prune: bool,
    /// Unix time written into the record.
    pub now: i64,
    /// Stage the deployment ([`Sysroot::stage`]) instead of deploying it:
    /// finalized, `/etc` merged then, at shutdown.
    pub stage: bool,
    /// Leave out the extensions of the deployment followed that have no
    /// build fitting the new image (else the deploy is refused).
    pub drop_incompatible: bool,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            os: None,
            kargs: Vec::new(),
            tries: 3,
            retain: false,
            origin: None,
            auto_prune: false,
            now: 0,
            stage: false,
            drop_incompatible: false,
        }
    }
}

/// What a deploy will do.
#[derive(Clone, Debug, Serialize)]
pub struct DeployPlan {
    pub os: String,
    pub commit: ObjectId,
    /// The ref followed, if the commit came from one (never a commit id).
    pub origin: Option<Origin>,
    pub id: String,
    pub serial: u64,
    pub kernel: Option<Kernel>,
    pub kargs: Vec<String>,
    pub priority: u64,
    /// The deployment whose `/etc` and kernel arguments this one follows.
    pub follows: Option<String>,
    /// Deployments removed once the new one is the default (`OS/ID`).
    pub removes: Vec<String>,
    /// Bytes the deployment needs in the sysroot and in the boot directory.
    pub sysroot_bytes: u64,
    pub boot_bytes: u64,
    pub pretty_name: String,
    pub version_id: String,
    /// The image's version (its commit's `slate.image.version`, else its
    /// os-release's `IMAGE_VERSION`); empty when it says none.
    #[serde(default)]
    pub image_version: String,
    /// The origin recorded instead of `origin`: for the first deployment
    /// of an OS, the remote its image names (`slate.image.origin`), so
    /// `upgrade` follows it. The trust rule applies to `origin`, what the
    /// commit was taken from.
    #[serde(default)]
    pub image_origin: Option<Origin>,
    /// The OS's first deployment, when `os-init` chose no modes: the
    /// modes it takes from its image, set before anything is deployed.
    pub os_config: Option<OsConfig>,
    /// The system extensions it gets: those of the deployment it follows,
    /// at the build that fits its image (`sysroot/ext/`).
    pub extensions: Vec<super::ExtUse>,
    /// Those left out (`drop_incompatible`): no build fits.
    pub dropped_extensions: Vec<super::ExtDropped>,
    /// `/usr` as a verity image (the OS or the image asks for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usr_verity: Option<super::UsrPlan>,
}

/// What a deploy did.
#[derive(Clone, Debug, Serialize)]
pub struct Deployed {
    pub plan: DeployPlan,
    pub record: Record,
    /// The boot entry written, if the tree has a kernel.
    pub entry: Option<String>,
    pub removed: Vec<String>,
    /// File objects whose content was checked.
    pub checked_objects: usize,
    /// The staged deployments of the OS this deploy replaced (`OS/ID`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unstaged: Vec<String>,
}

/// `KEY` of `KEY=VALUE`.
fn karg_key(k: &str) -> &str {
    k.split_once('=').map_or(k, |(k, _)| k)
}

/// Whether `k` may be one kernel argument of an entry's `options` line:
/// not empty, one word (no whitespace or control character, which would
/// start another argument or another line of the entry), no `"` (the
/// kernel's quoting, which would join words), and not `slate=`, which
/// Slate sets itself. `what` names where it came from, for the message.
pub fn check_karg(k: &str, what: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::Refused(format!(
            "{what}: kernel argument {k:?}: {why}"
        )))
    };
    if k.is_empty() {
        return bad("empty");
    }
    if k.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("one argument is one word: no spaces, tabs, newlines or control characters");
    }
    if k.contains('"') {
        return bad("no quotes (they would join it with the arguments after it)");
    }
    if karg_key(k) == "slate" {
        return bad("slate= is set by Slate itself");
    }
    if karg_key(k) == crate::verity::KARG {
        return bad("slate.usrhash= is set by Slate itself, from the deployment's verity image");
    }
    Ok(())
}

/// `base` with each of `changes` replacing the argument of the same key,
/// or appended.
pub fn merge_kargs(base: &[String], changes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for c in changes {
        match out.iter_mut().find(|k| karg_key(k) == karg_key(c)) {
            Some(k) => *k = c.clone(),
            None => out.push(c.clone()),
        }
    }
    out
}

/// The kernel arguments the image asks for: `/usr/lib/kernel/cmdline` of
/// its tree (comments, `slate=` and `slate.usrhash=` left out).
pub fn image_kargs<S: ObjectRead + ?Sized>(store: &S, root: &ObjectId) -> Vec<String> {
    let Ok(Some((EntryKind::File, id))) = walk::lookup(store, root, b"usr/lib/kernel/cmdline")
    else {
        return Vec::new();
    };
    let Ok(text) = store.open_file(&id).and_then(|mut s| s.read_all()) else {
        return Vec::new();
    };
    if text.len() > 64 << 10 {
        return Vec::new();
    }
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .filter(|k| karg_key(k) != "slate" && karg_key(k) != crate::verity::KARG)
        .map(str::to_string)
        .collect()
}

/// `PRETTY_NAME` and `VERSION_ID` of the tree's os-release.
pub(crate) fn os_release<S: ObjectRead + ?Sized>(store: &S, root: &ObjectId) -> (String, String) {
    for p in [&b"usr/lib/os-release"[..], b"etc/os-release"] {
        if let Ok(Some((EntryKind::File, id))) = walk::lookup(store, root, p) {
            if let Ok(text) = store.open_file(&id).and_then(|mut s| s.read_all()) {
                if text.len() > 64 << 10 {
                    continue;
                }
                let text = String::from_utf8_lossy(&text);
                let field = |k: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                        .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
                        .unwrap_or_default()
                };
                return (field("PRETTY_NAME"), field("VERSION_ID"));
            }
        }
    }
    (String::new(), String::new())
}

impl Sysroot {
    /// The OS a command acts on: the one named, else the booted
    /// deployment's, else the only one set up.
    pub fn pick_os(&self, os: Option<&str>) -> Result<String> {
        if let Some(os) = os {
            self.os_config(os)?;
            return Ok(os.to_string());
        }
        if let Some(b) = &self.booted {
            if let Some((os, _)) = b.split_once('/') {
                return Ok(os.to_string());
            }
        }
        let oses = self.oses()?;
        match oses.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::Refused(
                "no OS is set up in this sysroot; run `slate admin os-init NAME` first".into(),
            )),
            _ => Err(Error::Refused(format!(
                "this sysroot has several OSes ({}); name one with --os",
                oses.join(", ")
            ))),
        }
    }

    /// Plan the deployment of `commit`.
    /// A commit whose origin names a remote that requires signatures
    /// must carry one of its keys' ([`remotes::require_trusted`]).
    pub fn plan_deploy(&self, commit: &ObjectId, opts: &DeployOptions) -> Result<DeployPlan> {
        if let Some(origin) = &opts.origin {
            remotes::require_trusted(&self.repo, origin, commit)?;
        }
        let os = self.pick_os(opts.os.as_deref())?;
        let c = self.repo.read_commit(commit)?;
        let order = self.ordered()?;
        let follows = self.merge_deployment(&order, &os);
        let serial = self.next_serial(&os, &order)?;
        let id = format!("{}.{serial}", &commit.to_hex()[..12]);
        let kernel = kernel::find(&self.repo, &c.tree)?;
        for k in &opts.kargs {
            check_karg(k, "the kernel arguments asked for")?;
        }
        let base = follows.map(|d| d.record.kargs.clone()).unwrap_or_default();
        if let Some(d) = follows {
            for k in &base {
                check_karg(k, &format!("the record of {}", d.record.name()))?;
            }
        }
        let kargs = merge_kargs(&base, &opts.kargs);
        let priority = order.iter().map(|d| d.priority()).max().unwrap_or(0) + 1;
        let removes = if opts.retain {
            Vec::new()
        } else {
            self.auto_removals(&order, &os)
        };
        let (pretty_name, version_id) = os_release(&self.repo, &c.tree);
        let image_version = super::image_remotes::image_version(&self.repo, &c);
        let first = !order.iter().any(|d| d.record.os == os);
        let image_origin = match &opts.origin {
            Some(Origin::Remote { .. }) => None,
            _ if first => super::image_remotes::image_origin(&self.repo, &c),
            _ => None,
        };
        let cfg = self.os_config(&os)?;
        let os_config = if cfg.from_image && !order.iter().any(|d| d.record.os == os) {
            Some(cfg.with_image(&c.metadata)?)
        } else {
            None
        };
        let (extensions, dropped_extensions) =
            self.plan_extensions(follows.map(|d| &d.record), commit, opts.drop_incompatible)?;
        let usr_verity =
            super::usr_verity::usr_plan(os_config.as_ref().unwrap_or(&cfg).usr, &c.metadata)?;
        let mut sysroot_bytes = self.private_bytes(&c.tree)?;
        if usr_verity.is_some() {
            sysroot_bytes += self.usr_image_bytes(commit)?;
        }
        let boot_bytes = match &kernel {
            Some(k) => self.kernel_bytes_needed(&os, k)?,
            None => 0,
        };
        Ok(DeployPlan {
            os,
            commit: *commit,
            origin: opts.origin.clone().filter(Origin::is_ref),
            id,
            serial,
            kernel,
            kargs,
            priority,
            follows: follows.map(|d| d.record.name()),
            removes,
            sysroot_bytes,
            boot_bytes,
            pretty_name,
            version_id,
            image_version,
            image_origin,
            os_config,
            extensions,
            dropped_extensions,
            usr_verity,
        })
    }

    /// The deployment a new one of `os` follows: the booted one when it is
    /// of `os`, else the first of `os` in the boot order.
    pub(crate) fn merge_deployment<'o>(
        &self,
        order: &'o [Ordered],
        os: &str,
    ) -> Option<&'o Ordered> {
        let booted = self
            .booted
            .as_deref()
            .and_then(|b| order.iter().find(|d| d.record.name() == b))
            .filter(|d| d.record.os == os);
        booted.or_else(|| order.iter().find(|d| d.record.os == os))
    }

    fn next_serial(&self, os: &str, order: &[Ordered]) -> Result<u64> {
        let mut max = order
            .iter()
            .filter(|d| d.record.os == os)
            .map(|d| d.record.serial)
            .max()
            .unwrap_or(0);
        // Leftovers of interrupted deploys keep their numbers too.
        if let Some(dir) = self.dir_if_there(&self.deploy_dir(os))? {
            for (n, _) in dir.entries()? {
                let n = n.to_string_lossy();
                let n = n.trim_start_matches(".staging-");
                if let Some(s) = n
                    .split('.')
                    .nth(1)
                    .and_then(|s| s.trim_end_matches(".toml").parse::<u64>().ok())
                {
                    max = max.max(s);
                }
            }
        }
        Ok(max + 1)
    }

    /// Deployments of `os` that a new deploy replaces: all but the booted
    /// one, the current default of `os` (the rollback) and pinned ones.
    pub(crate) fn auto_removals(&self, order: &[Ordered], os: &str) -> Vec<String> {
        let keep_first = order
            .iter()
            .find(|d| d.record.os == os)
            .map(|d| d.record.name());
        order
            .iter()
            .filter(|d| d.record.os == os && !d.record.pinned)
            .map(|d| d.record.name())
            .filter(|n| {
                Some(n) != keep_first.as_ref() && Some(n.as_str()) != self.booted.as_deref()
            })
            .collect()
    }

    /// Bytes of the files a deployment copies (everything outside `/usr`)
    /// and of its directories.
    fn private_bytes(&self, root: &ObjectId) -> Result<u64> {
        struct Sizes<'a> {
            repo: &'a crate::store::Repo,
            bytes: u64,
        }
        impl walk::Visitor for Sizes<'_> {
            type Error = crate::store::Error;
            fn tree(
                &mut self,
                _p: &[u8],
                _id: &ObjectId,
                _t: &crate::object::Tree,
            ) -> crate::store::Result<()> {
                self.bytes += 4096;
                Ok(())
            }
            fn file(
                &mut self,
                path: &[u8],
                e: &crate::object::TreeEntry,
            ) -> crate::store::Result<()> {
                if !(path.starts_with(b"usr/") || path == b"usr") {
                    let size = self.repo.file_header(&e.id)?.size;
                    self.bytes += size.div_ceil(4096) * 4096;
                }
                Ok(())
            }
        }
        let mut s = Sizes {
            repo: &self.repo,
            bytes: 0,
        };
        walk::walk(&self.repo, root, b"", &mut s)?;
        Ok(s.bytes)
    }

    /// Carry out `plan`. `progress` counts the paths checked out.
    pub fn deploy(
        &self,
        plan: DeployPlan,
        opts: &DeployOptions,
        progress: &Progress,
    ) -> Result<Deployed> {
        // The trust rule again: a plan is plain data a caller could build.
        if let Some(origin) = &plan.origin {
            remotes::require_trusted(&self.repo, origin, &plan.commit)?;
        }
        if let Some(cfg) = &plan.os_config {
            self.os_init(&plan.os, cfg)?;
        }
        // A commit that went bad is noted before the deployment whose
        // entry says so can be removed (and a list that cannot be read
        // refuses the deploy before anything is written).
        self.note_bad_commits(&plan.os, opts.now)?;
        let pruned = self.make_room(&plan, opts)?;
        let order = self.ordered()?;
        let follows = plan
            .follows
            .as_deref()
            .and_then(|f| order.iter().find(|d| d.record.name() == f));
        // 1 and 2. The objects, the tree, /etc.
        let (checked_objects, conflicts, usr_verity) = self.check_out(&plan, follows, progress)?;
        self.ext_check_out_all(&plan.os, &plan.extensions, progress)?;
        // 3. The record and the ref.
        let record = Record {
            os: plan.os.clone(),
            id: plan.id.clone(),
            serial: plan.serial,
            commit: plan.commit.to_hex(),
            origin: plan.image_origin.clone().or_else(|| plan.origin.clone()),
            kargs: plan.kargs.clone(),
            kernel: plan.kernel.as_ref().map(|k| k.version.clone()),
            priority: plan.priority,
            pinned: false,
            created: opts.now,
            etc_conflicts: conflicts.iter().map(|c| c.path.clone()).collect(),
            etc_merge: conflicts,
            pretty_name: plan.pretty_name.clone(),
            version_id: plan.version_id.clone(),
            image_version: plan.image_version.clone(),
            staged: None,
            extensions: plan.extensions.clone(),
            usr_verity,
        };
        self.write_record(&record)?;
        let mut tx = Transaction::begin(&self.repo)?;
        tx.set_ref(&deploy_ref(&record), None, plan.commit)?;
        tx.commit()?;
        // 4 and 5. The kernel, then the entry: the switch.
        let entry = match &plan.kernel {
            Some(k) => {
                let files = self.install_kernel(&plan.os, k)?;
                let e = self.entry_for(&record, files, plan.priority, opts.tries)?;
                entries::write(&self.entries_handle()?, &e)?;
                Some(e.file)
            }
            None => None,
        };
        // 6. What the new deployment replaces, and what was staged for
        // the OS (this deploy is the default now).
        let unstaged = self.drop_staged(&plan.os, None)?;
        let mut removed = pruned;
        for name in &plan.removes {
            if removed.contains(name) {
                continue;
            }
            if self.undeploy_unlocked(name, false).is_ok() {
                removed.push(name.clone());
            }
        }
        self.remove_unused_kernels()?;
        self.ext_gc(&plan.os)?;
        self.repo.sync()?;
        Ok(Deployed {
            plan,
            record,
            entry,
            removed,
            checked_objects,
            unstaged,
        })
    }

    /// The boot entry of a deployment, its kernel's files at `linux` and
    /// `initrd` (paths inside the boot directory).
    pub(crate) fn entry_for(
        &self,
        r: &Record,
        (linux, initrd): (String, Option<String>),
        priority: u64,
        tries: u32,
    ) -> Result<BootEntry> {
        // The image's own arguments first (`/usr/lib/kernel/cmdline`, what
        // compose writes from the manifest), the deployment's after them,
        // replacing any of the same key.
        let image = ObjectId::from_hex(&r.commit)
            .ok()
            .and_then(|c| self.repo.read_commit(&c).ok())
            .map(|c| image_kargs(&self.repo, &c.tree))
            .unwrap_or_default();
        let mut options = merge_kargs(&image, &r.kargs);
        for k in &options {
            check_karg(k, &format!("the entry of {}", r.name()))?;
        }
        options.push(format!("slate={}", r.slate_arg()));
        if let Some(v) = &r.usr_verity {
            options.push(format!("{}={}", crate::verity::KARG, v.root_hash));
        }
        // The image's name, on one line.
        let pretty: String = r
            .pretty_name
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let title =
            super::image_remotes::entry_title(pretty.trim(), &r.image_version, &r.os, &r.id);
        let tries = (tries > 0).then_some((tries, 0));
        Ok(BootEntry {
            file: entries::file_name(&r.entry_id(), tries),
            id: r.entry_id(),
            tries,
            title,
            version: priority.to_string(),
            sort_key: "slate".into(),
            linux,
            initrd: initrd.into_iter().collect(),
            options: options.join(" "),
        })
    }
}

/// The repository ref that keeps a deployment's objects.
pub(crate) fn deploy_ref(r: &Record) -> String {
    format!("deploy/{}/{}", r.os, r.id)
}

/// `1.5 GiB`, `300 MiB`, `12 KiB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::{check_karg, merge_kargs};

    #[test]
    fn a_kernel_argument_is_one_word_and_not_slate() {
        for good in ["quiet", "root=/dev/vda2", "console=ttyS0,115200n8", "a=b=c"] {
            assert!(check_karg(good, "t").is_ok(), "{good}");
        }
        for bad in [
            "",
            "quiet\ninitrd /evil",
            "x slate=/slate/deploy/os/old",
            "a\tb",
            "a\rb",
            "a\u{0}",
            "a\u{85}b",
            "a\u{a0}b",
            "x=\"y",
            "\"slate=/x\"",
            "slate=/x",
            "slate",
        ] {
            assert!(check_karg(bad, "t").is_err(), "{bad:?}");
        }
        let base = vec!["root=/dev/vda2".to_string(), "quiet".to_string()];
        assert_eq!(
            merge_kargs(&base, &["root=/dev/vdb1".to_string(), "ro".to_string()]),
            ["root=/dev/vdb1", "quiet", "ro"]
        );
    }
}
