//! Differential tests: `slate tmpfiles` against systemd-tmpfiles 252 on the
//! same root, configuration and arguments. Both run on their own copy of a
//! root the case builds; the whole trees (type, mode, owner, content, link
//! target, device number, every xattr including ACLs, file attributes,
//! hard links, and times that were set in the past) and the exit status
//! must match, and so must stderr (the root path normalised) unless the
//! case says its messages may differ.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::{have, is_root, raw_xattrs, run_in_root, skip, slate_bin, tree_diffs};

enum Node {
    File(Vec<u8>),
    Link(String),
    Dir,
    Fifo,
    Hardlink(String),
}

pub struct Case {
    name: &'static str,
    nodes: Vec<(String, Node)>,
    owners: Vec<(String, u32, u32, u32)>,
    /// (path, seconds in the past) for atime and mtime.
    ages: Vec<(String, i64)>,
    xattrs: Vec<(String, String, String)>,
    args: Vec<String>,
    stdin: String,
    creds: Vec<(String, String)>,
    /// Environment variables set for both tools.
    env: Vec<(String, String)>,
    /// The umask both tools run under.
    umask: Option<u32>,
    compare_stderr: bool,
    /// `--user` instead of `--root`: the tools act on real paths
    /// (`@ROOT@` in lines, arguments and the environment is the case's
    /// tree), as `uid:gid` when given (the tree is theirs).
    user: Option<Option<(u32, u32)>>,
    /// The exit status both must have, when the case names one.
    status: Option<i32>,
}

/// A case with `/etc/passwd` and `/etc/group` in its root.
pub fn case(name: &'static str) -> Case {
    Case {
        name,
        nodes: vec![
            (
                "etc/passwd".into(),
                Node::File(b"root:x:0:0::/root:/bin/sh\ndaemon:x:1:1::/:/bin/false\nweb:x:33:33::/var/www:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\n".to_vec()),
            ),
            (
                "etc/group".into(),
                Node::File(b"root:x:0:\ndaemon:x:1:\nadm:x:4:\nweb:x:33:\nalice:x:1000:\n".to_vec()),
            ),
        ],
        owners: vec![],
        ages: vec![],
        xattrs: vec![],
        args: vec!["--create".into()],
        stdin: String::new(),
        creds: vec![],
        env: vec![],
        umask: None,
        compare_stderr: true,
        user: None,
        status: None,
    }
}

impl Case {
    pub fn file(mut self, path: &str, content: &str) -> Self {
        self.nodes
            .push((path.into(), Node::File(content.as_bytes().to_vec())));
        self
    }
    /// A tmpfiles.d file in /usr/lib.
    pub fn conf(self, name: &str, content: &str) -> Self {
        self.file(&format!("usr/lib/tmpfiles.d/{name}"), content)
    }
    pub fn link(mut self, path: &str, target: &str) -> Self {
        self.nodes.push((path.into(), Node::Link(target.into())));
        self
    }
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        self.nodes
            .push((path.into(), Node::Hardlink(target.into())));
        self
    }
    pub fn dir(mut self, path: &str) -> Self {
        self.nodes.push((path.into(), Node::Dir));
        self
    }
    pub fn fifo(mut self, path: &str) -> Self {
        self.nodes.push((path.into(), Node::Fifo));
        self
    }
    pub fn own(mut self, path: &str, uid: u32, gid: u32, mode: u32) -> Self {
        self.owners.push((path.into(), uid, gid, mode));
        self
    }
    /// Set the access and modification times of `path` `secs` in the past.
    pub fn aged(mut self, path: &str, secs: i64) -> Self {
        self.ages.push((path.into(), secs));
        self
    }
    pub fn xattr(mut self, path: &str, name: &str, value: &str) -> Self {
        self.xattrs.push((path.into(), name.into(), value.into()));
        self
    }
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn stdin(mut self, s: &str) -> Self {
        self.stdin = s.into();
        self
    }
    pub fn umask(mut self, u: u32) -> Self {
        self.umask = Some(u);
        self
    }
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    pub fn credential(mut self, name: &str, content: &str) -> Self {
        self.creds.push((name.into(), content.into()));
        self
    }
    /// Run with `--user` (added to the arguments), not `--root`, as the
    /// user `as_user` names (the current one when `None`).
    pub fn user(mut self, as_user: Option<(u32, u32)>) -> Self {
        self.user = Some(as_user);
        self
    }
    /// Both tools must exit with `status` (besides agreeing).
    pub fn status(mut self, status: i32) -> Self {
        self.status = Some(status);
        self
    }
    /// Messages may differ (for instance where systemd prints a path
    /// outside the root, or a wording Slate does not copy).
    pub fn loose_messages(mut self) -> Self {
        self.compare_stderr = false;
        self
    }

    fn build(&self, root: &Path) {
        std::fs::create_dir_all(root).expect("mkdir root");
        for (p, n) in &self.nodes {
            let path = root.join(p);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("mkdir parent");
            }
            match n {
                Node::File(c) => std::fs::write(&path, c).expect("write"),
                Node::Link(t) => symlink(t, &path).expect("symlink"),
                Node::Dir => std::fs::create_dir_all(&path).expect("mkdir"),
                Node::Fifo => rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &path,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o644),
                    0,
                )
                .expect("mkfifo"),
                Node::Hardlink(t) => std::fs::hard_link(root.join(t), &path).expect("link"),
            }
        }
        for (p, uid, gid, mode) in &self.owners {
            let path = root.join(p);
            std::os::unix::fs::lchown(&path, Some(*uid), Some(*gid)).expect("chown");
            // A symlink has no mode of its own: only its owner is set.
            if !path.is_symlink() {
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(*mode),
                )
                .expect("chmod");
            }
        }
        for (p, n, v) in &self.xattrs {
            rustix::fs::lsetxattr(
                root.join(p),
                n.as_str(),
                v.as_bytes(),
                rustix::fs::XattrFlags::empty(),
            )
            .expect("setxattr");
        }
        // Deepest first, so that setting a child's times does not disturb
        // its parent's afterwards.
        let mut ages = self.ages.clone();
        ages.sort_by_key(|(p, _)| std::cmp::Reverse(p.matches('/').count()));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        for (p, secs) in ages {
            let t = rustix::fs::Timespec {
                tv_sec: now - secs,
                tv_nsec: 0,
            };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                root.join(&p),
                &rustix::fs::Timestamps {
                    last_access: t,
                    last_modification: t,
                },
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .expect("utimensat");
        }
    }
}

/// Times before this (2020-01-01) were set by the case or copied from
/// such a file; later ones are "now" and differ between the runs.
const OLD: i64 = 1_577_836_800;

fn attributes(path: &Path, md: &std::fs::Metadata) -> Option<u32> {
    if !(md.is_file() || md.is_dir()) {
        return None;
    }
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    rustix::fs::ioctl_getflags(&fd).ok().map(|f| f.bits())
}

/// Everything tmpfiles may touch, for every path of the tree.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    // Contents and link targets may name the tree (`--user` runs on real
    // paths): shown as `@ROOT@`, like the messages.
    let root_s = root.display().to_string();
    let mut out = BTreeMap::new();
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path
                .strip_prefix(root)
                .expect("prefix")
                .display()
                .to_string();
            let md = std::fs::symlink_metadata(&path).expect("lstat");
            let ft = md.file_type();
            let mut desc = format!("mode={:o} uid={} gid={}", md.mode(), md.uid(), md.gid());
            if ft.is_symlink() {
                desc += &format!(
                    " -> {}",
                    std::fs::read_link(&path).expect("readlink").display()
                );
            } else if ft.is_dir() {
                stack.push(path.clone());
            } else if ft.is_file() {
                let data = std::fs::read(&path).expect("read");
                desc += &format!(" content={:?}", String::from_utf8_lossy(&data));
                if md.nlink() > 1 {
                    let first = links
                        .entry((md.dev(), md.ino()))
                        .or_insert_with(|| rel.clone());
                    desc += &format!(" links={} first={first}", md.nlink());
                }
            } else {
                desc += &format!(" rdev={}", md.rdev());
            }
            for (n, v) in raw_xattrs(&path) {
                desc += &format!(
                    " xattr:{}={:?}",
                    String::from_utf8_lossy(&n),
                    String::from_utf8_lossy(&v)
                );
            }
            if let Some(a) = attributes(&path, &md) {
                desc += &format!(" attr={a:x}");
            }
            if md.mtime() < OLD && !ft.is_dir() {
                desc += &format!(" mtime={}", md.mtime());
            }
            out.insert(rel, desc.replace(&root_s, "@ROOT@"));
        }
    }
    out
}

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
    tree: BTreeMap<String, String>,
}

fn run_tool(tool: &[&str], root: &Path, case: &Case) -> Run {
    let root_s = root.display().to_string();
    // With a umask: `sh -c 'umask U; exec TOOL ARGS...'`.
    let script = case
        .umask
        .map(|u| format!("umask {u:03o}; exec \"$0\" \"$@\""));
    let mut wrapped: Vec<&str> = Vec::new();
    if let Some(s) = &script {
        wrapped.extend(["sh", "-c", s.as_str()]);
    }
    wrapped.extend_from_slice(tool);
    let o = match case.user {
        None => run_in_root(
            &wrapped,
            root,
            &case.args,
            &case.stdin,
            &case.creds,
            &case.env,
        ),
        Some(as_user) => run_as_user(&wrapped, root, case, as_user),
    };
    let norm = |b: &[u8]| String::from_utf8_lossy(b).replace(&root_s, "@ROOT@");
    Run {
        status: o.status.code().unwrap_or(-1),
        stdout: norm(&o.stdout),
        stderr: norm(&o.stderr),
        tree: snapshot(root),
    }
}

/// Run a `--user` case: no `--root`; `@ROOT@` replaced everywhere; no XDG
/// variable but the case's; as another user when asked (then the tree is
/// chowned to that user first).
fn run_as_user(tool: &[&str], root: &Path, case: &Case, as_user: Option<(u32, u32)>) -> Output {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let root_s = root.display().to_string();
    let put = |s: &str| s.replace("@ROOT@", &root_s);
    let mut cmd = Command::new(tool[0]);
    cmd.args(&tool[1..])
        .arg("--user")
        .args(case.args.iter().map(|a| put(a)))
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("SOURCE_DATE_EPOCH")
        .env("SYSTEMD_LOG_LEVEL", "info")
        .env("SYSTEMD_COLORS", "0")
        .env("HOME", "/root");
    for k in [
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
        "XDG_CACHE_HOME",
        "XDG_DATA_HOME",
        "XDG_CONFIG_DIRS",
        "XDG_DATA_DIRS",
        "XDG_STATE_HOME",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(case.env.iter().map(|(k, v)| (k.as_str(), put(v))))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir("/");
    if let Some((uid, gid)) = as_user {
        chown_tree(root, uid, gid);
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd.spawn().expect("spawn");
    // A tool that ends before reading its input (an error, or no `-`
    // argument) closes the pipe: that is its answer, not the test's error.
    match child
        .stdin
        .take()
        .expect("stdin")
        .write_all(put(&case.stdin).as_bytes())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("stdin: {e}"),
        _ => {}
    }
    child.wait_with_output().expect("wait")
}

/// Give a tree to a user, and let that user reach it.
fn chown_tree(root: &Path, uid: u32, gid: u32) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).expect("chown");
        if p.is_dir() && !p.is_symlink() {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                stack.push(e.expect("entry").path());
            }
        }
    }
    let mut up = root.parent();
    while let Some(d) = up {
        let md = std::fs::metadata(d).expect("stat");
        if md.mode() & 0o001 == 0 {
            std::fs::set_permissions(
                d,
                std::os::unix::fs::PermissionsExt::from_mode(md.mode() | 0o711),
            )
            .expect("chmod");
        }
        up = d.parent();
    }
}

/// Run every case under both tools; return the description of each
/// mismatch (empty when all agree).
pub fn compare(cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    let base = tempfile::tempdir().expect("tempdir");
    let slate = slate_bin().display().to_string();
    for (i, c) in cases.iter().enumerate() {
        // Same length, so that messages with the root in them line up.
        let a = base.path().join(format!("{i:03}-sd"));
        let b = base.path().join(format!("{i:03}-sl"));
        c.build(&a);
        c.build(&b);
        let want = run_tool(&["systemd-tmpfiles"], &a, c);
        let got = run_tool(&[&slate, "tmpfiles"], &b, c);
        let mut diffs = Vec::new();
        if want.status != got.status {
            diffs.push(format!(
                "exit status: systemd {} slate {}",
                want.status, got.status
            ));
        }
        if let Some(st) = c.status {
            if got.status != st || want.status != st {
                diffs.push(format!(
                    "exit status: expected {st}, systemd {} slate {}",
                    want.status, got.status
                ));
            }
        }
        if want.stdout != got.stdout {
            diffs.push(format!(
                "stdout:\n--- systemd\n{}--- slate\n{}",
                want.stdout, got.stdout
            ));
        }
        if c.compare_stderr && want.stderr != got.stderr {
            diffs.push("stderr differs".into());
        }
        diffs.extend(tree_diffs(&want.tree, &got.tree));
        if !diffs.is_empty() {
            failures.push(format!(
                "case {:?}:\n{}\nsystemd stderr:\n{}slate stderr:\n{}",
                c.name,
                diffs.join("\n"),
                want.stderr,
                got.stderr
            ));
        }
    }
    failures
}

/// Whether the differential suite can run here; prints why not.
pub fn can_run() -> bool {
    if !have("systemd-tmpfiles") {
        skip("systemd-tmpfiles is not installed; the differential tmpfiles tests need it");
        return false;
    }
    if !is_root() {
        skip("the differential tmpfiles tests set owners and create devices, and need root");
        return false;
    }
    true
}
