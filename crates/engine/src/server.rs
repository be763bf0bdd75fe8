//! Serving the API on a unix socket.

use crate::api;
use crate::engine::Engine;
use axum::extract::Request;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower::ServiceExt as _;

/// Binds the socket, replacing a stale one (a socket file nobody listens on),
/// and refusing to take over a socket another daemon serves.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is served by another daemon", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Serves the API until `shutdown` resolves. Containers keep running after.
pub async fn serve(
    engine: Arc<Engine>,
    listener: tokio::net::UnixListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = api::router(engine);
    let app = tower::service_fn(move |req: Request| {
        let router = router.clone();
        async move {
            tracing::debug!("{} {}", req.method(), req.uri());
            router.oneshot(api::strip_version(req)).await
        }
    });
    axum::serve(
        listener,
        axum::ServiceExt::<Request>::into_make_service(app),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The socket path of a `-H unix:///path` address.
pub fn socket_path(host: &str) -> Result<PathBuf, String> {
    match host.strip_prefix("unix://") {
        Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
        Some(_) => Err(format!(
            "invalid host {host:?}: a unix socket path must be absolute"
        )),
        None if host.starts_with('/') => Ok(PathBuf::from(host)),
        None => Err(format!(
            "invalid host {host:?}: the system engine listens on unix sockets only (unix:///path)"
        )),
    }
}
