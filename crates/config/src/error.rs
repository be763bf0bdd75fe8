//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading, changing or writing a config.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A YAML document could not be parsed; `line` and `column` are 1-based.
    #[error("{}:{line}:{column}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A YAML document could not be parsed and the parser gave no position.
    #[error("{}: {message}", file.display())]
    Parse { file: PathBuf, message: String },
    /// A config file exists but could not be read.
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A config file could not be written.
    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A dotted key is empty or has an empty part, such as `rancher..x`.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    /// `set` was asked to go through a value that is not a mapping.
    #[error("cannot set {key}: {parent} is a {kind}, not a mapping")]
    NotAMapping {
        key: String,
        parent: String,
        kind: &'static str,
    },
    /// A document's top level is not a mapping.
    #[error("{}: the top level of a cloud-config must be a mapping, found a {kind}", file.display())]
    TopLevelNotMapping { file: PathBuf, kind: &'static str },
    /// A typed view could not be read from the tree; the message names the
    /// key and the expected type.
    #[error("invalid config: {0}")]
    Typed(String),
    /// Standard input could not be read.
    #[error("failed to read standard input: {0}")]
    Stdin(#[source] std::io::Error),
    /// Standard output could not be written.
    #[error("failed to write standard output: {0}")]
    Stdout(#[source] std::io::Error),
    /// A command that OxOS does not have yet.
    #[error("{0} is not supported yet")]
    NotSupported(&'static str),
    /// `ros config validate` found errors (they were printed).
    #[error("{0} has {1} error(s)")]
    Invalid(String, usize),
    /// A value could not be turned into YAML.
    #[error("failed to serialize config: {0}")]
    Serialize(String),
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
