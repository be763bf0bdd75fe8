//! Helpers shared by the integration tests: HTTP servers on 127.0.0.1.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use datasource::FetchOptions;

/// What a test server answers: status and body for a method, path and headers.
pub type Handler = dyn Fn(&Method, &str, &HeaderMap) -> (StatusCode, Vec<u8>) + Send + Sync;

/// Serves `handler` on an ephemeral port of 127.0.0.1 until the test's
/// runtime ends; returns the base URL.
pub async fn serve(
    handler: impl Fn(&Method, &str, &HeaderMap) -> (StatusCode, Vec<u8>) + Send + Sync + 'static,
) -> String {
    let handler: Arc<Handler> = Arc::new(handler);
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
        let handler = Arc::clone(&handler);
        async move {
            let (status, body) = handler(&method, uri.path(), &headers);
            Response::builder()
                .status(status)
                .body(Body::from(body))
                .expect("a valid response")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A server that accepts connections and never answers; returns its base URL.
pub async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    format!("http://{addr}")
}

pub fn ok(body: impl Into<Vec<u8>>) -> (StatusCode, Vec<u8>) {
    (StatusCode::OK, body.into())
}

pub fn status(code: StatusCode) -> (StatusCode, Vec<u8>) {
    (code, Vec::new())
}

pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Options for tests: quick retries, and no device scans.
pub fn options(timeout: Duration) -> FetchOptions {
    let mut options = FetchOptions::new(timeout);
    options.first_retry = Duration::from_millis(50);
    options.max_retry = Duration::from_millis(200);
    options.scan_labels = false;
    options.by_label_dir = "/nonexistent/by-label".into();
    options
}
