//! `cargo xtask bench boot`: boot time and memory of OxOS against Debian
//! trixie with systemd and docker.io, booted by the same QEMU command.
//!
//! # Background
//!
//! The design's targets for the whole system: at most half of Debian's time
//! from power-on to an SSH login and to a working `docker run`; the system
//! part under 40 MB of memory, and the whole system with an idle User Docker
//! under 128 MB. The baseline is what one would otherwise run containers on:
//! a small Debian with systemd, OpenSSH and Debian's `docker.io`.
//!
//! # Design
//!
//! - The Debian disk ([`debian`]) is made by the benchmark itself with
//!   mmdebstrap from the same mirror as the system images, turned into an
//!   ext4 image with `mkfs.ext4 -d` (no loop device, no mount) and cached
//!   under `target/bench-boot/` by a hash of everything it is made from.
//!   It boots by direct kernel boot with its own kernel and initrd.
//! - OxOS boots `dist/oxos.qcow2` (from `cargo xtask build`) through a
//!   copy-on-write overlay, so the built disk stays pristine, with a config
//!   drive that gives the `rancher` user the benchmark's SSH key ([`oxos`]).
//!   It too boots by direct kernel boot, `dist/vmlinuz` and
//!   `dist/initrd.img` with the command line of the disk's GRUB, so that
//!   neither machine's time includes a boot loader.
//! - Both get the same container image before the first boot, and load it at
//!   boot: Debian by a systemd oneshot after `docker.service`, OxOS from
//!   `/var/lib/rancher/preload/docker/` on its state partition, written into
//!   the overlay with `debugfs` (no mount).
//! - Both run with the QEMU arguments of `cargo xtask run` ([`crate::os::qemu`]):
//!   `-accel tcg`, `-smp 2`, the same `-m`, user networking with
//!   `restrict=on` and only an SSH port forwarded from 127.0.0.1, serial to a
//!   log file, and `-kernel`, `-initrd` and `-append`.
//! - From QEMU's start ([`vm`]): the first successful `ssh true`, then the
//!   first successful `docker run --rm --pull never IMAGE true` (until the
//!   image is loaded it fails at once, where a pull would first ask a
//!   registry the restricted network cannot reach), each polled every 0.5 s
//!   (an attempt may take up to 120 s: under TCG an SSH handshake on a busy
//!   guest takes many seconds, and clients given up early pile up in sshd's
//!   pre-authentication slots and make every later attempt slower);
//!   then at least 10 s of idling, until two readings of `/proc/meminfo`
//!   10 s apart differ by less than 1 MiB (at most 120 s; used = MemTotal -
//!   MemAvailable); then User Docker is stopped and memory read again (the
//!   system part).
//! - Each try's start, length and outcome go to the run's `attempts.log`
//!   (in target/bench-boot/runs/): what a step waited on.
//! - A run whose guest kernel died of the emulator's fault is booted once
//!   more: QEMU exited and the serial console never says "Run /init as init
//!   process", or says "Oops: int3" (under multi-threaded TCG the kernel now
//!   and then meets the breakpoint it sets while patching its own code, in
//!   its start or later, on either machine). Any other failure ends the
//!   benchmark, with the figures measured so far.
//! - With `--runs N` the machines alternate run by run and the report gives
//!   the median of each figure, the ratio OxOS/Debian and whether each
//!   target is met.
//!
//! # Limitations
//!
//! - TCG is slow and noisy: the absolute times say little, the ratios more.
//! - Memory targets are read as MiB (the kernel counts KiB).

mod debian;
mod oxos;
mod report;
mod vm;

use crate::cmd::{is_root, target_dir};
use anyhow::{ensure, Context, Result};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The image both systems preload and `docker run`.
pub const IMAGE: &str = "oxos-bench/busybox:latest";

#[derive(Args, Clone, Debug)]
pub struct BootArgs {
    /// Guest memory in MB, the same for both machines.
    #[arg(long, value_name = "MB", default_value_t = 1024)]
    pub mem: u32,
    /// Boots of each machine; the report gives the medians.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Keep each boot's overlay disk, config drive and serial log under
    /// target/bench-boot/runs/ (the logs are always kept).
    #[arg(long)]
    pub keep: bool,
    /// Seconds each step (SSH ready, `docker run` ready) may take.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub timeout: u64,
    /// Measure only this machine (the report then has no ratios).
    #[arg(long, value_enum)]
    pub only: Option<System>,
}

/// The two machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum System {
    Oxos,
    Debian,
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            System::Oxos => "OxOS",
            System::Debian => "Debian",
        })
    }
}

/// `target/bench-boot/`.
fn work_dir() -> PathBuf {
    target_dir().join("bench-boot")
}

pub fn run(args: &BootArgs) -> Result<()> {
    ensure!(
        is_root(),
        "the boot benchmark builds a Debian root with mmdebstrap in root mode: run it as root"
    );
    // QEMU, the disk and ISO tools and mmdebstrap, as for the build; the
    // static busybox the benchmark's image is made of; the SSH client.
    crate::test::install_host_packages(crate::os::BUILD_PACKAGES)?;
    crate::test::install_host_packages(&["busybox-static", "openssh-client"])?;
    let work = work_dir();
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    vm::install_interrupt_handler()?;

    let key = ssh_key(&work)?;
    let image = work.join("image.tar");
    let archive = crate::testimage::busybox_docker_archive(IMAGE)?;
    std::fs::write(&image, &archive)
        .with_context(|| format!("cannot write {}", image.display()))?;

    let systems: Vec<System> = match args.only {
        Some(s) => vec![s],
        None => vec![System::Debian, System::Oxos],
    };
    let mut machines = Vec::new();
    for &system in &systems {
        machines.push(match system {
            System::Debian => Machine::Debian(debian::disk(&work, &key.public, &image)?),
            System::Oxos => {
                let disk = crate::cmd::workspace_root().join("dist/oxos.qcow2");
                ensure!(
                    disk.is_file(),
                    "{} does not exist: run `cargo xtask build` first",
                    disk.display()
                );
                Machine::Oxos(disk)
            }
        });
    }

    let runs_dir = work.join("runs");
    std::fs::create_dir_all(&runs_dir)
        .with_context(|| format!("cannot create {}", runs_dir.display()))?;
    let timeout = Duration::from_secs(args.timeout);
    let mut oxos_figures = Vec::new();
    let mut debian_figures = Vec::new();
    for run in 1..=args.runs {
        for machine in &machines {
            let system = machine.system();
            eprintln!("xtask: == run {run}/{}: {system}", args.runs);
            let dir = runs_dir.join(format!("{}-{run}", system_slug(system)));
            let measure = || -> Result<report::Figures> {
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let result = match machine {
                    Machine::Debian(disk) => debian::boot(disk, &dir),
                    Machine::Oxos(disk) => oxos::boot(disk, &image, &key.public, &dir),
                }
                .and_then(|boot| vm::measure(system, &boot, &key, args.mem, timeout, &dir));
                if !args.keep {
                    clean_run_dir(&dir);
                }
                result
            };
            // A kernel that died of the emulator's fault is booted once more,
            // from a fresh copy of the disk; the run's figures are those of
            // the second boot.
            let result = match measure() {
                Err(e) if e.downcast_ref::<vm::KernelDied>().is_some() => {
                    eprintln!("xtask: {e}\nxtask: the guest kernel died before its init or of the emulator's fault (Oops: int3); booting this run again");
                    measure()
                }
                other => other,
            };
            let figures = match result {
                Ok(f) => f,
                Err(e) => {
                    if !oxos_figures.is_empty() || !debian_figures.is_empty() {
                        eprintln!("xtask: figures measured before the failure:");
                        print!(
                            "{}",
                            report::table(
                                report::median(&oxos_figures).as_ref(),
                                report::median(&debian_figures).as_ref()
                            )
                        );
                    }
                    return Err(e);
                }
            };
            eprintln!("xtask: {system}: {}", figures.summary());
            match system {
                System::Oxos => oxos_figures.push(figures),
                System::Debian => debian_figures.push(figures),
            }
        }
    }
    println!(
        "boot benchmark: {} run(s), -m {} -smp 2 -accel tcg (medians)",
        args.runs, args.mem
    );
    print!(
        "{}",
        report::table(
            report::median(&oxos_figures).as_ref(),
            report::median(&debian_figures).as_ref()
        )
    );
    Ok(())
}

/// A machine ready to boot: the pristine disk.
enum Machine {
    Debian(debian::Disk),
    Oxos(PathBuf),
}

impl Machine {
    fn system(&self) -> System {
        match self {
            Machine::Debian(_) => System::Debian,
            Machine::Oxos(_) => System::Oxos,
        }
    }
}

fn system_slug(system: System) -> &'static str {
    match system {
        System::Oxos => "oxos",
        System::Debian => "debian",
    }
}

/// Removes a run's disks and drives, keeping its logs.
fn clean_run_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let keep = path
            .extension()
            .is_some_and(|e| e == "log" || e == "qemu-stderr");
        if keep {
            continue;
        }
        if path.is_dir() {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The benchmark's SSH key pair.
pub struct SshKey {
    pub private: PathBuf,
    pub public: PathBuf,
}

/// `work/ssh/id_ed25519`, generated on first use.
fn ssh_key(work: &Path) -> Result<SshKey> {
    let dir = work.join("ssh");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let private = dir.join("id_ed25519");
    let public = dir.join("id_ed25519.pub");
    if !private.is_file() || !public.is_file() {
        let _ = std::fs::remove_file(&private);
        let _ = std::fs::remove_file(&public);
        crate::cmd::run_step(
            "ssh-keygen",
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "oxos-bench", "-f"])
                .arg(&private),
        )?;
    }
    Ok(SshKey { private, public })
}
