#![recursion_limit = "256"]
//! # engine: the OxOS system container engine ("System Docker")
//!
//! ## Background
//!
//! Every OxOS service runs in a container of the system engine, which lives
//! in PID 1. Users and tools talk to it as they would to Docker: it serves the
//! Docker Engine API on `/var/run/system-docker.sock`, so the `docker` CLI,
//! `system-docker` and Docker SDKs all work against it.
//!
//! ## Design
//!
//! * Images come from the [`image_store`] crate: digest-verified, each layer
//!   unpacked once and shared as an overlayfs lower directory.
//! * A container is a record on disk (`DATA_ROOT/containers/ID/container.json`,
//!   see [`record`]) plus, while it runs, one *shim* process (the same binary,
//!   re-executed as `ros shim run DIR`, see the [`runtime`] crate) that owns
//!   the container's processes, stdio and log. The engine holds no container
//!   process itself, so it can be killed and restarted while containers run:
//!   at start it reads the records back and watches the shims again through
//!   pidfds ([`supervise`]).
//! * Restart policies (`no`, `always`, `on-failure[:N]`, `unless-stopped`)
//!   are applied by the supervisor with a doubling back-off, as in Docker.
//! * The API ([`api`]) is axum over a unix socket, on a single-threaded tokio
//!   runtime to keep the daemon small.
//! * `PUT /containers/{id}/archive` ([`archive`]) extracts a tar into a
//!   created, stopped or running container as the container sees its
//!   files: in a private mount namespace of one thread, over the
//!   container's overlay and volumes, chrooted into its root.
//!
//! ## Limitations
//!
//! * Networking is `host` or an isolated network namespace with only
//!   loopback (the default; RancherOS's system engine ran with no bridge
//!   either). Publishing ports, bridge networks and links are refused by name.
//! * No terminals (`-t`) and no stdin (`-i`) yet; refused by name.
//! * Logs are the json-file format only.

pub mod api;
pub mod archive;
pub mod children;
pub mod engine;
pub mod error;
pub mod exec;
pub mod fsutil;
pub mod logs;
pub mod memory;
pub mod record;
pub mod runconfig;
pub mod server;
pub mod supervise;

pub use engine::{Config, Engine};
pub use error::{Error, Result};
