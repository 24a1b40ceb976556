//! `--json` on the commands that write: `init`, `commit`, `reset`; and on
//! `cat`.

use crate::common::*;

fn json(repo: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = ok(repo, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("slate {args:?}: {e}: {out}"))
}

#[test]
fn commit_reset_and_cat_report_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    let r = repo.to_str().expect("utf-8");
    let made = json(
        &repo,
        &["init", "--json", "--repo", r, "--mode", "bare-user"],
    );
    assert_eq!(made["mode"], "bare-user");
    let path = std::path::PathBuf::from(made["path"].as_str().expect("path"));
    assert_eq!(
        path.canonicalize().expect("path"),
        repo.canonicalize().expect("repo")
    );
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("etc")).expect("mkdir");
    std::fs::create_dir_all(src.join("usr/lib")).expect("mkdir");
    std::fs::write(src.join("etc/motd"), "welcome ✓\n").expect("write");
    std::fs::write(src.join("usr/lib/blob"), [0xffu8, 0x00, 0x01]).expect("write");
    std::os::unix::fs::symlink("../etc/motd", src.join("usr/motd")).expect("symlink");
    let s = src.to_str().expect("utf-8");

    let c1 = json(
        &repo,
        &["commit", "--json", "-b", "main", "--timestamp", "0", s],
    );
    let id1 = c1["id"].as_str().expect("id").to_owned();
    assert_eq!(ok(&repo, &["rev-parse", "main"]).trim(), id1);
    assert_eq!(c1["branch"], "main");
    assert!(c1["parent"].is_null(), "{c1}");
    assert_eq!(c1["files"], 2);
    assert_eq!(c1["symlinks"], 1);
    assert_eq!(c1["dirs"], 4);
    assert_eq!(c1["content_bytes"], 15);
    // Two files and a symlink (trees are not counted).
    assert_eq!(c1["new_file_objects"], 3, "{c1}");
    assert_eq!(c1["skipped_sockets"], serde_json::json!([]));

    std::fs::write(src.join("etc/motd"), "changed\n").expect("write");
    let c2 = json(
        &repo,
        &["commit", "--json", "-b", "main", "--timestamp", "1", s],
    );
    let id2 = c2["id"].as_str().expect("id").to_owned();
    assert_eq!(c2["parent"], id1.as_str());
    // Only the changed file is new.
    assert_eq!(c2["new_file_objects"], 1, "{c2}");

    let text = json(&repo, &["cat", "--json", "main^", "etc/motd"]);
    assert_eq!(text["content"], "welcome ✓\n");
    assert!(text.get("content_base64").is_none(), "{text}");
    assert_eq!(text["path"], "/etc/motd");
    assert_eq!(text["commit"], id1.as_str());
    assert_eq!(text["size"], 12);
    assert_eq!(text["mode"], "0644");
    let bin = json(&repo, &["cat", "--json", "main", "/usr/lib/blob"]);
    assert!(bin.get("content").is_none(), "{bin}");
    // 0xff 0x00 0x01 in standard base64.
    assert_eq!(bin["content_base64"], "/wAB");
    assert_eq!(bin["size"], 3);
    assert!(fails(&repo, &["cat", "--json", "main", "/usr/motd"]).contains("is a symlink"));

    let r = json(&repo, &["reset", "--json", "main", "main^"]);
    assert_eq!(
        r,
        serde_json::json!({"branch": "main", "from": id2, "to": id1})
    );
    assert_eq!(ok(&repo, &["rev-parse", "main"]).trim(), id1);
}
