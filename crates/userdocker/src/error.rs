//! The crate's one error type.

use std::path::PathBuf;

/// Everything that stops User Docker's start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The merged config could not be read, or a key of it has the wrong
    /// type (the message names the key).
    #[error(transparent)]
    Config(#[from] config::Error),
    /// `rancher.docker.tls: true`.
    #[error(
        "rancher.docker.tls is not supported yet: set it to false, or give dockerd \
         --tlsverify and its certificate flags through rancher.docker.extra_args"
    )]
    TlsNotSupported,
    /// A value under `rancher.docker` or `rancher.environment` of a type the
    /// key cannot take.
    #[error("{key}: expected {expected}, found {found}")]
    BadValue {
        /// The dotted key (`rancher.docker.log_opts`).
        key: String,
        /// What the key takes (`a string`, `a boolean`, ...).
        expected: &'static str,
        /// What it holds: `a mapping`, `a list`, or the value itself.
        found: String,
    },
    /// The options file exists but could not be read.
    #[error("failed to read {}: {source}", path.display())]
    ReadOpts {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `DOCKER_OPTS=` line of the options file that cannot be taken as a
    /// plain list of words.
    #[error("{}:{line}: {reason}", path.display())]
    OptsSyntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// dockerd could not be started.
    #[error("failed to run {}: {source}", path.display())]
    Exec {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
