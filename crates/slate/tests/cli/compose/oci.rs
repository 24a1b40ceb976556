//! A manifest whose base is a container image (`type = "oci"`).

use super::{cat, compose, debian_like, id_of};
use crate::common::{have, init, is_root, ok, skip};

#[test]
#[cfg_attr(
    not(all(test_root, test_have = "systemctl")),
    ignore = "needs root (file owners) and systemctl"
)]
fn compose_a_container_image_base() {
    if !is_root() {
        return skip("slate compose needs root (file owners)");
    }
    if !have("systemctl") {
        return skip("systemctl is not installed");
    }
    let t = tempfile::tempdir().expect("tempdir");
    let base = t.path().join("base");
    debian_like(&base, "1.0");
    // The image: the tree, committed and exported as an OCI archive.
    let src = init(&t.path().join("src"), "bare");
    ok(
        &src,
        &["commit", "-b", "base", base.to_str().expect("utf-8")],
    );
    let image = t.path().join("base.oci.tar");
    ok(
        &src,
        &[
            "export",
            "--format",
            "oci-archive",
            "base",
            "-o",
            image.to_str().expect("utf-8"),
        ],
    );
    let m = t.path().join("oci.toml");
    std::fs::write(
        &m,
        "[image]\nname = \"Oci\"\nversion = \"1\"\nref = \"oci/main\"\n\n\
         [[input]]\ntype = \"oci\"\npath = \"base.oci.tar\"\n\n\
         [units]\nenable = [\"extra.service\"]\n",
    )
    .expect("manifest");
    let cache = t.path().join("cache");
    let repo = init(t.path(), "bare");
    let id = id_of(&compose(&repo, &cache, &[m.to_str().expect("utf-8")]));
    assert_eq!(
        cat(&repo, &id, "/usr/share/factory/var/lib/svc/data"),
        "state\n"
    );
    let wants = ok(
        &repo,
        &["ls", &id, "/usr/lib/systemd/system/multi-user.target.wants"],
    );
    assert!(wants.contains("extra.service"), "{wants}");
    // The lockfile pins the image's config digest.
    let lock = std::fs::read_to_string(t.path().join("oci.lock")).expect("lockfile");
    assert!(lock.contains("kind = \"oci\""), "{lock}");
    assert!(lock.contains("sha256:"), "{lock}");
    // Built again: the same commit.
    let repo2 = init(&t.path().join("two"), "bare");
    let id2 = id_of(&compose(&repo2, &cache, &[m.to_str().expect("utf-8")]));
    assert_eq!(id, id2);
}
