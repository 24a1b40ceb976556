//! `upgrade` following a deployment's origin, and deploying from a remote
//! that requires signatures.

use super::*;

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn upgrade_follows_the_origin_and_pinned_deployments_stay() {
    let Some(e) = setup("persistent") else { return };
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), "os/main"]);
    let first = status(&e.sr)["deployments"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    admin_ok(&e.sr, &["pin", "0"]);
    // Nothing new on the ref: nothing to do.
    let o = admin(&e.sr, &["upgrade", "--from", s(&e.build)]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to do"));
    assert_eq!(status(&e.sr)["deployments"].as_array().expect("d").len(), 1);
    // Three new versions, each upgraded to: only the pinned first one, the
    // rollback and the newest stay.
    for v in 2..=4 {
        let c = commit_version(&e.build, &e.trees, v, true);
        admin_ok(&e.sr, &["upgrade", "--from", s(&e.build)]);
        assert_eq!(status(&e.sr)["deployments"][0]["commit"], c.as_str());
    }
    let st = status(&e.sr);
    let d = st["deployments"].as_array().expect("d");
    let ids: Vec<&str> = d.iter().map(|x| x["id"].as_str().expect("id")).collect();
    assert_eq!(d.len(), 3, "{ids:?}");
    assert!(
        ids.contains(&first.as_str()),
        "the pinned deployment was removed: {ids:?}"
    );
    assert!(d.iter().any(|x| x["pinned"] == true));
    // Unpinned, the next upgrade removes it.
    admin_ok(&e.sr, &["pin", "--unpin", &first]);
    commit_version(&e.build, &e.trees, 5, true);
    admin_ok(&e.sr, &["upgrade", "--from", s(&e.build)]);
    let st = status(&e.sr);
    let ids: Vec<&str> = st["deployments"]
        .as_array()
        .expect("d")
        .iter()
        .map(|x| x["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(!ids.contains(&first.as_str()));
    // A deployment made from a commit has no origin to follow.
    let c = commit_version(&e.build, &e.trees, 6, true);
    admin_ok(&e.sr, &["deploy", "--from", s(&e.build), &c]);
    let err = admin_fails(&e.sr, &["upgrade"]);
    assert!(
        err.contains("was deployed from a commit, not a ref"),
        "{err}"
    );
    fsck_clean(&e);
}

/// Publish the build repository's `os/main` into the archive `pub`,
/// signed with `key` (unless told not to), and update the summary.
pub(crate) fn publish(e: &Env, pubrepo: &Path, key: &Path, sign: bool) {
    ok(
        pubrepo,
        &["pull-local", "--repo", s(pubrepo), s(&e.build), "os/main"],
    );
    if sign {
        ok(
            pubrepo,
            &["sign", "--repo", s(pubrepo), "os/main", "--key", s(key)],
        );
    }
    ok(
        pubrepo,
        &[
            "summary",
            "--repo",
            s(pubrepo),
            "--update",
            "--sign",
            s(key),
        ],
    );
}

#[test]
#[cfg_attr(
    not(test_root),
    ignore = "needs root: a sysroot's repository is bare (real owners)"
)]
fn deploy_and_upgrade_from_a_remote_that_requires_signatures() {
    let Some(e) = setup("persistent") else { return };
    let pubrepo = e._dir.path().join("pub");
    let key = e._dir.path().join("key.pem");
    ok(
        &pubrepo,
        &["init", "--repo", s(&pubrepo), "--mode", "archive"],
    );
    ok(&pubrepo, &["keygen", s(&key)]);
    publish(&e, &pubrepo, &key, true);
    let server = crate::faultserve::FaultServer::start(pubrepo.clone());
    let r = repo(&e);
    let pubkey = format!("{}.pub", s(&key));
    ok(
        &r,
        &[
            "remote",
            "--repo",
            s(&r),
            "add",
            "origin",
            &server.url,
            "--sign-verify",
            &pubkey,
        ],
    );
    let c1 = ok(&e.build, &["rev-parse", "--repo", s(&e.build), "os/main"])
        .trim()
        .to_string();
    admin_ok(&e.sr, &["deploy", "origin:os/main"]);
    let st = status(&e.sr);
    assert_eq!(st["deployments"][0]["commit"], c1.as_str());
    assert_eq!(st["deployments"][0]["origin"], "origin:os/main");

    // A new signed version: upgrade pulls it, then deploys it.
    let c2 = commit_version(&e.build, &e.trees, 2, true);
    publish(&e, &pubrepo, &key, true);
    admin_ok(&e.sr, &["upgrade"]);
    let st = status(&e.sr);
    assert_eq!(st["deployments"][0]["commit"], c2.as_str());
    assert_eq!(st["deployments"][0]["default"], true);
    assert_eq!(st["deployments"][0]["origin"], "origin:os/main");
    // Nothing new: nothing to do.
    let o = admin(&e.sr, &["upgrade"]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing to do"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // An unsigned version is refused; the default stays.
    commit_version(&e.build, &e.trees, 3, true);
    publish(&e, &pubrepo, &key, false);
    let err = admin_fails(&e.sr, &["upgrade"]);
    assert!(err.contains("no valid signature"), "{err}");
    assert_eq!(status(&e.sr)["deployments"][0]["commit"], c2.as_str());

    // The tracking ref deployed directly: its signature is checked too.
    std::fs::remove_dir_all(r.join("signatures").join(&c2)).expect("remove signature");
    let err = admin_fails(&e.sr, &["deploy", "remotes/origin/os/main"]);
    assert!(err.contains("no valid signature"), "{err}");
    assert_eq!(
        status(&e.sr)["deployments"].as_array().expect("list").len(),
        2
    );
    fsck_clean(&e);
}
