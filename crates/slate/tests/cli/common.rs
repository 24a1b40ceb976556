//! Helpers: run the binary, build sample trees, compare trees.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn slate_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_slate"))
}

pub fn slate(repo: &Path, args: &[&str]) -> Output {
    Command::new(slate_bin())
        .env("SLATE_REPO", repo)
        .env_remove("SOURCE_DATE_EPOCH")
        .args(args)
        .output()
        .expect("run slate")
}

/// Run and require success; return stdout.
pub fn ok(repo: &Path, args: &[&str]) -> String {
    let o = slate(repo, args);
    assert!(
        o.status.success(),
        "slate {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8 stdout")
}

/// Run and require failure; return stderr.
pub fn fails(repo: &Path, args: &[&str]) -> String {
    let o = slate(repo, args);
    assert!(
        !o.status.success(),
        "slate {args:?} succeeded unexpectedly: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `slate admin --sysroot SR ARGS…`.
pub fn admin(sr: &Path, args: &[&str]) -> Output {
    Command::new(slate_bin())
        .arg("admin")
        .arg("--sysroot")
        .arg(sr)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run slate admin")
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// For what only the run can tell (a mount that fails, a full disk, part
/// of a test). A whole test that needs root or a tool is marked where it is
/// declared, so `cargo test` reports it as ignored with the reason:
/// `#[cfg_attr(not(test_root), ignore = "needs root")]`, with the cfgs of
/// `crates/slate/build.rs`; its run-time check stays, for a binary run by
/// another user than the one who built it.
pub fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn init(dir: &Path, mode: &str) -> PathBuf {
    let repo = dir.join(format!("repo-{mode}"));
    ok(
        &repo,
        &[
            "init",
            "--repo",
            repo.to_str().expect("utf-8"),
            "--mode",
            mode,
        ],
    );
    repo
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) -> bool {
    rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty()).is_ok()
}

/// A tree with every kind of inode a root filesystem holds. Devices,
/// foreign owners and `security.*` xattrs only when running as root.
pub fn sample_tree(root: &Path) {
    let w = |p: &str, c: &[u8], mode: u32| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, c).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    std::fs::create_dir_all(root).expect("mkdir root");
    w("etc/os-release", b"NAME=Slate\n", 0o644);
    w("etc/shadow", b"root:*:1::::::\n", 0o640);
    w("usr/bin/su", b"\x7fELF su", 0o4755);
    w("usr/bin/wall", b"\x7fELF wall", 0o2755);
    w("usr/lib/empty", b"", 0o644);
    w(
        "usr/lib/big.bin",
        &(0..6_000_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
        0o644,
    );
    w("usr/share/dup1", b"same content", 0o644);
    w("usr/share/dup2", b"same content", 0o644);
    std::fs::hard_link(root.join("usr/bin/su"), root.join("usr/bin/su-link")).expect("hard link");
    std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release-link"))
        .expect("symlink");
    std::os::unix::fs::symlink("/absolute/target", root.join("usr/abs-link")).expect("symlink");
    std::fs::create_dir_all(root.join("tmp")).expect("mkdir");
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod");
    std::fs::create_dir_all(root.join("var/empty")).expect("mkdir");
    std::fs::create_dir_all(root.join("root")).expect("mkdir");
    std::fs::set_permissions(root.join("root"), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    assert!(
        set_xattr(&root.join("usr/lib/empty"), "user.slate-test", b"v1"),
        "user xattrs unsupported here"
    );
    assert!(set_xattr(&root.join("var"), "user.dir", b"d"));
    let c = std::ffi::CString::new(root.join("fifo").to_str().expect("utf-8")).expect("cstring");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        c.as_c_str(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    if is_root() {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("null").as_path(),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .expect("mknod");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("loop0").as_path(),
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o660),
            rustix::fs::makedev(7, 0),
        )
        .expect("mknod");
        let chown = |p: &str, u: u32, g: u32| {
            rustix::fs::chownat(
                rustix::fs::CWD,
                root.join(p).as_path(),
                Some(rustix::fs::Uid::from_raw(u)),
                Some(rustix::fs::Gid::from_raw(g)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .expect("chown")
        };
        chown("etc/shadow", 0, 42);
        chown("var/empty", 100, 101);
        chown("usr/abs-link", 5, 6);
        std::fs::set_permissions(
            root.join("etc/shadow"),
            std::fs::Permissions::from_mode(0o640),
        )
        .expect("chmod");
        // A file capability, as `setcap cap_net_raw+ep` writes it.
        let cap: [u8; 20] = [0, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(
            set_xattr(&root.join("usr/bin/wall"), "security.capability", &cap),
            "security.capability"
        );
        assert!(
            set_xattr(&root.join("etc/os-release"), "trusted.slate", b"t"),
            "trusted xattr"
        );
    }
}

/// Every xattr of `p`, the reserved `user.slate.meta` included (a checkout
/// must never show it).
pub fn raw_xattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(p, &mut names[..]).expect("llistxattr");
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut v = vec![0u8; 65536];
        let len = rustix::fs::lgetxattr(p, name, &mut v[..]).expect("lgetxattr");
        out.push((name.to_vec(), v[..len].to_vec()));
    }
    out.sort();
    out
}

/// Everything the store promises to keep about one path.
#[derive(Debug, PartialEq, Eq)]
pub struct Inode {
    pub kind: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub content: Vec<u8>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub struct Snapshot {
    pub inodes: BTreeMap<String, Inode>,
    /// Sets of paths that are hard links of each other.
    pub links: Vec<Vec<String>>,
    pub mtimes: BTreeMap<String, i64>,
}

pub fn snapshot(root: &Path, with_owners: bool) -> Snapshot {
    let mut inodes = BTreeMap::new();
    let mut by_ino: HashMap<u64, Vec<String>> = HashMap::new();
    let mut mtimes = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).expect("lstat");
        // Keys are names escaped losslessly: two names that differ only in
        // bytes that are not UTF-8 stay apart.
        let rel = slate_core::object::name::escape(
            p.strip_prefix(root)
                .expect("below root")
                .as_os_str()
                .as_encoded_bytes(),
        );
        let ft = md.mode() & 0o170000;
        let content = match ft {
            0o100000 => std::fs::read(&p).expect("read"),
            0o120000 => std::fs::read_link(&p)
                .expect("readlink")
                .into_os_string()
                .into_encoded_bytes(),
            _ => Vec::new(),
        };
        if ft == 0o040000 {
            for e in std::fs::read_dir(&p).expect("readdir") {
                stack.push(e.expect("entry").path());
            }
        } else {
            by_ino.entry(md.ino()).or_default().push(rel.clone());
        }
        let xattrs = raw_xattrs(&p);
        mtimes.insert(rel.clone(), md.mtime());
        inodes.insert(
            rel,
            Inode {
                kind: ft,
                mode: md.mode() & 0o7777,
                uid: if with_owners { md.uid() } else { 0 },
                gid: if with_owners { md.gid() } else { 0 },
                rdev: if ft == 0o020000 || ft == 0o060000 {
                    md.rdev()
                } else {
                    0
                },
                content,
                xattrs,
            },
        );
    }
    let links = by_ino
        .into_values()
        .filter(|v| v.len() > 1)
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    Snapshot {
        inodes,
        links,
        mtimes,
    }
}

/// Assert that `got` holds every inode of `want` with equal attributes,
/// and keeps `want`'s hard links.
pub fn assert_same_tree(want: &Path, got: &Path, with_owners: bool) {
    let a = snapshot(want, with_owners);
    let b = snapshot(got, with_owners);
    let ka: Vec<_> = a.inodes.keys().collect();
    let kb: Vec<_> = b.inodes.keys().collect();
    assert_eq!(
        ka,
        kb,
        "paths differ between {} and {}",
        want.display(),
        got.display()
    );
    for (k, v) in &a.inodes {
        assert_eq!(Some(v), b.inodes.get(k), "path {k:?} differs");
    }
    let ino = |p: &str| {
        let raw = slate_core::object::name::unescape(p).expect("escaped key");
        std::fs::symlink_metadata(got.join(std::ffi::OsStr::from_bytes(&raw)))
            .expect("lstat")
            .ino()
    };
    for set in &a.links {
        let first = ino(&set[0]);
        for p in &set[1..] {
            assert_eq!(ino(p), first, "hard link {} / {p} lost", set[0]);
        }
    }
}

/// Run a systemd tool (or Slate's counterpart) on `root` the way the
/// differential suites do: `--root=ROOT` then `args` (`@ROOT@` replaced),
/// `stdin` fed in, `creds` as `$CREDENTIALS_DIRECTORY`, no colours, log
/// level info, `HOME=/root`.
pub fn run_in_root(
    tool: &[&str],
    root: &Path,
    args: &[String],
    stdin: &str,
    creds: &[(String, String)],
    env: &[(String, String)],
) -> Output {
    use std::io::Write;
    let root_s = root.display().to_string();
    let mut cmd = Command::new(tool[0]);
    cmd.args(&tool[1..])
        .arg(format!("--root={root_s}"))
        .args(args.iter().map(|a| a.replace("@ROOT@", &root_s)))
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("SYSTEMD_LOG_LEVEL", "info")
        .env("SYSTEMD_COLORS", "0")
        .env("HOME", "/root")
        .env_remove("SOURCE_DATE_EPOCH")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let dir = tempfile::tempdir().expect("tempdir");
    if !creds.is_empty() {
        for (n, c) in creds {
            std::fs::write(dir.path().join(n), c).expect("credential");
        }
        cmd.env("CREDENTIALS_DIRECTORY", dir.path());
    }
    let mut child = cmd.spawn().expect("spawn");
    // A tool that ends before reading its input closes the pipe: that is
    // its answer, not the test's error.
    match child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("stdin: {e}"),
        _ => {}
    }
    child.wait_with_output().expect("wait")
}

/// Every path whose description differs between the systemd tool's tree
/// and Slate's, as "PATH: systemd ... slate ..." lines.
pub fn tree_diffs(want: &BTreeMap<String, String>, got: &BTreeMap<String, String>) -> Vec<String> {
    let keys: std::collections::BTreeSet<_> = want.keys().chain(got.keys()).collect();
    keys.into_iter()
        .filter(|k| want.get(*k) != got.get(*k))
        .map(|k| {
            format!(
                "{k}:\n  systemd {:?}\n  slate   {:?}",
                want.get(k),
                got.get(k)
            )
        })
        .collect()
}
