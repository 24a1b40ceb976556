//! Container images in and out: `slate commit --from oci-archive:` /
//! `docker-archive:` / `oci:` and `slate export --format oci-archive`,
//! checked against podman itself where it is installed (an image built
//! from a Slate export with a Containerfile that adds, deletes, replaces a
//! directory and installs a `.deb`; podman's own export of it is the
//! reference), and without it for what Slate alone decides (same bytes,
//! same commit, tampering refused).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

/// A small tree with a static shell (busybox) and what the Containerfile
/// changes: a file to delete, a folder to replace, a dpkg database.
fn base_tree(root: &Path) {
    let w = |p: &str, c: &[u8]| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, c).expect("write");
    };
    w("etc/hello", b"hello\n");
    w("etc/gone", b"deleted by the image\n");
    w("opt/data/old", b"hidden by the opaque directory\n");
    w("opt/data/sub/deeper", b"hidden too\n");
    w("var/lib/dpkg/status", b"");
    std::fs::create_dir_all(root.join("var/lib/dpkg/info")).expect("mkdir");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("symlink");
}

/// podman with its storage, run folder and temp files in `dir`: vfs (no
/// overlay mounts), cgroupfs, runc (crun refuses this kind of host's
/// hybrid cgroups), no network.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn cmd(&self, args: &[&str]) -> Output {
        let root = self.dir.join("storage");
        let run = self.dir.join("run");
        let tmp = self.dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("mkdir");
        Command::new("podman")
            .env("TMPDIR", &tmp)
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&run)
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--runtime",
                "runc",
                "--events-backend",
                "none",
            ])
            .args(args)
            .output()
            .expect("run podman")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd(args);
        assert!(
            o.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `podman run` as this host allows it: no network, rlimits below
    /// the hard ones (podman's defaults are above them here).
    fn run(&self, image: &str, script: &str) -> String {
        self.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            image,
            "/bin/sh",
            "-c",
            script,
        ])
    }
}

/// A `.deb` of one script and one data file, built with dpkg-deb.
fn build_deb(dir: &Path) -> PathBuf {
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).expect("mkdir");
    std::fs::create_dir_all(pkg.join("usr/bin")).expect("mkdir");
    std::fs::create_dir_all(pkg.join("usr/share/hello-slate")).expect("mkdir");
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: hello-slate\nVersion: 1.0\nArchitecture: all\nMaintainer: Slate <slate@example.org>\n\
         Description: a test package\n",
    )
    .expect("control");
    std::fs::write(
        pkg.join("usr/bin/hello-slate"),
        "#!/bin/sh\necho hello from a deb\n",
    )
    .expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        pkg.join("usr/bin/hello-slate"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    std::fs::write(pkg.join("usr/share/hello-slate/data"), "packaged\n").expect("data");
    let deb = dir.join("hello-slate_1.0_all.deb");
    let o = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&pkg)
        .arg(&deb)
        .output()
        .expect("dpkg-deb");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    deb
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
#[cfg_attr(
    not(all(
        test_root,
        test_have = "podman",
        test_have = "runc",
        test_have = "busybox",
        test_have = "dpkg-deb"
    )),
    ignore = "needs root, podman, runc, busybox (busybox-static) and dpkg-deb"
)]
fn podman_built_images_commit_to_podmans_own_tree_and_slates_images_run_in_podman() {
    if !is_root() {
        return skip("rootful podman needs root");
    }
    for tool in ["podman", "runc", "dpkg-deb"] {
        if !have(tool) {
            return skip(&format!("{tool} is not installed (.ci/run installs it)"));
        }
    }
    if !Path::new("/bin/busybox").is_file() {
        return skip("/bin/busybox is missing (busybox-static)");
    }
    let d = tempfile::tempdir().expect("tmp");
    let repo = init(d.path(), "bare");
    let tree = d.path().join("tree");
    base_tree(&tree);
    ok(
        &repo,
        &[
            "commit",
            "-b",
            "base",
            "--timestamp",
            "1700000000",
            s(&tree),
        ],
    );
    let base_tar = d.path().join("base.tar");
    ok(&repo, &["export", "base", "-o", s(&base_tar)]);
    let podman = Podman {
        dir: d.path().join("podman"),
    };
    podman.ok(&["import", s(&base_tar), "localhost/slate-base:1"]);

    // The image: adds a file and a hard link, deletes one (a whiteout),
    // replaces a folder (opaque), changes an owner and installs a .deb.
    let ctx = d.path().join("ctx");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    std::fs::copy(build_deb(d.path()), ctx.join("hello.deb")).expect("copy deb");
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM localhost/slate-base:1\n\
         LABEL org.example.flavour=test\n\
         COPY hello.deb /tmp/hello.deb\n\
         RUN echo added > /etc/added && ln /etc/added /etc/added-link && rm /etc/gone \
         && rm -rf /opt/data && mkdir /opt/data && echo new > /opt/data/new \
         && chown 1234:5678 /opt/data/new && chmod 0640 /opt/data/new \
         && dpkg -i /tmp/hello.deb && rm /tmp/hello.deb\n",
    )
    .expect("Containerfile");
    // Chroot isolation: a build step needs no OCI runtime (nor its cgroups).
    podman.ok(&[
        "build",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--pull=never",
        "-t",
        "localhost/slate-test:1",
        s(&ctx),
    ]);
    let oci = d.path().join("img.oci.tar");
    let docker = d.path().join("img.docker.tar");
    podman.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        s(&oci),
        "localhost/slate-test:1",
    ]);
    podman.ok(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        s(&docker),
        "localhost/slate-test:1",
    ]);
    // podman's own tree of the image, the reference.
    let cid = podman.ok(&["create", "localhost/slate-test:1", "/bin/sh"]);
    let reference = d.path().join("podman-export.tar");
    podman.ok(&["export", "-o", s(&reference), cid.trim()]);
    ok(&repo, &["commit", "-b", "reference", s(&reference)]);

    let oci_from = format!("oci-archive:{}", s(&oci));
    let docker_from = format!("docker-archive:{}", s(&docker));
    let a = ok(&repo, &["commit", "-b", "img/oci", "--from", &oci_from]);
    ok(
        &repo,
        &["commit", "-b", "img/docker", "--from", &docker_from],
    );
    for b in ["img/oci", "img/docker"] {
        let diff = ok(&repo, &["diff", "reference", b]);
        assert_eq!(diff, "", "{b} differs from podman's export of the image");
    }
    let listing = ok(&repo, &["ls", "-R", "img/oci"]);
    for gone in ["/etc/gone", "/opt/data/old", "/opt/data/sub"] {
        assert!(!listing.lines().any(|l| l == gone), "{gone} in:\n{listing}");
    }
    for there in [
        "/etc/added",
        "/etc/added-link",
        "/opt/data/new",
        "/usr/bin/hello-slate",
    ] {
        assert!(
            listing.lines().any(|l| l == there),
            "{there} missing:\n{listing}"
        );
    }
    // Owners and modes as podman sets them, links kept, the deb's files in.
    let co = d.path().join("co");
    ok(&repo, &["checkout", "img/oci", s(&co)]);
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(co.join("opt/data/new")).expect("stat");
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 5678, 0o640));
    let a1 = std::fs::metadata(co.join("etc/added")).expect("stat");
    let a2 = std::fs::metadata(co.join("etc/added-link")).expect("stat");
    assert_eq!(a1.ino(), a2.ino(), "the hard link is one file");
    assert_eq!(
        std::fs::read_to_string(co.join("usr/share/hello-slate/data")).expect("deb data"),
        "packaged\n"
    );
    // The image's config is the commit's metadata.
    let show = ok(&repo, &["log", "-n", "1", "--json", "img/oci"]);
    assert!(show.contains("oci.label.org.example.flavour"), "{show}");
    assert!(show.contains("oci.digest"), "{show}");
    // The same image commits to the same id again (its creation date is
    // the commit's time).
    let repo2 = init(&d.path().join("again"), "bare-user");
    let b = ok(&repo2, &["commit", "-b", "img/oci", "--from", &oci_from]);
    assert_eq!(a, b);

    // Slate's own image runs in podman.
    let out = d.path().join("slate.oci.tar");
    ok(
        &repo,
        &[
            "export",
            "--format",
            "oci-archive",
            "--tag",
            "localhost/from-slate:1",
            "img/oci",
            "-o",
            s(&out),
        ],
    );
    podman.ok(&["load", "-i", s(&out)]);
    let said = podman.run(
        "localhost/from-slate:1",
        "cat /etc/added /opt/data/new; hello-slate; test -e /etc/gone || echo no-gone",
    );
    assert_eq!(said, "added\nnew\nhello from a deb\nno-gone\n");
}

#[test]
fn oci_archives_are_reproducible_and_commit_back_to_the_same_tree() {
    let d = tempfile::tempdir().expect("tmp");
    let repo = init(d.path(), "bare-user");
    let tree = d.path().join("tree");
    sample_tree(&tree);
    let id = ok(
        &repo,
        &["commit", "-b", "os", "--timestamp", "1700000000", s(&tree)],
    );
    let (a, b) = (d.path().join("a.tar"), d.path().join("b.tar"));
    for out in [&a, &b] {
        ok(
            &repo,
            &[
                "export",
                "--format",
                "oci-archive",
                "--tag",
                "os:1",
                "os",
                "-o",
                s(out),
            ],
        );
    }
    let bytes = std::fs::read(&a).expect("read");
    assert_eq!(
        bytes,
        std::fs::read(&b).expect("read"),
        "same commit, same bytes"
    );
    let from = format!("oci-archive:{}", s(&a));
    let c1 = ok(&repo, &["commit", "-b", "back", "--from", &from]);
    assert_eq!(ok(&repo, &["diff", "os", "back"]), "");
    // Reproducible: another repository makes the same commit of it.
    let repo2 = init(&d.path().join("two"), "bare-user");
    assert_eq!(c1, ok(&repo2, &["commit", "-b", "back", "--from", &from]));
    // The commit's metadata carries the exported commit's id as a label.
    let log = ok(&repo, &["log", "-n", "1", "--json", "back"]);
    assert!(log.contains(id.trim()), "{log}");
}

#[test]
fn a_tampered_image_is_refused_and_moves_no_ref() {
    let d = tempfile::tempdir().expect("tmp");
    let repo = init(d.path(), "bare-user");
    let tree = d.path().join("tree");
    sample_tree(&tree);
    ok(&repo, &["commit", "-b", "os", s(&tree)]);
    let a = d.path().join("a.tar");
    ok(
        &repo,
        &["export", "--format", "oci-archive", "os", "-o", s(&a)],
    );
    // Flip one byte of a file's content inside the layer.
    let mut bytes = std::fs::read(&a).expect("read");
    let at = bytes
        .windows(12)
        .position(|w| w == b"same content")
        .expect("a file's content in the layer");
    bytes[at] ^= 0x20;
    std::fs::write(&a, &bytes).expect("write");
    let from = format!("oci-archive:{}", s(&a));
    let e = fails(&repo, &["commit", "-b", "evil", "--from", &from]);
    assert!(e.contains("not its digest"), "{e}");
    let refs = ok(&repo, &["refs"]);
    assert!(!refs.contains("evil"), "{refs}");
    // Neither a name that is no image transport.
    let e = fails(&repo, &["commit", "-b", "x", "--from", "docker://debian"]);
    assert!(e.contains("oci-archive:FILE"), "{e}");
}
