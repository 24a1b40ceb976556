//! Kept state from the command line: `fleet serve --state-key` makes its
//! key file 0600; `agent --state-only` uploads a machine's SSH host keys
//! and, on a new disk approved with `fleet replace OLD --by HARDWARE-ID`,
//! restores them through the image's links; `fleet state list` shows
//! paths and sizes, never contents; `forget` is logged; `rekey` seals
//! every row again while the server serves; the database holds no
//! plaintext; bad paths and second replacements are refused.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use crate::admin::s;
use crate::common::slate_bin;
use crate::fleet::{fleet, fleet_ok, Server, TOKEN};

const SECRET: &str = "host-key-plaintext-5b1e";
const HW: &str = "4c4c4544-0000-1000-8000-0000000000c1";

fn machine_root(dir: &Path, with_keys: bool) {
    std::fs::create_dir_all(dir.join("etc/ssh")).expect("mkdir");
    let keys = dir.join("var/lib/slate/ssh/etc/ssh");
    for k in ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"] {
        symlink(
            format!("/var/lib/slate/ssh/etc/ssh/{k}"),
            dir.join("etc/ssh").join(k),
        )
        .expect("link");
    }
    if with_keys {
        std::fs::create_dir_all(&keys).expect("mkdir");
        std::fs::write(keys.join("ssh_host_ed25519_key"), SECRET).expect("write");
        std::fs::set_permissions(
            keys.join("ssh_host_ed25519_key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        std::fs::write(keys.join("ssh_host_ed25519_key.pub"), "pub").expect("write");
    }
}

fn agent(dir: &Path, name: &str, server: &str, hw: &str) -> Output {
    let hw_file = dir.join(format!("{name}.hw"));
    std::fs::write(&hw_file, format!("{hw}\n")).expect("hw");
    Command::new(slate_bin())
        .args(["agent", "--state-only", "--json", "--server", server])
        .args(["--group", "web", "--token-file", s(&dir.join("token"))])
        .args(["--config", s(&dir.join("none.toml"))])
        .args(["--state-dir", s(&dir.join(format!("{name}.agent")))])
        .args(["--root", s(&dir.join(name))])
        .args(["--hardware-file", s(&hw_file)])
        .output()
        .expect("run slate agent")
}

fn agent_json(dir: &Path, name: &str, server: &str, hw: &str) -> serde_json::Value {
    let o = agent(dir, name, server, hw);
    assert!(
        o.status.success(),
        "slate agent: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("json")
}

#[test]
fn state_kept_restored_listed_forgotten_and_rekeyed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let db_path = dir.join("fleet.db");
    scenario(
        dir,
        s(&db_path),
        &[db_path.clone(), dir.join("fleet.db-wal")],
    );
}

#[test]
fn state_kept_restored_listed_forgotten_and_rekeyed_postgresql() {
    let pg = match crate::fleet::pg::Postgres::start() {
        Ok(pg) => pg,
        Err(why) => return crate::common::skip(&why),
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    scenario(tmp.path(), &pg.database("fleet"), &[]);
}

/// The whole story on database `db`; `plain` are its files, which must
/// not hold the plaintext.
fn scenario(dir: &Path, db: &str, plain: &[std::path::PathBuf]) {
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).expect("token");
    fleet_ok(
        db,
        &[
            "group",
            "add",
            "web",
            "--ref",
            "origin:os/main",
            "--token-file",
            s(&dir.join("token")),
        ],
    );
    let key_file = dir.join("state.key");
    let server = Server::start(db, &["--insecure-http", "--state-key", s(&key_file)]);
    assert_eq!(
        std::fs::metadata(&key_file)
            .expect("key file")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // The first disk: its keys kept on the server.
    machine_root(&dir.join("one"), true);
    let r = agent_json(dir, "one", &server.url, HW);
    assert_eq!(r["outcome"]["outcome"], "state_only", "{r}");
    assert_eq!(
        r["state"]["uploaded"].as_array().map(Vec::len),
        Some(2),
        "{r}"
    );
    let old = r["machine"].as_str().expect("machine").to_string();

    let listed = fleet_ok(db, &["state", "list", &old, "--json"]);
    assert!(!listed.contains(SECRET), "{listed}");
    let l: serde_json::Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(l["files"][0]["path"], "/etc/ssh/ssh_host_ed25519_key");
    assert_eq!(l["files"][0]["size"], SECRET.len());
    assert_eq!(l["files"][0]["mode"], 0o600);

    // A new disk for the same hardware, approved in advance.
    let bad = fleet(db, &["replace", &old, "--by", "../etc"]);
    assert!(!bad.status.success());
    fleet_ok(db, &["replace", &old, "--by", HW]);
    machine_root(&dir.join("two"), false);
    let r = agent_json(dir, "two", &server.url, HW);
    assert_eq!(r["replaces"], old.as_str(), "{r}");
    assert_eq!(
        r["state"]["restored"].as_array().map(Vec::len),
        Some(2),
        "{r}"
    );
    let restored = dir.join("two/var/lib/slate/ssh/etc/ssh/ssh_host_ed25519_key");
    assert_eq!(
        std::fs::read_to_string(&restored).expect("restored"),
        SECRET
    );
    assert_eq!(
        std::fs::metadata(&restored)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777,
        0o600
    );
    let new = r["machine"].as_str().expect("machine").to_string();
    let again = fleet(db, &["replace", &old, &new]);
    assert!(
        !again.status.success(),
        "a second replacement of the same machine"
    );

    // Rekey while the server serves; the new disk's next run still reads.
    let k: serde_json::Value = serde_json::from_str(&fleet_ok(
        db,
        &[
            "state",
            "rekey",
            "--state-key",
            s(&key_file),
            "--retire",
            "--json",
        ],
    ))
    .expect("json");
    assert_eq!(k["rows"], 2, "{k}");
    assert_eq!(k["retired"].as_array().map(Vec::len), Some(1), "{k}");
    std::fs::remove_file(&restored).expect("rm");
    let r = agent_json(dir, "two", &server.url, HW);
    assert_eq!(
        r["state"]["restored"].as_array().map(Vec::len),
        Some(1),
        "{r}"
    );
    assert_eq!(
        std::fs::read_to_string(&restored).expect("restored"),
        SECRET
    );

    // Forget one path: logged.
    fleet_ok(
        db,
        &[
            "state",
            "forget",
            &new,
            "--path",
            "/etc/ssh/ssh_host_ed25519_key.pub",
        ],
    );
    let l: serde_json::Value =
        serde_json::from_str(&fleet_ok(db, &["state", "list", &new, "--json"])).expect("json");
    assert_eq!(l["files"].as_array().map(Vec::len), Some(1), "{l}");
    assert_eq!(l["log"][0]["event"], "forget", "{l}");

    // A group's list outside /etc and /var is refused.
    let bad = fleet(db, &["state", "policy", "web", "--keep", "/usr/bin/sh"]);
    assert!(!bad.status.success());
    let p: serde_json::Value =
        serde_json::from_str(&fleet_ok(db, &["state", "policy", "web", "--json"])).expect("json");
    assert_eq!(p["keep"][0], "/etc/ssh/ssh_host_*");
    assert_eq!(p["auto_replace"], false);
    drop(server);

    // The database and its journal hold no plaintext.
    for f in plain {
        let bytes = std::fs::read(f).unwrap_or_default();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{} holds the plaintext",
            f.display()
        );
    }
}
