//! # runtime: one container, run for real
//!
//! ## Background
//!
//! OxOS runs every service in a container, and its engine must survive its
//! own restart without taking the containers down. So the engine does not hold
//! containers itself: this crate turns a [`protocol::RunConfig`] (what the
//! engine decided a container is) into a running container, using youki's
//! `libcontainer`, from a small process per container, the *shim*: the engine
//! re-executes the `ros` binary as `ros shim run DIR`, and that process
//!
//! 1. mounts the container's root filesystem (overlayfs over the image
//!    layers, [`overlay`]),
//! 2. generates the OCI runtime spec ([`spec`], with the user resolved by
//!    [`user`]) and creates and starts the container with libcontainer,
//! 3. holds the container's stdout and stderr and writes them to the log
//!    ([`logfile`]),
//! 4. waits for the container's first process and records its exit.
//!
//! ## Design
//!
//! The engine only reads and writes files (see [`protocol`]) and sends
//! signals, so it can be killed and restarted while its containers keep
//! running. [`shim`] describes the shim's life; [`spec`] lists the Docker
//! defaults the containers get. Side effects (mounts, reading the host's
//! devices and the image's passwd file) are kept out of the spec generation,
//! which is a pure function tested on its own.
//!
//! ## Limitations
//!
//! - No seccomp: libseccomp is left out so that `ros` links statically.
//! - No terminals, no user namespaces, no AppArmor/SELinux.
//! - See each module for more.

pub mod cgroup;
pub mod error;
pub mod inroot;
pub mod logfile;
pub mod overlay;
pub mod protocol;
pub mod shim;
pub mod spec;
pub mod user;

pub use error::{Error, Result};
