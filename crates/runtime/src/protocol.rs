//! The files through which the engine and a container's shim talk.
//!
//! The engine never holds a container's processes: it writes a [`RunConfig`]
//! into the container's directory and starts `ros shim run DIR`. The shim
//! reports through files in that directory, written atomically (write, fsync,
//! rename), so that a daemon that was killed and restarted can read them back:
//!
//! | file | written by | when |
//! | --- | --- | --- |
//! | `run.json` | engine | before the shim starts |
//! | `shim.pid` | shim | as soon as it runs |
//! | `started.json` | shim | once the container's process runs ([`Started`]) |
//! | `exit.json` | shim | after the container exited and was cleaned up ([`Exited`]) |
//! | `container.log` | shim | the container's stdout and stderr, one JSON object a line ([`LogRecord`]); `container.log.1` after a rotation |
//! | `shim.log` | engine opens, shim writes | the shim's own messages (its stderr) |
//! | `bundle/`, `state/` | shim | the OCI bundle (`config.json`) and libcontainer's state |
//! | `overlay-layers/`, `overlay-empty/` | shim | helpers of the overlay mount (see [`crate::overlay`]) |
//!
//! `started.json` is written before the `ok` line; `exit.json` is written
//! last, after the container's cgroup and state were removed and the rootfs
//! unmounted, so once the shim is gone and `exit.json` exists the directory
//! may be removed. A new shim in the same directory removes the
//! `started.json` and `exit.json` of the previous run first.
//!
//! The shim also writes one line to its standard output once the container runs
//! or failed to: `ok PID` or `error MESSAGE`, so that a start call can answer at
//! once without polling.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const RUN_CONFIG_FILE: &str = "run.json";
pub const SHIM_PID_FILE: &str = "shim.pid";
pub const STARTED_FILE: &str = "started.json";
pub const EXIT_FILE: &str = "exit.json";
pub const LOG_FILE: &str = "container.log";
/// Longest piece of output stored in one [`LogRecord`] (as Docker's 16 KiB).
pub const MAX_LOG_LINE: usize = 16 * 1024;

/// Everything the shim needs to create and run one container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RunConfig {
    /// Container id (64 hex characters); also the libcontainer id.
    pub id: String,
    /// The root filesystem: overlay layers.
    pub rootfs: Rootfs,
    /// argv of the process; `args[0]` is looked up in the container's PATH.
    pub args: Vec<String>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// Working directory inside the container ("/" when empty).
    pub cwd: String,
    /// Docker's `User` form: "", "uid", "uid:gid", "name", "name:group";
    /// names are resolved in the container's /etc/passwd and /etc/group.
    pub user: String,
    pub hostname: Option<String>,
    pub privileged: bool,
    pub read_only_rootfs: bool,
    /// Share the host's namespace instead of creating one.
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    pub host_uts: bool,
    /// Bind mounts, in order.
    pub mounts: Vec<BindMount>,
    /// Capabilities with or without the CAP_ prefix; "ALL" allowed.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub devices: Vec<DeviceMapping>,
    pub resources: Resources,
    pub oom_score_adj: Option<i32>,
    /// cgroup path relative to the cgroup root, e.g. "/system-docker/ID".
    pub cgroup_path: String,
    /// Where the shim writes the log (normally DIR/container.log).
    pub log_path: PathBuf,
    /// Maximum size of the log file before it is rotated once (0 = unlimited).
    pub log_max_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Rootfs {
    /// Read-only layer directories, lowest (base image layer) first.
    pub lower: Vec<PathBuf>,
    /// Writable directory of the container (overlay upperdir).
    pub upper: PathBuf,
    /// overlay workdir, on the same filesystem as `upper`.
    pub work: PathBuf,
    /// Where the overlay is mounted (the bundle's rootfs).
    pub target: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
    /// "", "private", "rprivate", "shared", "rshared", "slave", "rslave".
    pub propagation: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DeviceMapping {
    pub path_on_host: PathBuf,
    pub path_in_container: String,
    /// Any of "r", "w", "m".
    pub permissions: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Resources {
    /// Bytes; None = unlimited.
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub pids_limit: Option<i64>,
}

/// What the shim reports once the container's first process runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Started {
    pub pid: i32,
    /// RFC 3339 with nanoseconds.
    pub started_at: String,
}

/// What the shim reports after the container's process ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Exited {
    /// The exit status; 128 + signal when killed by a signal.
    pub exit_code: i32,
    /// Signal number when killed by a signal.
    pub signal: Option<i32>,
    /// RFC 3339 with nanoseconds.
    pub finished_at: String,
    /// Set when the container could not be created or started.
    pub error: Option<String>,
    pub oom_killed: bool,
}

/// One line of `container.log`, in Docker's json-file form: `log` holds one
/// line of output including its trailing newline; a line longer than
/// [`MAX_LOG_LINE`] bytes, or the last piece of a stream that did not end with
/// a newline, is stored without one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogRecord {
    pub log: String,
    /// "stdout" or "stderr".
    pub stream: String,
    /// RFC 3339 with nanoseconds.
    pub time: String,
}

/// A process to run inside a running container (`ros shim exec`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ExecConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub privileged: bool,
}

/// The shim's one line on its standard output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartReply {
    /// `ok PID`: the container runs; PID is its first process (host pid).
    Ok(i32),
    /// `error MESSAGE`: the container could not be started.
    Error(String),
}

impl StartReply {
    /// Parses the line (with or without its newline). A line that is neither
    /// form, or no line at all (the shim died), is an error reply.
    pub fn parse(line: &str) -> StartReply {
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(pid) = line.strip_prefix("ok ").and_then(|p| p.trim().parse().ok()) {
            return StartReply::Ok(pid);
        }
        match line.strip_prefix("error ") {
            Some(message) => StartReply::Error(message.to_string()),
            None if line.is_empty() => {
                StartReply::Error("the shim exited without an answer".to_string())
            }
            None => StartReply::Error(format!("unexpected answer from the shim: {line:?}")),
        }
    }
}

impl std::fmt::Display for StartReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartReply::Ok(pid) => write!(f, "ok {pid}"),
            StartReply::Error(message) => write!(f, "error {}", message.replace('\n', " ")),
        }
    }
}

/// Serializes `value` as JSON and replaces `path` with it (`atomic_file`:
/// a reader or a crash sees the old file or the whole new one).
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    atomic_file::write(path, &bytes)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The container's `started.json`, if the shim wrote it (None when missing or
/// unreadable).
pub fn read_started(container_dir: &Path) -> Option<Started> {
    read_json(&container_dir.join(STARTED_FILE))
}

/// The container's `exit.json`, if the shim wrote it (None when missing or
/// unreadable).
pub fn read_exit(container_dir: &Path) -> Option<Exited> {
    read_json(&container_dir.join(EXIT_FILE))
}

/// The pid in `shim.pid`, if any.
pub fn read_shim_pid(container_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(container_dir.join(SHIM_PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads `run.json` of a container directory.
pub fn read_run_config(container_dir: &Path) -> Result<RunConfig, crate::Error> {
    let path = container_dir.join(RUN_CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(|source| crate::Error::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| crate::Error::Json { path, source })
}

/// Writes `run.json` into a container directory (atomically).
pub fn write_run_config(container_dir: &Path, config: &RunConfig) -> Result<(), crate::Error> {
    let path = container_dir.join(RUN_CONFIG_FILE);
    write_json_atomic(&path, config).map_err(|source| crate::Error::Write { path, source })
}

/// The current time as RFC 3339 in UTC with nanoseconds, as Docker writes it
/// (`2024-05-01T10:20:30.123456789Z`).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_records_are_read_back_and_garbage_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let exit = Exited {
            exit_code: 3,
            signal: None,
            finished_at: now_rfc3339(),
            error: None,
            oom_killed: false,
        };
        assert_eq!(read_exit(dir.path()), None);
        std::fs::write(dir.path().join(EXIT_FILE), b"garbage").unwrap();
        assert_eq!(read_exit(dir.path()), None);
        write_json_atomic(&dir.path().join(EXIT_FILE), &exit).unwrap();
        assert_eq!(read_exit(dir.path()), Some(exit));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(EXIT_FILE)]);
    }

    #[test]
    fn run_config_round_trips_and_tolerates_missing_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(RUN_CONFIG_FILE),
            br#"{"id":"abc","args":["sh"]}"#,
        )
        .unwrap();
        let cfg = read_run_config(dir.path()).unwrap();
        assert_eq!(cfg.id, "abc");
        assert_eq!(cfg.args, vec!["sh"]);
        assert!(!cfg.privileged);
        write_run_config(dir.path(), &cfg).unwrap();
        assert_eq!(read_run_config(dir.path()).unwrap(), cfg);
    }

    #[test]
    fn start_replies_round_trip() {
        for reply in [
            StartReply::Ok(42),
            StartReply::Error("no such image".to_string()),
        ] {
            assert_eq!(StartReply::parse(&format!("{reply}\n")), reply);
        }
        assert_eq!(
            StartReply::parse(""),
            StartReply::Error("the shim exited without an answer".to_string())
        );
        assert!(matches!(StartReply::parse("ok x"), StartReply::Error(_)));
        assert_eq!(
            StartReply::Error("a\nb".to_string()).to_string(),
            "error a b"
        );
    }

    #[test]
    fn timestamps_have_nanoseconds_and_utc() {
        let t = now_rfc3339();
        assert!(t.ends_with('Z'), "{t}");
        let frac = t.rsplit('.').next().unwrap();
        assert_eq!(frac.len(), 10, "{t}");
        assert!(chrono::DateTime::parse_from_rfc3339(&t).is_ok());
    }
}
