//! End-to-end: boot what `cargo xtask build` wrote to `dist/` in QEMU and
//! read the serial console.
//!
//! These need `dist/` and several minutes, so they are ignored by a plain
//! `cargo test`; `cargo xtask test` builds the OS and then runs them with
//! `--ignored`, one at a time. Each boot goes through `xtask run --expect`,
//! the same runner a developer uses, under the design's QEMU rules
//! (`-accel tcg`, user networking restricted to 127.0.0.1).

use std::process::Command;

/// How long one boot may take under TCG on a busy 2-core machine.
const BOOT_TIMEOUT_SECS: &str = "420";

mod common;
use common::{dist, STAGE1_STARTED};

/// Boots with `args` and waits for every pattern of `expect` on the serial
/// console; fails with the end of the log otherwise.
///
/// QEMU may stop before any of OxOS's code runs, through no fault of it:
/// under multi-threaded TCG the guest kernel has died in its own start
/// (an "Oops: int3" where it patches its code while the other vCPU runs
/// it), and QEMU itself has crashed during PCI enumeration on a loaded
/// host. Then, and only then (QEMU exited and stage 1 never said it was
/// starting), the boot is tried once more, as system.rs's boots are.
fn boot(args: &[&str], expect: &[&str]) {
    assert!(
        dist().join("oxos.iso").is_file(),
        "{} has no oxos.iso: run cargo xtask build first (cargo xtask test does)",
        dist().display()
    );
    let mut outcome = attempt(args, expect);
    if !outcome.passed && outcome.exited_before_stage1() {
        eprintln!(
            "boot {args:?}: QEMU exited before ros started (stage 1), booting again; \
             its serial console:\n{}",
            outcome.tail
        );
        outcome = attempt(args, expect);
    }
    assert!(
        outcome.passed,
        "boot {args:?} did not show {expect:?}\n--- xtask ---\n{}\n--- serial (end) ---\n{}",
        outcome.runner, outcome.tail
    );
}

/// One boot's result: whether every pattern showed, what `xtask run`
/// printed, and the end of the serial console.
struct Outcome {
    passed: bool,
    runner: String,
    serial: String,
    tail: String,
}

impl Outcome {
    /// QEMU exited (rather than the wait timing out) before ros's stage 1
    /// logged its start.
    fn exited_before_stage1(&self) -> bool {
        self.runner.contains("qemu exited") && !self.serial.contains(STAGE1_STARTED)
    }
}

fn attempt(args: &[&str], expect: &[&str]) -> Outcome {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("run")
        .args(args)
        .args(["--timeout", BOOT_TIMEOUT_SECS, "--mem", "1024"])
        .arg("--log")
        .arg(log.path());
    for pattern in expect {
        cmd.args(["--expect", pattern]);
    }
    let out = cmd.output().expect("cannot run xtask run");
    let serial = std::fs::read_to_string(log.path()).unwrap_or_default();
    let tail: String = serial
        .lines()
        .filter(|l| !l.contains('\u{1b}'))
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    Outcome {
        passed: out.status.success(),
        runner: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        serial,
        tail,
    }
}

/// What every boot must show: the kernel, `ros` as PID 1 in both stages,
/// the system engine served from PID 1, and the end of boot.
const BOOTED: &[&str] = &[
    r"Linux version 6\.",
    r"PID 1, stage 1",
    r"stage 2 \(PID 1 is /usr/bin/ros\)",
    r"system engine serving on unix:///var/run/system-docker\.sock",
    r"OxOS is up",
];

/// The ISO with SeaBIOS and no disk: it runs from memory, and the config
/// drive's user-data reaches the config (the host name it sets).
#[test]
#[ignore = "needs dist/ from cargo xtask build; run by cargo xtask test"]
fn iso_boots_with_seabios_from_memory_and_reads_its_config_drive() {
    let user_data = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        user_data.path(),
        "#cloud-config\nhostname: e2e-config-drive\n",
    )
    .unwrap();
    let mut expect = BOOTED.to_vec();
    expect.push("state: none; running from memory");
    expect.push(r"user-data from configdrive\S* saved");
    expect.push(r"hostname: e2e-config-drive");
    boot(
        &[
            "--iso",
            "--cloud-config",
            &user_data.path().to_string_lossy(),
        ],
        &expect,
    );
}

/// The ISO with OVMF and a USB keyboard, as a bare-metal machine or a
/// server's remote console boots it: up to the system engine in PID 1
/// (the firmware's part ends when the kernel runs; the rest is the SeaBIOS
/// boot's), and until the kernel has the keyboard as an input device,
/// which needs the USB HID drivers of the system image: `usbhid`, loaded by
/// PID 1's pass over the devices present at boot, and `hid-generic`, loaded
/// by udev's (`udev-cold`) for the HID device that `usbhid` brings.
#[test]
#[ignore = "needs dist/ from cargo xtask build; run by cargo xtask test"]
fn iso_boots_with_uefi_and_a_usb_keyboard() {
    let mut expect: Vec<&str> = BOOTED
        .iter()
        .copied()
        .filter(|p| *p != "OxOS is up")
        .collect();
    expect.push(r"hid-generic \S+: input\S*: USB HID v[0-9.]+ Keyboard \[QEMU QEMU USB Keyboard\]");
    boot(&["--iso", "--uefi", "--usb-keyboard"], &expect);
}

// The installed disk's boot (its state partition, its services) is
// xtask/tests/system.rs's disk_image_services_ssh_user_docker_reboot_and_poweroff.
