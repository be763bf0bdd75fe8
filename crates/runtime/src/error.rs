//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while preparing, running or entering a container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error("invalid user {user:?}: {reason}")]
    InvalidUser { user: String, reason: String },
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("invalid mount propagation {propagation:?} for {destination}")]
    InvalidPropagation {
        propagation: String,
        destination: String,
    },
    #[error("invalid device {path}: {reason}")]
    InvalidDevice { path: PathBuf, reason: String },
    #[error("invalid container config: {0}")]
    InvalidConfig(String),
    #[error("failed to build the runtime spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("failed to mount overlay on {target}: {source}")]
    MountOverlay {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error(
        "failed to mount overlay on {target}: {layers} layers make the mount options too long"
    )]
    TooManyLayers { target: PathBuf, layers: usize },
    #[error("failed to unmount {target}: {source}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Sys {
        context: String,
        #[source]
        source: nix::Error,
    },
    /// An error from libcontainer, rendered with its whole chain of causes
    /// (libcontainer's outer errors alone often say little, e.g. "failed to
    /// create container").
    #[error("{context}: {message}")]
    Container {
        context: &'static str,
        message: String,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn sys(context: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            context: context.into(),
            source,
        }
    }

    /// Wraps a libcontainer error, keeping every cause in the message.
    pub(crate) fn container(context: &'static str, err: &dyn std::error::Error) -> Self {
        let chain = error_chain(err);
        // libcontainer's outermost error often says what `context` says.
        let message = match chain.strip_prefix(context) {
            Some(rest) if rest.starts_with(": ") => rest[2..].to_string(),
            _ => chain,
        };
        Error::Container { context, message }
    }

    /// The exit status Docker reports when a container fails to start this
    /// way: 127 when the command was not found, 126 when it (or its user)
    /// could not be used, 125 for every other failure of the runtime.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::UnknownUser(_) | Error::UnknownGroup(_) | Error::InvalidUser { .. } => 126,
            Error::Container { message, .. } => {
                let m = message.to_ascii_lowercase();
                if m.contains("not found in $path")
                    || m.contains("enoent")
                    || m.contains("no such file or directory")
                {
                    127
                } else if m.contains("permission")
                    || m.contains("eacces")
                    || m.contains("is a directory")
                    || m.contains("exec format error")
                {
                    126
                } else {
                    125
                }
            }
            _ => 125,
        }
    }
}

/// "outer: cause: root cause", skipping causes already contained in the text
/// so far (many libcontainer errors repeat their source in their message).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Msg(String, #[source] Option<Box<Msg>>);

    fn chain(outer: &str, inner: &str) -> Msg {
        Msg(
            outer.to_string(),
            Some(Box::new(Msg(inner.to_string(), None))),
        )
    }

    #[test]
    fn container_errors_keep_causes_once() {
        let e = Error::container(
            "failed to start container",
            &chain("failed to start container", "boom"),
        );
        assert_eq!(e.to_string(), "failed to start container: boom");
        // A cause already in the message is not repeated.
        let e = Error::container("x", &chain("outer: inner", "inner"));
        assert_eq!(e.to_string(), "x: outer: inner");
    }

    #[test]
    fn exit_codes_follow_docker() {
        let c = |m: &str| Error::Container {
            context: "failed to create container",
            message: m.to_string(),
        };
        let cases = [
            (c("executable 'nope' not found in $PATH"), 127),
            (
                c("failed to execvp: ENOENT: No such file or directory"),
                127,
            ),
            (
                c("executable 'x' at path '/x' does not have correct permissions"),
                126,
            ),
            (c("cgroup: device or resource busy"), 125),
            (Error::UnknownUser("bob".to_string()), 126),
            (Error::InvalidConfig("no command given".to_string()), 125),
        ];
        for (e, code) in cases {
            assert_eq!(e.exit_code(), code, "{e}");
        }
    }
}
