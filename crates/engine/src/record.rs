//! The container record: what the engine keeps about each container on disk.
//!
//! A record is `DATA_ROOT/containers/ID/container.json`, written atomically
//! after every change of state, so that a restarted daemon knows every
//! container, its configuration and its last known state. What the running
//! container's shim reports (started.json, exit.json) is merged in by the
//! supervisor.

use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};

/// The lifecycle states of Docker, as `State.Status` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Restarting,
    Exited,
    Removing,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Removing => "removing",
            Status::Dead => "dead",
        }
    }
}

/// The state part of a record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub status: Status,
    /// The container's first process, while it runs.
    pub pid: i32,
    /// The shim of the current or last run.
    pub shim_pid: i32,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    pub oom_killed: bool,
    /// Restarts done by the restart policy since the last start by a user.
    pub restart_count: i64,
    /// Stopped or killed by a user: the restart policy does not apply.
    pub manually_stopped: bool,
}

/// A mount point as the container sees it (the resolved form of binds,
/// anonymous volumes and volumes_from).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MountRecord {
    /// "bind" or "volume".
    pub kind: String,
    /// Volume name, for anonymous volumes.
    pub name: String,
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    pub propagation: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    pub id: String,
    /// Without the leading slash.
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// The image as the user named it.
    pub image: String,
    /// The resolved image id, "sha256:...".
    pub image_id: String,
    /// The process that runs: entrypoint + cmd, resolved at create.
    pub path: String,
    pub args: Vec<String>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub mounts: Vec<MountRecord>,
    pub state: State,
}

impl Record {
    pub fn is_running(&self) -> bool {
        matches!(self.state.status, Status::Running | Status::Restarting)
    }
}
