//! `ros cloud-init-execute`: the command line.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgGroup, Parser};

const AFTER_HELP: &str = "\
What it does:
  --pre-console  (the cloud-init-execute system service, before the console)
      1. runs bootcmd in order: a string through /bin/sh -c, a list directly;
         output on stderr prefixed with bootcmd[N]
      2. applies mounts in the host's mount namespace (--mount-ns): each entry
         [device, mount point, type, options]; type empty or auto tries the
         kernel's file systems, options default to defaults; device may be
         LABEL=, UUID=, PARTUUID= or PARTLABEL= (looked up under --dev-disk);
         the mount point is created; options: ro, rw, nosuid, nodev, noexec,
         noatime, relatime, sync, bind, rbind, remount, shared, private ...,
         the rest passed to the file system (size=10m); type swap enables
         swap on the device or file (mkswap'd; options pri=N, discard);
         what is already mounted there, or swap already on, is skipped
      3. writes each rancher.sysctl key to /proc/sys, dots as slashes:
           rancher.sysctl: {net.ipv4.ip_forward: 1}  ->  /proc/sys/net/ipv4/ip_forward
         a key with a slash is a path (net/ipv4/conf/eth0.100/rp_filter)
  --console      (run by the console container at its start)
      1. writes the write_files entries whose container is unset or console:
         content decoded by encoding (b64, base64, gzip, gz, gz+b64,
         gzip+base64), parent directories created, written atomically,
         permissions (octal string, default 0644), owner (user, user:group,
         uid:gid; names from the root's /etc/passwd and /etc/group)
      2. runs runcmd in order: a string through /bin/sh -c, a list directly;
         output on stderr prefixed with runcmd[N]

write_files entries with another container (container: ntp) are not written
here: the system engine puts them into that container before each of its
starts (PID 1 at boot, ros service up/start/restart); owners there must be
numeric (uid or uid:gid) or root.

A bad entry is logged with its index (or key) and the rest still applied;
the exit code is 1 if anything failed. Not supported yet (logged per entry):
nfs mounts, the loop mount option.

Examples:
  cat >> /var/lib/rancher/conf/cloud-config.yml <<EOF
  bootcmd:
    - echo early > /dev/kmsg
  mounts:
    - [LABEL=DATA, /mnt/data, ext4, \"noatime\"]
    - [/dev/vdc, none, swap, sw]     # made by mkswap once
    - [tmpfs, /mnt/scratch, tmpfs, \"size=64m,mode=1777\"]
  rancher:
    sysctl: {vm.swappiness: 10}
  write_files:
    - {path: /etc/motd, content: \"hello\\n\", permissions: \"0644\"}
  runcmd:
    - echo booted > /tmp/booted
  EOF
  ros cloud-init-execute --console --no-runcmd --root /tmp/test-root";

#[derive(Debug, Parser)]
#[command(
    name = "ros cloud-init-execute",
    bin_name = "ros cloud-init-execute",
    about = "Apply the cloud-config: bootcmd, mounts and rancher.sysctl (--pre-console), write_files and runcmd (--console)",
    after_help = AFTER_HELP,
    group(ArgGroup::new("phase").required(true).multiple(true).args(["pre_console", "console"]))
)]
struct Cli {
    /// Run bootcmd, apply mounts and rancher.sysctl (the cloud-init-execute
    /// service, before the console)
    #[arg(long)]
    pre_console: bool,
    /// Write the console's write_files and run runcmd (at the console's start)
    #[arg(long)]
    console: bool,
    /// With --console: write files only, run no runcmd entry
    #[arg(long)]
    no_runcmd: bool,
    /// The root the config is read from and files are written under (runcmd
    /// still runs in the real filesystem)
    #[arg(long, value_name = "DIR", env = "ROS_ROOT", default_value = "/")]
    root: PathBuf,
    /// Where sysctl keys are written
    #[arg(long, value_name = "DIR", default_value = "/proc/sys")]
    proc_sys: PathBuf,
    /// The mount namespace mounts and swap are made in (the host's, as the
    /// service has the host's PID namespace); "current" stays in ours
    #[arg(long, value_name = "PATH", default_value = "/proc/1/ns/mnt")]
    mount_ns: PathBuf,
    /// Where LABEL= and UUID= devices are looked up, in that namespace
    #[arg(long, value_name = "DIR", default_value = "/dev/disk")]
    dev_disk: PathBuf,
}

/// `ros cloud-init-execute ARGS` (`args[0]` is `cloud-init-execute`).
/// Returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli: Cli = match service_cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    service_cli::init_logging();
    let config = match config::load(&config::Root::new(&cli.root)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ros cloud-init-execute: failed to load the config: {e}");
            return 1;
        }
    };
    let mut failures = Vec::new();
    if cli.pre_console {
        let host = crate::Host {
            proc_sys: cli.proc_sys.clone(),
            mount_ns: (cli.mount_ns.as_os_str() != "current").then(|| cli.mount_ns.clone()),
            dev_disk: cli.dev_disk.clone(),
        };
        failures.extend(crate::pre_console(&config, &host));
    }
    if cli.console {
        failures.extend(crate::console(&config, &cli.root, !cli.no_runcmd));
    }
    if failures.is_empty() {
        0
    } else {
        eprintln!(
            "ros cloud-init-execute: {} item(s) failed (logged above)",
            failures.len()
        );
        1
    }
}
