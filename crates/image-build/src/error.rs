//! The crate's one error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading recipes and the lock, packing
/// layers, and building images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read, written or created.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A recipe (`images/<name>/image.yml`) or the package-set file is not
    /// what the format expects: the file, the key, and what was expected.
    #[error("{}: {key}: {expected}", file.display())]
    Recipe {
        file: PathBuf,
        key: String,
        expected: String,
    },

    /// The lock file cannot be parsed or has a bad entry.
    #[error("invalid lock file {}: {reason}", file.display())]
    Lock { file: PathBuf, reason: String },

    /// The lock has no entry for a package set.
    #[error("the lock has no packages for {name}: run `cargo xtask lock --only {name}`")]
    NotLocked { name: String },

    /// The lock was written for other inputs than the recipe now asks for.
    #[error("the lock for {name} is stale ({reason}): run `cargo xtask lock --only {name}`")]
    StaleLock { name: String, reason: String },

    /// The Debian archive no longer has a pinned version.
    #[error(
        "{package} {version} is no longer in the {suite} archive (needed by {name}): \
         run `cargo xtask lock --only {name}` to refresh the lock"
    )]
    PinUnavailable {
        name: String,
        suite: String,
        package: String,
        version: String,
    },

    /// The built root holds other packages than the lock pins.
    #[error(
        "the packages installed in {name} differ from the lock ({differences}): \
         run `cargo xtask lock --only {name}` to refresh the lock"
    )]
    LockMismatch { name: String, differences: String },

    /// An external tool (mmdebstrap, a hook) failed.
    #[error("{step} failed: {reason}")]
    Tool { step: String, reason: String },

    /// Something in a root filesystem cannot be put into a layer.
    #[error("cannot pack {}: {reason}", path.display())]
    Pack { path: PathBuf, reason: String },

    /// An image name that no recipe declares.
    #[error("no image recipe named {name} under {}", dir.display())]
    UnknownImage { name: String, dir: PathBuf },

    /// An OCI document could not be built or serialised.
    #[error("cannot write OCI {what}: {reason}")]
    Oci { what: &'static str, reason: String },
}

impl Error {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn recipe(file: &Path, key: impl Into<String>, expected: impl Into<String>) -> Self {
        Error::Recipe {
            file: file.to_path_buf(),
            key: key.into(),
            expected: expected.into(),
        }
    }

    pub(crate) fn pack(path: &Path, reason: impl Into<String>) -> Self {
        Error::Pack {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
