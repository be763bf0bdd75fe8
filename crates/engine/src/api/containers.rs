//! `/containers/...` and `/exec/...`.

use super::{body_reader, json_response, parse_body, AppState, Query};
use crate::engine::{Container, WaitCondition};
use crate::error::Error;
use crate::logs::{self, LogOptions};
use crate::record::{Record, Status};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use bollard_stubs::models::{ContainerCreateBody, ExecConfig};
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

type ApiResult = Result<Response<Body>, Error>;

pub async fn create(State(engine): State<AppState>, uri: Uri, body: Bytes) -> ApiResult {
    let q = Query::from_uri(&uri);
    let body: ContainerCreateBody = parse_body(&body)?;
    let id = engine.create(q.get("name"), body)?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "Id": id, "Warnings": [] }),
    ))
}

pub async fn start(State(engine): State<AppState>, Path(id): Path<String>) -> ApiResult {
    engine.start(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn stop(State(engine): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult {
    let q = Query::from_uri(&uri);
    let t = q.get("t").and_then(|t| t.parse().ok());
    engine.stop(&id, t, q.get("signal")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn kill(State(engine): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult {
    let q = Query::from_uri(&uri);
    engine.kill(&id, q.get("signal")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn restart(
    State(engine): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult {
    let q = Query::from_uri(&uri);
    let t = q.get("t").and_then(|t| t.parse().ok());
    engine.restart(&id, t).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn remove(State(engine): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult {
    let q = Query::from_uri(&uri);
    if q.flag("link") {
        return Err(Error::NotSupported("removing links (--link)".into()));
    }
    engine.remove(&id, q.flag("force"), q.flag("v")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn wait(State(engine): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult {
    let q = Query::from_uri(&uri);
    let condition = match q.get("condition") {
        None | Some("not-running") => WaitCondition::NotRunning,
        Some("next-exit") => WaitCondition::NextExit,
        Some("removed") => WaitCondition::Removed,
        Some(other) => {
            return Err(Error::InvalidArgument(format!(
                "invalid condition: \"{other}\""
            )))
        }
    };
    let c = engine.get(&id)?;
    // Docker answers the headers at once and the body when the condition
    // holds: clients wait for the headers before they start the container.
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    // hyper sends the head with the first body bytes: a space (which JSON
    // decoders skip) gets the head out now.
    let _ = tx.send(Bytes::from_static(b" ")).await;
    tokio::spawn(async move {
        let body = match engine.wait(&c.id, condition).await {
            Ok(code) => {
                let err = c.snapshot().state.error;
                let error = if err.is_empty() {
                    Value::Null
                } else {
                    json!({ "Message": err })
                };
                json!({ "StatusCode": code, "Error": error })
            }
            Err(e) => json!({ "StatusCode": -1, "Error": { "Message": e.to_string() } }),
        };
        let _ = tx.send(Bytes::from(format!("{body}\n"))).await;
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(stream_body(rx))
        .unwrap_or_default())
}

/// `PUT /containers/{id}/archive?path=DIR`: the body, a tar archive (maybe
/// compressed), extracted into DIR of the container (see [`crate::archive`]).
pub async fn put_archive(
    State(engine): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::from_uri(req.uri());
    let path = q.get("path").unwrap_or_default().to_string();
    let options = crate::archive::PutOptions {
        no_overwrite_dir_non_dir: q.flag("noOverwriteDirNonDir"),
        copy_uid_gid: q.flag("copyUIDGID"),
    };
    engine
        .put_archive(&id, &path, options, body_reader(req.into_body()))
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// The header of `HEAD` and `GET /containers/{id}/archive` that says what
/// is at the path (see [`crate::archive::PathStat`]).
const PATH_STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// `HEAD /containers/{id}/archive?path=PATH`: what is at PATH in the
/// container, in the header only (`docker cp` asks before it copies).
pub async fn stat_archive_path(
    State(engine): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult {
    let q = Query::from_uri(&uri);
    let stat = engine
        .stat_path(&id, q.get("path").unwrap_or_default())
        .await?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(PATH_STAT_HEADER, stat.header_value())
        .body(Body::empty())
        .unwrap_or_default())
}

/// `GET /containers/{id}/archive?path=PATH`: a tar archive of PATH in the
/// container, streamed as it is made (see [`crate::archive`]).
pub async fn get_archive(
    State(engine): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult {
    let q = Query::from_uri(&uri);
    let (stat, rx) = engine
        .get_archive(&id, q.get("path").unwrap_or_default())
        .await?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-tar")
        .header(PATH_STAT_HEADER, stat.header_value())
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .unwrap_or_default())
}

pub async fn inspect(State(engine): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let c = engine.get(&id)?;
    Ok(json_response(StatusCode::OK, &inspect_json(&c)))
}

fn command_line(rec: &Record) -> String {
    std::iter::once(rec.path.as_str())
        .chain(rec.args.iter().map(|s| s.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn network_mode(rec: &Record) -> String {
    match rec.host_config.network_mode.as_deref() {
        Some("host") => "host".into(),
        _ => "none".into(),
    }
}

fn mounts_json(rec: &Record) -> Value {
    Value::Array(
        rec.mounts
            .iter()
            .map(|m| {
                json!({
                    "Type": m.kind,
                    "Name": m.name,
                    "Source": m.source,
                    "Destination": m.destination,
                    "Driver": if m.kind == "volume" { "local" } else { "" },
                    "Mode": if m.read_only { "ro" } else { "" },
                    "RW": !m.read_only,
                    "Propagation": if m.propagation.is_empty() && m.kind == "bind" { "rprivate" } else { m.propagation.as_str() },
                })
            })
            .collect(),
    )
}

fn inspect_json(c: &Container) -> Value {
    let rec = c.snapshot();
    let st = &rec.state;
    let zero = "0001-01-01T00:00:00Z";
    let mut config = serde_json::to_value(&rec.config).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut config {
        // The image as the user named it, as Docker shows it.
        map.insert("Image".into(), json!(rec.image));
    }
    let mut host_config = serde_json::to_value(&rec.host_config).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut host_config {
        map.insert("NetworkMode".into(), json!(network_mode(&rec)));
    }
    json!({
        "Id": rec.id,
        "Created": rec.created,
        "Path": rec.path,
        "Args": rec.args,
        "State": {
            "Status": st.status.as_str(),
            "Running": st.status == Status::Running || st.status == Status::Restarting,
            "Paused": false,
            "Restarting": st.status == Status::Restarting,
            "OOMKilled": st.oom_killed,
            "Dead": st.status == Status::Dead,
            "Pid": if st.status == Status::Running { st.pid } else { 0 },
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": if st.started_at.is_empty() { zero } else { st.started_at.as_str() },
            "FinishedAt": if st.finished_at.is_empty() { zero } else { st.finished_at.as_str() },
        },
        "Image": rec.image_id,
        "ResolvConfPath": c.dir.join("resolv.conf"),
        "HostnamePath": c.dir.join("hostname"),
        "HostsPath": c.dir.join("hosts"),
        "LogPath": c.log_path(),
        "Name": format!("/{}", rec.name),
        "RestartCount": st.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": host_config,
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "UpperDir": c.dir.join("upper"),
                "WorkDir": c.dir.join("work"),
                "MergedDir": c.dir.join("rootfs"),
            }
        },
        "Mounts": mounts_json(&rec),
        "Config": config,
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "HairpinMode": false,
            "Ports": {},
            "SandboxKey": "",
            "Gateway": "",
            "IPAddress": "",
            "IPPrefixLen": 0,
            "MacAddress": "",
            "Networks": { network_mode(&rec): {
                "NetworkID": network_mode(&rec), "EndpointID": "", "Gateway": "", "IPAddress": "",
                "IPPrefixLen": 0, "MacAddress": ""
            }}
        }
    })
}

/// Docker's human "Up 5 minutes" / "Exited (0) 2 hours ago".
fn status_line(rec: &Record) -> String {
    let now = chrono::Utc::now();
    let since = |t: &str| {
        crate::fsutil::parse_time(t)
            .map(|t| human_duration((now - t).to_std().unwrap_or_default()))
            .unwrap_or_default()
    };
    match rec.state.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", since(&rec.state.started_at)),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            rec.state.exit_code,
            since(&rec.state.finished_at)
        ),
        Status::Exited => {
            if rec.state.finished_at.is_empty() {
                format!("Exited ({})", rec.state.exit_code)
            } else {
                format!(
                    "Exited ({}) {} ago",
                    rec.state.exit_code,
                    since(&rec.state.finished_at)
                )
            }
        }
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
    }
}

/// As Docker's `units.HumanDuration`.
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let m = s / 60;
    if m == 1 {
        return "About a minute".into();
    }
    if m < 60 {
        return format!("{m} minutes");
    }
    let h = (s as f64 / 3600.0).round() as u64;
    if h == 1 {
        return "About an hour".into();
    }
    if h < 48 {
        return format!("{h} hours");
    }
    if h < 24 * 7 * 2 {
        return format!("{} days", h / 24);
    }
    if h < 24 * 30 * 2 {
        return format!("{} weeks", h / 24 / 7);
    }
    if h < 24 * 365 * 2 {
        return format!("{} months", h / 24 / 30);
    }
    format!("{} years", h / 24 / 365)
}

/// Docker's `filters` query parameter: `{"label":{"a=b":true}}` or `{"label":["a=b"]}`.
fn filters(q: &Query) -> Result<Vec<(String, String)>, Error> {
    let Some(raw) = q.get("filters") else {
        return Ok(Vec::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| Error::InvalidArgument(format!("invalid filters: {e}")))?;
    let mut out = Vec::new();
    if let Value::Object(map) = v {
        for (k, vals) in map {
            match vals {
                Value::Object(m) => out.extend(m.keys().map(|v| (k.clone(), v.clone()))),
                Value::Array(a) => out.extend(
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .map(|v| (k.clone(), v.to_string())),
                ),
                _ => {}
            }
        }
    }
    Ok(out)
}

fn matches_filter(rec: &Record, key: &str, value: &str) -> Result<bool, Error> {
    Ok(match key {
        "id" => rec.id.starts_with(value),
        "name" => rec.name.contains(value.trim_start_matches('/')),
        "status" => rec.state.status.as_str() == value,
        "label" => {
            let labels = rec.config.labels.clone().unwrap_or_default();
            match value.split_once('=') {
                Some((k, v)) => labels.get(k).map(|x| x == v).unwrap_or(false),
                None => labels.contains_key(value),
            }
        }
        "ancestor" => rec.image == value || rec.image_id.contains(value),
        other => return Err(Error::NotSupported(format!("the filter \"{other}\""))),
    })
}

pub async fn list(State(engine): State<AppState>, uri: Uri) -> ApiResult {
    let q = Query::from_uri(&uri);
    let all = q.flag("all");
    let filters = filters(&q)?;
    let mut out = Vec::new();
    for c in engine.list() {
        let rec = c.snapshot();
        if !all && !rec.is_running() && !filters.iter().any(|(k, _)| k == "status") {
            continue;
        }
        let mut keep = true;
        for (k, v) in &filters {
            keep &= matches_filter(&rec, k, v)?;
        }
        if !keep {
            continue;
        }
        let created = crate::fsutil::parse_time(&rec.created)
            .map(|t| t.timestamp())
            .unwrap_or(0);
        out.push(json!({
            "Id": rec.id,
            "Names": [format!("/{}", rec.name)],
            "Image": rec.image,
            "ImageID": rec.image_id,
            "Command": command_line(&rec),
            "Created": created,
            "Ports": [],
            "Labels": rec.config.labels.clone().unwrap_or_default(),
            "State": rec.state.status.as_str(),
            "Status": status_line(&rec),
            "HostConfig": {"NetworkMode": network_mode(&rec)},
            "NetworkSettings": {"Networks": {}},
            "Mounts": mounts_json(&rec),
        }));
    }
    Ok(json_response(StatusCode::OK, &Value::Array(out)))
}

fn log_options(q: &Query) -> LogOptions {
    LogOptions {
        stdout: q.flag("stdout"),
        stderr: q.flag("stderr"),
        follow: q.flag("follow"),
        tail: q.get("tail").and_then(|t| t.parse().ok()),
        timestamps: q.flag("timestamps"),
        since: q
            .get("since")
            .and_then(|s| s.split('.').next())
            .and_then(|s| s.parse().ok())
            .filter(|s| *s > 0),
    }
}

fn stream_body(rx: mpsc::Receiver<Bytes>) -> Body {
    let stream =
        tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>);
    Body::from_stream(stream)
}

pub async fn logs(State(engine): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult {
    let q = Query::from_uri(&uri);
    let c = engine.get(&id)?;
    let opts = log_options(&q);
    if !opts.stdout && !opts.stderr {
        return Err(Error::InvalidArgument(
            "Bad parameters: you must choose at least one stream".into(),
        ));
    }
    let rx = logs::stream(c, opts);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(
            header::CONTENT_TYPE,
            "application/vnd.docker.multiplexed-stream",
        )
        .body(stream_body(rx))
        .unwrap_or_default())
}

/// Answers a request that asks to take over the connection (`Upgrade: tcp`)
/// with 101 and hands the raw connection to `run`; a request that does not
/// ask for it gets the same frames as a streamed 200 body.
fn hijack<F, Fut>(mut req: Request, run: F) -> Response<Body>
where
    F: FnOnce(mpsc::Sender<Bytes>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let wants_upgrade = req.headers().get(header::UPGRADE).is_some();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(run(tx));
    if !wants_upgrade {
        return Response::builder()
            .status(StatusCode::OK)
            .header(
                header::CONTENT_TYPE,
                "application/vnd.docker.multiplexed-stream",
            )
            .body(stream_body(rx))
            .unwrap_or_default();
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("connection upgrade failed: {e}");
                return;
            }
        };
        let mut io = TokioIo::new(upgraded);
        let mut rx = rx;
        let mut sink = [0u8; 512];
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(b) => {
                        if io.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                // The client may half-close or send nothing: drain and ignore.
                n = io.read(&mut sink) => {
                    if n.is_err() {
                        break;
                    }
                    if matches!(n, Ok(0)) {
                        // Write side stays open until the output ends.
                        while let Some(b) = rx.recv().await {
                            if io.write_all(&b).await.is_err() {
                                break;
                            }
                        }
                        break;
                    }
                }
            }
        }
        let _ = io.flush().await;
        let _ = io.shutdown().await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(
            header::CONTENT_TYPE,
            "application/vnd.docker.multiplexed-stream",
        )
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .body(Body::empty())
        .unwrap_or_default()
}

/// `docker attach` / the attach of `docker run` without -d: the container's
/// output from now on, until it stops. Input is not supported.
pub async fn attach(
    State(engine): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::from_uri(req.uri());
    let c = engine.get(&id)?;
    if q.flag("stdin") && !q.flag("stdout") && !q.flag("stderr") {
        return Err(Error::NotSupported("attaching stdin".into()));
    }
    if q.flag("logs") {
        return Err(Error::NotSupported(
            "attach with logs=1 (use docker logs)".into(),
        ));
    }
    let opts = LogOptions {
        stdout: q.flag("stdout"),
        stderr: q.flag("stderr"),
        follow: true,
        // Everything from the start of the container's current run.
        since: None,
        tail: None,
        timestamps: false,
    };
    let skip_existing = c.snapshot().state.status == Status::Running;
    // Counted from now, so that an auto-remove waits for this client.
    let guard = AttachGuard::new(c.clone());
    Ok(hijack(req, move |tx| async move {
        let _guard = guard;
        let mut opts = opts;
        if skip_existing {
            opts.since = Some(chrono::Utc::now().timestamp());
        }
        // Wait for the container to start if it is not running yet (docker
        // run attaches first, then starts).
        let mut changes = c.subscribe();
        let start = tokio::time::Instant::now();
        while !matches!(c.snapshot().state.status, Status::Running) && !c.is_removed() {
            if start.elapsed() > std::time::Duration::from_secs(60) {
                return;
            }
            if tokio::time::timeout(std::time::Duration::from_millis(200), changes.changed())
                .await
                .is_ok_and(|r| r.is_err())
            {
                return;
            }
            if c.snapshot().state.status == Status::Exited
                && !c.snapshot().state.finished_at.is_empty()
            {
                break;
            }
        }
        let mut rx = logs::stream(c, opts);
        while let Some(b) = rx.recv().await {
            if tx.send(b).await.is_err() {
                return;
            }
        }
    }))
}

/// Counts an attached client for as long as it lives.
struct AttachGuard(std::sync::Arc<Container>);

impl AttachGuard {
    fn new(c: std::sync::Arc<Container>) -> Self {
        c.attached.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        AttachGuard(c)
    }
}

impl Drop for AttachGuard {
    fn drop(&mut self) {
        self.0
            .attached
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

pub async fn exec_create(
    State(engine): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let config: ExecConfig = parse_body(&body)?;
    let exec_id = engine.exec_create(&id, config)?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "Id": exec_id }),
    ))
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ExecStartBody {
    #[serde(rename = "Detach")]
    detach: bool,
    #[serde(rename = "Tty")]
    tty: bool,
}

pub async fn exec_start(
    State(engine): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| Error::InvalidArgument(format!("cannot read request body: {e}")))?;
    let start: ExecStartBody = parse_body(&bytes)?;
    if start.tty {
        return Err(Error::NotSupported("a terminal for exec (-t)".into()));
    }
    let running = engine.exec_start(&id)?;
    if start.detach {
        tokio::spawn(async move {
            let mut running = running;
            drop(running.child.stdout.take());
            drop(running.child.stderr.take());
            running.wait().await;
        });
        return Ok(StatusCode::OK.into_response());
    }
    let req = Request::from_parts(parts, Body::empty());
    Ok(hijack(req, move |tx| pump_exec(running, tx)))
}

async fn pump_exec(mut running: crate::exec::RunningExec, tx: mpsc::Sender<Bytes>) {
    let out = running.child.stdout.take();
    let err = running.child.stderr.take();
    let copy = |stream: u8, pipe: Option<tokio::process::ChildStdout>, tx: mpsc::Sender<Bytes>| async move {
        let Some(mut pipe) = pipe else { return };
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 || tx.send(logs::frame(stream, &buf[..n])).await.is_err() {
                break;
            }
        }
    };
    let err_task = {
        let tx = tx.clone();
        async move {
            let Some(mut pipe) = err else { return };
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 || tx.send(logs::frame(logs::STDERR, &buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    };
    tokio::join!(copy(logs::STDOUT, out, tx.clone()), err_task);
    // Record the exit code before the client sees the end of the stream: it
    // asks for the exit code right after.
    running.wait().await;
    drop(tx);
}

pub async fn exec_inspect(State(engine): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let inst = engine.exec_get(&id)?;
    let st = inst.state();
    let cfg = &inst.config;
    let cmd = cfg.cmd.clone().unwrap_or_default();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "ID": inst.id,
            "Running": st.running,
            "ExitCode": st.exit_code,
            "ProcessConfig": {
                "tty": false,
                "entrypoint": cmd.first().cloned().unwrap_or_default(),
                "arguments": cmd.iter().skip(1).collect::<Vec<_>>(),
                "privileged": cfg.privileged.unwrap_or(false),
                "user": cfg.user.clone().unwrap_or_default(),
            },
            "OpenStdin": false,
            "OpenStderr": cfg.attach_stderr.unwrap_or(false),
            "OpenStdout": cfg.attach_stdout.unwrap_or(false),
            "CanRemove": false,
            "ContainerID": inst.container_id,
            "DetachKeys": "",
            "Pid": st.pid,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn human_durations_read_like_docker() {
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(Duration::from_secs(5)), "5 seconds");
        assert_eq!(human_duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human_duration(Duration::from_secs(3600)), "About an hour");
        assert_eq!(human_duration(Duration::from_secs(5 * 3600)), "5 hours");
    }
}
