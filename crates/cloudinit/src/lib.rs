//! # cloudinit: applying a cloud-config at boot (`ros cloud-init-execute`)
//!
//! ## Background
//!
//! A cloud-config (COMPAT.md) asks for kernel parameters (`rancher.sysctl`),
//! files (`write_files`) and commands (`runcmd`). Some of it must happen
//! before the console starts, in the host's view of the system; some inside
//! the console, whose filesystem the user logs into.
//!
//! ## Design
//!
//! Two phases, each a flag of `ros cloud-init-execute`:
//!
//! - [`pre_console`] runs in the `cloud-init-execute` system service
//!   (privileged, host network and PID namespace, /proc/sys writable): every
//!   `rancher.sysctl` key is written to its file under /proc/sys.
//! - [`console`] runs when the console container starts, in its filesystem:
//!   the `write_files` entries meant for the console (no `container:` or
//!   `container: console`) are written, then `runcmd` runs in order.
//!
//! Every item is independent: a bad entry is logged (with its index or key)
//! and the rest still applied; the phase returns the list of failures, so
//! the command exits 1 at the end if any. Files are written atomically: a
//! temporary file in the same directory, mode and owner set, fsync, rename.
//! Owner names are resolved from the root's own /etc/passwd and /etc/group.
//! The config is the merged one (`config::load`), read from the root
//! (`--root`, ROS_ROOT), so tests run over a temporary directory.
//!
//! ## Limitations
//!
//! - `write_files` for any container other than the console: not supported
//!   yet, logged as such per entry (and counted as a failure).
//! - `bootcmd` is not run yet; a config holding it gets a warning.
//! - Encoding `gz`/`gzip` without base64 needs the gzip bytes in a YAML
//!   string, which only holds valid UTF-8; use `gz+b64` in practice.
//! - `runcmd` runs every time the console starts, not once per instance,
//!   and always in the real filesystem: `--root` moves only the config read
//!   and the files written.
//! - Paths are joined under the root without resolving symlinks in it; on
//!   a running system the root is `/`, where that makes no difference.

pub mod error;
pub mod runcmd;
pub mod sysctl;
pub mod write_files;

pub mod cli;

use std::path::Path;

use config::{Config, Value};

pub use error::{Error, Result};

/// One thing that could not be applied, as logged.
pub type Failure = String;

/// The pre-console phase: `rancher.sysctl` written under `proc_sys`.
/// Returns the failures (each already logged).
pub fn pre_console(config: &Config, proc_sys: &Path) -> Vec<Failure> {
    let mut failures = Vec::new();
    let mut fail = |msg: String| {
        tracing::error!("{msg}");
        failures.push(msg);
    };
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
                match sysctl::apply(proc_sys, &key, value) {
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
    if let Ok(Some(Value::Sequence(cmds))) = config.get("bootcmd") {
        if !cmds.is_empty() {
            tracing::warn!(
                "not supported yet: bootcmd ({} entries not run)",
                cmds.len()
            );
        }
    }
    failures
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
                match entry.container.as_deref() {
                    None | Some("") | Some("console") => {}
                    Some(other) => {
                        fail(format!(
                            "not supported yet: write_files[{i}] for container {other} ({path})"
                        ));
                        continue;
                    }
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
    match config.get("runcmd") {
        Ok(None) | Ok(Some(Value::Null)) => {}
        Ok(Some(Value::Sequence(cmds))) => {
            for (i, entry) in cmds.iter().enumerate() {
                let argv = match runcmd::argv(entry) {
                    Ok(a) => a,
                    Err(e) => {
                        fail(format!("runcmd[{i}]: {e}"));
                        continue;
                    }
                };
                tracing::info!("runcmd[{i}]: {}", argv.join(" "));
                match runcmd::run(&argv, &format!("runcmd[{i}]: ")) {
                    Ok(runcmd::Outcome::Exited(0)) => {}
                    Ok(runcmd::Outcome::Exited(code)) => {
                        fail(format!("runcmd[{i}]: exited with code {code}"))
                    }
                    Ok(runcmd::Outcome::Signaled(sig)) => {
                        fail(format!("runcmd[{i}]: killed by signal {sig}"))
                    }
                    Err(e) => fail(format!("runcmd[{i}]: failed to run {}: {e}", argv[0])),
                }
            }
        }
        Ok(Some(other)) => fail(format!(
            "runcmd: must be a list, not {}",
            config::kind(other)
        )),
        Err(e) => fail(format!("runcmd: {e}")),
    }
    failures
}
