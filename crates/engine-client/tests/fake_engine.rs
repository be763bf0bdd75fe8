//! `system-docker` against a scripted engine on a unix socket: checks what a
//! user relies on without a real daemon (exit codes, the requests sent, the
//! order of create/start/wait/remove). The real engine is exercised by the
//! integration tests of the `ros` crate.

use std::convert::Infallible;
use std::ffi::OsString;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// One request as the engine saw it: method, path with query (version prefix
/// removed), body.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: Vec<u8>,
}

type Handler = Arc<dyn Fn(&Seen, &[Seen]) -> (u16, Vec<u8>) + Send + Sync>;

struct FakeEngine {
    _dir: tempfile::TempDir,
    host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeEngine {
    /// Serves `handler` (given the request and the ones before it) on a new socket.
    fn start(handler: impl Fn(&Seen, &[Seen]) -> (u16, Vec<u8>) + Send + Sync + 'static) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("engine.sock");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let handler: Handler = Arc::new(handler);
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind socket");
        listener.set_nonblocking(true).expect("nonblocking");
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).expect("listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (seen, handler) = (seen2.clone(), handler.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (seen, handler) = (seen.clone(), handler.clone());
                            async move {
                                let method = req.method().to_string();
                                let uri = req.uri().path_and_query().map(|p| p.to_string());
                                let uri = uri.unwrap_or_default();
                                let path = match uri.strip_prefix("/v1.") {
                                    Some(rest) => rest[rest.find('/').unwrap_or(0)..].to_string(),
                                    None => uri,
                                };
                                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                                let request = Seen {
                                    method,
                                    path,
                                    body: body.unwrap_or_default().to_vec(),
                                };
                                let before = seen.lock().unwrap().clone();
                                let (status, body) = handler(&request, &before);
                                seen.lock().unwrap().push(request);
                                let response = Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .expect("response");
                                Ok::<_, Infallible>(response)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        FakeEngine {
            host: format!("unix://{}", socket.display()),
            _dir: dir,
            seen,
        }
    }

    /// Runs `system-docker -H <this engine> ARGS...` and returns its exit code.
    fn run(&self, args: &[&str]) -> i32 {
        let mut argv: Vec<OsString> = vec![
            "system-docker".into(),
            "-H".into(),
            self.host.clone().into(),
        ];
        argv.extend(args.iter().map(OsString::from));
        engine_client::main(argv)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// "METHOD path" of every request, query cut off.
    fn calls(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| {
                format!(
                    "{} {}",
                    s.method,
                    s.path.split('?').next().unwrap_or_default()
                )
            })
            .collect()
    }
}

fn json(status: u16, value: serde_json::Value) -> (u16, Vec<u8>) {
    (status, value.to_string().into_bytes())
}

fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![stream, 0, 0, 0];
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A scripted life of container "abc" exiting with `code`.
fn container_engine(code: i64) -> FakeEngine {
    FakeEngine::start(move |req, _| {
        match (req.method.as_str(), req.path.split('?').next().unwrap()) {
            ("POST", "/containers/create") => {
                json(201, serde_json::json!({"Id": "abc", "Warnings": []}))
            }
            ("POST", "/containers/abc/start") => (204, vec![]),
            ("GET", "/containers/abc/logs") => (200, frame(1, b"hello\n")),
            ("POST", "/containers/abc/wait") => json(200, serde_json::json!({"StatusCode": code})),
            ("DELETE", "/containers/abc") => (204, vec![]),
            _ => json(404, serde_json::json!({"message": "page not found"})),
        }
    })
}

#[test]
fn run_exits_with_the_container_exit_code_and_removes_it_with_rm() {
    let engine = container_engine(3);
    assert_eq!(
        engine.run(&["run", "--rm", "--name", "job", "busybox", "sh", "-c", "exit 3"]),
        3
    );
    let calls = engine.calls();
    assert_eq!(calls.len(), 5, "{calls:?}");
    assert_eq!(
        calls[..2],
        ["POST /containers/create", "POST /containers/abc/start"]
    );
    // logs and wait run side by side: either may be first
    let mut middle = calls[2..4].to_vec();
    middle.sort();
    assert_eq!(
        middle,
        ["GET /containers/abc/logs", "POST /containers/abc/wait"]
    );
    assert_eq!(calls[4], "DELETE /containers/abc");
    let create = &engine.seen()[0];
    assert!(create.path.contains("name=job"), "{}", create.path);
    let body: serde_json::Value = serde_json::from_slice(&create.body).unwrap();
    assert_eq!(body["Image"], "busybox");
    assert_eq!(body["Cmd"], serde_json::json!(["sh", "-c", "exit 3"]));
    // without -d, the client removes the container itself after reading the exit code
    assert_ne!(body["HostConfig"]["AutoRemove"], true);
}

#[test]
fn run_detached_prints_the_id_and_leaves_removal_to_the_engine() {
    let engine = container_engine(0);
    assert_eq!(engine.run(&["run", "-d", "--rm", "busybox"]), 0);
    assert_eq!(
        engine.calls(),
        vec!["POST /containers/create", "POST /containers/abc/start"]
    );
    let body: serde_json::Value = serde_json::from_slice(&engine.seen()[0].body).unwrap();
    assert_eq!(body["HostConfig"]["AutoRemove"], true);
    assert_eq!(body["AttachStdout"], false);
}

#[test]
fn run_pulls_a_missing_image_then_creates_the_container() {
    let engine = FakeEngine::start(|req, before| {
        let pulled = before.iter().any(|s| s.path.starts_with("/images/create"));
        match (req.method.as_str(), req.path.split('?').next().unwrap()) {
            ("POST", "/containers/create") if !pulled => {
                json(404, serde_json::json!({"message": "No such image: 127.0.0.1:5000/x:latest"}))
            }
            ("POST", "/containers/create") => json(201, serde_json::json!({"Id": "abc", "Warnings": []})),
            ("POST", "/images/create") => (
                200,
                b"{\"status\":\"Pulling from x\",\"id\":\"latest\"}\n{\"status\":\"Pull complete\",\"id\":\"0123456789ab\"}\n"
                    .to_vec(),
            ),
            ("POST", "/containers/abc/start") => (204, vec![]),
            _ => json(404, serde_json::json!({"message": "page not found"})),
        }
    });
    assert_eq!(engine.run(&["run", "-d", "127.0.0.1:5000/x"]), 0);
    let calls = engine.calls();
    assert_eq!(
        calls,
        vec![
            "POST /containers/create",
            "POST /images/create",
            "POST /containers/create",
            "POST /containers/abc/start"
        ]
    );
    let pull = &engine.seen()[1].path;
    assert!(pull.contains("fromImage=127.0.0.1%3A5000%2Fx"), "{pull}");
    assert!(pull.contains("tag=latest"), "{pull}");
}

#[test]
fn run_and_create_failures_exit_125_and_unstartable_commands_127() {
    let engine = FakeEngine::start(|req, _| match req.path.split('?').next().unwrap() {
        "/containers/create" if req.path.contains("name=taken") => json(
            409,
            serde_json::json!({"message": "Conflict. The container name \"/taken\" is already in use"}),
        ),
        "/containers/create" => json(201, serde_json::json!({"Id": "abc", "Warnings": []})),
        "/containers/abc/start" => json(
            500,
            serde_json::json!({"message": "exec: \"nosuch\": executable file not found in $PATH"}),
        ),
        _ => (204, vec![]),
    });
    assert_eq!(engine.run(&["create", "--name", "taken", "busybox"]), 125);
    assert_eq!(engine.run(&["run", "--name", "taken", "busybox"]), 125);
    assert_eq!(engine.run(&["run", "busybox", "nosuch"]), 127);
    // a bad flag never reaches the engine
    let before = engine.seen().len();
    assert_eq!(engine.run(&["run", "-m", "lots", "busybox"]), 125);
    assert_eq!(engine.run(&["run", "-v", "rel/dir:/x", "busybox"]), 125);
    assert_eq!(engine.seen().len(), before);
}

#[test]
fn an_engine_that_is_not_running_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let host = format!("unix://{}/nothing.sock", dir.path().display());
    let run = |args: &[&str]| {
        let mut argv: Vec<OsString> =
            vec!["system-docker".into(), "-H".into(), host.clone().into()];
        argv.extend(args.iter().map(OsString::from));
        engine_client::main(argv)
    };
    assert_eq!(run(&["ps"]), 1);
    assert_eq!(run(&["images"]), 1);
    assert_eq!(run(&["run", "busybox"]), 125);
}

#[test]
fn daemon_errors_exit_1_and_multi_name_commands_go_on() {
    let engine = FakeEngine::start(|req, _| match req.path.as_str() {
        p if p.starts_with("/containers/a/stop") => (204, vec![]),
        p if p.starts_with("/containers/c/stop") => (204, vec![]),
        _ => json(404, serde_json::json!({"message": "No such container: b"})),
    });
    assert_eq!(engine.run(&["stop", "-t", "1", "a", "b", "c"]), 1);
    assert_eq!(
        engine.calls(),
        vec![
            "POST /containers/a/stop",
            "POST /containers/b/stop",
            "POST /containers/c/stop"
        ]
    );
    assert!(engine.seen()[0].path.contains("t=1"));
}

#[test]
fn import_sends_each_change_as_docker_does() {
    let engine = FakeEngine::start(|_, _| (200, b"{\"status\":\"sha256:abc\"}\n".to_vec()));
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("rootfs.tar");
    std::fs::write(&tar, b"not really a tar, the fake engine does not care").unwrap();
    let tar = tar.to_string_lossy().into_owned();
    let code = engine.run(&[
        "import",
        "-c",
        r#"CMD ["/bin/sh"]"#,
        "-c",
        "ENV A=1",
        "-c",
        "WORKDIR /srv",
        &tar,
        "myroot:1",
    ]);
    assert_eq!(code, 0);
    let seen = engine.seen();
    assert_eq!(seen.len(), 1);
    let path = &seen[0].path;
    assert!(path.starts_with("/images/create?fromSrc=-"), "{path}");
    assert!(path.contains("repo=myroot%3A1"), "{path}");
    assert!(
        path.contains("changes=CMD%20%5B%22%2Fbin%2Fsh%22%5D"),
        "{path}"
    );
    assert!(path.contains("changes=ENV%20A%3D1"), "{path}");
    assert!(path.contains("changes=WORKDIR%20%2Fsrv"), "{path}");
    assert_eq!(
        seen[0].body,
        b"not really a tar, the fake engine does not care"
    );

    // a change the engine cannot apply is refused before anything is sent
    assert_eq!(engine.run(&["import", "-c", "RUN make", &tar]), 125);
    assert_eq!(engine.seen().len(), 1);
}

#[test]
fn inspect_tries_containers_then_images() {
    let engine = FakeEngine::start(|req, _| match req.path.as_str() {
        "/containers/web/json" => json(200, serde_json::json!({"Id": "c1"})),
        "/images/busybox/json" => json(200, serde_json::json!({"Id": "sha256:i1"})),
        _ => json(404, serde_json::json!({"message": "not found"})),
    });
    assert_eq!(engine.run(&["inspect", "web", "busybox"]), 0);
    assert_eq!(
        engine.calls(),
        vec![
            "GET /containers/web/json",
            "GET /containers/busybox/json",
            "GET /images/busybox/json"
        ]
    );
    assert_eq!(engine.run(&["inspect", "nosuch"]), 1);
    assert_eq!(engine.run(&["inspect", "--type", "image", "web"]), 1);
}

#[test]
fn exec_exits_with_the_command_exit_code() {
    let engine = FakeEngine::start(|req, _| match req.path.split('?').next().unwrap() {
        "/containers/web/exec" => json(201, serde_json::json!({"Id": "e1"})),
        "/exec/e1/start" => {
            let mut out = frame(1, b"out\n");
            out.extend(frame(2, b"err\n"));
            (200, out)
        }
        "/exec/e1/json" => json(200, serde_json::json!({"ExitCode": 5, "Running": false})),
        _ => json(404, serde_json::json!({"message": "page not found"})),
    });
    assert_eq!(
        engine
            .run(&["exec", "-e", "A=1", "-w", "/tmp", "-u", "nobody", "web", "sh", "-c", "exit 5"]),
        5
    );
    let create: serde_json::Value = serde_json::from_slice(&engine.seen()[0].body).unwrap();
    assert_eq!(create["Cmd"], serde_json::json!(["sh", "-c", "exit 5"]));
    assert_eq!(create["Env"], serde_json::json!(["A=1"]));
    assert_eq!(create["WorkingDir"], "/tmp");
    assert_eq!(create["User"], "nobody");
    assert_eq!(create["AttachStdout"], true);
    assert_eq!(engine.run(&["exec", "-t", "web", "sh"]), 1);
}

#[test]
fn wait_prints_exit_codes_and_succeeds() {
    let engine = container_engine(7);
    assert_eq!(engine.run(&["wait", "abc"]), 0);
    assert_eq!(engine.run(&["wait", "nosuch"]), 1);
}
