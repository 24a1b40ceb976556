//! What the manifest adds to a tree beyond its inputs, and the parts of
//! the stateless transformation that ship files (`docs/stateless.md`):
//! sysusers.d and tmpfiles.d lines, units enabled or disabled, the preset
//! and drop-in that keep first-boot questions away, SSH host keys made at
//! first boot into `/var`, the kernel and initrd in `/usr/lib/modules`,
//! and the kernel arguments.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use super::manifest::Manifest;
use super::Error;

pub const MANIFEST_SYSUSERS: &str = "usr/lib/sysusers.d/slate-manifest.conf";
pub const MANIFEST_TMPFILES: &str = "usr/lib/tmpfiles.d/slate-manifest.conf";
pub const PRESET: &str = "usr/lib/systemd/system-preset/00-slate.preset";
pub const FIRSTBOOT_DROPIN: &str = "usr/lib/systemd/system/systemd-firstboot.service.d/slate.conf";
pub const SSH_UNIT: &str = "usr/lib/systemd/system/slate-ssh-host-keys.service";
pub const SSH_TMPFILES: &str = "usr/lib/tmpfiles.d/slate-ssh.conf";
/// Where a machine keeps the SSH host keys it made (`ssh-keygen -A -f`).
pub const SSH_STATE: &str = "/var/lib/slate/ssh";
pub const KERNEL_CMDLINE: &str = "usr/lib/kernel/cmdline";
/// systemd-update-done's unit, which some systemd packages (Debian 12's)
/// do not ship: without it `/etc/.updated` and `/var/.updated` are never
/// written, and every `ConditionNeedsUpdate=` unit runs at every boot.
pub const UPDATE_DONE_UNIT: &str = "usr/lib/systemd/system/systemd-update-done.service";

const UPDATE_DONE_TEXT: &str = "\
# Slate image: systemd-update-done's job, for a systemd without it. Units
# with ConditionNeedsUpdate= order themselves before this unit; it stamps
# /etc and /var with /usr's time, so they run once per new /usr.
[Unit]
Description=Mark /etc and /var updated
DefaultDependencies=no
Conflicts=shutdown.target
After=local-fs.target
Before=sysinit.target shutdown.target
ConditionNeedsUpdate=|/etc
ConditionNeedsUpdate=|/var

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for d in /etc /var; do touch -r /usr \"$d/.updated\" || exit 1; done'
";
/// Where Slate itself goes in an image, and its dracut module.
pub const SLATE_BIN: &str = "usr/bin/slate";
/// Slate for the initrd, built without network code (`--no-default-features`).
pub const SLATE_INITRD_BIN: &str = "usr/lib/slate/slate-initrd";
pub const DRACUT_MODULE: &str = "usr/lib/dracut/modules.d/50slate";

const DRACUT_MODULE_SETUP: &str = include_str!("../../../../dist/dracut/50slate/module-setup.sh");
const DRACUT_PREPARE_UNIT: &str =
    include_str!("../../../../dist/dracut/50slate/slate-prepare-root.service");
/// The unit that finalizes a staged deployment at shutdown, enabled.
pub const FINALIZE_UNIT: &str = "usr/lib/systemd/system/slate-finalize-staged.service";
const FINALIZE_UNIT_TEXT: &str =
    include_str!("../../../../dist/systemd/slate-finalize-staged.service");
const FINALIZE_UNIT_WANTS: &str =
    "usr/lib/systemd/system/multi-user.target.wants/slate-finalize-staged.service";
/// Drop-ins that keep the ESP mounted once mounted, wherever
/// systemd-gpt-auto-generator puts its automount (`/efi`, or `/boot`).
pub const ESP_AUTOMOUNT_DROPINS: [&str; 2] = [
    "usr/lib/systemd/system/efi.automount.d/slate-finalize-staged.conf",
    "usr/lib/systemd/system/boot.automount.d/slate-finalize-staged.conf",
];
const ESP_AUTOMOUNT_TEXT: &str = "\
# Slate: the ESP stays mounted once slate-finalize-staged.service has
# mounted it at boot (it requires the mount). An idle unmount would stop
# the mount unit, and with it that service, finalizing a staged deployment
# too early; at shutdown the ESP is unmounted after the finalization.
[Automount]
TimeoutIdleSec=0
";

/// Stage below `stage` what an image needs of Slate: the binary at
/// `usr/bin/slate` (`slate_bin` without its debug information), the
/// initrd's at `usr/lib/slate/slate-initrd` when given (a build without
/// network code), the dracut module that runs `slate admin
/// prepare-root` in the initrd, and `slate-finalize-staged.service`
/// (enabled: a link in `/usr`, which no preset undoes). Compose puts it
/// into the tree before the packages are installed, so the initrd dracut
/// makes carries it.
pub fn stage_slate(stage: &Path, slate_bin: &Path, initrd_bin: Option<&Path>) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let module = stage.join(DRACUT_MODULE);
    std::fs::create_dir_all(&module).map_err(Error::io(&module))?;
    let mut bins = vec![(slate_bin, stage.join(SLATE_BIN))];
    if let Some(initrd) = initrd_bin {
        bins.push((initrd, stage.join(SLATE_INITRD_BIN)));
    }
    for (from, bin) in &bins {
        let d = bin.parent().expect("a folder");
        std::fs::create_dir_all(d).map_err(Error::io(d))?;
        // Without its debug information (a tenth of the size, and what the
        // initrd carries); a plain copy where `strip` is missing.
        let stripped = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(bin)
            .arg(from)
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(from, bin).map_err(Error::io(from))?;
        }
        std::fs::set_permissions(bin, std::fs::Permissions::from_mode(0o755))
            .map_err(Error::io(bin))?;
    }
    // The update units: shipped with Slate, enabled by a manifest's [update].
    for (rel, text) in [
        (
            super::updates::UPGRADE_SERVICE,
            super::updates::UPGRADE_SERVICE_TEXT,
        ),
        (
            super::updates::UPGRADE_TIMER,
            super::updates::UPGRADE_TIMER_TEXT,
        ),
    ] {
        let p = stage.join(rel);
        let d = p.parent().expect("a folder");
        std::fs::create_dir_all(d).map_err(Error::io(d))?;
        std::fs::write(&p, text).map_err(Error::io(&p))?;
    }
    for (name, text, mode) in [
        ("module-setup.sh", DRACUT_MODULE_SETUP, 0o755),
        ("slate-prepare-root.service", DRACUT_PREPARE_UNIT, 0o644),
    ] {
        let p = module.join(name);
        std::fs::write(&p, text).map_err(Error::io(&p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .map_err(Error::io(&p))?;
    }
    let unit = stage.join(FINALIZE_UNIT);
    let units = unit.parent().expect("a folder");
    std::fs::create_dir_all(units).map_err(Error::io(units))?;
    std::fs::write(&unit, FINALIZE_UNIT_TEXT).map_err(Error::io(&unit))?;
    std::fs::set_permissions(&unit, std::fs::Permissions::from_mode(0o644))
        .map_err(Error::io(&unit))?;
    symlink(
        stage,
        FINALIZE_UNIT_WANTS,
        "../slate-finalize-staged.service",
    )?;
    for rel in ESP_AUTOMOUNT_DROPINS {
        let p = stage.join(rel);
        let d = p.parent().expect("a folder");
        std::fs::create_dir_all(d).map_err(Error::io(d))?;
        std::fs::write(&p, ESP_AUTOMOUNT_TEXT).map_err(Error::io(&p))?;
    }
    Ok(())
}

const PRESET_TEXT: &str = "\
# Slate image: units are enabled in /usr/lib/systemd by the image itself.
# On a first boot (an empty /etc) systemd applies presets; this one keeps it
# from enabling anything more, first-boot wizards included.
disable *
";

const FIRSTBOOT_TEXT: &str = "\
# Slate image: /etc is built from the image's factory defaults, so nothing
# asks questions at boot. Boot with slate.firstboot to be asked anyway.
[Unit]
ConditionKernelCommandLine=slate.firstboot
";

const SSH_UNIT_TEXT: &str = "\
# Slate image: SSH host keys belong to one machine and are never in the
# image. They are made once, at the first boot, into the persistent /var;
# /etc/ssh links to them (slate-ssh.conf in tmpfiles.d).
[Unit]
Description=SSH host keys of this machine
DefaultDependencies=no
After=local-fs.target systemd-tmpfiles-setup.service
Before=ssh.service sshd.service shutdown.target
Conflicts=shutdown.target
ConditionPathExists=!/var/lib/slate/ssh/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/mkdir -p /var/lib/slate/ssh/etc/ssh
ExecStart=/usr/bin/ssh-keygen -A -f /var/lib/slate/ssh
";

/// What this step added.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Added {
    /// Files written into `/usr` (paths in the image).
    pub files: Vec<String>,
    pub enabled: Vec<String>,
    pub disabled: Vec<String>,
    /// The kernel moved to `/usr/lib/modules`, when there is one.
    pub kernel: Option<String>,
}

pub(super) fn write_file(root: &Path, rel: &str, text: &str, out: &mut Added) -> Result<(), Error> {
    let p = root.join(rel);
    let dir = p.parent().expect("a file below the root");
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let fd = crate::fsutil::open_dir(dir).map_err(Error::io(dir))?;
    let name = p.file_name().expect("a file name").to_string_lossy();
    crate::fsutil::atomic_write_at(&fd, &name, text.as_bytes(), 0o644).map_err(Error::io(&p))?;
    out.files.push(format!("/{rel}"));
    Ok(())
}

pub(super) fn symlink(root: &Path, rel: &str, target: &str) -> Result<(), Error> {
    let p = root.join(rel);
    let dir = p.parent().expect("a link below the root");
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    match std::os::unix::fs::symlink(target, &p) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        r => r.map_err(Error::io(&p)),
    }
}

/// Run `systemctl --root=ROOT VERB UNIT...` (offline: links in the tree).
fn systemctl(root: &Path, verb: &str, units: &[String]) -> Result<(), Error> {
    if units.is_empty() {
        return Ok(());
    }
    let out = Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .arg("--no-reload")
        .arg(verb)
        .args(units)
        .output()
        .map_err(|e| Error::Tool {
            tool: "systemctl".into(),
            message: format!("cannot run it (the units of [units] are set with it): {e}"),
        })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: "systemctl".into(),
            message: format!(
                "{verb} {}: {}",
                units.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// The manifest's own lines and units, before the tree is made stateless.
pub fn apply_manifest(root: &Path, m: &Manifest, out: &mut Added) -> Result<(), Error> {
    let text = |lines: &[toml::Spanned<String>]| {
        let mut t = String::from("# From the image's manifest (slate compose).\n");
        for l in lines {
            t.push_str(l.get_ref());
            t.push('\n');
        }
        t
    };
    if !m.sysusers.lines.is_empty() {
        write_file(root, MANIFEST_SYSUSERS, &text(&m.sysusers.lines), out)?;
    }
    if !m.tmpfiles.lines.is_empty() {
        write_file(root, MANIFEST_TMPFILES, &text(&m.tmpfiles.lines), out)?;
    }
    let enable: Vec<String> = m.units.enable.iter().map(|u| u.get_ref().clone()).collect();
    let disable: Vec<String> = m
        .units
        .disable
        .iter()
        .map(|u| u.get_ref().clone())
        .collect();
    for u in enable.iter().chain(&disable) {
        let found = [
            "usr/lib/systemd/system",
            "lib/systemd/system",
            "etc/systemd/system",
        ]
        .iter()
        .any(|d| std::fs::symlink_metadata(root.join(d).join(u)).is_ok());
        if !found {
            return Err(Error::Input(format!(
                "[units]: {u}: no such unit in the image (looked in /usr/lib/systemd/system and /etc/systemd/system)"
            )));
        }
    }
    systemctl(root, "enable", &enable)?;
    systemctl(root, "disable", &disable)?;
    out.enabled = enable;
    out.disabled = disable;
    if !m.kernel.args.is_empty() {
        let args: Vec<&str> = m.kernel.args.iter().map(|a| a.get_ref().as_str()).collect();
        write_file(root, KERNEL_CMDLINE, &format!("{}\n", args.join(" ")), out)?;
    }
    Ok(())
}

/// The preset, the first-boot drop-in and, when the tree has an SSH
/// server, the unit and links that make its host keys at first boot.
pub fn first_boot(root: &Path, out: &mut Added) -> Result<(), Error> {
    write_file(root, PRESET, PRESET_TEXT, out)?;
    if root
        .join("usr/lib/systemd/system/systemd-firstboot.service")
        .exists()
        || root
            .join("lib/systemd/system/systemd-firstboot.service")
            .exists()
    {
        write_file(root, FIRSTBOOT_DROPIN, FIRSTBOOT_TEXT, out)?;
    }
    let has_systemd =
        root.join("usr/lib/systemd/systemd").exists() || root.join("lib/systemd/systemd").exists();
    if has_systemd
        && !root.join(UPDATE_DONE_UNIT).exists()
        && !root
            .join("lib/systemd/system/systemd-update-done.service")
            .exists()
    {
        write_file(root, UPDATE_DONE_UNIT, UPDATE_DONE_TEXT, out)?;
        symlink(
            root,
            "usr/lib/systemd/system/sysinit.target.wants/systemd-update-done.service",
            "../systemd-update-done.service",
        )?;
    }
    if root.join("usr/sbin/sshd").exists() {
        write_file(root, SSH_UNIT, SSH_UNIT_TEXT, out)?;
        symlink(
            root,
            "usr/lib/systemd/system/multi-user.target.wants/slate-ssh-host-keys.service",
            "../slate-ssh-host-keys.service",
        )?;
        let mut t = String::from(
            "# SSH host keys: made at first boot into /var (slate-ssh-host-keys.service).\n",
        );
        for k in ["ecdsa", "ed25519", "rsa"] {
            for ext in ["", ".pub"] {
                t.push_str(&format!(
                    "L /etc/ssh/ssh_host_{k}_key{ext} - - - - {SSH_STATE}/etc/ssh/ssh_host_{k}_key{ext}\n"
                ));
            }
        }
        write_file(root, SSH_TMPFILES, &t, out)?;
    }
    Ok(())
}

/// Move each kernel of `/boot` (`vmlinuz-KVER`, with `initrd.img-KVER`,
/// `config-KVER` and `System.map-KVER`) into `/usr/lib/modules/KVER/`,
/// and remove the links to them at the root; make `/efi`, the ESP's mount
/// point. Returns the newest version.
pub fn move_kernel(root: &Path) -> Result<Option<String>, Error> {
    let boot = root.join("boot");
    let mut versions = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&boot) {
        for e in rd.flatten() {
            if let Some(v) = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
            {
                versions.push(v.to_string());
            }
        }
    }
    versions.sort_by(|a, b| crate::version::strverscmp(a, b));
    for v in &versions {
        let dir = root.join("usr/lib/modules").join(v);
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        for (from, to) in [
            (format!("vmlinuz-{v}"), "vmlinuz"),
            (format!("initrd.img-{v}"), "initrd"),
            (format!("config-{v}"), "config"),
            (format!("System.map-{v}"), "System.map"),
        ] {
            let src = boot.join(&from);
            if std::fs::symlink_metadata(&src).is_ok() {
                std::fs::rename(&src, dir.join(to)).map_err(Error::io(&src))?;
            }
        }
    }
    for l in ["vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"] {
        for base in [root.to_path_buf(), boot.clone()] {
            let p = base.join(l);
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                std::fs::remove_file(&p).map_err(Error::io(&p))?;
            }
        }
    }
    // Where a machine mounts its ESP (systemd-gpt-auto-generator mounts
    // it on an empty /efi), and where Slate writes boot entries there.
    let efi = root.join("efi");
    if std::fs::symlink_metadata(&efi).is_err() {
        std::fs::create_dir(&efi).map_err(Error::io(&efi))?;
    }
    Ok(versions.pop())
}
