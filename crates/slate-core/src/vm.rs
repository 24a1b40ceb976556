//! `slate vm`: a disk booted in QEMU with UEFI firmware (OVMF), the way a
//! machine boots it: KVM when it works, else software emulation; the
//! serial console on the terminal or in a file; user-mode networking, so
//! the guest reaches the host at 10.0.2.2.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// OVMF's firmware and its variable store, as Debian's `ovmf` installs
/// them.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

impl std::str::FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            _ => Err(format!("{s:?}: expected auto, kvm or tcg")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub qemu: PathBuf,
    pub disk: PathBuf,
    /// Changes go to a temporary overlay, never to the disk.
    pub snapshot: bool,
    pub memory_mib: u32,
    pub cpus: u32,
    /// KVM or TCG, decided ([`Accel::Auto`] resolved by [`kvm_works`]).
    pub kvm: bool,
    /// A private copy of the firmware's variables.
    pub vars: PathBuf,
    /// The first serial port (the console) to a file; else the terminal.
    pub console_log: Option<PathBuf>,
    /// A second serial port to a file (`ttyS1` in the guest), for markers
    /// a getty on the console cannot swallow.
    pub marker_log: Option<PathBuf>,
    /// Host TCP port forwarded to a guest port.
    pub forwards: Vec<(u16, u16)>,
    /// The machine's SMBIOS UUID (`/sys/class/dmi/id/product_uuid` in the
    /// guest), checked by [`check_uuid`]; None: QEMU's default.
    pub uuid: Option<String>,
}

/// A UUID as QEMU's `-uuid` takes it: 8-4-4-4-12 hex digits.
pub fn check_uuid(u: &str) -> Result<(), String> {
    let groups: Vec<&str> = u.split('-').collect();
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(format!("{u:?} is not a UUID (8-4-4-4-12 hex digits)"))
    }
}

/// QEMU: `$SLATE_QEMU`, else `qemu-system-x86_64` on the `PATH`.
pub fn find_qemu() -> Option<PathBuf> {
    if let Some(q) = std::env::var_os("SLATE_QEMU") {
        return Some(PathBuf::from(q));
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("qemu-system-x86_64"))
        .find(|p| p.is_file())
}

/// Where util-linux's `setpriv` is, which starts QEMU with a parent-death
/// signal: QEMU is killed when Slate dies, even by SIGKILL.
const SETPRIV: &str = "/usr/bin/setpriv";

/// A command that runs `qemu`, bound to this process's life: through
/// `setpriv --pdeathsig KILL` when util-linux has it (the kernel kills
/// QEMU when the thread that started it ends), else QEMU alone. Start it
/// from a thread that lives as long as QEMU should (the main thread).
pub fn qemu_command(qemu: &Path) -> Command {
    if Path::new(SETPRIV).is_file() {
        let mut c = Command::new(SETPRIV);
        c.args(["--pdeathsig", "KILL", "--"]).arg(qemu);
        c
    } else {
        Command::new(qemu)
    }
}

/// Whether [`qemu_command`] binds QEMU to this process's life.
pub fn qemu_bound() -> bool {
    Path::new(SETPRIV).is_file()
}

/// The data folders of a QEMU unpacked with `dpkg -x` (firmware ROMs
/// beside it, under its prefix): passed with `-L` when they exist.
pub fn data_dirs(qemu: &Path) -> Vec<PathBuf> {
    let Some(prefix) = qemu.parent().and_then(Path::parent) else {
        return Vec::new();
    };
    ["share/qemu", "share/seabios", "lib/ipxe/qemu"]
        .iter()
        .map(|d| prefix.join(d))
        .filter(|d| d.is_dir() && !d.starts_with("/usr/share") && !d.starts_with("/usr/lib"))
        .collect()
}

/// Whether KVM runs the firmware here: `/dev/kvm` opens, and OVMF on a
/// KVM machine with the host's CPU is still running after three seconds
/// with no KVM error (nested virtualisation that cannot run it stops or
/// reports "KVM internal error" early). `work` gets a copy of the
/// firmware's variables and QEMU's messages.
pub fn kvm_works(qemu: &Path, work: &Path) -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let vars = work.join("kvm-probe-vars.fd");
    let log = work.join("kvm-probe.log");
    if std::fs::copy(OVMF_VARS, &vars).is_err() {
        return false;
    }
    let Ok(errf) = std::fs::File::create(&log) else {
        return false;
    };
    let Ok(mut child) = qemu_command(qemu)
        .args(
            data_dirs(qemu)
                .iter()
                .flat_map(|d| [OsString::from("-L"), d.into()]),
        )
        .args([
            "-machine",
            "q35,accel=kvm",
            "-cpu",
            "host",
            "-m",
            "256",
            "-nodefaults",
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "none",
            "-drive",
        ])
        .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(errf)
        .spawn()
    else {
        return false;
    };
    std::thread::sleep(Duration::from_secs(3));
    let alive = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&vars);
    let _ = std::fs::remove_file(&log);
    alive && !said.contains("KVM internal error") && !said.contains("emulation failure")
}

/// QEMU's arguments for `o`.
pub fn qemu_args(o: &Options) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    for d in data_dirs(&o.qemu) {
        a.push("-L".into());
        a.push(d.into());
    }
    let s = |x: &str| OsString::from(x);
    a.extend([
        s("-machine"),
        s(if o.kvm {
            "q35,accel=kvm"
        } else {
            "q35,accel=tcg"
        }),
        s("-cpu"),
        s(if o.kvm { "host" } else { "max" }),
        s("-m"),
        OsString::from(o.memory_mib.to_string()),
        s("-smp"),
        OsString::from(o.cpus.to_string()),
        s("-nodefaults"),
        s("-display"),
        s("none"),
        s("-no-reboot"),
    ]);
    a.push("-drive".into());
    a.push(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}").into());
    a.push("-drive".into());
    a.push(format!("if=pflash,format=raw,file={}", o.vars.display()).into());
    a.push("-drive".into());
    a.push(format!("if=virtio,format=raw,file={}", o.disk.display()).into());
    if o.snapshot {
        a.push("-snapshot".into());
    }
    if let Some(u) = &o.uuid {
        a.push("-uuid".into());
        a.push(u.into());
    }
    let mut nic = String::from("user,model=virtio-net-pci");
    for (host, guest) in &o.forwards {
        nic.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
    }
    a.push("-nic".into());
    a.push(nic.into());
    a.push("-serial".into());
    a.push(match &o.console_log {
        Some(p) => format!("file:{}", p.display()).into(),
        None => "mon:stdio".into(),
    });
    if let Some(p) = &o.marker_log {
        a.push("-serial".into());
        a.push(format!("file:{}", p.display()).into());
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(uuid: Option<&str>) -> Options {
        Options {
            qemu: PathBuf::from("qemu"),
            disk: PathBuf::from("disk.img"),
            snapshot: false,
            memory_mib: 512,
            cpus: 1,
            kvm: false,
            vars: PathBuf::from("vars.fd"),
            console_log: None,
            marker_log: None,
            forwards: Vec::new(),
            uuid: uuid.map(str::to_string),
        }
    }

    #[test]
    fn a_uuid_is_checked_and_passed_to_qemu() {
        assert!(check_uuid("5a7e0000-e2e0-4000-8000-000000000001").is_ok());
        for bad in [
            "",
            "5a7e0000e2e040008000000000000001",
            "5a7e0000-e2e0-4000-8000-00000000000g",
            "-a,b",
        ] {
            assert!(check_uuid(bad).is_err(), "{bad:?}");
        }
        let args = qemu_args(&opts(Some("5a7e0000-e2e0-4000-8000-000000000001")));
        let at = args.iter().position(|a| a == "-uuid").expect("-uuid given");
        assert_eq!(args[at + 1], "5a7e0000-e2e0-4000-8000-000000000001");
        assert!(!qemu_args(&opts(None)).iter().any(|a| a == "-uuid"));
    }
}
