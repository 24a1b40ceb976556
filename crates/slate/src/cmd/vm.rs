use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use slate_core::install::{self, InstallOptions};
use slate_core::sysroot::Pulled;
use slate_core::vm::{self, Accel};

use super::GlobalRepoArg;
use crate::output;

/// Boot an image or a disk in a virtual machine (QEMU, UEFI firmware,
/// systemd-boot): the way to try an image before installing it.
#[derive(Args)]
#[command(
    long_about = "Boot an image or a disk in a virtual machine: QEMU with OVMF (UEFI), KVM \
    when it works here, else software emulation. A ref or commit of the repository is first \
    installed on a disk (as `slate admin install` does; a temporary file unless --disk names \
    one); a FILE is booted as it is. The serial console is on the terminal (Ctrl-A X quits \
    QEMU) or in --console-log; the guest reaches the host at 10.0.2.2 (user-mode \
    networking), and --forward HOST:GUEST forwards a TCP port to it. QEMU is \
    $SLATE_QEMU or qemu-system-x86_64 on the PATH. QEMU does not outlive the command: \
    SIGTERM, SIGINT or SIGHUP stop it (and the temporary files go), and a SIGKILL to \
    Slate kills it too (through setpriv's parent-death signal).",
    after_help = "Examples:\n  slate vm --repo repo debian/bookworm/x86_64\n  \
    slate vm --snapshot disk.img\n  \
    slate vm --repo repo --disk vm.img --forward 2222:22 os/main\n  \
    slate vm --uuid 4c4c4544-0042-3510-8052-b4c04f4a4d32 disk.img"
)]
pub struct VmArgs {
    #[command(flatten)]
    repo: GlobalRepoArg,
    /// Install a REF onto this disk file and keep it (default: a
    /// temporary one, removed after).
    #[arg(long, value_name = "FILE")]
    disk: Option<PathBuf>,
    /// Write nothing to the disk (changes go to a temporary overlay).
    #[arg(long)]
    snapshot: bool,
    /// Memory, MiB.
    #[arg(long, default_value = "2048", value_name = "MIB")]
    memory: u32,
    #[arg(long, default_value = "2")]
    cpus: u32,
    /// auto (KVM when it starts here, else TCG), kvm or tcg.
    #[arg(long, default_value = "auto", value_name = "ACCEL")]
    accel: Accel,
    /// The console to this file instead of the terminal.
    #[arg(long, value_name = "FILE")]
    console_log: Option<PathBuf>,
    /// A second serial port (the guest's ttyS1) to this file.
    #[arg(long, value_name = "FILE")]
    marker_log: Option<PathBuf>,
    /// Forward a host TCP port to the guest (HOST:GUEST; repeatable).
    #[arg(long = "forward", value_name = "HOST:GUEST", value_parser = parse_forward)]
    forwards: Vec<(u16, u16)>,
    /// The machine's SMBIOS UUID (the guest's
    /// /sys/class/dmi/id/product_uuid): the same machine across disks.
    #[arg(long, value_name = "UUID", value_parser = parse_uuid)]
    uuid: Option<String>,
    /// Kernel arguments of the entry installed (with a REF).
    #[arg(long = "karg", value_name = "ARG")]
    kargs: Vec<String>,
    /// Where the disk and the firmware's variables are made.
    #[arg(long, default_value = "/var/tmp", value_name = "DIR")]
    workdir: PathBuf,
    /// A ref or commit of the repository, or a disk file.
    image: String,
}

fn parse_uuid(s: &str) -> Result<String, String> {
    vm::check_uuid(s).map(|()| s.to_ascii_lowercase())
}

fn parse_forward(s: &str) -> Result<(u16, u16), String> {
    let (h, g) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected HOST:GUEST ports"))?;
    let port = |p: &str| p.parse::<u16>().map_err(|_| format!("{p:?} is not a port"));
    Ok((port(h)?, port(g)?))
}

pub fn run(a: VmArgs) -> anyhow::Result<ExitCode> {
    let qemu = vm::find_qemu().context(
        "no qemu-system-x86_64 on the PATH: install qemu-system-x86, or set SLATE_QEMU to one",
    )?;
    if !std::path::Path::new(vm::OVMF_CODE).is_file() {
        anyhow::bail!("{}: no UEFI firmware (apt-get install ovmf)", vm::OVMF_CODE);
    }
    // (The folder of a `slate vm` that was killed is removed by the next.)
    let work = slate_core::fsutil::WorkDir::new(&a.workdir, "slate-vm-")
        .map_err(|(p, e)| anyhow::anyhow!("making a folder in {}: {e}", p.display()))?;
    let as_file = PathBuf::from(&a.image);
    let disk = if as_file.is_file() {
        as_file
    } else {
        let from = a.repo.repo.clone().with_context(|| {
            format!(
                "{:?} is not a file, so it names an image: give --repo",
                a.image
            )
        })?;
        let disk = a
            .disk
            .clone()
            .unwrap_or_else(|| work.path().join("disk.img"));
        let mut o = InstallOptions::new(
            from,
            disk.clone(),
            a.image.clone(),
            a.workdir.clone(),
            now(),
        );
        o.kargs = a.kargs.clone();
        o.force = a.disk.is_some();
        let r = install::install(&o, &output::InstallSteps)
            .context("installing the image on a disk")?;
        if let Some(Pulled::Local { from, stats }) = &r.resolved.pulled {
            output::pulled_from(from, stats);
        }
        if let Some(note) = &r.note {
            eprintln!("warning: {note}");
        }
        eprintln!(
            "{} installed on {} ({} MiB)",
            r.deployment,
            r.disk.display(),
            r.layout.disk_bytes() >> 20
        );
        disk
    };
    let vars = work.path().join("OVMF_VARS.fd");
    std::fs::copy(vm::OVMF_VARS, &vars)
        .with_context(|| format!("copying {} (apt-get install ovmf)", vm::OVMF_VARS))?;
    let kvm = match a.accel {
        Accel::Kvm => true,
        Accel::Tcg => false,
        Accel::Auto => vm::kvm_works(&qemu, work.path()),
    };
    if !kvm {
        eprintln!("no usable KVM here: software emulation (a boot takes minutes)");
    }
    let opts = vm::Options {
        qemu: qemu.clone(),
        disk,
        snapshot: a.snapshot,
        memory_mib: a.memory,
        cpus: a.cpus,
        kvm,
        vars,
        console_log: a.console_log.clone(),
        marker_log: a.marker_log.clone(),
        forwards: a.forwards.clone(),
        uuid: a.uuid.clone(),
    };
    run_qemu(&qemu, &vm::qemu_args(&opts))
    // `work` (the firmware's variables, a temporary disk) goes here.
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Run QEMU to its end. A SIGTERM, SIGINT or SIGHUP to Slate ends QEMU
/// first (SIGTERM: it stops the guest) and returns, so the temporary
/// folder is removed; a SIGKILL to Slate kills QEMU through its
/// parent-death signal ([`vm::qemu_command`]).
fn run_qemu(qemu: &std::path::Path, args: &[std::ffi::OsString]) -> anyhow::Result<ExitCode> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let caught = Arc::new(AtomicUsize::new(0));
    for sig in [SIGTERM, SIGINT, SIGHUP] {
        signal_hook::flag::register_usize(sig, Arc::clone(&caught), sig as usize)
            .context("setting up signal handling")?;
    }
    let mut child = vm::qemu_command(qemu)
        .args(args)
        .spawn()
        .with_context(|| format!("running {}", qemu.display()))?;
    let pid = rustix::process::Pid::from_child(&child);
    let status = loop {
        if let Some(st) = child.try_wait().context("waiting for QEMU")? {
            break st;
        }
        let sig = caught.load(Ordering::Relaxed);
        if sig != 0 {
            eprintln!("signal {sig}: stopping QEMU");
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = child.wait();
            return Ok(ExitCode::from(128 + sig as u8));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(c.clamp(1, 255) as u8),
        None => ExitCode::from(128 + 9),
    })
}
