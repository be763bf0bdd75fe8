//! The engine's error type, and how each error maps to an HTTP status.

use thiserror::Error;

/// Everything an engine operation can fail with. The API turns each variant
/// into the status code Docker uses for it, with a JSON `{"message": ...}`.
#[derive(Debug, Error)]
pub enum Error {
    /// A container, image or exec instance that does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts the current state: a name in use, a running
    /// container to remove, an image in use (409).
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong: bad JSON, bad option values (400).
    #[error("{0}")]
    InvalidArgument(String),
    /// Refused by the container's configuration: writing into a read-only
    /// root filesystem or volume (403).
    #[error("{0}")]
    Forbidden(String),
    /// A Docker feature the system engine does not implement; names it (501).
    #[error("{0} is not supported by the system engine")]
    NotSupported(String),
    /// Nothing to do: starting a running container, stopping a stopped one (304).
    #[error("{0}")]
    NotModified(String),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] image_store::Error),
    /// Anything else: I/O, the shim, the kernel (500).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status code for this error, as Docker's API uses them.
    pub fn status(&self) -> u16 {
        match self {
            Error::NotFound(_) => 404,
            Error::Conflict(_) => 409,
            Error::InvalidArgument(_) => 400,
            Error::Forbidden(_) => 403,
            Error::NotSupported(_) => 501,
            Error::NotModified(_) => 304,
            Error::Image(e) => image_status(e),
            Error::Internal(_) => 500,
        }
    }

    pub fn internal(context: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        Error::Internal(format!("{context}: {err}"))
    }
}

fn image_status(e: &image_store::Error) -> u16 {
    use image_store::Error as E;
    match e {
        E::NotFound(_) => 404,
        E::InUse { .. } | E::Conflict(_) => 409,
        E::InvalidReference { .. }
        | E::DigestMismatch { .. }
        | E::InvalidArchive(_)
        | E::InvalidConfig(_) => 400,
        E::Unsupported(_) => 501,
        _ => 500,
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
