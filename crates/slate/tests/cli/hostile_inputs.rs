//! Hostile inputs from files a user hands over: delta files whose counts
//! and lengths lie, a file given as a disk that is no disk image, a
//! manifest whose `files` inputs reach for host files or climb out of the
//! image. Each is refused with a message naming what and why, and leaves
//! nothing behind.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::*;
use slate_core::hash::ObjectId;
use slate_core::object::Commit;

/// The smallest commit with a one-byte subject (62 bytes encoded).
fn tiny_commit() -> Commit {
    Commit {
        parent: None,
        tree: ObjectId([0; 32]),
        timestamp: 0,
        subject: "x".into(),
        body: String::new(),
        metadata: BTreeMap::new(),
    }
}

/// The 177-byte delta that made an allocation of 584 GB: an empty delta
/// to a commit, a patch record of 4 bytes announcing 2^32-1 patches, the
/// commit record and the end record.
pub fn lying_patch_count_delta() -> Vec<u8> {
    patch_count_delta(u32::MAX)
}

/// A delta whose patch record of 4 bytes announces `count` patches.
fn patch_count_delta(count: u32) -> Vec<u8> {
    let c = tiny_commit();
    let mut d = Vec::new();
    d.extend_from_slice(b"SLATEDL1");
    d.extend_from_slice(&[0; 32]);
    d.extend_from_slice(&c.id().0);
    d.push(b'P');
    d.extend_from_slice(&4u64.to_be_bytes());
    d.extend_from_slice(&count.to_be_bytes());
    let cb = c.encode();
    d.push(b'C');
    d.extend_from_slice(&(cb.len() as u32).to_be_bytes());
    d.extend_from_slice(&cb);
    d.push(b'E');
    for n in [1u64, 0, 0] {
        d.extend_from_slice(&n.to_be_bytes());
    }
    d
}

/// `slate delta apply FILE` on a repository that must stay empty: the
/// error it gives.
fn apply_refused(t: &Path, name: &str, bytes: &[u8]) -> String {
    let repo = init(t, "bare-user");
    let file = t.join(name);
    std::fs::write(&file, bytes).expect("write delta");
    let o = slate(
        &repo,
        &[
            "delta",
            "apply",
            file.to_str().expect("utf-8"),
            "--ref",
            "x",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    // Refused with an error, not killed by a signal (an abort).
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(name),
        "the message names the delta file: {err}"
    );
    let kept = files_below(&repo.join("objects"));
    assert!(kept.is_empty(), "objects kept: {kept:?}");
    err
}

/// The regular files below `dir`.
fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                todo.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn delta_with_a_lying_patch_count_is_refused_not_aborted() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = lying_patch_count_delta();
    assert_eq!(d.len(), 177);
    let err = apply_refused(t.path(), "lying.delta", &d);
    assert!(err.contains("4294967295"), "{err}");
    // Fewer than a delta may carry, still more than 4 bytes hold.
    let t = tempfile::tempdir().expect("tempdir");
    let err = apply_refused(t.path(), "lying2.delta", &patch_count_delta(1000));
    assert!(err.contains("announces 1000 patches in 0 bytes"), "{err}");
}

#[test]
fn delta_with_a_huge_file_count_is_refused() {
    let t = tempfile::tempdir().expect("tempdir");
    let c = tiny_commit();
    let mut d = Vec::new();
    d.extend_from_slice(b"SLATEDL1");
    d.extend_from_slice(&[0; 32]);
    d.extend_from_slice(&c.id().0);
    // A block of files announcing 2^32-1 files in 4 bytes of zstd.
    d.push(b'F');
    d.extend_from_slice(&8u64.to_be_bytes());
    d.extend_from_slice(&u32::MAX.to_be_bytes());
    d.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd]);
    let err = apply_refused(t.path(), "many.delta", &d);
    assert!(err.contains("more than"), "{err}");
}

/// `delta show` reads record lengths without applying: a length that
/// would seek back (a negative offset once signed) or past the end is
/// refused, not looped over forever.
#[test]
fn delta_show_refuses_lengths_past_the_end() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = init(t.path(), "bare-user");
    let tree = t.path().join("tree");
    std::fs::create_dir_all(&tree).expect("mkdir");
    std::fs::write(tree.join("a"), "a\n").expect("write");
    ok(
        &repo,
        &[
            "commit",
            "--repo",
            repo.to_str().expect("utf-8"),
            "-b",
            "main",
            tree.to_str().expect("utf-8"),
        ],
    );
    let to = ok(&repo, &["rev-parse", "main"]).trim().to_string();
    for (name, len) in [("back.delta", u64::MAX - 8), ("far.delta", 1 << 40)] {
        let mut d = Vec::new();
        d.extend_from_slice(b"SLATEDL1");
        d.extend_from_slice(&[0; 32]);
        d.extend_from_slice(&ObjectId::from_hex(&to).expect("hex").0);
        d.push(b'T');
        d.extend_from_slice(&len.to_be_bytes());
        d.extend_from_slice(&[0; 64]);
        let deltas = repo.join("deltas").join(&to);
        std::fs::create_dir_all(&deltas).expect("mkdir");
        std::fs::write(deltas.join("empty.delta"), &d).expect("write");
        let o = std::process::Command::new(slate_bin())
            .env("SLATE_REPO", &repo)
            .args(["delta", "show", &to])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("slate delta show");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("goes past the end"), "{name}: {err}");
    }
}

fn install(args: &[&str]) -> std::process::Output {
    std::process::Command::new(slate_bin())
        .args(["admin", "install"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("slate admin install")
}

/// What an install leaves in `dir` besides what the test made: partial
/// disks, work folders.
fn strays(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("slate-install-") || n.ends_with(".slate-disk"))
        .collect()
}

/// A file that is no disk image (no partition table) is not turned into
/// one without --force; a folder never is; neither leaves a partial disk.
/// (Refused before the repository is read: no root or tools needed.)
#[test]
fn install_refuses_a_file_that_is_no_disk_and_a_folder() {
    let t = tempfile::tempdir().expect("tempdir");
    let work = t.path().to_str().expect("utf-8");
    let repo = t.path().join("no-repo");
    let r = repo.to_str().expect("utf-8");
    let notes = t.path().join("notes.txt");
    std::fs::write(&notes, "my notes\n").expect("write");
    let n = notes.to_str().expect("utf-8");
    let o = install(&["--from", r, "--disk", n, "--workdir", work, "os/main"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("notes.txt") && err.contains("no partition table") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&notes).expect("notes"), b"my notes\n");
    assert!(strays(t.path()).is_empty(), "{:?}", strays(t.path()));

    // An empty file is fine to replace: refused here only for the missing
    // repository, later.
    let empty = t.path().join("empty.img");
    std::fs::write(&empty, "").expect("write");
    let o = install(&[
        "--from",
        r,
        "--disk",
        empty.to_str().expect("utf-8"),
        "--workdir",
        work,
        "os/main",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && !err.contains("partition table"),
        "{err}"
    );

    let folder = t.path().join("disks");
    std::fs::create_dir(&folder).expect("mkdir");
    for force in [false, true] {
        let mut args = vec![
            "--from",
            r,
            "--disk",
            folder.to_str().expect("utf-8"),
            "--workdir",
            work,
        ];
        if force {
            args.push("--force");
        }
        args.push("os/main");
        let o = install(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{err}");
        assert!(err.contains("disks is a folder"), "{err}");
        assert!(strays(t.path()).is_empty(), "{:?}", strays(t.path()));
    }
    // A disk in a folder that does not exist.
    let o = install(&[
        "--from",
        r,
        "--disk",
        t.path().join("none/disk.img").to_str().expect("utf-8"),
        "--workdir",
        work,
        "os/main",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("does not exist"),
        "{err}"
    );
}

/// `--size` smaller than any disk is refused at once, naming the size a
/// disk needs.
#[test]
fn install_refuses_a_size_too_small_for_any_disk() {
    let t = tempfile::tempdir().expect("tempdir");
    let work = t.path().to_str().expect("utf-8");
    let disk = t.path().join("disk.img");
    let o = install(&[
        "--from",
        t.path().join("no-repo").to_str().expect("utf-8"),
        "--disk",
        disk.to_str().expect("utf-8"),
        "--size",
        "1M",
        "--workdir",
        work,
        "os/main",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("too small") && err.contains("needs at least 322 MiB"),
        "{err}"
    );
    assert!(!disk.exists());
    assert!(strays(t.path()).is_empty(), "{:?}", strays(t.path()));
}

/// With the sysroot made, a --size that cannot hold it is refused naming
/// the size it needs, nothing left behind; a size that can is honoured.
#[test]
#[cfg_attr(
    not(all(
        test_root,
        test_have = "sfdisk",
        test_have = "mkfs.vfat",
        test_have = "mcopy",
        test_have = "mkfs.ext4",
        test_have = "systemd-boot-efi"
    )),
    ignore = "needs root, fdisk, dosfstools, mtools, e2fsprogs and systemd-boot-efi"
)]
fn install_size_is_honoured_or_refused_naming_the_need() {
    if !is_root() {
        return skip("install makes a sysroot with real owners: needs root");
    }
    if !Path::new(slate_core::install::disk::SYSTEMD_BOOT_EFI).exists() {
        return skip("systemd-boot-efi is not installed");
    }
    for tool in ["sfdisk", "mkfs.vfat", "mcopy", "mkfs.ext4"] {
        if !have(tool) {
            return skip(&format!("{tool} is not installed"));
        }
    }
    let t = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let tree = t.path().join("tree");
    for (rel, content) in [
        ("usr/lib/modules/6.1.0-test/vmlinuz", "kernel image\n"),
        ("usr/lib/modules/6.1.0-test/initrd", "initrd image\n"),
        ("usr/lib/os-release", "ID=test\n"),
    ] {
        let p = tree.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
    }
    // 64 MiB of content: a root of about 135 MiB with the file system's
    // share, more than the 322 MiB of an empty disk leaves.
    let big: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(tree.join("usr/lib/big"), big).expect("write");
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
    let d = disk.to_str().expect("utf-8");
    let work = t.path().to_str().expect("utf-8");
    let o = install(&[
        "--from",
        r,
        "--disk",
        d,
        "--size",
        "330M",
        "--workdir",
        work,
        "os/main",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("--size 346030080") && err.contains("this sysroot needs"),
        "{err}"
    );
    assert!(!disk.exists());
    assert!(strays(t.path()).is_empty(), "{:?}", strays(t.path()));

    for tool in ["sfdisk", "mkfs.vfat", "mcopy", "mkfs.ext4"] {
        if !have(tool) {
            return skip(&format!(
                "{tool} is not installed: a disk of --size is not made"
            ));
        }
    }
    let o = install(&[
        "--from",
        r,
        "--disk",
        d,
        "--size",
        "500M",
        "--workdir",
        work,
        "os/main",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::metadata(&disk).expect("disk").len(), 500 << 20);
    assert!(strays(t.path()).is_empty(), "{:?}", strays(t.path()));
}

/// A manifest in `dir` with a folder base and one `files` input of
/// `source` to `target` (its `[[input]]` at line 11).
fn files_manifest(dir: &Path, source: &str, target: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("rootfs/usr/lib")).expect("mkdir");
    std::fs::write(dir.join("rootfs/usr/lib/os-release"), "ID=test\n").expect("write");
    let m = dir.join("image.toml");
    std::fs::write(
        &m,
        format!(
            r#"[image]
name = "Files"
version = "1"
ref = "files/main"
install-slate = false

[[input]]
type = "directory"
path = "rootfs"

[[input]]
type = "files"
source = "{source}"
target = "{target}"
"#
        ),
    )
    .expect("write manifest");
    m
}

fn compose(dir: &Path, manifest: &Path, extra: &[&str]) -> std::process::Output {
    let repo = dir.join("repo");
    if !repo.exists() {
        init(dir, "bare");
        std::fs::rename(dir.join("repo-bare"), &repo).expect("rename");
    }
    std::process::Command::new(slate_bin())
        .env("SLATE_REPO", &repo)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("SLATE_CACHE_DIR", dir.join("cache"))
        .arg("compose")
        .args(extra)
        .arg(manifest)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("slate compose")
}

/// `files` sources that reach for host files, block or never end, and
/// targets that climb out of the image: each refused when the manifest
/// is read, naming the manifest's line, before anything is built.
#[test]
fn compose_files_inputs_stay_in_their_folder_and_in_the_image() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("m");
    std::fs::create_dir_all(dir.join("files")).expect("mkdir");
    std::fs::write(dir.join("files/motd"), "hello\n").expect("write");
    std::fs::write(t.path().join("secret"), "host secret\n").expect("write");
    std::os::unix::fs::symlink("/etc", dir.join("etc-link")).expect("symlink");
    std::os::unix::fs::symlink(t.path().join("secret"), dir.join("files/secret-link"))
        .expect("symlink");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.join("files/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    let cases: &[(&str, &str, &str)] = &[
        ("/etc/shadow", "/etc/x", "outside"),
        ("../secret", "/etc/x", "outside"),
        ("etc-link/passwd", "/etc/x", "outside"),
        ("files/secret-link", "/etc/x", "outside"),
        ("files/fifo", "/etc/x", "a FIFO"),
        ("/dev/zero", "/etc/x", "outside"),
        ("files/motd", "/usr/../../../tmp/x", "climbs"),
        ("files/motd", "etc/motd", "absolute path"),
    ];
    for (source, target, words) in cases {
        let m = files_manifest(&dir, source, target);
        let o = compose(t.path(), &m, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{source} -> {target}: {err}");
        assert!(
            err.contains("image.toml:11:1: input 2 (files)") && err.contains(words),
            "{source} -> {target}: {err}"
        );
    }
    // An allowed folder lets /dev in, and /dev/zero is still no file.
    let m = files_manifest(&dir, "/dev/zero", "/etc/x");
    let o = compose(t.path(), &m, &["--allow-files-from", "/dev"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("character device"), "{err}");

    // A file of an allowed folder goes in, at its normalized target.
    let m = files_manifest(
        &dir,
        &t.path().join("secret").display().to_string(),
        "/usr//share/./x",
    );
    let o = compose(
        t.path(),
        &m,
        &["--allow-files-from", t.path().to_str().expect("utf-8")],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    if !is_root() {
        assert!(
            !err.contains("outside") && err.contains("needs root"),
            "{err}"
        );
        return skip("slate compose needs root: the allowed file is not composed");
    }
    assert!(o.status.success(), "{err}");
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(
        ok(&t.path().join("repo"), &["cat", &id, "/usr/share/x"]),
        "host secret\n"
    );
}
