//! End-to-end: the booted system as a user meets it, over SSH and the
//! serial console, in QEMU (`xtask run --detach`, the design's rules:
//! `-accel tcg`, user networking restricted to 127.0.0.1 with SSH
//! forwarded).
//!
//! Ignored by a plain `cargo test` (they need `dist/` and minutes);
//! `cargo xtask test` builds the OS and runs them with `--ignored`.
//!
//! Each test boots its own machine with its own SSH key, given to the
//! guest through a config drive (`ssh_authorized_keys`), and walks through
//! what a user would do, step by step; a failing step names itself and
//! shows the end of the serial console.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Under TCG on a busy 2-core machine a boot with User Docker takes minutes.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

mod common;
use common::{dist, STAGE1_STARTED};

/// A qcow2 overlay of dist/oxos.qcow2 in `dir`: the guest writes there, so
/// the built disk stays pristine for every other test, and the overlay
/// keeps a test's writes across its own reboots.
pub fn disk_overlay(dir: &Path) -> PathBuf {
    let overlay = dir.join("disk.qcow2");
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(dist().join("oxos.qcow2").canonicalize().unwrap())
        .arg(&overlay)
        .status()
        .unwrap();
    assert!(status.success(), "qemu-img create failed");
    overlay
}

/// A free TCP port on 127.0.0.1 (bound and released; QEMU takes it next).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// How to boot.
struct Boot<'a> {
    /// Arguments of `xtask run` for the medium (`--iso`, `--disk ...`).
    medium: Vec<String>,
    mem: u32,
    extra_disk: Option<&'a Path>,
    /// The guest's SSH port (22, or the cloud-config's rancher.ssh.port).
    ssh_guest_port: u16,
    /// How the user-data reaches the guest (`xtask run --datasource`).
    datasource: &'static str,
    /// Metadata (JSON) beside the user-data on a drive (`--meta-data`).
    meta_data: Option<String>,
    /// Kernel command line words added by direct kernel boot (`--append`).
    append: Option<String>,
}

impl<'a> Boot<'a> {
    /// The installed disk, through a qcow2 overlay (see [`disk_overlay`]).
    fn disk(overlay: &Path) -> Boot<'a> {
        Boot {
            medium: vec![
                "--disk".into(),
                "--disk-image".into(),
                overlay.display().to_string(),
            ],
            mem: 1024,
            extra_disk: None,
            ssh_guest_port: 22,
            datasource: "config-drive",
            meta_data: None,
            append: None,
        }
    }

    /// The ISO with `mem` MB and maybe a disk.
    fn iso(mem: u32, extra_disk: Option<&'a Path>) -> Boot<'a> {
        Boot {
            medium: vec!["--iso".into()],
            mem,
            extra_disk,
            ssh_guest_port: 22,
            datasource: "config-drive",
            meta_data: None,
            append: None,
        }
    }
}

/// A new SSH key pair `dir/name`: the private key's path and the public
/// key's line.
fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "oxos-e2e", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(out.status.success(), "ssh-keygen failed");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

/// One running machine. Dropping it kills QEMU.
struct Vm {
    dir: tempfile::TempDir,
    key: PathBuf,
    port: u16,
    pid: i32,
    log: PathBuf,
    monitor: PathBuf,
    /// Serial bytes already seen by earlier boots of this Vm (a reboot
    /// appends to a new log; the offset keeps `wait_serial` on the new one).
    boots: u32,
}

impl Vm {
    /// A fresh key and config drive, then the first boot.
    fn start(boot: &Boot) -> Vm {
        Vm::start_with(boot, "")
    }

    /// As [`Vm::start`], with `extra` (YAML) appended to the cloud-config.
    fn start_with(boot: &Boot, extra: &str) -> Vm {
        assert!(
            dist().join("oxos.iso").is_file(),
            "{} has no oxos.iso: run cargo xtask build first (cargo xtask test does)",
            dist().display()
        );
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = keypair(dir.path(), "id_ed25519");
        let cloud_config = dir.path().join("user-data.yml");
        std::fs::write(
            &cloud_config,
            format!(
                "#cloud-config\nssh_authorized_keys:\n  - {}\n{}",
                public.trim(),
                if extra.is_empty() {
                    "hostname: oxos-e2e\n"
                } else {
                    extra
                }
            ),
        )
        .unwrap();
        let mut vm = Vm {
            monitor: dir.path().join("monitor.sock"),
            log: dir.path().join("serial-0.log"),
            dir,
            key,
            port: 0,
            pid: 0,
            boots: 0,
        };
        vm.boot(boot);
        vm
    }

    /// Whether ros's stage 1 starts on this boot's console; false only when
    /// QEMU exits before it does (a timeout counts as true, for the next
    /// step to fail on).
    fn reaches_stage1(&self, timeout: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if self.serial().contains(STAGE1_STARTED) {
                return true;
            }
            if !self.running() {
                return self.serial().contains(STAGE1_STARTED);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        true
    }

    /// Starts QEMU (again) with the same key and config drive, and sees it
    /// reach ros's stage 1.
    ///
    /// QEMU may stop before any of OxOS's code runs, through no fault of
    /// it: under multi-threaded TCG the guest kernel has died in its own
    /// start (an "Oops: int3" where it patches its code while the other
    /// vCPU runs it, seen in a reboot's second boot as in first boots), and
    /// QEMU itself has crashed during the kernel's PCI enumeration on a
    /// loaded host. Then, and only then (QEMU exited and stage 1 never said
    /// it was starting), this boot is tried once more: nothing of OxOS ran,
    /// so nothing on its disks changed.
    fn boot(&mut self, boot: &Boot) {
        self.launch(boot);
        if !self.reaches_stage1(Duration::from_secs(300)) {
            eprintln!(
                "e2e: QEMU exited before ros started (stage 1), booting again; its serial console:\n{}",
                self.tail()
            );
            self.launch(boot);
        }
    }

    /// Starts QEMU with the same key and config drive, on a new serial log.
    fn launch(&mut self, boot: &Boot) {
        self.port = free_port();
        self.log = self.dir.path().join(format!("serial-{}.log", self.boots));
        self.boots += 1;
        let _ = std::fs::remove_file(&self.monitor);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.arg("run")
            .args(&boot.medium)
            .arg("--detach")
            .args(["--mem", &boot.mem.to_string()])
            .args(["--ssh-port", &self.port.to_string()])
            .args(["--ssh-guest-port", &boot.ssh_guest_port.to_string()])
            .arg("--cloud-config")
            .arg(self.dir.path().join("user-data.yml"))
            .args(["--datasource", boot.datasource])
            .arg("--monitor")
            .arg(&self.monitor)
            .arg("--log")
            .arg(&self.log);
        if let Some(disk) = boot.extra_disk {
            cmd.arg("--extra-disk").arg(disk);
        }
        if let Some(meta) = &boot.meta_data {
            let file = self.dir.path().join("meta-data.json");
            std::fs::write(&file, meta).unwrap();
            cmd.arg("--meta-data").arg(file);
        }
        if let Some(words) = &boot.append {
            cmd.arg(format!("--append={words}"));
        }
        let out = cmd.output().expect("cannot run xtask run");
        assert!(
            out.status.success(),
            "xtask run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Its last line is "PID LOG"; anything a tool printed before it
        // must not cost the pid (without it, nothing would stop QEMU).
        let stdout = String::from_utf8_lossy(&out.stdout);
        self.pid = stdout
            .lines()
            .rev()
            .find_map(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("xtask run --detach printed no pid: {stdout:?}"));
    }

    fn serial(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The end of the serial console, for failure messages.
    fn tail(&self) -> String {
        let text = self.serial();
        let lines: Vec<&str> = text.lines().filter(|l| !l.contains('\u{1b}')).collect();
        lines[lines.len().saturating_sub(50)..].join("\n")
    }

    fn fail(&self, step: &str, what: &str) -> ! {
        panic!(
            "{step}: {what}\n--- serial console (end of {}) ---\n{}",
            self.log.display(),
            self.tail()
        )
    }

    fn running(&self) -> bool {
        // A zombie (QEMU exited, not reaped yet) counts as gone.
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    /// Waits for a regex on this boot's serial console.
    fn wait_serial(&self, step: &str, pattern: &str, timeout: Duration) {
        let re = regex::Regex::new(pattern).unwrap();
        let started = Instant::now();
        loop {
            if re.is_match(&self.serial()) {
                eprintln!(
                    "e2e: {step}: {pattern:?} after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            if !self.running() {
                self.fail(step, &format!("QEMU exited before {pattern:?}"));
            }
            if started.elapsed() > timeout {
                self.fail(step, &format!("{pattern:?} not seen within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn ssh_command(&self, user: &str) -> Command {
        self.ssh_command_with(user, &self.key)
    }

    /// As [`Vm::ssh_command`], logging in with the private key `key`.
    fn ssh_command_with(&self, user: &str, key: &Path) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-i")
            .arg(key)
            .args(["-p", &self.port.to_string()])
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .arg(format!("{user}@127.0.0.1"));
        cmd
    }

    /// Runs `script` as rancher over SSH.
    fn ssh(&self, script: &str) -> Output {
        self.ssh_command("rancher")
            .arg(script)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run ssh (openssh-client)")
    }

    /// Runs `script` over SSH; the step fails unless it succeeds. Returns
    /// its standard output.
    fn ok(&self, step: &str, script: &str) -> String {
        let out = self.ssh(script);
        if !out.status.success() {
            self.fail(
                step,
                &format!(
                    "`{script}` failed ({}):\nstdout: {}\nstderr: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `script` over SSH with `input` on its standard input.
    fn ok_with_input(&self, step: &str, script: &str, input: &[u8]) -> String {
        let mut child = self
            .ssh_command("rancher")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run ssh");
        let mut stdin = child.stdin.take().unwrap();
        let data = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        let _ = writer.join();
        if !out.status.success() {
            self.fail(
                step,
                &format!(
                    "`{script}` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ),
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls `script` until it succeeds.
    fn eventually(&self, step: &str, script: &str, timeout: Duration) -> String {
        let started = Instant::now();
        loop {
            let out = self.ssh(script);
            if out.status.success() {
                eprintln!(
                    "e2e: {step}: ok after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            if !self.running() {
                self.fail(step, "QEMU exited");
            }
            if started.elapsed() > timeout {
                self.fail(
                    step,
                    &format!(
                        "`{script}` still failing after {timeout:?}:\nstdout: {}\nstderr: {}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Sends a command to QEMU's (human) monitor and waits until QEMU has
    /// carried it out: the monitor echoes the command and prints its next
    /// `(qemu)` prompt only after running it. Closing the connection before
    /// then can lose the command (QEMU drops unread input on hang-up).
    fn monitor(&self, command: &str) {
        let mut s = std::os::unix::net::UnixStream::connect(&self.monitor)
            .unwrap_or_else(|e| panic!("cannot reach QEMU's monitor: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(1))).ok();
        s.write_all(format!("{command}\n").as_bytes()).unwrap();
        let started = Instant::now();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&seen);
            if let Some(at) = text.find(command) {
                if text[at..].contains("(qemu)") {
                    return;
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                self.fail(
                    "monitor",
                    &format!("QEMU did not confirm `{command}` in 30 s; it said: {text:?}"),
                );
            }
            match s.read(&mut buf) {
                Ok(0) => self.fail("monitor", &format!("QEMU closed the monitor: {text:?}")),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(_) => {} // read timeout: look again
            }
        }
    }

    /// Waits for QEMU to exit (the guest powered off or rebooted; QEMU runs
    /// with -no-reboot).
    fn wait_exit(&self, step: &str, timeout: Duration) {
        if !self.exits_within(timeout) {
            self.fail(step, &format!("QEMU still running after {timeout:?}"));
        }
    }

    /// Whether QEMU exits within `timeout` (how long it took is printed).
    fn exits_within(&self, timeout: Duration) -> bool {
        let started = Instant::now();
        while self.running() {
            if started.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        eprintln!(
            "e2e: QEMU exited after {:.0} s",
            started.elapsed().as_secs_f64()
        );
        true
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if self.pid > 0 && self.running() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::SIGKILL,
            );
        }
    }
}

/// The busybox image (from the host's static busybox) as `docker save`
/// would write it, tagged busybox:latest.
fn busybox_archive() -> Vec<u8> {
    busybox_archive_tagged("busybox:latest")
}

/// The busybox image as `docker save` would write it, tagged `tag`.
fn busybox_archive_tagged(tag: &str) -> Vec<u8> {
    testkit::DockerArchive::new()
        .image(&testkit::TestImage::busybox(), &[tag])
        .compression(testkit::Compression::Gzip)
        .build()
}

/// The system services that run for the life of the system.
const RUNNING: &[&str] = &[
    "udev", "syslog", "network", "ntp", "acpid", "console", "docker",
];
/// Every default service (the volume containers are created only, the
/// one-shots exit).
const ALL: &[&str] = &[
    "command-volumes",
    "system-volumes",
    "container-data-volumes",
    "user-volumes",
    "media-volumes",
    "all-volumes",
    "udev-cold",
    "udev",
    "acpid",
    "syslog",
    "network",
    "ntp",
    "cloud-init-execute",
    "console",
    "docker",
    "preload-user-images",
];

/// `NAME STATUS` lines of `sudo system-docker ps -a`.
fn system_services(vm: &Vm, step: &str) -> Vec<(String, String)> {
    vm.ok(
        step,
        "sudo system-docker ps -a --format '{{.Names}}\t{{.Status}}'",
    )
    .lines()
    .filter_map(|l| l.split_once('\t'))
    .map(|(n, s)| (n.to_string(), s.to_string()))
    .collect()
}

fn assert_services_up(vm: &Vm, step: &str) {
    let services = system_services(vm, step);
    for name in ALL {
        if !services.iter().any(|(n, _)| n == name) {
            vm.fail(step, &format!("service {name} missing from {services:?}"));
        }
    }
    for name in RUNNING {
        let up = services
            .iter()
            .any(|(n, s)| n == name && s.starts_with("Up"));
        if !up {
            vm.fail(step, &format!("service {name} is not up: {services:?}"));
        }
    }
}

/// Waits until every long-running service is up (the engine restarts a
/// service that fails early).
fn wait_services_up(vm: &Vm, step: &str) {
    let script = format!(
        "s=$(sudo system-docker ps --format '{{{{.Names}}}}'); for n in {}; do echo \"$s\" | grep -qx $n || exit 1; done",
        RUNNING.join(" ")
    );
    vm.eventually(step, &script, Duration::from_secs(180));
    assert_services_up(vm, step);
}

/// The installed disk: PID 1, the default services, SSH and sudo, User
/// Docker with a preloaded image and the console's files, a user's
/// `docker rm -f` of everything, a killed service coming back, a reboot
/// that keeps files, images and a restart=always container, and poweroff.
#[test]
#[ignore = "needs dist/ from cargo xtask build; run by cargo xtask test"]
fn disk_image_services_ssh_user_docker_reboot_and_poweroff() {
    let work = tempfile::tempdir().unwrap();
    // An overlay: the built disk stays pristine, this test's writes persist
    // across its own reboot.
    let overlay = disk_overlay(work.path());
    let boot = Boot::disk(&overlay);
    let mut vm = Vm::start(&boot);
    vm.wait_serial("boot", r"state: /dev/vda\d+ \(ext4\) mounted", BOOT_TIMEOUT);
    vm.wait_serial("boot", "OxOS is up", BOOT_TIMEOUT);
    vm.eventually("ssh", "true", Duration::from_secs(240));

    // 1. ros is PID 1 and owns the system engine's socket; the services.
    let exe = vm.ok("pid 1", "sudo readlink /proc/1/exe");
    assert_eq!(exe.trim(), "/usr/bin/ros", "PID 1 is {exe}");
    vm.ok(
        "socket owner",
        "ino=$(awk '$8 ~ /system-docker.sock$/ {print $7}' /proc/net/unix | head -n1); \
         test -n \"$ino\" && sudo ls -l /proc/1/fd | grep -q \"socket:\\[$ino\\]\"",
    );
    wait_services_up(&vm, "services");

    // 2. SSH with the key, sudo, and no password login.
    let id = vm.ok("sudo", "sudo id");
    assert!(id.contains("uid=0(root)"), "sudo id said {id}");
    let out = Command::new("ssh")
        .args(["-p", &vm.port.to_string()])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "rancher@127.0.0.1",
            "true",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("Permission denied (publickey)"),
        "password login must be refused and only publickey offered: {said}"
    );

    // 3. User Docker: a preloaded image runs, and sees the console's files.
    vm.ok_with_input(
        "preload",
        "cat > /tmp/busybox.tar && sudo mv /tmp/busybox.tar /var/lib/rancher/preload/docker/busybox.tar \
         && sudo system-docker start preload-user-images",
        &busybox_archive(),
    );
    vm.eventually(
        "preloaded",
        "docker image inspect busybox:latest >/dev/null",
        Duration::from_secs(180),
    );
    let hello = vm.ok(
        "docker run",
        "docker run --rm busybox:latest echo hello-from-user-docker",
    );
    assert_eq!(hello.trim(), "hello-from-user-docker");
    let seen = vm.ok(
        "docker run -v",
        "mkdir -p /home/rancher/x && echo written-in-the-console > /home/rancher/x/f && \
         docker run --rm -v /home/rancher/x:/x busybox:latest cat /x/f",
    );
    assert_eq!(seen.trim(), "written-in-the-console");
    // The docker service moved its processes below its cgroup to enable
    // controllers for User Docker's containers; exec still reaches it.
    let version = vm.ok(
        "system-docker exec docker",
        "sudo system-docker exec docker docker version --format '{{.Server.Os}}'",
    );
    assert_eq!(version.trim(), "linux");

    // 4. The user removes every container of theirs: the OS stays.
    vm.ok(
        "user containers",
        "docker run -d busybox:latest sleep 1000 >/dev/null",
    );
    vm.ok("docker rm -f", "docker rm -f $(docker ps -qa)");
    let left = vm.ok("docker ps", "docker ps -qa");
    assert!(left.trim().is_empty(), "containers left: {left}");
    assert_services_up(&vm, "after docker rm -f");

    // 7. A system service killed with SIGKILL comes back.
    let pid = vm.ok(
        "syslog pid",
        "sudo system-docker inspect -f '{{.State.Pid}}' syslog",
    );
    let pid = pid.trim().to_string();
    vm.ok("kill -9", &format!("sudo kill -9 {pid}"));
    vm.eventually(
        "restarted",
        &format!(
            "p=$(sudo system-docker inspect -f '{{{{.State.Pid}}}} {{{{.State.Running}}}}' syslog); \
             [ \"$p\" != \"{pid} true\" ] && [ \"${{p#* }}\" = true ]"
        ),
        Duration::from_secs(30),
    );

    // 5. Files, images and a restart=always container survive a reboot;
    //    the state file system is clean at the next mount.
    vm.ok(
        "before reboot",
        "echo kept > /home/rancher/kept && \
         docker run -d --restart=always --name keeper busybox:latest sleep 100000 >/dev/null",
    );
    // The console's docker client, copied from User Docker's image at the
    // first boot, is kept as it is at the next (same image, same digest).
    let client = "stat -c '%i %Y %s' /var/lib/rancher/engine/docker";
    let client_before = vm.ok("client before reboot", client);
    let _ = vm.ssh("sudo reboot");
    vm.wait_exit("reboot", Duration::from_secs(180));
    assert!(
        vm.serial().contains("state file system is clean"),
        "shutdown did not report a clean state file system:\n{}",
        vm.tail()
    );
    vm.boot(&boot);
    vm.wait_serial(
        "second boot",
        r"state: /dev/vda\d+ \(ext4\) mounted, clean",
        BOOT_TIMEOUT,
    );
    vm.eventually("ssh again", "true", Duration::from_secs(600));
    assert_eq!(vm.ok("file kept", "cat /home/rancher/kept").trim(), "kept");
    vm.eventually(
        "keeper back",
        "docker ps --format '{{.Names}}' | grep -qx keeper",
        Duration::from_secs(240),
    );
    vm.ok(
        "image kept",
        "docker image inspect busybox:latest >/dev/null",
    );
    assert_eq!(
        vm.ok("client after reboot", client),
        client_before,
        "the console's docker client was copied again although User Docker's image is the same"
    );

    // 8. `sudo poweroff` ends with QEMU exiting.
    let _ = vm.ssh("sudo poweroff");
    vm.wait_exit("poweroff", Duration::from_secs(180));
}

/// The ISO with 512 MB: an empty disk listed in rancher.state.autoformat
/// becomes the state, `docker run` works, and the ACPI power button (QEMU's
/// system_powerdown) powers the machine off.
#[test]
#[ignore = "needs dist/ from cargo xtask build; run by cargo xtask test"]
fn iso_in_512_mb_autoformats_runs_docker_and_obeys_the_power_button() {
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty.img");
    let f = std::fs::File::create(&empty).unwrap();
    f.set_len(2 << 30).unwrap();
    drop(f);
    let boot = Boot::iso(512, Some(&empty));
    let vm = Vm::start(&boot);
    // 6. The empty disk (the first virtio disk) is formatted and used.
    vm.wait_serial(
        "autoformat",
        r"state: /dev/vda \(ext4\) mounted",
        BOOT_TIMEOUT,
    );
    vm.wait_serial("boot", "OxOS is up", BOOT_TIMEOUT);
    vm.eventually("ssh", "true", Duration::from_secs(240));
    // The ext4 label: 16 bytes at 1024 + 120 (the console has no blkid).
    let label = vm.ok(
        "label",
        "sudo dd if=/dev/vda bs=1 skip=1144 count=16 2>/dev/null | tr -d '\\000'",
    );
    assert!(
        label.contains("RANCHER_STATE"),
        "no RANCHER_STATE label: {label}"
    );

    // 9. docker run with 512 MB.
    vm.eventually(
        "docker",
        "docker version >/dev/null",
        Duration::from_secs(300),
    );
    vm.ok_with_input("docker load", "docker load", &busybox_archive());
    let hello = vm.ok(
        "docker run",
        "docker run --rm busybox:latest echo hello-in-512mb",
    );
    assert_eq!(hello.trim(), "hello-in-512mb");

    // 8. The ACPI power button.
    vm.monitor("system_powerdown");
    if !vm.exits_within(Duration::from_secs(180)) {
        // What a user would look at: did acpid see the button, and is it up?
        let why = vm.ssh(
            "sudo system-docker ps -a; sudo system-docker logs acpid 2>&1 | tail -20; \
             grep -A4 -i 'power button' /proc/bus/input/devices; ls -l /dev/input",
        );
        vm.fail(
            "power button",
            &format!(
                "QEMU still running 180 s after system_powerdown\n{}{}",
                String::from_utf8_lossy(&why.stdout),
                String::from_utf8_lossy(&why.stderr)
            ),
        );
    }
}

/// `boot` with `cloud_config` (as [`Vm::start_with`]), up and answering
/// SSH.
fn up_with(boot: &Boot, cloud_config: &str) -> Vm {
    let vm = Vm::start_with(boot, cloud_config);
    vm.wait_serial("boot", "OxOS is up", BOOT_TIMEOUT);
    vm.eventually("ssh", "true", Duration::from_secs(240));
    vm
}

/// Cloud-config keys applied at boot, each checked as a user would: the
/// host name, a file from write_files (content, mode, owner), a runcmd
/// command, a sysctl value, and a module from rancher.modules. The
/// user-data comes from the `url` datasource (over HTTP once the network is
/// up), which the kernel command line chooses after `--`; a `cc.` key and
/// rancher.modules come from the command line too.
#[test]
#[ignore = "needs dist/ from cargo xtask build; run by cargo xtask test"]
fn cloud_config_keys_take_effect_at_boot() {
    let mut boot = Boot::iso(1024, None);
    boot.datasource = "url";
    boot.append = Some(
        "cc.hostname=cmdline-host rancher.modules=[dummy] \
         -- rancher.cloud_init.datasources=[url:http://10.0.2.100/user-data]"
            .into(),
    );
    let vm = up_with(
        &boot,
        "hostname: cc-host\n\
         write_files:\n\
         \x20 - path: /etc/oxos-e2e/greeting\n\
         \x20   content: hello from write_files\n\
         \x20   permissions: \"0640\"\n\
         \x20   owner: rancher:rancher\n\
         runcmd:\n\
         \x20 - echo ran > /home/rancher/runcmd-ran\n\
         rancher:\n\
         \x20 sysctl:\n\
         \x20   vm.swappiness: 13\n",
    );
    // The command line's cc.hostname wins over the user-data's (COMPAT.md's
    // merge order); the SSH key and the rest came over HTTP.
    assert_eq!(vm.ok("hostname", "hostname").trim(), "cmdline-host");
    let saved = vm.ok(
        "user-data saved",
        "sudo cat /var/lib/rancher/conf/cloud-config.d/boot.yml \
         /var/lib/rancher/conf/cloud-config.d/init.yml",
    );
    assert!(saved.contains("hostname: cc-host"), "{saved}");
    assert!(
        saved.contains("url:http://10.0.2.100/user-data"),
        "the args after -- are not in init.yml:\n{saved}"
    );
    let file = vm.ok(
        "write_files",
        "stat -c '%a %U' /etc/oxos-e2e/greeting && cat /etc/oxos-e2e/greeting",
    );
    assert_eq!(file.trim(), "640 rancher\nhello from write_files");
    vm.eventually(
        "runcmd",
        "grep -qx ran /home/rancher/runcmd-ran",
        Duration::from_secs(60),
    );
    assert_eq!(vm.ok("sysctl", "cat /proc/sys/vm/swappiness").trim(), "13");
    vm.ok(
        "rancher.modules on the command line",
        "grep -q '^dummy ' /proc/modules",
    );
}

/// `rancher.docker` options, `rancher.environment` and the proxy keys of
/// `rancher.network` reach User Docker: what `docker info` reports and the
/// environment of the running dockerd.
#[test]
#[ignore = "needs dist/ from cargo xtask build; run by cargo xtask test"]
fn docker_options_environment_and_proxy_reach_user_docker() {
    // The user-data on a FAT config drive, with a metadata SSH key beside
    // it, which is added to the user-data's.
    let keys = tempfile::tempdir().unwrap();
    let (meta_key, meta_public) = keypair(keys.path(), "metadata_key");
    let mut boot = Boot::iso(1024, None);
    boot.datasource = "config-drive-fat";
    boot.meta_data = Some(format!(
        r#"{{"hostname": "from-metadata", "public_keys": {{"e2e-meta": "{meta_public}"}}}}"#
    ));
    // The proxy and registries are never contacted (nothing is pulled).
    let vm = up_with(
        &boot,
        "hostname: docker-opts\n\
         rancher:\n\
         \x20 network:\n\
         \x20   http_proxy: http://proxy.e2e.invalid:3128\n\
         \x20   no_proxy: localhost,127.0.0.1\n\
         \x20 environment:\n\
         \x20   E2E_GREETING: from-rancher-environment\n\
         \x20 docker:\n\
         \x20   registry_mirror: http://mirror.e2e.invalid:5000\n\
         \x20   insecure_registry: [registry.e2e.invalid:5000]\n\
         \x20   extra_args: [--label, oxos.e2e=extra-args]\n\
         \x20   environment: [E2E_GREETING]\n",
    );
    // The user-data's host name wins over the metadata's; both keys log in.
    assert_eq!(vm.ok("hostname", "hostname").trim(), "docker-opts");
    let out = vm
        .ssh_command_with("rancher", &meta_key)
        .arg("cat ~/.ssh/authorized_keys")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let authorized = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the metadata's key does not log in: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(authorized.contains(&meta_public), "{authorized}");
    let user_data_key = std::fs::read_to_string(vm.key.with_extension("pub")).unwrap();
    assert!(authorized.contains(user_data_key.trim()), "{authorized}");
    vm.eventually(
        "docker",
        "docker version >/dev/null",
        Duration::from_secs(300),
    );
    let info = vm.ok(
        "docker info",
        "docker info --format '{{json .RegistryConfig.Mirrors}} {{.HTTPProxy}} {{json .Labels}}' \
         && docker info 2>/dev/null | grep -A3 'Insecure Registries'",
    );
    for wanted in [
        "http://mirror.e2e.invalid:5000/",
        "http://proxy.e2e.invalid:3128",
        "oxos.e2e=extra-args",
        "registry.e2e.invalid:5000",
    ] {
        assert!(info.contains(wanted), "docker info lacks {wanted}:\n{info}");
    }
    let environ = vm.ok(
        "dockerd's environment",
        "sudo cat /proc/$(pidof dockerd)/environ | tr '\\0' '\\n'",
    );
    for wanted in [
        "HTTP_PROXY=http://proxy.e2e.invalid:3128",
        "NO_PROXY=localhost,127.0.0.1",
        "E2E_GREETING=from-rancher-environment",
    ] {
        assert!(
            environ.lines().any(|l| l == wanted),
            "dockerd's environment lacks {wanted}:\n{environ}"
        );
    }
}

/// A disk with an ext4 partition (label E2EDATA, holding a file) and a
/// swap partition, as a user would bring one.
fn data_and_swap_disk(dir: &Path) -> PathBuf {
    const MIB: u64 = 1 << 20;
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("cannot run a host tool");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let content = dir.join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("hello.txt"), "hello from a mounted disk\n").unwrap();
    let ext4 = dir.join("data.ext4");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "E2EDATA", "-d"])
        .arg(&content)
        .arg(&ext4)
        .arg("16M"));
    let swap = dir.join("swap.img");
    std::fs::File::create(&swap)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    run(Command::new("mkswap").arg("-q").arg(&swap));
    // MBR: partition 1 (1-17 MiB) ext4, partition 2 (17-49 MiB) swap.
    let disk = dir.join("data-disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(50 * MIB)
        .unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(&disk)
        .stdin(Stdio::piped())
        .spawn()
        .expect("sfdisk (fdisk) is needed");
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"label: dos\nstart=1MiB, size=16MiB, type=83\nstart=17MiB, size=32MiB, type=82\n",
        )
        .unwrap();
    assert!(sfdisk.wait().unwrap().success(), "sfdisk failed");
    for (part, at) in [(&ext4, 1), (&swap, 17)] {
        run(Command::new("dd")
            .arg(format!("if={}", part.display()))
            .arg(format!("of={}", disk.display()))
            .args([
                "bs=1M",
                &format!("seek={at}"),
                "conv=notrunc",
                "status=none",
            ]));
    }
    disk
}

/// `bootcmd` runs (string and list forms, in order) before the console, and
/// `mounts` mounts a disk by label and turns swap on, in the host's view.
#[test]
#[ignore = "needs dist/ from cargo xtask build; run by cargo xtask test"]
fn bootcmd_and_mounts_with_swap() {
    let work = tempfile::tempdir().unwrap();
    let disk = data_and_swap_disk(work.path());
    // From a NoCloud seed (`xtask run` names the datasource on the command
    // line); rancher.modules of the user-data are loaded in the same boot.
    let mut boot = Boot::iso(1024, Some(&disk));
    boot.datasource = "nocloud";
    let vm = up_with(
        &boot,
        "hostname: mounts\n\
         rancher:\n\
         \x20 modules: [ipvlan]\n\
         bootcmd:\n\
         \x20 - echo first > /var/lib/rancher/bootcmd-ran\n\
         \x20 - [sh, -c, 'echo second >> /var/lib/rancher/bootcmd-ran']\n\
         mounts:\n\
         \x20 - [LABEL=E2EDATA, /mnt/data, ext4, ro]\n\
         \x20 - [/dev/vda2, none, swap, sw]\n",
    );
    assert_eq!(vm.ok("hostname", "hostname").trim(), "mounts");
    vm.ok(
        "rancher.modules from the user-data",
        "grep -q '^ipvlan ' /proc/modules",
    );
    assert_eq!(
        vm.ok("bootcmd", "sudo cat /var/lib/rancher/bootcmd-ran"),
        "first\nsecond\n"
    );
    assert_eq!(
        vm.ok("mounted file", "cat /mnt/data/hello.txt"),
        "hello from a mounted disk\n"
    );
    let mounts = vm.ok("mount options", "sudo grep ' /mnt/data ' /proc/1/mountinfo");
    assert!(
        mounts.contains(" ro,") || mounts.contains(" ro "),
        "not read-only: {mounts}"
    );
    let swaps = vm.ok("swap", "cat /proc/swaps");
    assert!(
        swaps.contains("/dev/vda2"),
        "no swap on /dev/vda2:\n{swaps}"
    );
}

/// A cloud-config file with a YAML error does not take the others down: it
/// is named with its line in `ros config validate` and `ros config get`, and
/// on the console at the next boot, which comes up with the other layers
/// (the user-data's host name and SSH key).
#[test]
#[ignore = "needs dist/ from cargo xtask build; run by cargo xtask test"]
fn a_config_file_with_a_yaml_error_is_left_out_and_named() {
    let work = tempfile::tempdir().unwrap();
    let overlay = disk_overlay(work.path());
    let boot = Boot::disk(&overlay);
    let mut vm = Vm::start_with(&boot, "hostname: layered\n");
    vm.wait_serial("boot", "OxOS is up", BOOT_TIMEOUT);
    vm.eventually("ssh", "true", Duration::from_secs(240));
    let broken = "/var/lib/rancher/conf/cloud-config.d/broken.yml";
    vm.ok(
        "broken file",
        &format!("printf 'rancher:\\n  sysctl: [oops\\n' | sudo tee {broken} >/dev/null"),
    );
    let position = regex::Regex::new(r"broken\.yml:\d+:\d+: ").unwrap();
    let validate = vm.ssh(&format!("sudo ros config validate -i {broken}"));
    let said = String::from_utf8_lossy(&validate.stdout).into_owned()
        + &String::from_utf8_lossy(&validate.stderr);
    assert!(!validate.status.success(), "validate accepted it: {said}");
    assert!(position.is_match(&said), "no file:line:column: {said}");
    let get = vm.ssh("sudo ros config get hostname");
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "layered");
    let warning = String::from_utf8_lossy(&get.stderr);
    assert!(
        position.is_match(&warning) && warning.contains("left out"),
        "ros config get does not name the file: {warning}"
    );

    let _ = vm.ssh("sudo reboot");
    vm.wait_exit("reboot", Duration::from_secs(180));
    vm.boot(&boot);
    vm.wait_serial("second boot", "OxOS is up", BOOT_TIMEOUT);
    assert!(
        position.is_match(&vm.serial()) && vm.serial().contains("this file is left out"),
        "the console does not name the broken file:\n{}",
        vm.tail()
    );
    vm.eventually("ssh again", "true", Duration::from_secs(600));
    assert_eq!(vm.ok("hostname", "hostname").trim(), "layered");
    wait_services_up(&vm, "services with a broken file");
}

/// `rancher.services` and `services_include`: a custom system service (that
/// reads a file `write_files` put into its container), a user-scope service (in User Docker), a service from an included file
/// (written by bootcmd, found when the config is read again after
/// cloud-init-execute); a service whose command fails is restarted with a
/// growing back-off and one whose image is missing is tried again until the
/// image is there, neither holding up the rest; `rancher.restart_services`
/// restarts a service that was already running; `rancher.ssh.port` moves
/// sshd.
#[test]
#[ignore = "needs dist/ from cargo xtask build; run by cargo xtask test"]
fn services_retries_restart_services_and_ssh_port() {
    let version = env!("CARGO_PKG_VERSION");
    let base = format!("oxos/os-base:{version}");
    let cloud_config = format!(
        "hostname: services-host\n\
         write_files:\n\
         \x20 - container: e2e-system\n\
         \x20   path: /etc/e2e/for-e2e-system\n\
         \x20   permissions: \"0600\"\n\
         \x20   content: written into e2e-system\n\
         bootcmd:\n\
         \x20 - \"printf 'e2e-included:\\n  image: {base}\\n  command: [sleep, \\\"100000\\\"]\\n  labels: {{io.rancher.os.scope: system}}\\n' > /var/lib/rancher/conf/e2e-included.yml\"\n\
         rancher:\n\
         \x20 ssh: {{port: 2222}}\n\
         \x20 restart_services: [acpid]\n\
         \x20 services_include:\n\
         \x20   /var/lib/rancher/conf/e2e-included.yml: true\n\
         \x20 services:\n\
         \x20   e2e-system:\n\
         \x20     image: {base}\n\
         \x20     command: [sh, -c, \"cat /etc/e2e/for-e2e-system > /var/log/e2e-system; exec sleep 100000\"]\n\
         \x20     restart: always\n\
         \x20     volumes: [\"/var/log:/var/log\"]\n\
         \x20     labels: {{io.rancher.os.scope: system}}\n\
         \x20   e2e-fails:\n\
         \x20     image: {base}\n\
         \x20     command: [sh, -c, \"echo attempt; echo attempt >> /var/log/e2e-fails; exit 3\"]\n\
         \x20     restart: always\n\
         \x20     volumes: [\"/var/log:/var/log\"]\n\
         \x20     labels: {{io.rancher.os.scope: system}}\n\
         \x20   e2e-late:\n\
         \x20     image: e2e/late:1\n\
         \x20     command: [sleep, \"100000\"]\n\
         \x20     labels: {{io.rancher.os.scope: system}}\n\
         \x20   e2e-user:\n\
         \x20     image: busybox:latest\n\
         \x20     command: [sleep, \"100000\"]\n\
         \x20     restart: always\n"
    );
    let boot = Boot {
        ssh_guest_port: 2222,
        ..Boot::iso(1024, None)
    };
    let vm = Vm::start_with(&boot, &cloud_config);
    vm.wait_serial("boot", "OxOS is up", BOOT_TIMEOUT);
    // rancher.ssh.port: the forward goes to 2222 only, so SSH answering at
    // all shows sshd listens there.
    vm.eventually("ssh on port 2222", "true", Duration::from_secs(240));
    let listening = vm.ok("sshd's port", "cat /proc/net/tcp /proc/net/tcp6");
    assert!(
        listening.contains(":08AE ") && !listening.contains(":0016 "),
        "sshd does not listen on 2222 only:\n{listening}"
    );

    // The missing image and the user-scope service (User Docker has no
    // image yet) failed, and the boot went on without them.
    let serial = vm.serial();
    let failed = serial
        .lines()
        .find(|l| l.contains("OxOS is up with failed services"))
        .unwrap_or_else(|| vm.fail("boot", "no line names the failed services"));
    assert!(failed.contains("e2e-late"), "{failed}");
    wait_services_up(&vm, "default services");
    // Its command read the file that write_files put into its container
    // before it started.
    vm.eventually(
        "custom system service with a file from write_files",
        "sudo system-docker ps --format '{{.Names}}' | grep -qx e2e-system \
         && grep -qx 'written into e2e-system' /var/log/e2e-system",
        Duration::from_secs(60),
    );
    assert_eq!(
        vm.ok(
            "write_files mode in the container",
            "sudo system-docker exec e2e-system stat -c %a /etc/e2e/for-e2e-system"
        )
        .trim(),
        "600"
    );
    // Not in the console, whose file system is another.
    vm.ok(
        "write_files not in the console",
        "test ! -e /etc/e2e/for-e2e-system",
    );
    vm.eventually(
        "service from services_include",
        "sudo system-docker ps --format '{{.Names}}' | grep -qx e2e-included",
        Duration::from_secs(60),
    );

    // The failing command: restarted again and again, each wait longer.
    vm.eventually(
        "failing service restarted",
        "test $(sudo system-docker inspect -f '{{.RestartCount}}' e2e-fails) -ge 3",
        Duration::from_secs(120),
    );
    let logs = vm.ok("failing service's logs", "sudo ros service logs e2e-fails");
    assert!(logs.matches("attempt").count() >= 3, "{logs}");
    let id = vm
        .ok(
            "failing service's id",
            "sudo system-docker inspect -f '{{.Id}}' e2e-fails",
        )
        .trim()
        .to_string();
    let delays: Vec<String> = vm
        .serial()
        .lines()
        .filter(|l| l.contains(&id) && l.contains("restarting in "))
        .filter_map(|l| l.split("restarting in ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(
        delays.len() >= 3 && delays[0] != delays[1] && delays[1] != delays[2],
        "no growing back-off for e2e-fails: {delays:?}"
    );

    // rancher.restart_services: acpid ran before cloud-init-execute and
    // was restarted after it.
    assert!(
        vm.serial()
            .contains("Restarting acpid (rancher.restart_services)"),
        "acpid was not restarted:\n{}",
        vm.tail()
    );
    let times = vm.ok(
        "acpid's start",
        "sudo system-docker inspect -f '{{.State.StartedAt}}' acpid; \
         sudo system-docker inspect -f '{{.State.FinishedAt}}' cloud-init-execute",
    );
    let times: Vec<&str> = times.lines().map(|t| &t[..19.min(t.len())]).collect();
    assert!(
        times.len() == 2 && times[0] >= times[1],
        "acpid started before cloud-init-execute ended: {times:?}"
    );

    // Images arrive: both failed services come up by themselves.
    vm.ok_with_input(
        "image for e2e-late",
        "sudo system-docker load",
        &busybox_archive_tagged("e2e/late:1"),
    );
    vm.ok_with_input("image for e2e-user", "docker load", &busybox_archive());
    vm.eventually(
        "missing image, then there",
        "sudo system-docker ps --format '{{.Names}}' | grep -qx e2e-late",
        Duration::from_secs(420),
    );
    vm.eventually(
        "user-scope service",
        "docker ps --format '{{.Names}}' | grep -qx e2e-user",
        Duration::from_secs(420),
    );
    let label = vm.ok(
        "user-scope service's labels",
        "docker inspect -f '{{index .Config.Labels \"io.docker.compose.service\"}}' e2e-user",
    );
    assert_eq!(label.trim(), "e2e-user");
    assert!(
        vm.serial().contains("e2e-late is up after a retry"),
        "{}",
        vm.tail()
    );
}

/// Two faults a machine meets in production. A power cut (QEMU killed)
/// while `ros config set` rewrites the config again and again leaves the
/// old file or the new one, never a torn one. A state disk filled to the
/// last block by the user does not stop the next boot: PID 1 releases its
/// reserve, says so on the console, and the services and SSH come up with
/// the user's file still there.
#[test]
#[ignore = "needs dist/ from cargo xtask build; run by cargo xtask test"]
fn power_cut_during_config_set_and_a_full_state_disk() {
    let work = tempfile::tempdir().unwrap();
    let disk = work.path().join("state.img");
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len(512 << 20).unwrap();
    drop(f);
    let boot = Boot::iso(1024, Some(&disk));
    let mut vm = Vm::start(&boot);
    vm.wait_serial("boot", "OxOS is up", BOOT_TIMEOUT);
    assert!(
        vm.serial().contains("state disk: kept a reserve of 32 MiB"),
        "no reserve made on the new state disk:\n{}",
        vm.tail()
    );
    vm.eventually("ssh", "true", Duration::from_secs(240));

    // ros config set, as fast as it goes, in the background.
    let config = "/var/lib/rancher/conf/cloud-config.yml";
    vm.ok(
        "config writer",
        "sudo setsid sh -c 'i=0; while i=$((i+1)); do ros config set rancher.environment.E2E_COUNT $i || exit; done' \
         </dev/null >/dev/null 2>&1 &",
    );
    vm.eventually(
        "writes going on",
        &format!("test \"$(sudo ros config get rancher.environment.E2E_COUNT)\" -ge 20 2>/dev/null && sudo grep -q E2E_COUNT {config}"),
        Duration::from_secs(120),
    );
    let before: u64 = vm
        .ok("count", "sudo ros config get rancher.environment.E2E_COUNT")
        .trim()
        .parse()
        .unwrap();
    // The power cut.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(vm.pid),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    vm.wait_exit("power cut", Duration::from_secs(30));

    vm.boot(&boot);
    vm.wait_serial("boot after the power cut", "OxOS is up", BOOT_TIMEOUT);
    vm.eventually("ssh after the power cut", "true", Duration::from_secs(240));
    vm.ok(
        "the config file is whole",
        &format!("sudo ros config validate -i {config}"),
    );
    let after: u64 = vm
        .ok(
            "count after",
            &format!("sudo cat {config} >&2; sudo ros config get rancher.environment.E2E_COUNT"),
        )
        .trim()
        .parse()
        .unwrap_or_else(|e| vm.fail("count after", &format!("not a number: {e}")));
    assert!(after >= before, "the config went back: {after} < {before}");
    eprintln!("e2e: config counter {before} seen before the power cut, {after} after");

    // Fill the state disk to the last block, as root.
    vm.ok(
        "fill the disk",
        "sudo dd if=/dev/zero of=/var/lib/rancher/fill bs=1M 2>/dev/null; sudo sync; \
         sudo dd if=/dev/zero of=/var/lib/rancher/fill-small bs=4k 2>/dev/null; sudo sync; true",
    );
    let free = vm.ok(
        "free space",
        "df -k /var/lib/rancher | awk 'NR==2 {print $4}'",
    );
    assert_eq!(free.trim(), "0", "the disk is not full: {free}");
    let _ = vm.ssh("sudo reboot");
    vm.wait_exit("reboot", Duration::from_secs(180));
    vm.boot(&boot);
    vm.wait_serial(
        "boot on a full disk",
        "state disk is full: released the 32 MiB reserve",
        BOOT_TIMEOUT,
    );
    vm.wait_serial("boot on a full disk", "OxOS is up", BOOT_TIMEOUT);
    vm.eventually("ssh on a full disk", "true", Duration::from_secs(240));
    wait_services_up(&vm, "services on a full disk");
    vm.ok("the user's file", "test -s /var/lib/rancher/fill");
}
