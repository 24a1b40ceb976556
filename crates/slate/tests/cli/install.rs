//! `slate admin install --disk`: the disk an image file becomes, read back
//! with the tools a machine's firmware and boot loader stand for (sfdisk,
//! mtools, debugfs). Booting it is the end-to-end test's.

use std::path::Path;
use std::process::Command;

use crate::common::{have, init, is_root, ok, skip, slate_bin};

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, content).expect("write");
}

fn install(args: &[&str]) -> std::process::Output {
    Command::new(slate_bin())
        .args(["admin", "install"])
        .args(args)
        .output()
        .expect("slate admin install")
}

fn tool(cmd: &mut Command) -> String {
    let o = cmd.output().expect("tool");
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Why a disk cannot be made here, if it cannot.
fn missing_tools() -> Option<String> {
    if !is_root() {
        return Some("install makes a sysroot with real owners: needs root".into());
    }
    for t in ["sfdisk", "mkfs.vfat", "mcopy", "mkfs.ext4", "debugfs"] {
        if !have(t) {
            return Some(format!(
                "{t} is not installed (fdisk, dosfstools, mtools, e2fsprogs)"
            ));
        }
    }
    if !Path::new(slate_core::install::disk::SYSTEMD_BOOT_EFI).exists() {
        return Some("systemd-boot-efi is not installed".into());
    }
    None
}

/// A repository in `t` whose `os/main` is a small bootable-looking image
/// (a kernel, an initrd, kernel arguments, `/etc` stateless).
fn image_repo(t: &Path) -> std::path::PathBuf {
    let tree = t.join("tree");
    write(
        &tree,
        "usr/lib/modules/6.1.0-test/vmlinuz",
        "kernel image\n",
    );
    write(&tree, "usr/lib/modules/6.1.0-test/initrd", "initrd image\n");
    write(&tree, "usr/lib/kernel/cmdline", "console=ttyS0\n");
    write(
        &tree,
        "usr/lib/os-release",
        "PRETTY_NAME=\"Disk Test\"\nVERSION_ID=1\n",
    );
    write(&tree, "usr/bin/tool", "tool\n");
    write(&tree, "etc/motd", "hello\n");
    std::fs::create_dir_all(tree.join("var/lib")).expect("mkdir");
    let repo = init(t, "bare");
    let r = repo.to_str().expect("utf-8");
    ok(
        &repo,
        &[
            "commit",
            "--repo",
            r,
            "-b",
            "os/main",
            "--add-metadata",
            "slate.deploy.etc=stateless",
            tree.to_str().expect("utf-8"),
        ],
    );
    repo
}

/// Read a disk made by `install --json` (its output `v`) back as firmware
/// and the boot loader would: the table, the ESP, the root's sysroot.
fn read_back(disk: &Path, v: &serde_json::Value, work: &Path) {
    let d = disk.to_str().expect("utf-8");
    let root_uuid = v["layout"]["root_uuid"]
        .as_str()
        .expect("root uuid")
        .to_string();
    let esp_mib = v["layout"]["esp_mib"].as_u64().expect("esp size");
    // The table: GPT, the two types of the Discoverable Partitions
    // Specification, the root's PARTUUID the one the entry names.
    let table: serde_json::Value =
        serde_json::from_str(&tool(Command::new("sfdisk").arg("--json").arg(disk)))
            .expect("sfdisk json");
    let parts = table["partitiontable"]["partitions"]
        .as_array()
        .expect("partitions");
    assert_eq!(table["partitiontable"]["label"], "gpt");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["type"], slate_core::install::disk::ESP_TYPE);
    assert_eq!(
        parts[1]["type"],
        slate_core::install::disk::ROOT_X86_64_TYPE
    );
    assert_eq!(parts[1]["uuid"].as_str(), Some(root_uuid.as_str()));
    assert_eq!(parts[0]["start"], 2048);

    // The ESP, as firmware and systemd-boot read it.
    let esp = format!("{d}@@1M");
    let listing = tool(Command::new("mdir").args(["-i", &esp, "-b", "-/", "::/"]));
    assert!(listing.contains("::/EFI/BOOT/BOOTX64.EFI"), "{listing}");
    assert!(listing.contains("::/loader/loader.conf"), "{listing}");
    let entry_path = listing
        .lines()
        .find(|l| l.starts_with("::/loader/entries/") && l.ends_with(".conf"))
        .expect("a boot entry")
        .to_string();
    let entry = tool(Command::new("mcopy").args(["-i", &esp, &entry_path, "-"]));
    assert!(
        entry.contains(&format!(
            "options console=ttyS0 root=PARTUUID={} rw quiet slate=/slate/deploy/test/",
            root_uuid.to_lowercase()
        )),
        "{entry}"
    );
    let linux = entry
        .lines()
        .find_map(|l| l.strip_prefix("linux "))
        .expect("linux line")
        .trim();
    assert_eq!(
        tool(Command::new("mcopy").args(["-i", &esp, &format!("::{linux}"), "-"])),
        "kernel image\n"
    );

    // The root: a sysroot whose boot directory is /efi, with the deployment.
    let root_img = work.join("root.img");
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = std::fs::File::open(disk).expect("disk");
        f.seek(SeekFrom::Start((1 + esp_mib) << 20)).expect("seek");
        let mut out = std::fs::File::create(&root_img).expect("root.img");
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..v["layout"]["root_mib"].as_u64().expect("root size") {
            f.read_exact(&mut buf).expect("read");
            out.write_all(&buf).expect("write");
        }
    }
    let dbg = |cmd: &str| tool(Command::new("debugfs").args(["-R", cmd]).arg(&root_img));
    assert!(dbg("cat /slate/sysroot.toml").contains("boot = \"/efi\""));
    assert!(dbg("cat /slate/state/test/os.toml").contains("etc = \"stateless\""));
    let deploy = dbg("ls -p /slate/deploy/test");
    assert!(deploy.contains(".1.toml"), "{deploy}");
    // A clean file system: made in place on the disk, at its offset.
    tool(Command::new("e2fsck").arg("-fn").arg(&root_img));
    std::fs::remove_file(&root_img).expect("rm root.img");
}

#[test]
#[cfg_attr(
    not(all(
        test_root,
        test_have = "sfdisk",
        test_have = "mkfs.vfat",
        test_have = "mcopy",
        test_have = "mkfs.ext4",
        test_have = "debugfs",
        test_have = "systemd-boot-efi"
    )),
    ignore = "needs root, fdisk, dosfstools, mtools, e2fsprogs and systemd-boot-efi"
)]
fn install_makes_a_gpt_disk_with_esp_and_root() {
    if let Some(why) = missing_tools() {
        return skip(&why);
    }
    let t = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let repo = image_repo(t.path());
    let r = repo.to_str().expect("utf-8");
    let disk = t.path().join("disk.img");
    let d = disk.to_str().expect("utf-8");
    let work = t.path().to_str().expect("utf-8");
    let o = install(&[
        "--from",
        r,
        "--disk",
        d,
        "--os",
        "test",
        "--workdir",
        work,
        "--karg",
        "quiet",
        "--json",
        "os/main",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        std::fs::metadata(&disk).expect("disk").len(),
        v["bytes"].as_u64().expect("bytes")
    );

    read_back(&disk, &v, t.path());

    // A disk with partitions is refused, named, and left as it was.
    let before = std::fs::read(&disk).expect("disk");
    let o = install(&["--from", r, "--disk", d, "--workdir", work, "os/main"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("2 partition(s)") && err.contains("--force"),
        "{err}"
    );
    assert!(
        std::fs::read(&disk).expect("disk") == before,
        "the disk changed"
    );
    // Another install writing the same target is refused, the disk kept.
    let partial = slate_core::install::disk::partial_path(&disk);
    {
        let held = std::fs::File::create(&partial).expect("partial");
        rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).expect("flock");
        let o = install(&[
            "--from",
            r,
            "--disk",
            d,
            "--workdir",
            work,
            "--force",
            "os/main",
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("another install"),
            "{err}"
        );
        assert!(
            std::fs::read(&disk).expect("disk") == before,
            "the disk changed"
        );
    }
    // What a killed install left (a partial disk, its lock free) is reused.
    std::fs::write(&partial, vec![0xa5u8; 3 << 20]).expect("partial disk");
    // --force replaces it (a new root PARTUUID).
    let o = install(&[
        "--from",
        r,
        "--disk",
        d,
        "--workdir",
        work,
        "--force",
        "--size",
        "2G",
        "--os",
        "test",
        "--karg",
        "quiet",
        "--json",
        "os/main",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v2: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_ne!(v2["layout"]["root_uuid"], v["layout"]["root_uuid"]);
    assert_eq!(std::fs::metadata(&disk).expect("disk").len(), 2 << 30);
    assert!(!partial.exists(), "the partial disk is still there");
    read_back(&disk, &v2, t.path());
    // Nothing is left in the work folder but what the test made.
    let left: Vec<_> = std::fs::read_dir(t.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("slate-install-") || n.ends_with(".slate-disk"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: install makes a sysroot with real owners"
)]
fn install_refuses_an_image_without_a_kernel() {
    if !is_root() {
        return skip("install makes a sysroot with real owners: needs root");
    }
    let t = tempfile::tempdir().expect("tempdir");
    let tree = t.path().join("tree");
    write(&tree, "usr/bin/tool", "tool\n");
    let repo = init(t.path(), "bare");
    let r = repo.to_str().expect("utf-8");
    ok(
        &repo,
        &[
            "commit",
            "--repo",
            r,
            "-b",
            "os/main",
            tree.to_str().expect("utf-8"),
        ],
    );
    let disk = t.path().join("disk.img");
    let o = install(&[
        "--from",
        r,
        "--disk",
        disk.to_str().expect("utf-8"),
        "--workdir",
        t.path().to_str().expect("utf-8"),
        "os/main",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("has no kernel"),
        "{err}"
    );
    assert!(!disk.exists());
}

/// A loop device over a file, detached when dropped.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["--detach", &self.0]).status();
    }
}

#[test]
#[cfg_attr(
    not(all(
        test_root,
        test_have = "sfdisk",
        test_have = "mkfs.vfat",
        test_have = "mcopy",
        test_have = "mkfs.ext4",
        test_have = "debugfs",
        test_have = "systemd-boot-efi",
        test_have = "losetup"
    )),
    ignore = "needs root, fdisk, dosfstools, mtools, e2fsprogs, systemd-boot-efi and losetup"
)]
fn install_on_a_block_device() {
    if let Some(why) = missing_tools() {
        return skip(&why);
    }
    let t = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let backing = t.path().join("device.img");
    std::fs::File::create(&backing)
        .and_then(|f| f.set_len(1200 << 20))
        .expect("backing file");
    let o = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&backing)
        .output();
    let dev = match o {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => {
            return skip(&format!(
                "no loop device here: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => return skip(&format!("losetup cannot run: {e}")),
    };
    let lo = Loop(dev.clone());
    let repo = image_repo(t.path());
    let r = repo.to_str().expect("utf-8");
    let work = t.path().to_str().expect("utf-8");
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "--from",
            r,
            "--disk",
            &dev,
            "--os",
            "test",
            "--workdir",
            work,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push("os/main".into());
        a
    };
    let run = |extra: &[&'static str]| {
        let a = args(extra);
        install(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // A device someone holds (here: an exclusive open, as a mount takes
    // it) is refused, named, and not written.
    {
        use rustix::fs::{Mode, OFlags};
        let _held = rustix::fs::open(
            dev.as_str(),
            OFlags::RDONLY | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("exclusive open");
        let o = run(&[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "installed onto a device in use");
        assert!(err.contains(&dev) && err.contains("in use"), "{err}");
        assert!(slate_core::install::disk::existing_partitions(&backing).is_empty());
    }

    // Written in place, the root partition filling the device.
    let o = run(&["--karg", "quiet", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let bytes = v["bytes"].as_u64().expect("bytes");
    assert!(
        bytes <= 1200 << 20 && bytes > (1200 - 2) << 20,
        "the partitions take {bytes} bytes of a 1200 MiB device"
    );
    // Now it holds partitions: refused without --force, naming them.
    let o = run(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("2 partition(s)"),
        "{err}"
    );
    drop(lo);
    read_back(&backing, &v, t.path());
}

/// An image that names its remote (`remotes.d` and `slate.image.origin`):
/// the installed deployment follows `REMOTE:REF`, and the disk's
/// repository has the remote, so the machine updates without `remote add`.
#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: install makes a sysroot with real owners"
)]
fn install_records_the_image_remote_as_origin() {
    if let Some(why) = missing_tools() {
        return skip(&why);
    }
    let t = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let repo = image_repo(t.path());
    let r = repo.to_str().expect("utf-8");
    // The next version names its remote.
    let tree = t.path().join("tree");
    write(
        &tree,
        "usr/lib/slate/remotes.d/updates.toml",
        "urls = [\"https://updates.example.org/os\"]\nno-sign-verify = true\n",
    );
    ok(
        &repo,
        &[
            "commit",
            "--repo",
            r,
            "-b",
            "os/main",
            "--add-metadata",
            "slate.deploy.etc=stateless",
            "--add-metadata",
            "slate.image.origin=updates:os/stable",
            tree.to_str().expect("utf-8"),
        ],
    );
    let disk = t.path().join("disk.img");
    let o = install(&[
        "--from",
        r,
        "--disk",
        disk.to_str().expect("utf-8"),
        "--workdir",
        t.path().to_str().expect("utf-8"),
        "--json",
        "os/main",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["origin"], "updates:os/stable", "{v}");
    assert_eq!(v["remotes"], serde_json::json!(["updates"]), "{v}");
}
