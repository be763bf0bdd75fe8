//! OxOS cloud-config: the model, its layers, the kernel command line and
//! `ros config`.
//!
//! # Background
//!
//! RancherOS and BurmillaOS configure everything through one YAML document
//! merged from several files and the kernel command line (COMPAT.md lists
//! the keys, the files and the merge order). OxOS reads the same documents
//! unchanged.
//!
//! # Design
//!
//! - [`Config`] is the document as a YAML value tree addressed by dotted keys
//!   (`rancher.network.dns.nameservers`). The tree is the source of truth, so
//!   keys OxOS does not know survive `set`, `merge` and `export`.
//! - [`model`] holds typed views (serde structs) that consumers read from the
//!   tree with [`Config::typed`]; they never write it back, so they cannot
//!   drop what they do not know.
//! - [`layers`] knows where the files are under a [`Root`] (a path prefix, so
//!   tests and `ros --root DIR` work on a directory) and merges them: mappings
//!   deeply, lists and scalars replaced by the later layer.
//!   [`layers::apply_metadata`] then applies a datasource's hostname (only if
//!   unset) and SSH keys (appended), and [`layers::save_init_yml`] keeps the
//!   args after `--` once /proc/cmdline no longer shows them.
//! - [`cmdline`] turns `rancher.*` and `cc.*` kernel arguments into layers.
//! - [`validate`] checks a document against a schema of the known keys:
//!   syntax errors with file, line and column, unknown keys with a "did you
//!   mean" suggestion, and known keys whose behaviour is not implemented yet.
//! - [`cli`] is `ros config` (get, set, merge, export, validate).
//!
//! # Limitations
//!
//! - Dotted keys cannot address a key that itself holds a dot (sysctl names
//!   such as `net.ipv4.ip_forward`); such keys are set through `merge`.
//! - Unknown-key warnings name the key path but not its line: the YAML value
//!   tree keeps no positions.
//! - Only the first value of a wrong type is reported (serde stops there);
//!   for booleans read as YAML 1.1 (`yes`, `off`) the error names the
//!   enclosing section rather than the key.
//! - A null in a later layer replaces what an earlier layer set (as in
//!   RancherOS); typed views read a null as "not set".
//! - Every key is marked "not implemented yet" in [`validate::SCHEMA`] until
//!   the crate that acts on it exists; flipping its [`validate::Status`] is
//!   the one change needed then.
//! - `ros config images` and `generate` are not supported yet.

pub mod cli;
pub mod cmdline;
pub mod environment;
mod error;
pub mod layers;
pub mod model;
mod tree;
pub mod validate;

pub use error::{Error, Result};
pub use layers::{load, Root};
pub use serde_norway::{Mapping, Value};
pub use tree::{kind, split_key, Config};
