//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No image matches the given name, id or id prefix.
    #[error("no such image: {0}")]
    NotFound(String),
    /// The image is used by a container and `force` was not given.
    #[error("image {image} is in use by a container and cannot be removed without force")]
    InUse { image: String },
    /// The request conflicts with the store's state (for example deleting by
    /// id an image with several tags, or an ambiguous id prefix).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A malformed image reference.
    #[error("invalid reference format: {reference}: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// Content did not hash to the digest it was announced with.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// The tarball or its metadata is not a valid image archive.
    #[error("invalid image archive: {0}")]
    InvalidArchive(String),
    /// An image config (or manifest) could not be parsed.
    #[error("invalid image config: {0}")]
    InvalidConfig(String),
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Talking to a registry failed.
    #[error("registry error for {reference}: {reason}")]
    Registry { reference: String, reason: String },
    /// A feature the store does not implement.
    #[error("not supported yet: {0}")]
    Unsupported(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn archive(msg: impl Into<String>) -> Self {
        Error::InvalidArchive(msg.into())
    }
}

/// Crate-local result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
