//! The connection to the engine.
//!
//! Most requests go through `bollard`, whose typed models are Docker's own. A
//! few go through [`Engine::raw`], a plain HTTP/1.1 request on a fresh unix
//! socket connection, because bollard cannot express them the way the docker
//! CLI sends them:
//! - `inspect` prints the engine's JSON as it is; a round trip through bollard's
//!   models would drop every field they do not know;
//! - `import` sends one `changes=` query parameter per change, as the docker CLI
//!   does (bollard joins them with newlines into one);
//! - `wait` must not time out (bollard applies its request timeout to the
//!   response head, which an engine may send only when the container exits),
//!   and bollard reports non-zero exit codes as errors.

use std::path::PathBuf;
use std::time::Duration;

use bollard::{ClientVersion, Docker};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::error::{Error, Result};

/// The API version this client speaks: Docker 20.10's, the oldest the engine serves.
pub const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// How long a plain request may take before the engine is considered hung.
/// Streaming requests (logs -f, exec, wait, pull, load) use [`Engine::streaming`].
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// A handle on the engine at one address.
#[derive(Clone)]
pub struct Engine {
    /// The address as the user gave it, for messages.
    pub host: String,
    socket: PathBuf,
    docker: Docker,
}

/// The body of a raw request.
pub enum RawBody {
    /// No body.
    Empty,
    /// A JSON or other small body.
    Full(Bytes),
    /// A streamed body (tar archives).
    Stream(BoxStream<'static, std::io::Result<Bytes>>),
}

/// Parses `-H`: `unix:///path` or a plain absolute path. Other schemes are refused.
pub fn socket_path(host: &str) -> Result<PathBuf> {
    if let Some(path) = host.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(Error::Usage(format!(
                "invalid host {host:?}: the socket path is empty"
            )));
        }
        return Ok(PathBuf::from(path));
    }
    if host.starts_with('/') {
        return Ok(PathBuf::from(host));
    }
    if let Some((scheme, _)) = host.split_once("://") {
        return Err(Error::NotSupported(format!(
            "the {scheme}:// scheme of {host} (use unix:///path)"
        )));
    }
    Err(Error::Usage(format!(
        "invalid host {host:?}: expected unix:///path/to/socket"
    )))
}

impl Engine {
    /// Prepares a connection to `host` (`unix:///path`). Nothing is sent yet;
    /// a missing socket is reported by the first request.
    pub fn new(host: &str) -> Result<Self> {
        let socket = socket_path(host)?;
        let path = socket.to_string_lossy().into_owned();
        let docker = if socket.exists() {
            Docker::connect_with_unix(&path, REQUEST_TIMEOUT_SECS, &API_VERSION)
                .map_err(|e| Error::from_bollard(e, host))?
        } else {
            return Err(Error::CannotConnect {
                host: host.to_string(),
            });
        };
        Ok(Engine {
            host: host.to_string(),
            socket,
            docker,
        })
    }

    /// The bollard client, with the normal request timeout.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// A bollard client without a practical timeout, for requests whose answer
    /// starts only when something happens (logs -f, exec, pull, load).
    pub fn streaming(&self) -> Docker {
        self.docker
            .clone()
            .with_timeout(Duration::from_secs(60 * 60 * 24 * 365))
    }

    /// Converts a bollard error, naming this engine's address when it cannot be reached.
    pub fn err(&self, e: bollard::errors::Error) -> Error {
        Error::from_bollard(e, &self.host)
    }

    /// Sends one request on a new connection and returns the status and the
    /// whole body. `path` is the API path with its query, without the version
    /// prefix (`/containers/x/json`).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: RawBody,
    ) -> Result<(StatusCode, Bytes)> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|_| Error::CannotConnect {
                host: self.host.clone(),
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::Engine(format!("http handshake: {e}")))?;
        let conn = tokio::spawn(conn);

        let uri = format!(
            "/v{}.{}{path}",
            API_VERSION.major_version, API_VERSION.minor_version
        );
        let builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::HOST, "system-docker");
        type Boxed = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;
        let request = match body {
            RawBody::Empty => builder.body(Boxed::new(
                Full::new(Bytes::new()).map_err(|never| match never {}),
            )),
            RawBody::Full(bytes) => builder
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Boxed::new(Full::new(bytes).map_err(|never| match never {}))),
            RawBody::Stream(stream) => builder
                .header(hyper::header::CONTENT_TYPE, "application/x-tar")
                .body(Boxed::new(StreamBody::new(
                    stream.map(|r| r.map(Frame::data)),
                ))),
        }
        .map_err(|e| Error::Engine(format!("cannot build request for {path}: {e}")))?;

        tracing::debug!(%path, "raw request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Error::Engine(format!("{path}: {e}")))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::Engine(format!("{path}: reading the answer: {e}")))?
            .to_bytes();
        conn.abort();
        tracing::debug!(%path, %status, body = %String::from_utf8_lossy(&bytes), "raw answer");
        if !status.is_success() {
            return Err(Error::Daemon {
                status: status.as_u16(),
                message: error_message(&bytes),
            });
        }
        Ok((status, bytes))
    }
}

/// The answer of [`Engine::hijack`].
pub enum Hijacked {
    /// The engine switched protocols (101): a raw two-way byte stream.
    Upgraded(TokioIo<hyper::upgrade::Upgraded>),
    /// The engine answered 200 with the output as the response body.
    Body(hyper::body::Incoming),
}

impl Engine {
    /// Sends a JSON request asking to take over the connection (`Upgrade: tcp`,
    /// as the docker CLI does for exec and attach). Engines either switch
    /// protocols or stream the output as the body; both are accepted.
    pub async fn hijack(&self, path: &str, json: Bytes) -> Result<Hijacked> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|_| Error::CannotConnect {
                host: self.host.clone(),
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::Engine(format!("http handshake: {e}")))?;
        tokio::spawn(conn.with_upgrades());
        let uri = format!(
            "/v{}.{}{path}",
            API_VERSION.major_version, API_VERSION.minor_version
        );
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(hyper::header::HOST, "system-docker")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::CONNECTION, "Upgrade")
            .header(hyper::header::UPGRADE, "tcp")
            .body(Full::new(json))
            .map_err(|e| Error::Engine(format!("cannot build request for {path}: {e}")))?;
        tracing::debug!(%path, "hijack request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Error::Engine(format!("{path}: {e}")))?;
        let status = response.status();
        tracing::debug!(%path, %status, "hijack answer");
        if status == StatusCode::SWITCHING_PROTOCOLS {
            let upgraded = hyper::upgrade::on(response)
                .await
                .map_err(|e| Error::Engine(format!("{path}: upgrade failed: {e}")))?;
            return Ok(Hijacked::Upgraded(TokioIo::new(upgraded)));
        }
        if status.is_success() {
            return Ok(Hijacked::Body(response.into_body()));
        }
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(Error::Daemon {
            status: status.as_u16(),
            message: error_message(&bytes),
        })
    }
}

/// The `message` of a Docker error body, or the body itself when it is not JSON.
pub fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Message {
        message: String,
    }
    match serde_json::from_slice::<Message>(body) {
        Ok(m) => m.message,
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    }
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved characters
/// stay as they are). Hand-written: a dozen lines, and the only place that needs it.
pub fn encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' | b':' | b'@' if keep_slash => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        assert_eq!(
            socket_path("unix:///var/run/system-docker.sock").unwrap(),
            PathBuf::from("/var/run/system-docker.sock")
        );
        assert_eq!(
            socket_path("/tmp/x.sock").unwrap(),
            PathBuf::from("/tmp/x.sock")
        );
        assert!(matches!(
            socket_path("tcp://127.0.0.1:2375"),
            Err(Error::NotSupported(_))
        ));
        assert!(matches!(socket_path("unix://"), Err(Error::Usage(_))));
        assert!(matches!(socket_path("x.sock"), Err(Error::Usage(_))));
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_message(br#"{"message":"No such image: x:latest"}"#),
            "No such image: x:latest"
        );
        assert_eq!(error_message(b"page not found\n"), "page not found");
    }

    #[test]
    fn encoding() {
        assert_eq!(encode("CMD [\"a b\"]", false), "CMD%20%5B%22a%20b%22%5D");
        assert_eq!(encode("127.0.0.1:5000/x:1", true), "127.0.0.1:5000/x:1");
        assert_eq!(encode("a/b", false), "a%2Fb");
    }
}
