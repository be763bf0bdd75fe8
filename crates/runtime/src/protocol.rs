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
//! | `container.log` | shim | the container's stdout and stderr, one JSON object a line ([`LogRecord`]) |
//!
//! The shim also writes one line to its standard output once the container runs
//! or failed to: `ok PID` or `error MESSAGE`, so that a start call can answer at
//! once without polling.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const RUN_CONFIG_FILE: &str = "run.json";
pub const SHIM_PID_FILE: &str = "shim.pid";
pub const STARTED_FILE: &str = "started.json";
pub const EXIT_FILE: &str = "exit.json";
pub const LOG_FILE: &str = "container.log";

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

/// One line of `container.log`, in Docker's json-file form.
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
