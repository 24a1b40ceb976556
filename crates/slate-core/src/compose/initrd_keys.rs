//! The image's trusted keys in its initrd. The initrd is made with the
//! base tree (dracut runs when the kernel package is installed), before
//! the manifest's `[remote]` writes `/usr/lib/slate/remotes.d/`; so
//! compose appends those files to each initrd as one more newc cpio
//! archive (the kernel unpacks archives laid end to end, each at a
//! 4-byte boundary; Slate pads to 512). In the initrd, prepare-root then
//! checks a verity `/usr`'s root hash against the commit's signature by
//! one of these keys (`sysroot::usr_verity`).
//!
//! The archive is reproducible: entries in name order, owner root, time
//! 0, inode numbers counted from 1. The initrd is written as a new file
//! renamed over the old one (it may share its inode with a cache).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::Error;

/// Where the image's remotes are (`remotes::image`).
const REMOTES_D: &str = "usr/lib/slate/remotes.d";
/// At most this many files, each at most this size, go in.
const MAX_FILES: usize = 64;
const MAX_FILE: u64 = 64 * 1024;

/// Append the image's `remotes.d/*.toml` to every
/// `usr/lib/modules/VERSION/initrd` of `tree`. Returns how many initrds
/// got them (0 when the image has no remote or no initrd).
pub fn add_trusted_keys(tree: &Path) -> Result<usize, Error> {
    let files = remote_files(tree)?;
    if files.is_empty() {
        return Ok(0);
    }
    let archive = newc(&files);
    let modules = tree.join("usr/lib/modules");
    let Ok(rd) = std::fs::read_dir(&modules) else {
        return Ok(0);
    };
    let mut initrds = Vec::new();
    for e in rd {
        let e = e.map_err(Error::io(&modules))?;
        let p = e.path().join("initrd");
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_file()) {
            initrds.push(p);
        }
    }
    initrds.sort();
    for p in &initrds {
        append(p, &archive)?;
    }
    Ok(initrds.len())
}

/// The image's remote files: `(name, bytes)` in name order; regular files
/// named `*.toml` only, bounded.
fn remote_files(tree: &Path) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let dir = tree.join(REMOTES_D);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir)(e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(Error::io(&dir))?;
        let name = e.file_name();
        let Ok(name) = std::str::from_utf8(name.as_bytes()) else {
            continue;
        };
        let p = e.path();
        let md = std::fs::symlink_metadata(&p).map_err(Error::io(&p))?;
        if !name.ends_with(".toml") || !md.file_type().is_file() || md.len() > MAX_FILE {
            continue;
        }
        out.push((name.to_string(), std::fs::read(&p).map_err(Error::io(&p))?));
        if out.len() == MAX_FILES {
            break;
        }
    }
    out.sort();
    Ok(out)
}

/// A newc cpio archive of the remotes folder and its files, with its
/// trailer.
fn newc(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ino = 0;
    let mut dir = String::new();
    for part in REMOTES_D.split('/') {
        if !dir.is_empty() {
            dir.push('/');
        }
        dir.push_str(part);
        ino += 1;
        entry(&mut out, ino, &dir, 0o040755, 2, &[]);
    }
    for (name, bytes) in files {
        ino += 1;
        entry(
            &mut out,
            ino,
            &format!("{REMOTES_D}/{name}"),
            0o100644,
            1,
            bytes,
        );
    }
    entry(&mut out, 0, "TRAILER!!!", 0, 1, &[]);
    out
}

fn entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, nlink: u32, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        0, // rdevmajor
        0, // rdevminor
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out, 4);
    out.extend_from_slice(data);
    pad(out, 4);
}

fn pad(out: &mut Vec<u8>, to: usize) {
    while !out.len().is_multiple_of(to) {
        out.push(0);
    }
}

/// `initrd` with zeros to a 512-byte boundary and `archive` after it, as
/// a new file renamed over the old one.
fn append(initrd: &Path, archive: &[u8]) -> Result<(), Error> {
    let tmp = initrd.with_file_name(".initrd.slate-keys");
    let r = (|| {
        std::fs::copy(initrd, &tmp)?;
        let mut f = std::fs::OpenOptions::new().append(true).open(&tmp)?;
        let len = f.metadata()?.len();
        let zeros = (512 - len % 512) % 512;
        f.write_all(&vec![0; zeros as usize])?;
        f.write_all(archive)?;
        f.sync_all()?;
        std::fs::rename(&tmp, initrd)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map_err(Error::io(initrd))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The archive read back the way the kernel does: each header, name
    /// and content at their 4-byte boundaries, up to the trailer.
    fn read_newc(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0usize;
        loop {
            assert_eq!(&b[..6], b"070701", "magic at {at}");
            let field = |i: usize| {
                u32::from_str_radix(
                    std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).expect("hex"),
                    16,
                )
                .expect("hex")
            };
            let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .expect("name")
                .to_string();
            assert_eq!(b[110 + namesize - 1], 0);
            let data_at = (110 + namesize).div_ceil(4) * 4;
            let data = b[data_at..data_at + size].to_vec();
            let next = (data_at + size).div_ceil(4) * 4;
            at += next;
            b = &b[next..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty(), "bytes after the trailer");
                return out;
            }
            out.push((name, mode, data));
        }
    }

    #[test]
    fn the_remotes_are_appended_to_every_initrd_as_a_newc_archive() {
        let d = tempfile::tempdir().expect("tmp");
        let t = d.path();
        for v in ["6.1.0-1-amd64", "6.1.0-2-amd64"] {
            std::fs::create_dir_all(t.join("usr/lib/modules").join(v)).expect("modules");
            std::fs::write(
                t.join("usr/lib/modules").join(v).join("initrd"),
                b"zstd-initrd",
            )
            .expect("initrd");
        }
        // No remote: nothing changes.
        assert_eq!(add_trusted_keys(t).expect("none"), 0);
        let initrd = t.join("usr/lib/modules/6.1.0-1-amd64/initrd");
        assert_eq!(std::fs::read(&initrd).expect("read"), b"zstd-initrd");

        std::fs::create_dir_all(t.join(REMOTES_D)).expect("remotes.d");
        std::fs::write(t.join(REMOTES_D).join("b.toml"), "url = \"b\"\n").expect("b");
        std::fs::write(t.join(REMOTES_D).join("a.toml"), "url = \"a\"\n").expect("a");
        std::fs::write(t.join(REMOTES_D).join("notes.txt"), "x").expect("txt");
        std::os::unix::fs::symlink("/etc/shadow", t.join(REMOTES_D).join("c.toml")).expect("ln");
        // Shared with a cache by a hard link: the cache's copy stays.
        let cached = d.path().join("cached");
        std::fs::hard_link(&initrd, &cached).expect("link");

        assert_eq!(add_trusted_keys(t).expect("added"), 2);
        assert_eq!(std::fs::read(&cached).expect("cache"), b"zstd-initrd");
        let bytes = std::fs::read(&initrd).expect("read");
        assert_eq!(&bytes[..11], b"zstd-initrd");
        assert!(bytes[11..512].iter().all(|&b| b == 0), "zeros to 512");
        let entries = read_newc(&bytes[512..]);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "usr",
                "usr/lib",
                "usr/lib/slate",
                "usr/lib/slate/remotes.d",
                "usr/lib/slate/remotes.d/a.toml",
                "usr/lib/slate/remotes.d/b.toml",
            ]
        );
        assert_eq!(entries[3].1, 0o040755);
        assert_eq!(entries[4].1, 0o100644);
        assert_eq!(entries[4].2, b"url = \"a\"\n");
        // The same tree gives the same bytes.
        let other = std::fs::read(t.join("usr/lib/modules/6.1.0-2-amd64/initrd")).expect("2");
        assert_eq!(other, bytes);
        assert!(!t
            .join("usr/lib/modules/6.1.0-1-amd64/.initrd.slate-keys")
            .exists());
    }
}
