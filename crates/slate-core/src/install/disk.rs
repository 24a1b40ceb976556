//! Disk images (`slate admin install`): a GPT disk with an EFI system
//! partition (systemd-boot, the boot entries, the kernels) and a root
//! partition holding a sysroot, both typed by the Discoverable Partitions
//! Specification. Made with the tools of the field and no loop mount:
//! `sfdisk` for the table, `mkfs.vfat -C` and `mcopy` for the ESP (an
//! image copied into its place), `mkfs.ext4 -d -E offset=` for the root
//! (hard links, owners, modes and xattrs kept), made in its place on the
//! disk. A disk file is built beside its target and renamed over it: a
//! kill leaves the old file or the new. A block device is written in
//! place (nothing can make that atomic); one in use (a partition mounted,
//! held by another device) is refused, and the kernel is told of its new
//! partitions at the end.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

/// The ESP's type (Discoverable Partitions Specification).
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// The root partition's type for x86-64.
pub const ROOT_X86_64_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
/// Where systemd-boot's EFI binary is on a Debian host (systemd-boot-efi).
pub const SYSTEMD_BOOT_EFI: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";

const MIB: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{tool}: {message}")]
    Tool { tool: String, message: String },
    #[error("{0}")]
    Refused(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Run a tool; its standard error in the message when it fails.
fn run(cmd: &mut Command, what: &str) -> Result<String, Error> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| Error::Tool {
        tool: tool.clone(),
        message: format!("cannot run it ({what}): {e}"),
    })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool,
            message: format!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A random UUID (the kernel's).
pub fn random_uuid() -> Result<String, Error> {
    let p = Path::new("/proc/sys/kernel/random/uuid");
    Ok(std::fs::read_to_string(p)
        .map_err(io(p))?
        .trim()
        .to_uppercase())
}

/// The plan of a disk.
#[derive(Clone, Debug, Serialize)]
pub struct Layout {
    pub esp_uuid: String,
    pub root_uuid: String,
    /// The root file system's UUID.
    pub root_fs_uuid: String,
    pub esp_mib: u64,
    pub root_mib: u64,
}

impl Layout {
    /// The whole disk: 1 MiB before the partitions, 1 MiB after (the
    /// backup GPT).
    pub fn disk_bytes(&self) -> u64 {
        (1 + self.esp_mib + self.root_mib + 1) * MIB
    }

    /// The kernel arguments that find the root.
    pub fn kargs(&self) -> Vec<String> {
        vec![
            format!("root=PARTUUID={}", self.root_uuid.to_lowercase()),
            "rw".into(),
        ]
    }
}

/// Bytes of the files below `dir` (each inode once), rounded up to
/// blocks, with what each entry costs the file system.
pub fn tree_bytes(dir: &Path) -> Result<u64, Error> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            let m = e.metadata().map_err(io(&e.path()))?;
            total += 256;
            if m.is_dir() {
                stack.push(e.path());
            } else if seen.insert((m.dev(), m.ino())) {
                total += m.len().div_ceil(4096) * 4096;
            }
        }
    }
    Ok(total)
}

impl Layout {
    /// A layout with new identities and no sizes yet ([`Layout::size`]):
    /// the root's PARTUUID is known before the sysroot is made, for its
    /// boot entries.
    pub fn new() -> Result<Layout, Error> {
        Ok(Layout {
            esp_uuid: random_uuid()?,
            root_uuid: random_uuid()?,
            root_fs_uuid: random_uuid()?.to_lowercase(),
            esp_mib: 0,
            root_mib: 0,
        })
    }

    /// Sizes for a root of `root_bytes` and an ESP of `esp_bytes`, at
    /// least `min_disk` bytes in all: the ESP at least 256 MiB and twice
    /// its content (room for the next kernels); the root half again its
    /// content and 512 MiB more, or what `min_disk` leaves. A `max_disk`
    /// (a device's size) that cannot hold it is an error.
    pub fn size(
        &mut self,
        root_bytes: u64,
        esp_bytes: u64,
        min_disk: u64,
        max_disk: Option<u64>,
    ) -> Result<(), Error> {
        self.esp_mib = (esp_bytes * 2 / MIB + 1).max(256);
        self.root_mib = root_bytes * 3 / 2 / MIB + 512;
        let fixed = (self.esp_mib + 2) * MIB;
        if min_disk > fixed + self.root_mib * MIB {
            self.root_mib = (min_disk - fixed) / MIB;
        }
        if let Some(max) = max_disk {
            if self.disk_bytes() > max {
                let need = Self::needed_bytes(root_bytes, esp_bytes);
                if need > max {
                    return Err(Error::Refused(format!(
                        "the disk holds {} MiB; this sysroot needs {} MiB",
                        max / MIB,
                        need / MIB
                    )));
                }
                self.root_mib = (max - fixed) / MIB;
            }
        }
        Ok(())
    }

    /// The smallest disk for a root of `root_bytes` and an ESP of
    /// `esp_bytes`: the ESP's size, the root's content and a tenth more
    /// with 64 MiB for the file system, the GPT's 2 MiB.
    pub fn needed_bytes(root_bytes: u64, esp_bytes: u64) -> u64 {
        let esp_mib = (esp_bytes * 2 / MIB + 1).max(256);
        (esp_mib + 2 + root_bytes * 11 / 10 / MIB + 64) * MIB
    }

    /// Sizes for a disk of exactly `disk_bytes` (rounded down to MiB),
    /// or an error naming the size this sysroot needs.
    pub fn size_exactly(
        &mut self,
        root_bytes: u64,
        esp_bytes: u64,
        disk_bytes: u64,
    ) -> Result<(), Error> {
        let need = Self::needed_bytes(root_bytes, esp_bytes);
        if disk_bytes < need {
            return Err(Error::Refused(format!(
                "a disk of {} MiB is too small: this sysroot needs {} MiB",
                disk_bytes / MIB,
                need / MIB
            )));
        }
        self.size(root_bytes, esp_bytes, disk_bytes, Some(disk_bytes))
    }
}

/// Check, before anything is made, that `target` may become a disk: a
/// block device not in use, or a file that is absent (in a folder that
/// exists), empty, or a disk image. A disk that holds partitions, or a
/// file that holds something else than a partition table, is erased only
/// with `force`; a folder, or any other kind of file, never.
pub fn check_target(target: &Path, force: bool) -> Result<(), Error> {
    let m = match std::fs::metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = partial_path(target)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            if !parent.is_dir() {
                return Err(Error::Refused(format!(
                    "{}: its folder {} does not exist",
                    target.display(),
                    parent.display()
                )));
            }
            return Ok(());
        }
        Err(e) => return Err(io(target)(e)),
    };
    let ft = m.file_type();
    if ft.is_dir() {
        return Err(Error::Refused(format!(
            "{} is a folder: a disk is an image file (made or replaced) or a block device",
            target.display()
        )));
    }
    if ft.is_block_device() {
        check_device_free(target)?;
    } else if !ft.is_file() {
        return Err(Error::Refused(format!(
            "{} is neither a regular file nor a block device",
            target.display()
        )));
    }
    let existing = existing_partitions(target);
    if !existing.is_empty() {
        if force {
            return Ok(());
        }
        return Err(Error::Refused(format!(
            "{} holds {} partition(s), which installing would erase:\n  {}\n\
             (--force to erase them)",
            target.display(),
            existing.len(),
            existing.join("\n  ")
        )));
    }
    if ft.is_file() && m.len() > 0 && !force && !has_partition_table(target)? {
        return Err(Error::Refused(format!(
            "{} is a file of {} bytes with no partition table: it is not a disk image, \
             and installing would replace it (--force to replace it)",
            target.display(),
            m.len()
        )));
    }
    Ok(())
}

/// Whether the file `path` starts with a partition table: a GPT header
/// (`EFI PART` in its second 512-byte sector) or an MBR's boot signature
/// with a partition entry.
fn has_partition_table(path: &Path) -> Result<bool, Error> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mut head = Vec::with_capacity(1024);
    f.take(1024).read_to_end(&mut head).map_err(io(path))?;
    let gpt = head.get(512..520) == Some(b"EFI PART".as_slice());
    let mbr = head.get(510..512) == Some([0x55, 0xaa].as_slice())
        && head
            .get(446..510)
            .is_some_and(|t| t.chunks(16).any(|e| e[4] != 0));
    Ok(gpt || mbr)
}

/// What the target holds now: its partitions as `sfdisk` lists them, or
/// nothing (absent, empty, or no partition table).
pub fn existing_partitions(target: &Path) -> Vec<String> {
    let Ok(m) = std::fs::metadata(target) else {
        return Vec::new();
    };
    if !(m.file_type().is_block_device() || m.len() > 0) {
        return Vec::new();
    }
    let Ok(out) = Command::new("sfdisk").arg("--dump").arg(target).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" : start="))
        .map(|l| l.trim().to_string())
        .collect()
}

/// Put systemd-boot on the ESP tree `esp`: the fallback path firmware
/// boots with fresh variables, systemd-boot's own path, and a
/// `loader.conf`.
pub fn install_systemd_boot(esp: &Path, efi: &Path) -> Result<(), Error> {
    if !efi.is_file() {
        return Err(Error::Refused(format!(
            "{}: systemd-boot's EFI binary is not there (apt-get install systemd-boot-efi)",
            efi.display()
        )));
    }
    for (dir, name) in [
        ("EFI/BOOT", "BOOTX64.EFI"),
        ("EFI/systemd", "systemd-bootx64.efi"),
    ] {
        let d = esp.join(dir);
        std::fs::create_dir_all(&d).map_err(io(&d))?;
        std::fs::copy(efi, d.join(name)).map_err(io(efi))?;
    }
    let conf = esp.join("loader/loader.conf");
    std::fs::create_dir_all(esp.join("loader")).map_err(io(&conf))?;
    std::fs::write(&conf, "timeout 3\nconsole-mode keep\neditor no\n").map_err(io(&conf))?;
    Ok(())
}

/// Whether `target` is a block device.
pub fn is_block_device(target: &Path) -> bool {
    std::fs::metadata(target).is_ok_and(|m| m.file_type().is_block_device())
}

/// A block device's size in bytes (`None` for anything else).
pub fn device_bytes(target: &Path) -> Option<u64> {
    use std::io::Seek;
    if !is_block_device(target) {
        return None;
    }
    let mut f = std::fs::File::open(target).ok()?;
    f.seek(std::io::SeekFrom::End(0)).ok()
}

/// Refuse a block device something uses: the kernel lets no one else
/// open a device exclusively while a partition of it is mounted, or it
/// backs a RAID, a device-mapper target, a swap.
pub fn check_device_free(target: &Path) -> Result<(), Error> {
    if !is_block_device(target) {
        return Ok(());
    }
    use rustix::fs::{Mode, OFlags};
    match rustix::fs::open(
        target,
        OFlags::RDONLY | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(_) => Ok(()),
        Err(rustix::io::Errno::BUSY) => Err(Error::Refused(format!(
            "{} is in use (a partition of it mounted, or held by another device): \
             unmount it first",
            target.display()
        ))),
        Err(e) => Err(io(target)(e.into())),
    }
}

/// Write the disk: the ESP made from `esp_dir`, the root from `root_dir`,
/// both into `target` (a file, made beside it and renamed over it; or a
/// block device, written in place). `work` holds the ESP's image while it
/// is made. A note for the user when the disk is whole but the kernel
/// could not be told of a device's new partitions.
pub fn write(
    target: &Path,
    l: &Layout,
    root_dir: &Path,
    esp_dir: &Path,
    work: &Path,
) -> Result<Option<String>, Error> {
    let esp_img = work.join("esp.img");
    let _ = std::fs::remove_file(&esp_img);
    run(
        Command::new("mkfs.vfat")
            .args(["-F", "32", "-n", "ESP", "-C"])
            .arg(&esp_img)
            .arg((l.esp_mib * 1024).to_string()),
        "making the ESP",
    )?;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(esp_dir)
        .map_err(io(esp_dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io(esp_dir))?;
    entries.sort();
    if !entries.is_empty() {
        run(
            Command::new("mcopy")
                .args(["-s", "-p", "-Q", "-i"])
                .arg(&esp_img)
                .args(&entries)
                .arg("::/"),
            "copying the boot files onto the ESP",
        )?;
    }

    let is_device = is_block_device(target);
    if is_device {
        check_device_free(target)?;
    }
    // A disk file is made as `.NAME.slate-disk` beside it, locked while
    // it is written: one install at a time per target, and what a killed
    // install left there is the next one's to reuse, never a stray.
    let mut _held = None;
    let disk = if is_device {
        target.to_path_buf()
    } else {
        let tmp = partial_path(target);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(Error::Refused(format!(
                "another install is writing {} ({} is locked)",
                target.display(),
                tmp.display()
            )));
        }
        if let Err(e) = f.set_len(0).and_then(|()| f.set_len(l.disk_bytes())) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&tmp)(e));
        }
        _held = Some(f);
        tmp
    };
    let written = (|| {
        partition(&disk, l)?;
        copy_into(&esp_img, &disk, MIB, !is_device)?;
        let _ = std::fs::remove_file(&esp_img);
        // The root is made in its place: no image of it, no second copy.
        run(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-L", "slate-root", "-U", &l.root_fs_uuid])
                .arg("-E")
                .arg(format!("offset={},nodiscard", (1 + l.esp_mib) * MIB))
                .arg("-d")
                .arg(root_dir)
                .arg(&disk)
                .arg(format!("{}M", l.root_mib)),
            "making the root file system",
        )?;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&disk)
            .and_then(|f| f.sync_all())
            .map_err(io(&disk))
    })();
    if is_device {
        written?;
        return Ok(tell_kernel(&disk).err().map(|e| e.to_string()));
    }
    if let Err(e) = written {
        let _ = std::fs::remove_file(&disk);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&disk, target) {
        let _ = std::fs::remove_file(&disk);
        return Err(io(target)(e));
    }
    Ok(None)
}

/// Where a disk file is made before it is renamed over `target`.
pub fn partial_path(target: &Path) -> PathBuf {
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut name = std::ffi::OsString::from(".");
    name.push(target.file_name().unwrap_or_default());
    name.push(".slate-disk");
    parent.join(name)
}

/// The partition table: the ESP at 1 MiB, the root after it.
fn partition(disk: &Path, l: &Layout) -> Result<(), Error> {
    let script = format!(
        "label: gpt\nfirst-lba: 2048\n\
         start=2048, size={}, type={ESP_TYPE}, uuid={}, name=\"esp\"\n\
         size={}, type={ROOT_X86_64_TYPE}, uuid={}, name=\"root\"\n",
        l.esp_mib * MIB / 512,
        l.esp_uuid,
        l.root_mib * MIB / 512,
        l.root_uuid
    );
    let mut child = Command::new("sfdisk")
        .args([
            "--quiet",
            "--no-reread",
            "--no-tell-kernel",
            "--wipe",
            "always",
        ])
        .arg(disk)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::Tool {
            tool: "sfdisk".into(),
            message: format!("cannot run it: {e}"),
        })?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(io(disk))?;
    let out = child.wait_with_output().map_err(io(disk))?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: "sfdisk".into(),
            message: format!(
                "partitioning {}: {}",
                disk.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Tell the kernel a device's partitions changed (`partx --update`), so
/// their device nodes match the new table. A device that cannot have
/// partitions (a loop device without partition scanning) says so: the
/// disk is whole on it all the same.
fn tell_kernel(device: &Path) -> Result<(), Error> {
    run(
        Command::new("partx").arg("--update").arg(device),
        &format!(
            "telling the kernel of {}'s new partitions",
            device.display()
        ),
    )
    .map(|_| ())
}

/// Copy the file `src` into `disk` at byte `offset`. With `sparse` (a
/// new disk file, all zeros), blocks of zeros are skipped.
fn copy_into(src: &Path, disk: &Path, offset: u64, sparse: bool) -> Result<(), Error> {
    use std::io::{Read, Seek, SeekFrom};
    let mut from = std::fs::File::open(src).map_err(io(src))?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .map_err(io(disk))?;
    to.seek(SeekFrom::Start(offset)).map_err(io(disk))?;
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let mut n = 0;
        while n < buf.len() {
            let r = from.read(&mut buf[n..]).map_err(io(src))?;
            if r == 0 {
                break;
            }
            n += r;
        }
        if n == 0 {
            break;
        }
        if sparse && buf[..n].iter().all(|b| *b == 0) {
            to.seek(SeekFrom::Current(n as i64)).map_err(io(disk))?;
        } else {
            to.write_all(&buf[..n]).map_err(io(disk))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            esp_uuid: String::new(),
            root_uuid: String::new(),
            root_fs_uuid: String::new(),
            esp_mib: 0,
            root_mib: 0,
        }
    }

    /// A size given is the disk's size, or refused naming the need.
    #[test]
    fn an_exact_size_is_honoured_or_refused_naming_the_need() {
        let root = 100 * MIB;
        let need = Layout::needed_bytes(root, MIB);
        // 256 MiB ESP, 2 MiB of GPT, 110 MiB + 64 MiB of root.
        assert_eq!(need, (256 + 2 + 110 + 64) * MIB);
        let mut l = layout();
        let e = l
            .size_exactly(root, MIB, MIB)
            .expect_err("1 MiB is too small");
        assert!(e.to_string().contains("needs 432 MiB"), "{e}");
        for want in [need, 500 * MIB, 8 << 30] {
            let mut l = layout();
            l.size_exactly(root, MIB, want).expect("fits");
            assert_eq!(l.disk_bytes(), want, "{want}");
        }
        // Without a size: room to grow.
        let mut l = layout();
        l.size(root, MIB, 0, None).expect("sized");
        assert!(l.disk_bytes() > need);
    }

    #[test]
    fn targets_that_are_no_disk_are_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("d");
        std::fs::create_dir(&dir).expect("mkdir");
        let e = check_target(&dir, true).expect_err("a folder");
        assert!(e.to_string().contains("is a folder"), "{e}");
        let notes = t.path().join("notes.txt");
        std::fs::write(&notes, "notes").expect("write");
        let e = check_target(&notes, false).expect_err("no disk image");
        assert!(e.to_string().contains("no partition table"), "{e}");
        assert!(check_target(&notes, true).is_ok());
        // An empty file, a new one, a file with a GPT header.
        let empty = t.path().join("empty");
        std::fs::write(&empty, "").expect("write");
        assert!(check_target(&empty, false).is_ok());
        assert!(check_target(&t.path().join("new.img"), false).is_ok());
        let gpt = t.path().join("gpt.img");
        let mut b = vec![0u8; 1024];
        b[512..520].copy_from_slice(b"EFI PART");
        std::fs::write(&gpt, &b).expect("write");
        assert!(has_partition_table(&gpt).expect("read"));
        assert!(!has_partition_table(&notes).expect("read"));
        let e = check_target(&t.path().join("no/disk.img"), false).expect_err("no folder");
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
