//! # runtime: one container, run for real
//!
//! This crate turns a [`protocol::RunConfig`] (what the engine decided a
//! container is) into a running container, using youki's `libcontainer`.
//! It is used from a small process per container, the *shim*: the engine
//! re-executes the `ros` binary as `ros shim run DIR`, and that process
//!
//! 1. mounts the container's root filesystem (overlayfs over the image layers),
//! 2. generates the OCI runtime spec ([`spec`]) and creates and starts the
//!    container with libcontainer,
//! 3. holds the container's stdout and stderr and writes them to the log,
//! 4. waits for the container's first process and records its exit.
//!
//! The engine only reads and writes files (see [`protocol`]) and sends signals,
//! so it can be killed and restarted while its containers keep running.

pub mod protocol;
pub mod shim;
