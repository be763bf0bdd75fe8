//! The Docker Engine API over HTTP/JSON on a unix socket.
//!
//! Paths and field names are Docker's (API 1.41 and later), so that the real
//! `docker` CLI and Docker SDKs work against the system engine. Every path may
//! carry a version prefix (`/v1.41/containers/json`); it is stripped before
//! routing. What the engine does not implement answers with Docker's error
//! form, `{"message": "..."}`, naming what is not supported.

mod containers;
mod images;
mod system;

use crate::engine::Engine;
use crate::error::Error;
use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::Router;
use std::sync::Arc;

/// The API version the engine speaks; clients negotiate down from theirs.
pub const API_VERSION: &str = "1.43";
pub const MIN_API_VERSION: &str = "1.24";

pub type AppState = Arc<Engine>;

/// The routes, without the version prefix (see [`strip_version`]).
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/containers/json", get(containers::list))
        .route("/containers/create", post(containers::create))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/exec", post(containers::exec_create))
        .route(
            "/containers/{id}/archive",
            put(containers::put_archive)
                .get(containers::get_archive)
                .head(containers::stat_archive_path),
        )
        .route("/containers/{id}", delete(containers::remove))
        .route("/exec/{id}/start", post(containers::exec_start))
        .route("/exec/{id}/json", get(containers::exec_inspect))
        .route("/images/json", get(images::list))
        .route("/images/load", post(images::load))
        .route("/images/create", post(images::create))
        .route(
            "/images/{*rest}",
            get(images::get_dispatch)
                .post(images::post_dispatch)
                .delete(images::remove),
        )
        .fallback(not_supported)
        .with_state(engine)
}

/// Removes a leading `/vX.Y` from the request path, before routing.
pub fn strip_version<B>(mut req: Request<B>) -> Request<B> {
    let uri = req.uri().clone();
    let path = uri.path();
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(slash) = rest.find('/') {
            let (ver, tail) = rest.split_at(slash);
            if !ver.is_empty() && ver.chars().all(|c| c.is_ascii_digit() || c == '.') {
                let new = match uri.query() {
                    Some(q) => format!("{tail}?{q}"),
                    None => tail.to_string(),
                };
                if let Ok(u) = new.parse() {
                    *req.uri_mut() = u;
                }
            }
        }
    }
    req
}

async fn not_supported(req: Request<Body>) -> Response<Body> {
    Error::NotSupported(format!("{} {}", req.method(), req.uri().path())).into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response<Body> {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::NOT_MODIFIED {
            return status.into_response();
        }
        if status.is_server_error() {
            tracing::warn!("{self}");
        }
        json_response(status, &serde_json::json!({ "message": self.to_string() }))
    }
}

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(value.to_string()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Query parameters as Docker sends them ("1", "true", "0", "false", "").
/// A key may repeat (`changes` of an import); [`Query::get`] gives the last.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn from_uri(uri: &axum::http::Uri) -> Self {
        Query(form_urlencoded(uri.query().unwrap_or("")))
    }

    fn last(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.last(key), Some("1" | "true" | "True" | "yes"))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.last(key).filter(|s| !s.is_empty())
    }

    /// Every value of a key that may repeat, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Decodes `a=1&b=x%20y` (application/x-www-form-urlencoded); undecodable
/// input yields what could be read, as Docker's Go server does.
fn form_urlencoded(q: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(q).unwrap_or_default()
}

/// A request body as a blocking reader, for work done off the async
/// runtime (image loads, archive extraction).
pub(crate) fn body_reader(body: Body) -> impl std::io::Read + Send + 'static {
    use futures_util::TryStreamExt;
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream))
}

/// Parses a JSON request body; a malformed body is a 400 that says where.
pub fn parse_body<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidArgument(format!("invalid JSON in request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix_is_stripped() {
        let req = Request::builder()
            .uri("/v1.41/containers/json?all=1")
            .body(())
            .unwrap();
        assert_eq!(
            strip_version(req).uri().to_string(),
            "/containers/json?all=1"
        );
        let req = Request::builder().uri("/volumes").body(()).unwrap();
        assert_eq!(strip_version(req).uri().to_string(), "/volumes");
    }

    #[test]
    fn query_decodes_percent_and_plus() {
        let q: std::collections::HashMap<_, _> =
            form_urlencoded("fromImage=127.0.0.1%3A5000%2Fbusybox&tag=latest&x=a+b&bad=%zz")
                .into_iter()
                .collect();
        assert_eq!(q["fromImage"], "127.0.0.1:5000/busybox");
        assert_eq!(q["tag"], "latest");
        assert_eq!(q["x"], "a b");
        assert_eq!(q["bad"], "%zz");
    }

    #[test]
    fn malformed_body_is_a_clear_400() {
        let err = parse_body::<serde_json::Value>(b"{bad json").unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("invalid JSON"), "{err}");
    }
}
