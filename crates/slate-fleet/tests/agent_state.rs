//! The agent's side of kept state, in a root folder as the image lays it
//! out (`/etc/ssh/ssh_host_*` links made by tmpfiles into
//! `/var/lib/slate/ssh/etc/ssh/`): the first machine's keys uploaded; a
//! new disk of the same hardware, approved in advance, gets them back
//! through the links, complete and with their modes; a file changed on
//! the machine since the last sync is never overwritten, but reported;
//! a link planted to climb out of the root lands inside it.

use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use slate_core::fsutil::Root;
use slate_fleet::agent::state::sync;
use slate_fleet::client::Client;
use slate_fleet::state::operator;
use slate_fleet::state::{KeyRing, Limits, Service};
use slate_fleet::{records, server, Db, Target};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const HW: &str = "4c4c4544-0000-1000-8000-0000000000b1";
const KEYS: &str = "var/lib/slate/ssh/etc/ssh";

/// A machine's root as a fresh disk has it: the links, no keys.
fn fresh_root(dir: &Path) {
    std::fs::create_dir_all(dir.join("etc/ssh")).expect("mkdir");
    for k in ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"] {
        symlink(
            format!("/var/lib/slate/ssh/etc/ssh/{k}"),
            dir.join("etc/ssh").join(k),
        )
        .expect("link");
    }
}

fn keygen(dir: &Path, secret: &str) {
    std::fs::create_dir_all(dir.join(KEYS)).expect("mkdir");
    std::fs::write(dir.join(KEYS).join("ssh_host_ed25519_key"), secret).expect("write");
    std::fs::set_permissions(
        dir.join(KEYS).join("ssh_host_ed25519_key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    std::fs::write(
        dir.join(KEYS).join("ssh_host_ed25519_key.pub"),
        format!("{secret}.pub"),
    )
    .expect("write");
}

#[test]
fn a_new_disk_gets_the_keys_back_and_a_changed_file_is_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(&Target::Sqlite(tmp.path().join("f.db"))).expect("open"));
    records::add_group(&db, "web", "origin:os/main", TOKEN, 1).expect("group");
    let svc = Service {
        keys: KeyRing::open(&tmp.path().join("state.key")).expect("keys"),
        limits: Limits::default(),
    };
    let running = server::start(
        db.clone(),
        &server::Options {
            bind: "127.0.0.1:0".into(),
            tls: None,
            threads: 2,
            state: Some(Arc::new(svc)),
        },
    )
    .expect("starts");
    let base = format!("http://{}", running.addr);

    // The first disk: keys made at first boot, uploaded by the agent.
    let one = tmp.path().join("one");
    fresh_root(&one);
    keygen(&one, "first-disk-key");
    // A link that climbs out: resolved inside the root, never outside.
    symlink(
        "../../../../../../outside",
        one.join("etc/ssh/ssh_host_evil"),
    )
    .expect("link");
    let st1 = tmp.path().join("agent1");
    std::fs::create_dir_all(&st1).expect("mkdir");
    let c1 = Client::new(&base, SigningKey::from_bytes(&[1; 32]), None).expect("client");
    c1.enroll_as("web", TOKEN, "one", Some(HW))
        .expect("enrolls");
    let root1 = Root::new(&one).expect("root");
    let s = sync(&c1, &st1, &root1, false).expect("synced");
    assert_eq!(
        s.uploaded,
        vec![
            "/etc/ssh/ssh_host_ed25519_key".to_string(),
            "/etc/ssh/ssh_host_ed25519_key.pub".to_string()
        ]
    );
    assert!(s.restored.is_empty() && s.conflicts.is_empty(), "{s:?}");
    // Nothing changed: nothing to do.
    let s = sync(&c1, &st1, &root1, false).expect("synced");
    assert!(s.uploaded.is_empty() && s.restored.is_empty(), "{s:?}");

    // The disk is replaced: a fresh one, the same hardware, approved ahead.
    operator::replace_by_hardware(&db, &c1.machine_id(), HW, "test", 5).expect("approved");
    let two = tmp.path().join("two");
    fresh_root(&two);
    let st2 = tmp.path().join("agent2");
    std::fs::create_dir_all(&st2).expect("mkdir");
    let c2 = Client::new(&base, SigningKey::from_bytes(&[2; 32]), None).expect("client");
    let e = c2
        .enroll_as("web", TOKEN, "two", Some(HW))
        .expect("enrolls");
    assert_eq!(e.replaces.as_deref(), Some(c1.machine_id().as_str()));
    let root2 = Root::new(&two).expect("root");
    let s = sync(&c2, &st2, &root2, false).expect("synced");
    assert_eq!(s.restored.len(), 2, "{s:?}");
    assert!(s
        .restored
        .contains(&"/var/lib/slate/ssh/etc/ssh/ssh_host_ed25519_key".to_string()));
    let restored = two.join(KEYS).join("ssh_host_ed25519_key");
    assert_eq!(
        std::fs::read_to_string(&restored).expect("restored"),
        "first-disk-key"
    );
    assert_eq!(
        std::fs::metadata(&restored).expect("stat").mode() & 0o7777,
        0o600
    );
    // The link is still the image's link; no temporary file is left.
    assert!(
        std::fs::symlink_metadata(two.join("etc/ssh/ssh_host_ed25519_key"))
            .expect("lstat")
            .file_type()
            .is_symlink()
    );
    let names: Vec<_> = std::fs::read_dir(two.join(KEYS))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(!tmp.path().join("outside").exists());

    // A file changed here since the last sync, while the server's copy
    // changed too (another replacement): left as it is, reported.
    std::fs::write(&restored, "changed-on-the-machine").expect("write");
    let c3 = Client::new(&base, SigningKey::from_bytes(&[3; 32]), None).expect("client");
    c3.enroll("web", TOKEN, "three").expect("enrolls");
    let three = tmp.path().join("three");
    fresh_root(&three);
    keygen(&three, "third-key");
    let st3 = tmp.path().join("agent3");
    std::fs::create_dir_all(&st3).expect("mkdir");
    sync(&c3, &st3, &Root::new(&three).expect("root"), false).expect("synced");
    operator::replace(&db, &c3.machine_id(), &c2.machine_id(), "test", 6).expect("replaced");
    let s = sync(&c2, &st2, &root2, false).expect("synced");
    assert_eq!(s.conflicts.len(), 1, "{s:?}");
    assert_eq!(s.conflicts[0].path, "/etc/ssh/ssh_host_ed25519_key");
    assert_eq!(
        std::fs::read_to_string(&restored).expect("kept"),
        "changed-on-the-machine"
    );
    // The public key, unchanged here, follows the server.
    assert_eq!(
        std::fs::read_to_string(two.join(KEYS).join("ssh_host_ed25519_key.pub")).expect("pub"),
        "third-key.pub"
    );
    running.stop();
}
