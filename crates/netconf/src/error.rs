//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can stop `ros netconf`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The merged config could not be read.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// A key of `rancher.network` holds a value netconf cannot use.
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    /// A netlink request failed.
    #[error("failed to {what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The netlink socket could not be opened.
    #[error("failed to open a netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    /// A file (resolv.conf, dhcpcd's config, the hook) could not be written
    /// or read.
    #[error("failed to {what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// dhcpcd is not installed.
    #[error("dhcpcd not found in PATH or at /usr/sbin/dhcpcd: DHCP needs it (interfaces: {0})")]
    NoDhcpcd(String),
    /// dhcpcd could not be started.
    #[error("failed to start {}: {source}", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `--once`: dhcpcd gave up before an interface got a lease.
    #[error("no dhcp lease on {interfaces} within {timeout}s (dhcpcd exited with {status})")]
    NoLease {
        interfaces: String,
        timeout: u64,
        status: String,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An [`Error::Netlink`]: the kernel's errno when it gave one ("file
/// exists"), rtnetlink's message otherwise.
pub(crate) fn netlink(what: impl Into<String>, e: rtnetlink::Error) -> Error {
    let source = match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => std::io::Error::other(other.to_string()),
    };
    Error::Netlink {
        what: what.into(),
        source,
    }
}

/// An [`Error::Invalid`] for `rancher.network.<key>`.
pub(crate) fn invalid(key: impl std::fmt::Display, reason: impl Into<String>) -> Error {
    Error::Invalid {
        key: format!("rancher.network.{key}"),
        reason: reason.into(),
    }
}
