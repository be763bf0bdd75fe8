//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while applying one part of a cloud-config.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `write_files[N].encoding` names no known encoding.
    #[error("unknown encoding {0:?} (known: b64, base64, gzip, gz, gz+b64, gzip+base64, gz+base64, gzip+b64)")]
    UnknownEncoding(String),
    /// Base64 content that does not decode.
    #[error("content is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// Gzip content that does not decompress.
    #[error("content is not valid gzip: {0}")]
    Gzip(#[source] std::io::Error),
    /// `permissions` is not an octal mode.
    #[error("permissions {0:?}: not an octal mode such as 0644")]
    Permissions(String),
    /// `owner` is malformed or names an unknown user or group.
    #[error("owner {owner:?}: {reason}")]
    Owner { owner: String, reason: String },
    /// A path that is empty or not absolute.
    #[error("path {0:?}: not an absolute file path without ..")]
    Path(String),
    /// A file could not be read, created, written or renamed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A sysctl key that cannot name a file under /proc/sys.
    #[error("sysctl key {0:?}: not a valid key (dotted such as net.ipv4.ip_forward)")]
    SysctlKey(String),
    /// A sysctl value that is not a scalar or a list of scalars.
    #[error("value of {key} must be a string, number, boolean or list of them, not {kind}")]
    SysctlValue { key: String, kind: &'static str },
    /// A runcmd entry that is neither a string nor a list of scalars.
    #[error("not a string or a list of strings ({0})")]
    Command(&'static str),
    /// The config could not be loaded or a key did not have the expected form.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// A `mounts` entry that is not a list of 2 to 6 fields, or a bad field.
    #[error("{0}")]
    MountEntry(String),
    /// A device path, or a `LABEL=`/`UUID=` link, that does not exist.
    /// `detail` is empty or a parenthesized note (which link is missing).
    #[error("no such device{detail}")]
    NoDevice { detail: String },
    /// The mount namespace could not be entered.
    #[error("failed to enter the mount namespace {}: {source}", path.display())]
    Namespace {
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
    /// Something this crate does not do yet.
    #[error("not supported yet: {0}")]
    NotSupported(String),
    /// mount(2) failed (the reason in mount(8)'s words).
    #[error("{0}")]
    Mount(String),
    /// Type `auto`: no file system type in /proc/filesystems mounted it.
    #[error("no known file system type fits (tried {0})")]
    AutoType(String),
    /// A swap entry whose device or file holds no swap signature.
    #[error("{} is not a swap area (no SWAPSPACE2 signature at offset {offset}; run mkswap on it first)", path.display())]
    NoSwapSignature { path: PathBuf, offset: usize },
    /// swapon(2) failed.
    #[error("swapon: {0}")]
    Swap(String),
    /// A config entry did not deserialize.
    #[error("{0}")]
    Entry(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
