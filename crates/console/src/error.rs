use std::path::PathBuf;

/// Everything that can go wrong while setting up the console.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The merged config could not be read (a file that does not parse, a
    /// key of the wrong type).
    #[error(transparent)]
    Config(#[from] config::Error),
    /// A config value the console uses is not acceptable.
    #[error("invalid {key}: {reason}")]
    InvalidValue { key: String, reason: String },
    /// A file or directory could not be read.
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file, directory or link could not be written.
    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A system database holds something the console cannot work with.
    #[error("{}: {reason}", path.display())]
    Conflict { path: PathBuf, reason: String },
    /// The password could not be hashed.
    #[error("failed to hash the password: {0}")]
    Hash(String),
    /// A helper program failed.
    #[error("{program} failed: {reason}")]
    Command { program: String, reason: String },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
