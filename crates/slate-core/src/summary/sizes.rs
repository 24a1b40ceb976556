//! The content size of each published commit, kept in
//! `REPO/cache/sizes/COMMIT` (decimal bytes, a line) so that a summary
//! walks a commit's tree once, not at every update: a commit never
//! changes, so neither does its size. The cache is read as untrusted: a
//! file that is not a plain file of one decimal number is ignored (and
//! written again), nothing is followed through a symlink.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags};

use super::Error;
use crate::fsutil;
use crate::hash::ObjectId;
use crate::store::Repo;

/// Where the sizes live, below the repository.
pub const DIR: &str = "cache/sizes";

/// The longest file of the cache that is read (a u64 and a newline).
const MAX_LEN: usize = 24;

fn dir_path(repo: &Repo) -> PathBuf {
    repo.path().join(DIR)
}

/// The cache's directory, opened without following a symlink; `None` if
/// it is not there.
fn open_dir(repo: &Repo) -> Option<OwnedFd> {
    let root = fsutil::open_dir(repo.path()).ok()?;
    let cache = fsutil::open_dir_at(&root, Path::new("cache")).ok()?;
    fsutil::open_dir_at(&cache, Path::new("sizes")).ok()
}

/// The size recorded for `commit`, if a sound record is there.
pub fn cached(repo: &Repo, commit: &ObjectId) -> Option<u64> {
    let dir = open_dir(repo)?;
    let fd = rfs::openat(
        &dir,
        commit.to_hex().as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .ok()?;
    let st = rfs::fstat(&fd).ok()?;
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
        return None;
    }
    let mut buf = [0u8; MAX_LEN + 1];
    let n = rustix::io::read(&fd, &mut buf).ok()?;
    parse(&buf[..n])
}

/// A record's bytes: decimal digits and a newline, nothing else.
fn parse(b: &[u8]) -> Option<u64> {
    let digits = b.strip_suffix(b"\n")?;
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Record the size of `commit` (atomically: a reader sees the old record
/// or the new, whole).
pub fn store(repo: &Repo, commit: &ObjectId, size: u64) -> Result<(), Error> {
    let io = |path: PathBuf| move |source| Error::Io { path, source };
    let root = fsutil::open_dir(repo.path()).map_err(io(repo.path().to_path_buf()))?;
    fsutil::mkdir_p_at(&root, DIR, 0o755).map_err(io(dir_path(repo)))?;
    let dir = open_dir(repo).ok_or_else(|| Error::Io {
        path: dir_path(repo),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a directory (a symlink?)",
        ),
    })?;
    let name = commit.to_hex();
    fsutil::atomic_write_at(&dir, &name, format!("{size}\n").as_bytes(), 0o644)
        .map_err(io(dir_path(repo).join(&name)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::commit::{self, CommitOptions, ParentSpec, Source};
    use crate::progress::Progress;
    use crate::store::RepoMode;

    fn published() -> (tempfile::TempDir, Repo, ObjectId) {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).expect("mkdir");
        std::fs::write(tree.join("etc/a"), vec![1u8; 1000]).expect("write");
        std::fs::write(tree.join("etc/b"), vec![2u8; 234]).expect("write");
        let repo = Repo::init(&dir.path().join("repo"), RepoMode::Archive).expect("init");
        let opts = CommitOptions {
            branch: "os".into(),
            subject: "one".into(),
            body: String::new(),
            timestamp: 1,
            metadata: BTreeMap::new(),
            parent: ParentSpec::Auto,
            skip_if_unchanged: false,
        };
        let id = commit::commit(&repo, Source::Dir(&tree), &opts, &Progress::default())
            .expect("commit")
            .id;
        (dir, repo, id)
    }

    fn size_in_summary(repo: &Repo, now: i64) -> u64 {
        let s = crate::summary::update(repo, None, now, None).expect("summary");
        s.refs["os"].size
    }

    /// The first summary walks the commit and records its size; the next
    /// ones take the record (a record changed by hand shows it was read,
    /// not walked again); a record that is not one number, or a symlink,
    /// is ignored and written again.
    #[test]
    fn a_summary_walks_a_commit_once_and_reads_records_strictly() {
        let (_dir, repo, id) = published();
        let record = repo.path().join(DIR).join(id.to_hex());
        assert_eq!(size_in_summary(&repo, 10), 1234);
        assert_eq!(std::fs::read(&record).expect("record"), b"1234\n");
        std::fs::write(&record, b"777\n").expect("edit");
        assert_eq!(size_in_summary(&repo, 11), 777, "the record was not used");
        for bad in [&b"77x\n"[..], b"", b"-5\n", &[b'9'; 4096]] {
            std::fs::write(&record, bad).expect("spoil");
            assert_eq!(size_in_summary(&repo, 12), 1234);
            assert_eq!(std::fs::read(&record).expect("record"), b"1234\n");
        }
        let elsewhere = repo.path().join("elsewhere");
        std::fs::write(&elsewhere, b"5\n").expect("write");
        std::fs::remove_file(&record).expect("rm");
        std::os::unix::fs::symlink(&elsewhere, &record).expect("symlink");
        assert_eq!(size_in_summary(&repo, 13), 1234);
        assert_eq!(std::fs::read(&elsewhere).expect("target"), b"5\n");
    }

    #[test]
    fn records_are_read_strictly() {
        assert_eq!(parse(b"123\n"), Some(123));
        assert_eq!(parse(b"0\n"), Some(0));
        for bad in [
            &b""[..],
            b"\n",
            b"123",
            b"12 3\n",
            b"-1\n",
            b"+1\n",
            b"1\n\n",
            b"99999999999999999999999\n",
            b"18446744073709551616\n",
            b"0x10\n",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
