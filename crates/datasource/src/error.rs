//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while naming, polling, decoding or saving a
/// datasource. Messages name the datasource (as written in
/// `rancher.cloud_init.datasources`) and the reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name in the datasource list that no RancherOS release knew.
    #[error("unknown datasource {0:?}")]
    UnknownSource(String),
    /// A datasource RancherOS knew and OxOS does not implement yet.
    #[error("datasource {0} is not supported yet")]
    NotSupportedYet(String),
    /// A datasource written with a missing or bad argument, such as `url:`.
    #[error("invalid datasource {name:?}: {reason}")]
    InvalidSource { name: String, reason: String },
    /// User-data that is none of the accepted forms.
    #[error(
        "user-data from {source_name} is not #cloud-config, a #! script or #compose \
         (it starts with {start:?})"
    )]
    UnknownUserData { source_name: String, start: String },
    /// User-data, metadata or network config that does not parse.
    #[error("{what} from {source_name} is invalid: {message}")]
    Invalid {
        source_name: String,
        what: &'static str,
        message: String,
    },
    /// An HTTP answer that is neither a success nor "not found".
    #[error("{source_name}: {url} answered {status}")]
    HttpStatus {
        source_name: String,
        url: String,
        status: u16,
    },
    /// A datasource URL that the HTTP client rejects.
    #[error("{source_name}: bad request to {url}: {message}")]
    Http {
        source_name: String,
        url: String,
        message: String,
    },
    /// A file of a datasource exists but could not be read.
    #[error("{source_name}: failed to read {}: {source}", path.display())]
    Read {
        source_name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A device could not be mounted or its files read.
    #[error("{source_name}: failed to mount {} on {}: {source}", device.display(), target.display())]
    Mount {
        source_name: String,
        device: PathBuf,
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A helper program (blkid) could not be run.
    #[error("{source_name}: failed to run {command}: {source}")]
    Command {
        source_name: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// A result could not be written under the root directory.
    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A saved file could not be read back.
    #[error("failed to read {}: {source}", path.display())]
    ReadSaved {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A saved file does not parse.
    #[error("{} is invalid: {message}", path.display())]
    InvalidSaved { path: PathBuf, message: String },
    /// A value could not be turned into YAML for saving.
    #[error("failed to serialize {what}: {message}")]
    Serialize { what: &'static str, message: String },
    /// No datasource answered, and at least one of them failed for good.
    #[error("no datasource answered: {}", list(.0))]
    NoAnswer(Vec<Error>),
}

fn list(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
