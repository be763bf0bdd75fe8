//! `cargo xtask test`: host packages, build, and every test of the workspace.
//!
//! The host integration tests drive real containers and real clients: the
//! Docker 20.10 CLI from Debian's `docker.io` (never its daemon), `runc`,
//! `docker-registry`, `skopeo` and the static busybox the test images are made
//! from. They are installed with apt-get when missing; nothing is done when
//! `dpkg-query` shows them all installed already, so a second run is quick and
//! needs no network.

use crate::cmd::{cargo, is_root, run_step};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

/// Debian packages the tests need on the host. (`apache2-utils` is not
/// among them: the registry tests write their htpasswd files themselves.)
pub const HOST_PACKAGES: &[&str] = &[
    // The Docker 20.10 CLI, the client that proves API compatibility.
    "docker.io",
    // The baseline of the engine benchmark.
    "runc",
    // A local registry and a tool to push into it, for pull tests.
    "docker-registry",
    "skopeo",
    // /bin/busybox: the test images are built from it.
    "busybox-static",
    // Config drive and nocloud images (ISO 9660 and FAT) for datasource tests.
    "xorriso",
    "dosfstools",
    "mtools",
    // The end-to-end tests log in to the booted system over SSH.
    "openssh-client",
    // ros netconf's DHCP tests run dhcpcd against busybox udhcpd; its
    // namespace tests make veth pairs with `ip`.
    "dhcpcd-base",
    "iproute2",
    // ext4 images for the state, datasource and probe tests.
    "e2fsprogs",
    "fdisk",
];

#[derive(Args)]
pub struct TestArgs {
    /// Run only the unit tests (library and binary targets), not the host
    /// integration tests.
    #[arg(long)]
    unit: bool,
    /// Do not install host packages, even when some are missing.
    #[arg(long)]
    no_install: bool,
    /// Skip the end-to-end tests (they build the OS into dist/ and boot it
    /// in QEMU several times, which takes minutes).
    #[arg(long)]
    no_e2e: bool,
}

/// `cargo xtask build` with its defaults, for the end-to-end tests.
#[derive(clap::Parser)]
struct BuildOnly {
    #[command(flatten)]
    build: crate::os::BuildArgs,
}

pub fn run(args: &TestArgs) -> Result<()> {
    let started = std::time::Instant::now();
    if !args.no_install {
        install_host_packages(HOST_PACKAGES)?;
    }
    if !args.unit && !is_root() {
        eprintln!(
            "xtask: WARNING: not running as root: the host integration tests run real \
             containers and will skip themselves; run as root to run them"
        );
    }
    run_step(
        "build",
        cargo().args(["build", "--workspace", "--all-targets"]),
    )?;
    if args.unit {
        run_step(
            "unit tests",
            cargo().args(["test", "--workspace", "--lib", "--bins"]),
        )?;
    } else {
        run_step("tests", cargo().args(["test", "--workspace"]))?;
        if args.no_e2e {
            eprintln!("xtask: skipping the end-to-end tests (--no-e2e)");
        } else {
            end_to_end(args)?;
        }
    }
    let secs = started.elapsed().as_secs();
    eprintln!("xtask: all tests passed in {}m{:02}s", secs / 60, secs % 60);
    Ok(())
}

/// Builds the OS into dist/ and boots it in QEMU: the ignored tests of
/// xtask/tests/boot.rs (the boot itself) and xtask/tests/system.rs (the
/// system over SSH), one at a time (each boot wants both cores). Both test
/// files run whatever the first's outcome (`--no-fail-fast`), so one
/// failure does not hide the other file's results.
fn end_to_end(args: &TestArgs) -> Result<()> {
    use clap::Parser;
    let started = std::time::Instant::now();
    // The tests boot the ISO and the disk: the images outside the system
    // image are not needed for them.
    let mut argv = vec!["build", "--system-images-only"];
    if args.no_install {
        argv.push("--no-install");
    }
    let build = BuildOnly::parse_from(argv).build;
    crate::os::build(&build).context("end-to-end tests: building the OS")?;
    eprintln!(
        "xtask: OS built for the end-to-end tests in {} s",
        started.elapsed().as_secs()
    );
    run_step(
        "end-to-end tests (QEMU boots)",
        cargo().args([
            "test",
            "--no-fail-fast",
            "--package",
            "xtask",
            "--test",
            "boot",
            "--test",
            "system",
            "--",
            "--ignored",
            "--test-threads=1",
        ]),
    )
}

/// Packages of `wanted` that dpkg does not show as installed.
fn missing_packages(wanted: &[&str]) -> Result<Vec<String>> {
    // `dpkg-query -W` exits non-zero when one of the packages is unknown to
    // dpkg; its output still lists the known ones, so the status is ignored.
    let out = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package} ${db:Status-Status}\n")
        .args(wanted)
        .stderr(Stdio::null())
        .output()
        .context("cannot run dpkg-query: this task needs a Debian host")?;
    Ok(not_installed(wanted, &String::from_utf8_lossy(&out.stdout)))
}

/// Packages of `wanted` not marked installed in `dpkg-query` output of the
/// form "PACKAGE STATUS" a line (a package dpkg knows nothing of is absent;
/// a removed one has status "config-files" or "not-installed").
fn not_installed(wanted: &[&str], dpkg_output: &str) -> Vec<String> {
    let installed: BTreeSet<&str> = dpkg_output
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, status)| status.trim() == "installed")
        .map(|(name, _)| name)
        .collect();
    wanted
        .iter()
        .filter(|p| !installed.contains(**p))
        .map(|p| p.to_string())
        .collect()
}

pub(crate) fn install_host_packages(wanted: &[&str]) -> Result<()> {
    let missing = missing_packages(wanted)?;
    if missing.is_empty() {
        eprintln!(
            "xtask: host packages already installed: {}",
            wanted.join(" ")
        );
        return Ok(());
    }
    if !is_root() {
        bail!(
            "host packages missing: {}: run as root, or install them with apt-get",
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing host packages: {}", missing.join(" "));
    let daemons_before = engine_daemons();
    let result = {
        // Debian's maintainer scripts ask /usr/sbin/policy-rc.d whether they
        // may start services; exit code 101 means "no". docker.io would
        // otherwise start dockerd and containerd, which the tests must never
        // talk to and which must not be left running.
        let _policy = PolicyRcDeny::install()?;
        apt_get(&["update"])
            .and_then(|()| apt_install(&missing))
            .and_then(|()| {
                // apt may remove an installed package to install another: a
                // qemu-utils from backports gives way to the qemu-system-x86
                // of the release. Installed again now, it comes from the
                // release too.
                let removed = missing_packages(wanted)?;
                if removed.is_empty() {
                    return Ok(());
                }
                eprintln!(
                    "xtask: installing again what the installation removed: {}",
                    removed.join(" ")
                );
                apt_install(&removed)
            })
    };
    // Belt and braces: a daemon that appeared during the installation anyway
    // (e.g. socket activation) is stopped, by pid.
    for pid in engine_daemons().difference(&daemons_before) {
        eprintln!("xtask: stopping daemon {pid} started by the package installation");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    result?;
    let still = missing_packages(wanted)?;
    if !still.is_empty() {
        bail!(
            "host packages still missing after apt-get install: {}",
            still.join(" ")
        );
    }
    Ok(())
}

fn apt_install(packages: &[String]) -> Result<()> {
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(packages.iter().map(String::as_str));
    apt_get(&args)
}

fn apt_get(args: &[&str]) -> Result<()> {
    run_step(
        &format!("apt-get {}", args[0]),
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null()),
    )
}

/// Pids of running dockerd and containerd processes.
fn engine_daemons() -> BTreeSet<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| matches!(c.trim(), "dockerd" | "containerd"))
                .unwrap_or(false)
        })
        .collect()
}

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// A `policy-rc.d` that denies every service start, removed on drop. An
/// existing policy file is left alone (it is the administrator's).
struct PolicyRcDeny {
    created: bool,
}

impl PolicyRcDeny {
    fn install() -> Result<Self> {
        let path = Path::new(POLICY_RC_D);
        if path.exists() {
            return Ok(Self { created: false });
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(
            path,
            "#!/bin/sh\n# no service starts while packages install\nexit 101\n",
        )
        .with_context(|| format!("cannot write {POLICY_RC_D}"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {POLICY_RC_D} executable"))?;
        Ok(Self { created: true })
    }
}

impl Drop for PolicyRcDeny {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::not_installed;

    #[test]
    fn only_packages_dpkg_shows_installed_count_as_installed() {
        let dpkg = "runc installed\nskopeo config-files\ndocker.io installed\nbusybox-static not-installed\n";
        assert_eq!(
            not_installed(
                &[
                    "docker.io",
                    "runc",
                    "skopeo",
                    "busybox-static",
                    "docker-registry"
                ],
                dpkg
            ),
            ["skopeo", "busybox-static", "docker-registry"]
        );
        assert!(not_installed(&["runc"], dpkg).is_empty());
    }
}
