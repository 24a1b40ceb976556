//! `slate vm`'s hold on QEMU: QEMU does not outlive Slate, whether Slate
//! is stopped (SIGTERM: QEMU stopped, the temporary folder removed) or
//! killed outright (SIGKILL: the kernel kills QEMU). A stand-in QEMU (a
//! script that records its pid and sleeps) takes the real one's place:
//! booting is the end-to-end test's. The folder of a killed run is
//! removed by the next.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{skip, slate_bin};

/// Whether a process is gone (reaped, or a zombie no one waits for).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "{what}: not after {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `slate vm` with the stand-in QEMU, and the stand-in's pid once it runs.
fn start(dir: &Path) -> (Child, i32) {
    let qemu = dir.join("qemu-system-x86_64");
    let pidfile = dir.join("qemu.pid");
    std::fs::write(
        &qemu,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 300\n",
            pidfile.display()
        ),
    )
    .expect("stand-in");
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let disk = dir.join("disk.img");
    std::fs::write(&disk, b"").expect("disk");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).expect("work");
    let child = Command::new(slate_bin())
        .env("SLATE_QEMU", &qemu)
        .args(["vm", "--accel", "tcg", "--console-log"])
        .arg(dir.join("console.log"))
        .arg("--workdir")
        .arg(&work)
        .arg(&disk)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("slate vm");
    let mut pid = 0;
    wait_for("the stand-in QEMU started", 20, || {
        pid = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        pid != 0
    });
    (child, pid)
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("work"))
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
#[cfg_attr(not(test_have = "ovmf"), ignore = "ovmf is not installed")]
fn vm_stops_qemu_when_stopped_or_killed() {
    if !Path::new(slate_core::vm::OVMF_CODE).is_file()
        || !Path::new(slate_core::vm::OVMF_VARS).is_file()
    {
        return skip("ovmf is not installed (slate vm copies its variables)");
    }
    let t = tempfile::tempdir().expect("tempdir");

    // SIGTERM: Slate stops QEMU, removes its folder, says which signal.
    let (mut slate, qemu) = start(t.path());
    assert!(!leftovers(t.path()).is_empty(), "no temporary folder made");
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&slate),
        rustix::process::Signal::TERM,
    )
    .expect("kill");
    let out = slate.wait().expect("wait");
    assert_eq!(out.code(), Some(128 + 15));
    wait_for("QEMU gone after SIGTERM to slate", 10, || gone(qemu));
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
    let _ = std::fs::remove_file(t.path().join("qemu.pid"));

    // SIGKILL: nothing of Slate runs any more; the kernel kills QEMU.
    if !slate_core::vm::qemu_bound() {
        return skip("no setpriv here (util-linux): QEMU cannot be bound to Slate's life");
    }
    let (mut slate, qemu) = start(t.path());
    slate.kill().expect("SIGKILL");
    slate.wait().expect("wait");
    wait_for("QEMU gone after SIGKILL to slate", 10, || gone(qemu));
    // Its folder stays (no one was left to remove it) until the next run.
    let killed = leftovers(t.path());
    assert_eq!(killed.len(), 1, "{killed:?}");
    let _ = std::fs::remove_file(t.path().join("qemu.pid"));
    let (mut slate, _) = start(t.path());
    let now = leftovers(t.path());
    assert!(
        now.len() == 1 && now != killed,
        "the killed run's folder is still there: {now:?}"
    );
    slate.kill().expect("SIGKILL");
    slate.wait().expect("wait");
}
