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
use axum::routing::{delete, get, post};
use axum::Router;
use std::collections::HashMap;
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
pub struct Query(pub HashMap<String, String>);

impl Query {
    pub fn from_uri(uri: &axum::http::Uri) -> Self {
        let map = uri.query().map(form_urlencoded).unwrap_or_default();
        Query(map)
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.0.get(key).map(|s| s.as_str()),
            Some("1") | Some("true") | Some("True") | Some("yes")
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
    }
}

/// Decodes `a=1&b=x%20y` (as application/x-www-form-urlencoded).
fn form_urlencoded(q: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    match std::str::from_utf8(&bytes[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
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
        let q = form_urlencoded("fromImage=127.0.0.1%3A5000%2Fbusybox&tag=latest&x=a+b&bad=%zz");
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
