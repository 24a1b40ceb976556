//! Differential tests: `slate sysusers` against systemd-sysusers 252 on the
//! same root, configuration and arguments. Both run on their own copy of a
//! root built by the case; the whole trees (types, modes, owners, contents,
//! backups with their times), stdout, the "Creating ..." lines and the exit
//! status must match.

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

use crate::common::{have, is_root, run_in_root, skip, slate_bin, tree_diffs};

enum Node {
    File(String),
    Link(String),
    Dir,
}

pub struct Case {
    name: &'static str,
    nodes: Vec<(String, Node)>,
    owners: Vec<(String, u32, u32, u32)>,
    args: Vec<String>,
    stdin: String,
    /// Credentials (name, content) passed through `$CREDENTIALS_DIRECTORY`.
    creds: Vec<(String, String)>,
    /// Environment variables set for both tools.
    env: Vec<(String, String)>,
}

pub fn case(name: &'static str) -> Case {
    Case {
        name,
        nodes: vec![("etc".into(), Node::Dir)],
        owners: vec![],
        args: vec![],
        stdin: String::new(),
        creds: vec![],
        env: vec![],
    }
}

impl Case {
    pub fn file(mut self, path: &str, content: &str) -> Self {
        self.nodes.push((path.into(), Node::File(content.into())));
        self
    }
    /// A sysusers.d file in /usr/lib.
    pub fn conf(self, name: &str, content: &str) -> Self {
        self.file(&format!("usr/lib/sysusers.d/{name}"), content)
    }
    pub fn link(mut self, path: &str, target: &str) -> Self {
        self.nodes.push((path.into(), Node::Link(target.into())));
        self
    }
    pub fn dir(mut self, path: &str) -> Self {
        self.nodes.push((path.into(), Node::Dir));
        self
    }
    pub fn own(mut self, path: &str, uid: u32, gid: u32, mode: u32) -> Self {
        self.owners.push((path.into(), uid, gid, mode));
        self
    }
    pub fn no_etc(mut self) -> Self {
        self.nodes.retain(|(p, _)| p != "etc");
        self
    }
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|s| s.to_string()).collect();
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
    pub fn stdin(mut self, s: &str) -> Self {
        self.stdin = s.into();
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
                Node::File(c) => {
                    std::fs::write(&path, c).expect("write");
                    // A fixed time, which backups keep: the two copies of a
                    // case are built in different seconds at times.
                    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_262_304_000);
                    std::fs::File::options()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_modified(t))
                        .expect("set mtime");
                }
                Node::Link(t) => symlink(t, &path).expect("symlink"),
                Node::Dir => std::fs::create_dir_all(&path).expect("mkdir"),
            }
        }
        for (p, uid, gid, mode) in &self.owners {
            let path = root.join(p);
            std::os::unix::fs::lchown(&path, Some(*uid), Some(*gid)).expect("chown");
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(*mode))
                .expect("chmod");
        }
    }
}

/// Everything a tree holds that sysusers may touch. New files' times are
/// left out (they are "now"); a backup keeps its original's times.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let e = e.expect("entry");
            let path = e.path();
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
            } else {
                let data = std::fs::read(&path).expect("read");
                desc += &format!(" content={:?}", String::from_utf8_lossy(&data));
                if rel.ends_with('-') {
                    desc += &format!(" mtime={}", md.mtime());
                }
            }
            out.insert(rel, desc);
        }
    }
    out
}

struct Run {
    status: i32,
    stdout: String,
    creating: Vec<String>,
    tree: BTreeMap<String, String>,
    stderr: String,
}

fn run_tool(tool: &[&str], root: &Path, case: &Case) -> Run {
    let root_s = root.display().to_string();
    let o = run_in_root(tool, root, &case.args, &case.stdin, &case.creds, &case.env);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    Run {
        status: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).replace(&root_s, "@ROOT@"),
        creating: stderr
            .replace(&root_s, "@ROOT@")
            .lines()
            .map(String::from)
            .collect(),
        tree: snapshot(root),
        stderr,
    }
}

/// Run every case under both tools; return the description of each
/// mismatch (empty when all agree).
pub fn compare(cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    let base = tempfile::tempdir().expect("tempdir");
    let slate = slate_bin().display().to_string();
    for (i, c) in cases.iter().enumerate() {
        let a = base.path().join(format!("{i}-systemd"));
        let b = base.path().join(format!("{i}-slate"));
        c.build(&a);
        c.build(&b);
        let want = run_tool(&["systemd-sysusers"], &a, c);
        let got = run_tool(&[&slate, "sysusers"], &b, c);
        let mut diffs = Vec::new();
        if want.status != got.status {
            diffs.push(format!(
                "exit status: systemd {} slate {}",
                want.status, got.status
            ));
        }
        if want.stdout != got.stdout {
            diffs.push(format!(
                "stdout:\n--- systemd\n{}--- slate\n{}",
                want.stdout, got.stdout
            ));
        }
        if want.creating != got.creating {
            diffs.push(format!(
                "messages: systemd {:?}\n slate {:?}",
                want.creating, got.creating
            ));
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
    if !have("systemd-sysusers") {
        skip("systemd-sysusers is not installed; the differential sysusers tests need it");
        return false;
    }
    if !is_root() {
        skip("the differential sysusers tests set file owners and need root");
        return false;
    }
    true
}
