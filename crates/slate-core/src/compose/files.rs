//! `files` inputs: a file or folder of the builder's copied into the
//! image. A manifest is untrusted, so a source is a regular file or a
//! folder below the manifest's folder (or below a folder the builder
//! allows, `--allow-files-from`), reached without leaving it through a
//! symlink, of bounded size, holding only folders, regular files and
//! symlinks (copied as symlinks, never followed). A target is an absolute
//! path in the image that never climbs out of it; it is resolved inside
//! the image's tree, whose symlinks stay confined to the tree.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};

use super::Error;
use crate::fsutil::{self, Root};

/// Most bytes of regular files one `files` input may hold.
pub const MAX_SOURCE_BYTES: u64 = 4 << 30;
/// Most entries (files, folders, symlinks) one `files` input may hold.
pub const MAX_SOURCE_ENTRIES: u64 = 1 << 20;

/// `target` as a plain absolute path in the image (`/a/b`, or `/`):
/// empty and `.` components dropped; `..`, a relative path or a NUL
/// refused.
pub fn normalize_target(target: &str) -> Result<String, String> {
    if !target.starts_with('/') {
        return Err(format!(
            "target {target:?} must be an absolute path in the image"
        ));
    }
    if target.contains('\0') {
        return Err(format!("target {target:?} holds a NUL byte"));
    }
    let mut out = String::new();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "target {target:?} climbs with '..': name the path in the image plainly"
                ))
            }
            c => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The folders a source may be below, made canonical: `manifest_dir`
/// and each of `allowed`.
pub fn roots(manifest_dir: &Path, allowed: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    std::iter::once(manifest_dir)
        .chain(allowed.iter().map(PathBuf::as_path))
        .map(|d| {
            let real = std::fs::canonicalize(d).map_err(|e| format!("{}: {e}", d.display()))?;
            if !real.is_dir() {
                return Err(format!("{}: not a folder", d.display()));
            }
            Ok(real)
        })
        .collect()
}

/// Check the source `source` against `roots` ([`roots`]): its real path
/// (symlinks of the path resolved) below one of them, a regular file or a
/// folder; a folder's entries folders, regular files or symlinks, within
/// [`MAX_SOURCE_BYTES`] and [`MAX_SOURCE_ENTRIES`]. Its real path.
pub fn check_source(source: &Path, roots: &[PathBuf]) -> Result<PathBuf, String> {
    let real =
        std::fs::canonicalize(source).map_err(|e| format!("source {}: {e}", source.display()))?;
    if !roots.iter().any(|r| real.starts_with(r)) {
        let shown: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        let via = if real == source {
            String::new()
        } else {
            format!(" (that is {})", real.display())
        };
        return Err(format!(
            "source {}{via} is outside {}: a files source must be below the manifest's \
             folder (or a folder allowed with --allow-files-from)",
            source.display(),
            shown.join(", ")
        ));
    }
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut todo = vec![real.clone()];
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        entries += 1;
        if entries > MAX_SOURCE_ENTRIES {
            return Err(format!(
                "source {}: more than {MAX_SOURCE_ENTRIES} entries",
                source.display()
            ));
        }
        let ft = m.file_type();
        if ft.is_dir() {
            for e in std::fs::read_dir(&p).map_err(|e| format!("{}: {e}", p.display()))? {
                todo.push(e.map_err(|e| format!("{}: {e}", p.display()))?.path());
            }
        } else if ft.is_file() {
            bytes = bytes.saturating_add(m.len());
            if bytes > MAX_SOURCE_BYTES {
                return Err(format!(
                    "source {}: more than {MAX_SOURCE_BYTES} bytes",
                    source.display()
                ));
            }
        } else if !(ft.is_symlink() && p != real) {
            return Err(format!(
                "{}: a {}: a files source is a regular file or a folder (of folders, \
                 regular files and symlinks)",
                p.display(),
                kind_name(&m)
            ));
        }
    }
    Ok(real)
}

fn kind_name(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let ft = m.file_type();
    if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "special file"
    }
}

/// Copy the `files` input `source` to `target` in the tree `tree`,
/// owned by the builder (root), modes kept; the source checked again
/// against `roots` first.
pub fn add(tree: &Path, source: &Path, target: &str, roots: &[PathBuf]) -> Result<(), Error> {
    let real = check_source(source, roots).map_err(|m| Error::Input(format!("files: {m}")))?;
    let target = normalize_target(target).map_err(|m| Error::Input(format!("files: {m}")))?;
    let root = Root::new(tree).map_err(Error::io(tree))?;
    let m = std::fs::symlink_metadata(&real).map_err(Error::io(&real))?;
    let at = |e: std::io::Error, p: &str| Error::Io {
        path: PathBuf::from(root.display(p)),
        source: e,
    };
    if m.is_dir() {
        mkdir_in(&root, &target).map_err(|e| at(e, &target))?;
        let dir = root.open_dir(&target).map_err(|e| at(e, &target))?;
        rfs::fchmod(&dir, Mode::from_raw_mode(m.mode() & 0o7777))
            .map_err(|e| at(e.into(), &target))?;
        return copy_dir(&real, dir.as_fd(), &root.display(&target));
    }
    let (parent, name) = match target.rsplit_once('/') {
        Some((p, n)) if !n.is_empty() => (if p.is_empty() { "/" } else { p }, n),
        _ => {
            return Err(Error::Input(format!(
                "files {}: a file cannot be the image's root; name it",
                real.display()
            )))
        }
    };
    mkdir_in(&root, parent).map_err(|e| at(e, parent))?;
    let dir = root.open_dir(parent).map_err(|e| at(e, parent))?;
    if rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory)
    {
        return Err(Error::Input(format!(
            "files {}: the target {target} is a folder in the image; name the file",
            real.display()
        )));
    }
    copy_file(&real, dir.as_fd(), OsStr::new(name), &root.display(&target))
}

/// `mkdir -p` of `path` inside `root` (each step resolved inside it).
fn mkdir_in(root: &Root, path: &str) -> std::io::Result<()> {
    let mut cur = String::new();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        let parent = if cur.is_empty() {
            "/".to_string()
        } else {
            cur.clone()
        };
        cur.push('/');
        cur.push_str(c);
        if root.open_dir(&cur).is_ok() {
            continue;
        }
        let pfd = root.open_dir(&parent)?;
        match rfs::mkdirat(&pfd, c, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        // What is there now must be a folder (not a file, not a link out).
        root.open_dir(&cur)?;
    }
    Ok(())
}

/// Copy the entries of the folder `src` into the open folder `dst`.
fn copy_dir(src: &Path, dst: BorrowedFd<'_>, shown: &str) -> Result<(), Error> {
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .map_err(Error::io(src))?
        .collect::<Result<_, _>>()
        .map_err(Error::io(src))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let name = e.file_name();
        let there = format!("{shown}/{}", name.to_string_lossy());
        let at = |err: std::io::Error| Error::Io {
            path: PathBuf::from(&there),
            source: err,
        };
        let m = std::fs::symlink_metadata(&p).map_err(Error::io(&p))?;
        let ft = m.file_type();
        if ft.is_dir() {
            match rfs::mkdirat(dst, &name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(err) => return Err(at(err.into())),
            }
            let child: OwnedFd = rfs::openat(
                dst,
                &name,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|err| {
                Error::Input(format!(
                    "files {}: {there} is not a folder in the image ({err}), the source's is",
                    p.display()
                ))
            })?;
            rfs::fchmod(&child, Mode::from_raw_mode(m.permissions().mode() & 0o7777))
                .map_err(|err| at(err.into()))?;
            copy_dir(&p, child.as_fd(), &there)?;
        } else if ft.is_file() {
            copy_file(&p, dst, &name, &there)?;
        } else if ft.is_symlink() {
            let link = std::fs::read_link(&p).map_err(Error::io(&p))?;
            let tmp = fsutil::tmp_name(".slate-files-");
            rfs::symlinkat(&link, dst, tmp.as_str()).map_err(|err| at(err.into()))?;
            if let Err(err) = rfs::renameat(dst, tmp.as_str(), dst, &name) {
                let _ = rfs::unlinkat(dst, tmp.as_str(), AtFlags::empty());
                return Err(at(err.into()));
            }
        } else {
            return Err(Error::Input(format!(
                "files {}: a {}: only folders, regular files and symlinks are copied",
                p.display(),
                kind_name(&m)
            )));
        }
    }
    Ok(())
}

/// Copy the regular file `src` (not a symlink, not a FIFO or device: it
/// is opened without following a link or blocking, then checked) to
/// `name` in the open folder `dst`, through a temporary file renamed over
/// it.
fn copy_file(src: &Path, dst: BorrowedFd<'_>, name: &OsStr, shown: &str) -> Result<(), Error> {
    let f = rfs::open(
        src,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(src)(e.into()))?;
    let st = rfs::fstat(&f).map_err(|e| Error::io(src)(e.into()))?;
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
        return Err(Error::Input(format!(
            "files {}: not a regular file",
            src.display()
        )));
    }
    let size = st.st_size as u64;
    if size > MAX_SOURCE_BYTES {
        return Err(Error::Input(format!(
            "files {}: {size} bytes, more than {MAX_SOURCE_BYTES}",
            src.display()
        )));
    }
    let at = |err: std::io::Error| Error::Io {
        path: PathBuf::from(shown),
        source: err,
    };
    let tmp = fsutil::tmp_name(".slate-files-");
    let out = rfs::openat(
        dst,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| at(e.into()))?;
    let copied = (|| {
        let mut from = std::fs::File::from(f).take(size + 1);
        let mut to = std::fs::File::from(out);
        let n = std::io::copy(&mut from, &mut to).map_err(Error::io(src))?;
        if n != size {
            return Err(Error::Input(format!(
                "files {}: changed while copied ({n} bytes, not {size})",
                src.display()
            )));
        }
        rfs::fchmod(&to, Mode::from_raw_mode(st.st_mode & 0o7777)).map_err(|e| at(e.into()))?;
        rfs::renameat(dst, tmp.as_str(), dst, name).map_err(|e| at(e.into()))
    })();
    if copied.is_err() {
        let _ = rfs::unlinkat(dst, tmp.as_str(), AtFlags::empty());
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_normalized_and_never_climb() {
        assert_eq!(
            normalize_target("/usr//lib/./x/").as_deref(),
            Ok("/usr/lib/x")
        );
        assert_eq!(normalize_target("/").as_deref(), Ok("/"));
        for bad in ["usr/x", "/usr/../../../tmp/x", "/..", "/a/\0"] {
            assert!(normalize_target(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sources_outside_the_roots_or_special_are_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("m");
        std::fs::create_dir_all(dir.join("d/sub")).expect("mkdir");
        std::fs::write(dir.join("d/sub/f"), "x").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", dir.join("d/link")).expect("symlink");
        std::os::unix::fs::symlink("/etc", dir.join("out")).expect("symlink");
        std::fs::write(t.path().join("secret"), "s").expect("write");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.join("fifo"),
            rfs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        let roots = roots(&dir, &[]).expect("roots");
        // A folder with a symlink out: the link is copied, not followed.
        assert!(check_source(&dir.join("d"), &roots).is_ok());
        for (bad, words) in [
            (dir.join("../secret"), "outside"),
            (PathBuf::from("/etc/passwd"), "outside"),
            (dir.join("out/passwd"), "outside"),
            (dir.join("fifo"), "FIFO"),
            (dir.join("missing"), "No such file"),
        ] {
            let e = check_source(&bad, &roots).expect_err("refused");
            assert!(e.contains(words), "{bad:?}: {e}");
        }
        // /dev/zero is outside; allowed explicitly, it is still no file.
        let dev = super::roots(&dir, &[PathBuf::from("/dev")]).expect("roots");
        let e = check_source(Path::new("/dev/zero"), &dev).expect_err("refused");
        assert!(e.contains("character device"), "{e}");
        // An allowed folder lets its files in.
        let more = super::roots(&dir, &[t.path().to_path_buf()]).expect("roots");
        assert!(check_source(&t.path().join("secret"), &more).is_ok());
    }

    #[test]
    fn add_copies_inside_the_tree_and_links_are_not_followed() {
        let t = tempfile::tempdir().expect("tempdir");
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("sub")).expect("mkdir");
        std::fs::write(src.join("sub/f"), "content").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).expect("symlink");
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/lib")).expect("mkdir");
        // An absolute symlink in the image: it stays inside the tree.
        std::os::unix::fs::symlink("/usr/lib", tree.join("lib")).expect("symlink");
        std::os::unix::fs::symlink(t.path().join("outside"), tree.join("esc")).expect("symlink");
        let roots = roots(t.path(), &[]).expect("roots");
        add(&tree, &src, "/lib/x", &roots).expect("add a folder");
        assert_eq!(
            std::fs::read_to_string(tree.join("usr/lib/x/sub/f")).expect("copied"),
            "content"
        );
        assert_eq!(
            std::fs::read_link(tree.join("usr/lib/x/link")).expect("link"),
            Path::new("/etc/passwd")
        );
        // A symlink to a host folder resolves inside the tree.
        std::fs::create_dir_all(t.path().join("outside")).expect("mkdir");
        let inside = tree.join(t.path().join("outside").strip_prefix("/").expect("abs"));
        std::fs::create_dir_all(&inside).expect("mkdir");
        add(&tree, &src.join("sub/f"), "/esc/f", &roots).expect("add a file");
        assert!(
            !t.path().join("outside/f").exists(),
            "written outside the tree"
        );
        assert_eq!(
            std::fs::read_to_string(inside.join("f")).expect("inside"),
            "content"
        );
        assert!(add(&tree, &src, "/usr/../../x", &roots).is_err());
    }
}
