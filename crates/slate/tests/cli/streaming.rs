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

/// A pull over HTTP of a 1 GiB file that the remote keeps loose (an
/// archive repository stores a large file as a loose object): the object
/// is fetched to disk and decompressed as it is stored, so the pull's
/// peak memory stays under 100 MiB, and the file pulled is the one
/// published (every object is checked against its id by `fsck`).
#[test]
fn a_1_gib_loose_file_is_pulled_over_http_in_little_memory() {
    use crate::faultserve::FaultServer;
    const GIB: u64 = 1 << 30;
    if !Path::new("/usr/bin/time").exists() {
        skip("GNU time (/usr/bin/time) missing: apt-get install time");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    // Zeros compress to little: the objects take less than a GiB, and room.
    if free_bytes(t.path()) < 2 * GIB {
        skip("less than 2 GiB free for the 1 GiB file's objects");
        return;
    }
    let s = |p: &Path| p.to_str().expect("utf-8").to_owned();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let f = std::fs::File::create(src.join("big")).expect("create");
    f.set_len(GIB).expect("truncate");
    std::fs::write(src.join("small"), b"small").expect("write");
    let publ = init(t.path(), "archive");
    ok(&publ, &["commit", "-b", "os/main", &s(&src)]);
    ok(&publ, &["summary", "--update"]);
    // The large file is a loose object of the published repository.
    let loose: Vec<_> = std::fs::read_dir(publ.join("objects"))
        .expect("objects")
        .flatten()
        .filter(|d| d.file_name().len() == 2)
        .flat_map(|d| std::fs::read_dir(d.path()).expect("fan-out").flatten())
        .filter(|f| f.file_name().to_string_lossy().ends_with(".file"))
        .collect();
    assert_eq!(loose.len(), 1, "one loose file object: {loose:?}");

    let server = FaultServer::start(publ.clone());
    let l = t.path().join("local");
    ok(&l, &["init", "--repo", &s(&l), "--mode", "archive"]);
    ok(
        &l,
        &["remote", "add", "origin", &server.url, "--no-sign-verify"],
    );
    let pull = peak_kb(&l, &["pull", "origin", "os/main"]);
    eprintln!("peak RSS: pull over HTTP of a 1 GiB loose file {pull} KiB");
    assert!(
        pull < LIMIT_KB,
        "pull of a 1 GiB loose file took {pull} KiB"
    );
    let want = ok(&publ, &["rev-parse", "os/main"]);
    assert_eq!(ok(&l, &["rev-parse", "remotes/origin/os/main"]), want);
    ok(&l, &["fsck"]);
    let listed = ok(&l, &["ls", "-l", "remotes/origin/os/main", "/big"]);
    assert!(listed.contains(&GIB.to_string()), "{listed}");
}
