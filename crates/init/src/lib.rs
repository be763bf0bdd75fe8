//! OxOS PID 1: from the initrd to a running system, then reaping and
//! shutdown.
//!
//! # Background
//!
//! The kernel starts the initrd's `/init`, which is `ros`. Everything a
//! classic initramfs does with a shell and busybox (mounting, loading
//! modules, finding the root by label, switching root) is done here in
//! Rust, because the initrd holds nothing but `ros` and the modules needed
//! to find the system image.
//!
//! # Design
//!
//! Boot is two stages, each run by PID 1:
//!
//! 1. [`stage1`], in the initrd: the early mounts (/proc, /sys, /dev,
//!    /dev/pts, /dev/shm, /run, cgroup2 with its controllers enabled), the
//!    kernel command line, the initrd's modules ([`kmod`]: the file systems,
//!    and the drivers of the devices present, by `modalias`), the boot medium
//!    found by label ([`probe`]: `OXOS` on the ISO, `RANCHER_BOOT` on a disk)
//!    and its read-only system image (`/oxos/system.img`, a squashfs attached
//!    to a loop device, [`loopdev`]), then the state partition
//!    (`rancher.state.dev`, `LABEL=RANCHER_STATE` by default; without one the
//!    system runs from memory and says so). The state becomes the new root,
//!    with /usr bound from the system image; the initrd's files are deleted
//!    to give their memory back, and PID 1 re-executes itself as
//!    `/usr/bin/ros init --stage2`, so that `/proc/1/exe` is the system
//!    image's `ros`. Arguments the kernel gave after `--` are handed on.
//! 2. [`stage2`], in the new root: the directories of a running system,
//!    init.yml from the arguments after `--`, the system engine serving
//!    /var/run/system-docker.sock from PID 1 itself, then the `os` project of
//!    the merged config brought up in dependency order. After that PID 1
//!    reaps orphans forever ([`reaper`]) and turns SIGINT/SIGTERM
//!    (reboot) and SIGUSR1/SIGUSR2 (halt/power off) into an orderly shutdown:
//!    containers stopped, file systems synced and the state unmounted.
//!
//! PID 1 never exits and never panics on purpose: a step that fails is
//! logged on the console and boot goes on where it safely can; when it
//! cannot (no system image), PID 1 says why and waits, reaping.
//!
//! # Limitations
//!
//! - `rancher.state.autoformat` needs mkfs in the system image, which it
//!   does not hold yet: an empty disk is reported and left alone.
//! - There is no recovery shell yet (the initrd has no shell).
//! - LVM, mdadm and cryptsetup for the state are not supported yet.

pub mod kmod;
pub mod loopdev;
pub mod power;
pub mod probe;
pub mod reaper;
pub mod reserve;
pub mod stage1;
pub mod stage2;

use std::ffi::OsString;

/// Errors of the boot steps.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call or file operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A module that `modules.dep` does not list.
    #[error("no kernel module named {0}")]
    UnknownModule(String),
    /// A device that did not show up in time.
    #[error("no device {0} after {1} s")]
    NoDevice(String, u64),
    /// Anything else, said in words.
    #[error("{0}")]
    Other(String),
}

/// Log lines carry the time since the machine booted (CLOCK_BOOTTIME), the
/// same clock as the kernel's messages, also across the re-exec of stage 2.
struct SinceBoot;

impl tracing_subscriber::fmt::time::FormatTime for SinceBoot {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
            .unwrap_or(0.0);
        write!(w, "[{t:12.6}]")
    }
}

/// Installs the console log: lines with the time since boot, no colours.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,libcontainer=warn,libcgroups=warn",
        ))
        .with_timer(SinceBoot)
        .with_ansi(false)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Logs panics instead of letting them pass silently; PID 1 catches them
/// around each stage so that the kernel never sees init exit.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("oxos: internal error in PID 1: {info}");
    }));
}

/// Waits forever, reaping whatever exits. The end of the line when boot
/// cannot go on: PID 1 must not exit (the kernel would panic).
pub fn halt_here(why: &str) -> ! {
    tracing::error!("boot cannot go on: {why}");
    let shell = std::path::Path::new(RECOVERY_SHELL);
    if !shell.exists() {
        tracing::error!(
            "no recovery shell ({RECOVERY_SHELL} is missing): fix the boot medium or the command line and reboot"
        );
    }
    loop {
        if shell.exists() {
            tracing::error!(
                "recovery shell on the console (busybox sh); `exit` starts a new one, `reboot -f` restarts"
            );
            // The shell runs on the console PID 1 was given; PID 1 waits for
            // it (and reaps whatever else exits), then offers a new one.
            match std::process::Command::new(shell)
                .args(["sh", "-l"])
                .env(
                    "PATH",
                    "/usr/lib/oxos-tools/bin:/usr/bin:/usr/sbin:/bin:/sbin",
                )
                .env("PS1", "recovery# ")
                .spawn()
            {
                Ok(mut child) => {
                    let _ = child.wait();
                }
                Err(e) => tracing::error!("cannot start the recovery shell: {e}"),
            }
        }
        reaper::reap_all_blocking();
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// The static busybox the build puts in the initrd, with its applets as
/// links in `/usr/lib/oxos-tools/bin` (stage 1; after the switch of root the
/// system image has no shell, and this path is then missing).
pub const RECOVERY_SHELL: &str = "/usr/lib/oxos-tools/busybox";

/// `ros` as `/init` or `ros init [--stage2] [-- ARGS]`. As PID 1 this never
/// returns; run as any other process it refuses, since it would remount the
/// machine it runs on.
pub fn main(args: Vec<OsString>) -> i32 {
    let words: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if words.iter().any(|w| w == "--help" || w == "-h") {
        println!(
            "usage: ros init [--stage2] [-- ARGS]\n\n\
             OxOS's PID 1. The kernel runs it as /init from the initrd (stage 1: mounts,\n\
             modules, system image, state, switch to the new root); it then runs itself\n\
             as /usr/bin/ros init --stage2 (system engine, services, reaping, shutdown).\n\
             Arguments after -- on the kernel command line are saved to\n\
             /var/lib/rancher/conf/cloud-config.d/init.yml."
        );
        return 0;
    }
    if std::process::id() != 1 {
        eprintln!(
            "ros init: this is OxOS's PID 1 and runs only as process 1 (see ros init --help)"
        );
        return 2;
    }
    init_logging();
    install_panic_hook();
    let stage2 = words.first().is_some_and(|w| w == "--stage2");
    // The words the kernel handed to init: the args after `--` on the boot
    // line (stage 1), or what stage 1 passed on after our own `--` (stage 2).
    let after_dashes: Vec<String> = if stage2 {
        words
            .iter()
            .skip_while(|w| *w != "--")
            .skip(1)
            .cloned()
            .collect()
    } else {
        words
    };
    let result = std::panic::catch_unwind(move || {
        if stage2 {
            stage2::run(&after_dashes)
        } else {
            stage1::run(&after_dashes)
        }
    });
    match result {
        Ok(Err(e)) => halt_here(&e.to_string()),
        Ok(Ok(never)) => match never {},
        Err(_) => halt_here("PID 1 panicked (see the message above)"),
    }
}
