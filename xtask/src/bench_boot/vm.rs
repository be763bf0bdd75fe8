//! One measured boot: QEMU with the arguments of `cargo xtask run`, SSH and
//! `docker run` polled from the host, memory read over SSH.

use super::report::{Figures, Meminfo};
use super::{SshKey, System, IMAGE};
use crate::os::qemu;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(500);
/// Idle time after both readiness checks, before memory is first read.
const IDLE: Duration = Duration::from_secs(10);
/// Then memory is read again every `SETTLE_STEP` until two readings in a
/// row differ by less than [`SETTLED_KIB`], for at most [`SETTLE_LIMIT`]:
/// "idle" is when used memory has stopped falling. Right after a boot the
/// engines still hold memory from starting and from the image load (Go's
/// runtime returns freed heap to the kernel over minutes); on a fast boot
/// a fixed idle time caught that (OxOS: 135.8 MiB with User Docker after
/// 10 s, 114.7 MiB after 60 s), on a slow one it did not.
const SETTLE_STEP: Duration = Duration::from_secs(10);
/// See [`SETTLE_STEP`].
const SETTLED_KIB: u64 = 1024;
/// See [`SETTLE_STEP`].
const SETTLE_LIMIT: Duration = Duration::from_secs(120);
/// Settling time after User Docker is stopped.
const SETTLE: Duration = Duration::from_secs(2);
/// The longest one SSH command may take (a `docker run` under TCG can take a
/// while; a hung guest must not hang the benchmark).
const COMMAND_LIMIT: Duration = Duration::from_secs(120);
/// How many serial lines an error shows.
const TAIL_LINES: usize = 30;

/// Direct kernel boot (`-kernel`, `-initrd`, `-append`).
pub use crate::os::qemu::DirectKernel;

/// What one machine boots and how it is driven.
#[derive(Clone, Debug)]
pub struct Boot {
    /// The qcow2 disk (an overlay of the pristine one).
    pub disk: PathBuf,
    pub config_drive: Option<PathBuf>,
    pub kernel: Option<DirectKernel>,
    /// The SSH login.
    pub user: &'static str,
    /// Stops User Docker (run over SSH).
    pub stop_docker: &'static str,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM set a flag that the polling loops check, so that the
/// running QEMU (in its own process group, which the terminal's SIGINT does
/// not reach) is killed on the way out.
pub fn install_interrupt_handler() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { sigaction(signal, &action) }
            .with_context(|| format!("cannot install a {signal} handler"))?;
    }
    Ok(())
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// A running QEMU, killed when dropped.
struct Qemu {
    child: Child,
    log: PathBuf,
    errors: PathBuf,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the kernel prints when it starts the first program of user space
/// ("Run /init as init process"), on either machine.
const KERNEL_RAN_INIT: &str = " as init process";

/// What the kernel prints when it dies of the emulator's fault: under
/// multi-threaded TCG, now and then, on either machine, the kernel meets
/// the breakpoint it places while patching its own code on one vCPU and
/// another vCPU runs that code ("Oops: int3"). Hardware never shows it.
const EMULATOR_FAULT: &str = "Oops: int3";

/// QEMU exited because the guest kernel died where the measured system has
/// no part in it: before starting its init, or of [`EMULATOR_FAULT`] at any
/// time. The run is worth booting again; see [`super::run`].
#[derive(Debug)]
pub struct KernelDied {
    pub message: String,
}

impl std::fmt::Display for KernelDied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KernelDied {}

impl Qemu {
    /// Fails when QEMU has exited; with [`KernelDied`] when the guest kernel
    /// never started its init or died of the emulator's fault.
    fn check_running(&mut self, system: System, step: &str) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("cannot wait for qemu")? {
            let message = format!(
                "{system}: qemu exited ({status}) while waiting for {step}{}",
                self.diagnostics()
            );
            let serial = std::fs::read(&self.log).unwrap_or_default();
            let serial = String::from_utf8_lossy(&serial);
            if !serial.contains(KERNEL_RAN_INIT) || serial.contains(EMULATOR_FAULT) {
                return Err(KernelDied { message }.into());
            }
            bail!(message);
        }
        Ok(())
    }

    /// The last serial lines and QEMU's own messages, for errors.
    fn diagnostics(&self) -> String {
        let text = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mut out = format!("\nlast serial lines ({}):\n", self.log.display());
        out.push_str(&tail(&text, TAIL_LINES));
        let errors = std::fs::read_to_string(&self.errors).unwrap_or_default();
        if !errors.trim().is_empty() {
            out.push_str(&format!("\nqemu said:\n{}", errors.trim_end()));
        }
        out
    }
}

/// The last `n` lines of `text`, each indented.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("  | {}\n", l.trim_end_matches('\r')))
        .collect()
}

/// A free TCP port on 127.0.0.1 (bound and released; QEMU takes it next).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// The QEMU arguments of `boot`: those of `cargo xtask run --disk`, plus
/// direct kernel boot when the machine has one.
pub fn qemu_args(boot: &Boot, mem_mb: u32, port: u16, log: &Path) -> Vec<String> {
    let machine = qemu::Machine {
        medium: qemu::Medium::Disk,
        image: boot.disk.clone(),
        mem_mb,
        ssh_port: Some(port),
        ssh_guest_port: 22,
        config_drive: boot.config_drive.clone(),
        extra_disk: None,
        monitor: None,
        usb_keyboard: false,
        uefi: None,
        serial: qemu::Serial::File(log.to_path_buf()),
        kernel: boot.kernel.clone(),
        user_data_server: None,
    };
    qemu::args(&machine)
}

/// Boots `boot` and measures it.
pub fn measure(
    system: System,
    boot: &Boot,
    key: &SshKey,
    mem_mb: u32,
    timeout: Duration,
    dir: &Path,
) -> Result<Figures> {
    let port = free_port()?;
    let log = dir.join("serial.log");
    let errors = dir.join("serial.qemu-stderr");
    let args = qemu_args(boot, mem_mb, port, &log);
    let ssh = Ssh {
        key: key.private.clone(),
        user: boot.user,
        port,
    };
    eprintln!("xtask: == qemu: qemu-system-x86_64 {}", args.join(" "));
    let started = Instant::now();
    let child = qemu::spawn_detached("qemu-system-x86_64", &args, &errors)?;
    let mut vm = Qemu { child, log, errors };
    let attempts_path = dir.join("attempts.log");
    let mut attempts = std::fs::File::create(&attempts_path)
        .with_context(|| format!("cannot create {}", attempts_path.display()))?;

    let ssh_ready = poll(
        system,
        &mut vm,
        started,
        timeout,
        "SSH",
        &mut attempts,
        || {
            // Not a short limit: a client killed mid-handshake leaves sshd's
            // pre-authentication slot busy (MaxStartups), so on a slow guest
            // short attempts delay the very login they wait for.
            ssh.run("true", COMMAND_LIMIT)
        },
    )?;
    eprintln!(
        "xtask: {system}: SSH ready after {:.1} s",
        ssh_ready.as_secs_f64()
    );
    let docker_run = format!("docker run --rm --pull never {IMAGE} true");
    let docker_ready = poll(
        system,
        &mut vm,
        started,
        timeout,
        "docker run",
        &mut attempts,
        || ssh.run(&docker_run, COMMAND_LIMIT),
    )?;
    eprintln!(
        "xtask: {system}: docker run ready after {:.1} s",
        docker_ready.as_secs_f64()
    );

    sleep_checked(IDLE)?;
    vm.check_running(system, "memory reading")?;
    let settling = Instant::now();
    let mut with_docker = meminfo(system, &ssh, &vm)?;
    loop {
        if settling.elapsed() >= SETTLE_LIMIT {
            eprintln!(
                "xtask: {system}: memory still changing after {} s; taking the last reading",
                SETTLE_LIMIT.as_secs()
            );
            break;
        }
        sleep_checked(SETTLE_STEP)?;
        vm.check_running(system, "memory reading")?;
        let next = meminfo(system, &ssh, &vm)?;
        let (before, after) = (with_docker.used_kib(), next.used_kib());
        eprintln!(
            "xtask: {system}: memory with User Docker {:.1} MiB, then {:.1} MiB",
            before as f64 / 1024.0,
            after as f64 / 1024.0
        );
        with_docker = next;
        if settled(before, after) {
            break;
        }
    }
    ssh.run(boot.stop_docker, COMMAND_LIMIT)
        .map_err(|e| anyhow::anyhow!("{system}: cannot stop User Docker: {e}"))?;
    sleep_checked(SETTLE)?;
    let system_part = meminfo(system, &ssh, &vm)?;
    drop(vm);
    Ok(Figures {
        ssh_ready,
        docker_ready,
        mem_with_docker_kib: with_docker.used_kib(),
        mem_system_kib: system_part.used_kib(),
        system_parts: system_part.parts(),
    })
}

/// Whether two memory readings in a row show an idle system.
fn settled(before_kib: u64, after_kib: u64) -> bool {
    before_kib.abs_diff(after_kib) < SETTLED_KIB
}

fn meminfo(system: System, ssh: &Ssh, vm: &Qemu) -> Result<Meminfo> {
    let text = ssh
        .output("cat /proc/meminfo", COMMAND_LIMIT)
        .map_err(|e| {
            anyhow::anyhow!(
                "{system}: cannot read /proc/meminfo: {e}{}",
                vm.diagnostics()
            )
        })?;
    Meminfo::parse(&text).with_context(|| format!("{system}: /proc/meminfo"))
}

fn sleep_checked(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_interrupted()?;
        std::thread::sleep(Duration::from_millis(100).min(end - Instant::now()));
    }
    Ok(())
}

/// Runs `attempt` every [`POLL`] until it succeeds; returns the time from
/// `started` to the end of the successful attempt.
/// Tries `attempt` every [`POLL`] until it succeeds, writing each try's
/// start (seconds since QEMU's start), length and outcome to `attempts`
/// (the run's `attempts.log`: what a step waited on, e.g. a `docker run`
/// that tried to pull before the preloaded image was there).
fn poll(
    system: System,
    vm: &mut Qemu,
    started: Instant,
    timeout: Duration,
    step: &str,
    attempts: &mut impl Write,
    mut attempt: impl FnMut() -> std::result::Result<(), String>,
) -> Result<Duration> {
    loop {
        check_interrupted()?;
        vm.check_running(system, step)?;
        let tried = Instant::now();
        let outcome = attempt();
        let _ = writeln!(
            attempts,
            "{:7.2} s  {:6.2} s  {step}: {}",
            tried.duration_since(started).as_secs_f64(),
            tried.elapsed().as_secs_f64(),
            match &outcome {
                Ok(()) => "ok".to_string(),
                Err(e) => e.trim().to_string(),
            }
        );
        let last_error = match outcome {
            Ok(()) => return Ok(started.elapsed()),
            Err(e) => e,
        };
        if started.elapsed() >= timeout {
            let what = if step == "SSH" {
                "did not answer SSH".to_string()
            } else {
                format!("did not answer `{step}` over SSH")
            };
            bail!(
                "{system} {what} within {} s (last attempt: {}){}",
                timeout.as_secs(),
                last_error.trim(),
                vm.diagnostics()
            );
        }
        if let Some(rest) = POLL.checked_sub(tried.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// `ssh` to the guest through the forwarded port.
struct Ssh {
    key: PathBuf,
    user: &'static str,
    port: u16,
}

impl Ssh {
    fn command(&self, remote: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(ssh_options(&self.key, self.port))
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(remote)
            .stdin(Stdio::null());
        c
    }

    /// Runs `remote`; the error is its stderr (or why it did not finish).
    fn run(&self, remote: &str, limit: Duration) -> std::result::Result<(), String> {
        self.output(remote, limit).map(|_| ())
    }

    /// Runs `remote` and returns its stdout.
    fn output(&self, remote: &str, limit: Duration) -> std::result::Result<String, String> {
        let mut cmd = self.command(remote);
        run_limited(&mut cmd, limit)
    }
}

/// The options of every `ssh`: the benchmark's key only, no host key
/// checks (every boot is a new machine), short connect timeout.
pub fn ssh_options(key: &Path, port: u16) -> Vec<String> {
    [
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=2",
        "-i",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([key.display().to_string(), "-p".into(), port.to_string()])
    .collect()
}

/// Runs `cmd` with captured output, killed after `limit`.
fn run_limited(cmd: &mut Command, limit: Duration) -> std::result::Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temporary dir: {e}"))?;
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    // Output goes to files rather than pipes so that waiting with a time
    // limit needs no reader threads.
    let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let err = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start ssh: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= limit || INTERRUPTED.load(Ordering::SeqCst) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for ssh: {e}")),
        }
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    if status.success() {
        return Ok(stdout);
    }
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    // All of it: docker's last line ("See 'docker run --help'.") says
    // nothing; the line before it says why.
    let message: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if message.is_empty() {
        return Err(format!("{status}: no message"));
    }
    Err(format!("{status}: {}", message.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_that_died_before_init_or_of_the_emulators_fault_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let exited = |serial: &str| {
            let log = dir.path().join("serial.log");
            std::fs::write(&log, serial).unwrap();
            let mut child = Command::new("true").spawn().unwrap();
            child.wait().unwrap();
            let mut qemu = Qemu {
                child,
                log,
                errors: dir.path().join("qemu-stderr"),
            };
            qemu.check_running(System::Oxos, "SSH").unwrap_err()
        };
        let early = exited("[    2.75] Oops: int3: 0000 [#2] PREEMPT SMP NOPTI\n");
        assert!(early.downcast_ref::<KernelDied>().is_some(), "{early}");
        assert!(early.to_string().contains("qemu exited"), "{early}");
        let emulator = exited(
            "[    2.53] Run /init as init process\n[    7.71] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n[    7.71] Kernel panic\n",
        );
        assert!(
            emulator.downcast_ref::<KernelDied>().is_some(),
            "{emulator}"
        );
        let late = exited("[    2.53] Run /init as init process\n[   30.1] Kernel panic\n");
        assert!(late.downcast_ref::<KernelDied>().is_none(), "{late}");
    }

    #[test]
    fn memory_is_idle_once_two_readings_differ_by_less_than_a_mebibyte() {
        assert!(settled(117_000, 117_500));
        assert!(settled(117_500, 117_000));
        assert!(!settled(139_000, 130_000), "still falling");
        assert!(!settled(117_000, 118_024), "rising by exactly 1 MiB");
    }

    fn boot() -> Boot {
        Boot {
            disk: "/w/overlay.qcow2".into(),
            config_drive: None,
            kernel: None,
            user: "bench",
            stop_docker: "true",
        }
    }

    fn values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn both_machines_share_the_qemu_command_apart_from_disk_and_kernel() {
        let oxos = qemu_args(&boot(), 1024, 2300, Path::new("/w/serial.log"));
        let mut debian_boot = boot();
        debian_boot.kernel = Some(DirectKernel {
            kernel: "/w/vmlinuz".into(),
            initrd: "/w/initrd.img".into(),
            cmdline: "root=/dev/vda rw".into(),
        });
        let debian = qemu_args(&debian_boot, 1024, 2300, Path::new("/w/serial.log"));
        // The same arguments once the kernel's three are taken out.
        let at = debian.iter().position(|a| a == "-kernel").unwrap();
        let mut without_kernel = debian.clone();
        without_kernel.drain(at..at + 6);
        assert_eq!(without_kernel, oxos);
        assert_eq!(values(&debian, "-kernel"), ["/w/vmlinuz"]);
        assert_eq!(values(&debian, "-append"), ["root=/dev/vda rw"]);
        for a in [&oxos, &debian] {
            assert_eq!(values(a, "-accel"), ["tcg"]);
            assert_eq!(values(a, "-smp"), ["2"]);
            assert_eq!(values(a, "-m"), ["1024"]);
            assert_eq!(
                values(a, "-nic"),
                ["user,restrict=on,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2300-:22"]
            );
            assert_eq!(values(a, "-serial"), ["file:/w/serial.log"]);
        }
    }

    #[test]
    fn ssh_never_asks_and_uses_only_the_benchmark_key() {
        let o = ssh_options(Path::new("/k/id"), 2400).join(" ");
        assert!(o.contains("BatchMode=yes"));
        assert!(o.contains("IdentitiesOnly=yes"));
        assert!(o.contains("StrictHostKeyChecking=no"));
        assert!(o.contains("UserKnownHostsFile=/dev/null"));
        assert!(o.contains("ConnectTimeout=2"));
        assert!(o.ends_with("-i /k/id -p 2400"));
    }

    #[test]
    fn tail_shows_the_last_lines() {
        assert_eq!(tail("a\nb\r\nc\n", 2), "  | b\n  | c\n");
        assert_eq!(tail("", 3), "");
    }

    #[test]
    fn a_command_past_its_limit_is_killed_with_a_clear_error() {
        let mut c = Command::new("sleep");
        c.arg("5");
        let started = Instant::now();
        let e = run_limited(&mut c, Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(e.contains("no answer within"), "{e}");
        let mut c = Command::new("sh");
        c.args(["-c", "echo out; echo bad >&2; exit 3"]);
        let e = run_limited(&mut c, Duration::from_secs(5)).unwrap_err();
        assert!(e.ends_with(": bad"), "{e}");
        let mut c = Command::new("echo");
        c.arg("hi");
        assert_eq!(run_limited(&mut c, Duration::from_secs(5)).unwrap(), "hi\n");
    }
}
