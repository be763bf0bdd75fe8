//! # cloudinit: applying a cloud-config at boot (`ros cloud-init-execute`)
//!
//! ## Background
//!
//! A cloud-config (COMPAT.md) asks for early commands (`bootcmd`), file
//! systems and swap (`mounts`), kernel parameters (`rancher.sysctl`), files
//! (`write_files`) and commands (`runcmd`). Some of it must happen before
//! the console starts, in the host's view of the system; some inside the
//! console, whose filesystem the user logs into.
//!
//! ## Design
//!
//! Two phases, each a flag of `ros cloud-init-execute`:
//!
//! - [`pre_console`] runs in the `cloud-init-execute` system service
//!   (privileged, host network and PID namespace, /proc/sys writable), in
//!   this order:
//!   1. `bootcmd`, as RancherOS runs it: each entry a string (`/bin/sh -c`)
//!      or a list (argv, run directly), in order, in the service's own
//!      filesystem;
//!   2. `mounts` ([`mounts`]): each `[device, mount point, type, options]`
//!      entry mounted with mount(2), or enabled with swapon(2) for type
//!      `swap`, in the host's mount namespace: a thread of its own unshares
//!      its file system attributes and enters /proc/1/ns/mnt with setns(2)
//!      (PID 1 is the host's init, as the service has the host's PID
//!      namespace), so the mounts outlive the service and are seen by every
//!      container started later. `LABEL=`/`UUID=` devices are resolved
//!      through /dev/disk, a missing mount point is created, type `auto`
//!      tries the kernel's file systems in turn, and an entry whose source
//!      is already mounted there (or whose swap is already on) is skipped,
//!      so a restart of the service stacks nothing;
//!   3. every `rancher.sysctl` key written to its file under /proc/sys.
//! - [`console`] runs when the console container starts, in its filesystem:
//!   the `write_files` entries meant for the console (no `container:` or
//!   `container: console`) are written, then `runcmd` runs in order.
//! - The `write_files` entries for other containers are not written here:
//!   [`write_files::for_containers`] decodes them by container, and the
//!   `compose` crate puts them into each container (a tar through the
//!   engine's `PUT /containers/{id}/archive`) before every start of it, at
//!   boot by PID 1 and with `ros service up/start/restart`.
//!
//! Every item is independent: a bad entry is logged (with its index or key,
//! `bootcmd[2]: exit status 1`, `mounts[1]: /dev/vdb on /mnt/data: no such
//! device`) and the rest still applied; the phase returns the list of
//! failures, so the command exits 1 at the end if any. Files are written
//! atomically: a temporary file in the same directory, mode and owner set,
//! fsync, rename. Owner names are resolved from the root's own /etc/passwd
//! and /etc/group. The config is the merged one (`config::load`), read from
//! the root (`--root`, ROS_ROOT), so tests run over a temporary directory;
//! the mount namespace and /dev/disk are parameters ([`Host`]) for the same
//! reason.
//!
//! ## Limitations
//!
//! - `write_files` for a container other than the console: written before
//!   the container's next start only, so a container that already runs
//!   gets a new entry when it is restarted (`rancher.restart_services`,
//!   `ros service restart`). Its `owner` must be numeric (`uid`,
//!   `uid:gid`) or `root`: names are not looked up in that container's
//!   /etc/passwd, and such an entry is logged and skipped.
//! - `mounts`: nfs and the `loop` option are not supported yet (a per-entry
//!   error); a file is mounted only through a loop device set up beforehand
//!   (in `bootcmd`, with losetup). Type `auto` does not probe the device as
//!   mount(8) does with blkid: it tries every type of /proc/filesystems
//!   that needs a device, so a file system whose module is not loaded yet
//!   is not found (name the type). udev's escapes in labels (`\x20`) must be
//!   written as udev writes them.
//! - `bootcmd` and `runcmd` run on every boot (each console start for
//!   `runcmd`), not once per instance. `bootcmd` runs in the service's
//!   filesystem; `nsenter -t 1 -m` reaches the host's.
//! - Encoding `gz`/`gzip` without base64 needs the gzip bytes in a YAML
//!   string, which only holds valid UTF-8; use `gz+b64` in practice.
//! - `runcmd` runs always in the real filesystem: `--root` moves only the
//!   config read and the files written.
//! - Paths are joined under the root without resolving symlinks in it; on
//!   a running system the root is `/`, where that makes no difference.

pub mod error;
pub mod mounts;
pub mod runcmd;
pub mod sysctl;
pub mod write_files;

pub mod cli;

use std::path::{Path, PathBuf};

use config::{Config, Value};

pub use error::{Error, Result};

/// One thing that could not be applied, as logged.
pub type Failure = String;

/// Where the pre-console phase acts: the real system's paths by default,
/// others in tests.
#[derive(Debug, Clone)]
pub struct Host {
    /// Where sysctl keys are written (`/proc/sys`).
    pub proc_sys: PathBuf,
    /// The mount namespace `mounts` are made in (`/proc/1/ns/mnt`, the
    /// host's); `None`: the current one.
    pub mount_ns: Option<PathBuf>,
    /// Where `LABEL=`/`UUID=` devices are looked up (`/dev/disk`), in that
    /// namespace.
    pub dev_disk: PathBuf,
}

impl Default for Host {
    fn default() -> Self {
        Self {
            proc_sys: "/proc/sys".into(),
            mount_ns: Some("/proc/1/ns/mnt".into()),
            dev_disk: "/dev/disk".into(),
        }
    }
}

/// The pre-console phase: `bootcmd` run, then `mounts` made in
/// `host.mount_ns`, then `rancher.sysctl` written under `host.proc_sys`.
/// Returns the failures (each already logged).
pub fn pre_console(config: &Config, host: &Host) -> Vec<Failure> {
    let mut failures = Vec::new();
    let mut fail = |msg: String| {
        tracing::error!("{msg}");
        failures.push(msg);
    };
    run_list(config, "bootcmd", &mut fail);
    match config.get("mounts") {
        Ok(None) | Ok(Some(Value::Null)) => {}
        Ok(Some(Value::Sequence(entries))) if entries.is_empty() => {}
        Ok(Some(Value::Sequence(entries))) => apply_mounts(entries, host, &mut fail),
        Ok(Some(other)) => fail(format!(
            "mounts: must be a list, not {}",
            config::kind(other)
        )),
        Err(e) => fail(format!("mounts: {e}")),
    }
    match config.get("rancher.sysctl") {
        Ok(None) | Ok(Some(Value::Null)) => {}
        Ok(Some(Value::Mapping(map))) => {
            for (key, value) in map {
                let key = match key {
                    Value::String(s) => s.clone(),
                    other => {
                        fail(format!(
                            "sysctl: key is a {}, not a string",
                            config::kind(other)
                        ));
                        continue;
                    }
                };
                match sysctl::apply(&host.proc_sys, &key, value) {
                    Ok(()) => tracing::info!("sysctl {key} set"),
                    Err(e) => fail(format!("sysctl {key}: {e}")),
                }
            }
        }
        Ok(Some(other)) => fail(format!(
            "rancher.sysctl: must be a mapping of keys to values, not {}",
            config::kind(other)
        )),
        Err(e) => fail(format!("rancher.sysctl: {e}")),
    }
    failures
}

/// Every `mounts` entry, from one thread inside the mount namespace.
fn apply_mounts(entries: &[Value], host: &Host, fail: &mut dyn FnMut(String)) {
    let dev_disk = host.dev_disk.as_path();
    if let Some(ns) = &host.mount_ns {
        // Without the host's PID namespace, PID 1 is this very process:
        // the mounts would vanish with the service.
        let ours = std::fs::read_link("/proc/thread-self/ns/mnt");
        if ours.is_ok() && std::fs::read_link(ns).ok() == ours.ok() {
            tracing::warn!(
                "mounts: {} is this process's own mount namespace; if this runs in a container, its mounts stay there (does the service have pid: host?)",
                ns.display()
            );
        }
    }
    let outcome = mounts::in_namespace(host.mount_ns.as_deref(), || {
        entries
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let entry =
                    mounts::entry_from_value(value).map_err(|e| format!("mounts[{i}]: {e}"))?;
                let what = format!("mounts[{i}]: {} on {}", entry.device, entry.target);
                mounts::apply(&entry, dev_disk)
                    .map(|done| (what.clone(), done))
                    .map_err(|e| format!("{what}: {e}"))
            })
            .collect::<Vec<_>>()
    });
    match outcome {
        Ok(results) => {
            for result in results {
                match result {
                    Ok((what, mounts::Done::Mounted(t))) => {
                        tracing::info!("{what}: mounted ({t})")
                    }
                    Ok((what, mounts::Done::AlreadyMounted)) => {
                        tracing::info!("{what}: already mounted, skipped")
                    }
                    Ok((what, mounts::Done::SwapOn(p))) => {
                        tracing::info!("{what}: swap on {}", p.display())
                    }
                    Ok((what, mounts::Done::SwapAlreadyOn(p))) => {
                        tracing::info!("{what}: swap already on {}, skipped", p.display())
                    }
                    Err(msg) => fail(msg),
                }
            }
        }
        Err(e) => fail(format!("mounts: {e} (no entry applied)")),
    }
}

/// `bootcmd` or `runcmd`: each entry run in order, a failure logged and
/// counted, the rest still run.
fn run_list(config: &Config, key: &str, fail: &mut dyn FnMut(String)) {
    match config.get(key) {
        Ok(None) | Ok(Some(Value::Null)) => {}
        Ok(Some(Value::Sequence(cmds))) => {
            for (i, entry) in cmds.iter().enumerate() {
                let argv = match runcmd::argv(entry) {
                    Ok(a) => a,
                    Err(e) => {
                        fail(format!("{key}[{i}]: {e}"));
                        continue;
                    }
                };
                tracing::info!("{key}[{i}]: {}", argv.join(" "));
                match runcmd::run(&argv, &format!("{key}[{i}]: ")) {
                    Ok(runcmd::Outcome::Exited(0)) => {}
                    Ok(runcmd::Outcome::Exited(code)) => {
                        fail(format!("{key}[{i}]: exit status {code}"))
                    }
                    Ok(runcmd::Outcome::Signaled(sig)) => {
                        fail(format!("{key}[{i}]: killed by signal {sig}"))
                    }
                    Err(e) => fail(format!("{key}[{i}]: failed to run {}: {e}", argv[0])),
                }
            }
        }
        Ok(Some(other)) => fail(format!(
            "{key}: must be a list, not {}",
            config::kind(other)
        )),
        Err(e) => fail(format!("{key}: {e}")),
    }
}

/// The console phase: `write_files` for the console written under `root`,
/// then `runcmd` if `run_commands`. Returns the failures (each already
/// logged).
pub fn console(config: &Config, root: &Path, run_commands: bool) -> Vec<Failure> {
    let mut failures = Vec::new();
    let mut fail = |msg: String| {
        tracing::error!("{msg}");
        failures.push(msg);
    };
    match config.get("write_files") {
        Ok(None) | Ok(Some(Value::Null)) => {}
        Ok(Some(Value::Sequence(entries))) => {
            for (i, value) in entries.iter().enumerate() {
                let entry = match write_files::entry_from_value(value) {
                    Ok(e) => e,
                    Err(e) => {
                        fail(format!("write_files[{i}]: {e}"));
                        continue;
                    }
                };
                let path = &entry.path;
                if let Some(other) = write_files::other_container(&entry) {
                    // PID 1 puts it into that container before it starts.
                    tracing::debug!("write_files[{i}]: {path} is for container {other}, skipped");
                    continue;
                }
                match write_files::write_entry(root, &entry) {
                    Ok(()) => tracing::info!("write_files[{i}]: wrote {path}"),
                    Err(e) => fail(format!("write_files[{i}] {path}: {e}")),
                }
            }
        }
        Ok(Some(other)) => fail(format!(
            "write_files: must be a list, not {}",
            config::kind(other)
        )),
        Err(e) => fail(format!("write_files: {e}")),
    }
    if !run_commands {
        return failures;
    }
    run_list(config, "runcmd", &mut fail);
    failures
}
