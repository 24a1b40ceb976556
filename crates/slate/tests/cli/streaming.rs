//! Contents stream: an export, a copying checkout or a pull of a tree
//! holding a 2 GiB file keeps its peak memory under 100 MiB (measured by
//! GNU time).

use std::path::Path;
use std::process::Command;

use crate::common::*;

const BIG: u64 = 2 << 30;
const LIMIT_KB: u64 = 100 << 10;

/// Peak resident memory of `slate ARGS` in KiB, by GNU time.
fn peak_kb(repo: &Path, args: &[&str]) -> u64 {
    let out = tempfile::NamedTempFile::new().expect("tempfile");
    let st = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(out.path())
        .arg(slate_bin())
        .args(args)
        .env("SLATE_REPO", repo)
        .status()
        .expect("time");
    assert!(st.success(), "slate {args:?} failed");
    std::fs::read_to_string(out.path())
        .expect("time's output")
        .trim()
        .parse()
        .expect("a number of KiB")
}

fn free_bytes(p: &Path) -> u64 {
    rustix::fs::statvfs(p)
        .map(|s| s.f_bavail * s.f_frsize)
        .unwrap_or(0)
}

#[test]
#[cfg_attr(
    not(test_have = "gnu-time"),
    ignore = "GNU time (/usr/bin/time) is not installed"
)]
fn a_2_gib_file_exports_and_checks_out_in_little_memory() {
    if !Path::new("/usr/bin/time").exists() {
        skip("GNU time (/usr/bin/time) missing: apt-get install time");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    // The object and one copy of it are written out: 4 GiB, and room.
    if free_bytes(t.path()) < 3 * BIG {
        skip("less than 6 GiB free for the 2 GiB file's object and copy");
        return;
    }
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    // Sparse in the source; the repository stores it whole.
    let f = std::fs::File::create(src.join("big")).expect("create");
    f.set_len(BIG).expect("truncate");
    std::fs::write(src.join("small"), b"small").expect("write");
    let repo = init(t.path(), "bare-user");
    let s = |p: &Path| p.to_str().expect("utf-8").to_owned();
    ok(&repo, &["commit", "-b", "main", &s(&src)]);

    let export = peak_kb(&repo, &["export", "main", "-o", "/dev/null"]);
    let co = t.path().join("co");
    let checkout = peak_kb(&repo, &["checkout", "--copy", "main", &s(&co)]);
    let archive = init(t.path(), "archive");
    let pull = peak_kb(&archive, &["pull-local", &s(&repo), "main"]);
    eprintln!("peak RSS: export {export} KiB, copying checkout {checkout} KiB, pull {pull} KiB");
    assert!(
        export < LIMIT_KB,
        "export of a 2 GiB file took {export} KiB"
    );
    assert!(checkout < LIMIT_KB, "copying checkout took {checkout} KiB");
    assert!(
        pull < LIMIT_KB,
        "pull into an archive repository took {pull} KiB"
    );
    ok(&archive, &["fsck"]);
    let md = std::fs::metadata(co.join("big")).expect("stat");
    assert_eq!(md.len(), BIG);
    // A copy, not the repository's inode.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(md.nlink(), 1);
    ok(&repo, &["fsck"]);
}
