//! The one error type of the client, and how each kind is shown to the user.

use std::io;

/// What can go wrong in a `system-docker` command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket is missing or refuses connections.
    #[error("cannot connect to the system engine at {host}: is system-dockerd running?")]
    CannotConnect {
        /// The address as given (`unix:///...`).
        host: String,
    },

    /// The engine answered with an error status; `message` is its JSON `message`.
    /// Shown exactly as the docker CLI shows it.
    #[error("Error response from daemon: {message}")]
    Daemon {
        /// HTTP status code of the answer.
        status: u16,
        /// The engine's message.
        message: String,
    },

    /// An object named on the command line exists neither as a container nor as an image.
    /// Shown exactly as the docker CLI shows it.
    #[error("Error: No such object: {0}")]
    NoSuchObject(String),

    /// An error reported inside a streamed answer (pull, load, import); shown
    /// bare, as docker does.
    #[error("{0}")]
    Stream(String),

    /// A flag or argument value is malformed.
    #[error("{0}")]
    Usage(String),

    /// A feature that the client does not implement.
    #[error("{0} is not supported yet")]
    NotSupported(String),

    /// A local file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },

    /// A local file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },

    /// Writing our own output failed (closed pipe and the like).
    #[error("cannot write output: {0}")]
    Output(#[source] io::Error),

    /// Any other failure of a request to the engine (bad answer, timeout, ...).
    #[error("request to the system engine failed: {0}")]
    Engine(String),
}

impl Error {
    /// Classifies a bollard error: daemon answers keep their message, connection
    /// failures become [`Error::CannotConnect`].
    pub fn from_bollard(err: bollard::errors::Error, host: &str) -> Self {
        use bollard::errors::Error as B;
        match err {
            B::DockerResponseServerError {
                status_code,
                message,
            } => Error::Daemon {
                status: status_code,
                message,
            },
            B::DockerStreamError { error } => Error::Stream(error),
            B::DockerContainerWaitError { error, code } => Error::Daemon {
                status: 200,
                message: if error.is_empty() {
                    format!("container wait failed with code {code}")
                } else {
                    error
                },
            },
            B::SocketNotFoundError(_) => Error::CannotConnect {
                host: host.to_string(),
            },
            B::HyperLegacyError { err } if err.is_connect() => Error::CannotConnect {
                host: host.to_string(),
            },
            B::IOError { err }
                if matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::NotFound
                        | io::ErrorKind::PermissionDenied
                ) =>
            {
                Error::CannotConnect {
                    host: host.to_string(),
                }
            }
            B::RequestTimeoutError => {
                Error::Engine("the system engine did not answer in time".to_string())
            }
            other => Error::Engine(other.to_string()),
        }
    }

    /// Whether the engine said that the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Daemon { status: 404, .. })
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_errors_read_like_docker() {
        let e = Error::from_bollard(
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                message: "No such container: web".into(),
            },
            "unix:///x",
        );
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "Error response from daemon: No such container: web"
        );
    }

    #[test]
    fn missing_socket_names_the_host() {
        let e = Error::from_bollard(
            bollard::errors::Error::SocketNotFoundError("/var/run/system-docker.sock".into()),
            "unix:///var/run/system-docker.sock",
        );
        assert_eq!(
            e.to_string(),
            "cannot connect to the system engine at unix:///var/run/system-docker.sock: \
             is system-dockerd running?"
        );
    }
}
