//! Container commands: create, run, start, stop, restart, kill, rm, ps,
//! inspect, logs, wait.

use std::time::Duration;

use bollard::container::LogOutput;
use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, ContainerSummary, RestartPolicyNameEnum};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, RestartContainerOptions, StopContainerOptions,
};
use futures_util::{Stream, StreamExt};
use hyper::Method;

use crate::cli::{
    ContainerArgs, CreateArgs, InspectArgs, KillArgs, LogsArgs, NamesArgs, PsArgs, RmArgs, RunArgs,
    StopArgs,
};
use crate::client::{encode, Engine, RawBody};
use crate::commands::image::pull_image;
use crate::commands::{err_out, for_each_name, out};
use crate::error::{Error, Result};
use crate::format::ps_table;
use crate::parse::create_body;
use crate::progress::Target;
use crate::EXIT_USAGE;

/// The create request for `args`, reading env files and our environment.
fn body_for(args: &ContainerArgs) -> Result<ContainerCreateBody> {
    let read_file = |path: &str| {
        std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_string(),
            source,
        })
    };
    let lookup = |key: &str| std::env::var(key).ok();
    create_body(args, &read_file, &lookup)
}

/// Creates the container, pulling its image first when `--pull` asks for it
/// (always) or when the engine does not have it (missing). Returns the id.
async fn create_container(
    engine: &Engine,
    args: &ContainerArgs,
    body: ContainerCreateBody,
) -> Result<String> {
    if args.pull == "always" {
        pull_image(engine, args.image(), Target::Stderr).await?;
    }
    let options = CreateContainerOptions {
        name: args.name.clone(),
        ..Default::default()
    };
    let first = engine
        .docker()
        .create_container(Some(options.clone()), body.clone())
        .await
        .map_err(|e| engine.err(e));
    let created = match first {
        Err(e) if args.pull == "missing" && is_missing_image(&e) => {
            err_out(format!("Unable to find image '{}' locally\n", args.image()).as_bytes())?;
            pull_image(engine, args.image(), Target::Stderr).await?;
            engine
                .docker()
                .create_container(Some(options), body)
                .await
                .map_err(|e| engine.err(e))?
        }
        other => other?,
    };
    for warning in &created.warnings {
        err_out(format!("WARNING: {warning}\n").as_bytes())?;
    }
    Ok(created.id)
}

fn is_missing_image(e: &Error) -> bool {
    match e {
        Error::Daemon {
            status: 404,
            message,
        } => message.to_ascii_lowercase().contains("image"),
        _ => false,
    }
}

/// `create`.
pub async fn create(engine: &Engine, args: CreateArgs) -> Result<i32> {
    let body = body_for(&args.container)?;
    let id = create_container(engine, &args.container, body).await?;
    out(format!("{id}\n").as_bytes())?;
    Ok(0)
}

/// docker's exit codes for a command that could not be started.
fn start_failure_code(e: &Error) -> i32 {
    let message = e.to_string();
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
        || message.contains("not found in $PATH")
    {
        127
    } else if message.contains("permission denied")
        || message.contains("is a directory")
        || message.contains("does not have correct permissions")
    {
        126
    } else {
        125
    }
}

/// `run`.
pub async fn run(engine: &Engine, args: RunArgs) -> Result<i32> {
    let mut body = body_for(&args.container)?;
    let restarts = body
        .host_config
        .as_ref()
        .and_then(|h| h.restart_policy.as_ref())
        .and_then(|p| p.name)
        .is_some_and(|n| !matches!(n, RestartPolicyNameEnum::NO | RestartPolicyNameEnum::EMPTY));
    if args.rm && restarts {
        return Err(Error::Usage(
            "conflicting options: --restart and --rm".to_string(),
        ));
    }
    if args.container.interactive && !args.detach {
        return Err(Error::NotSupported(
            "attaching stdin to a container (run -i without -d)".to_string(),
        ));
    }
    if args.detach {
        // Nothing is attached; as docker sends it.
        body.attach_stdout = Some(false);
        body.attach_stderr = Some(false);
    }
    if args.detach && args.rm {
        // The engine removes it when it exits; nobody is waiting here.
        if let Some(hc) = body.host_config.as_mut() {
            hc.auto_remove = Some(true);
        }
    }
    let id = create_container(engine, &args.container, body).await?;

    if let Err(e) = engine
        .docker()
        .start_container(
            &id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(|e| engine.err(e))
    {
        if matches!(e, Error::CannotConnect { .. }) {
            return Err(e);
        }
        err_out(format!("{e}\n").as_bytes())?;
        if args.rm && !args.detach {
            remove_quietly(engine, &id).await;
        }
        return Ok(start_failure_code(&e));
    }
    if args.detach {
        out(format!("{id}\n").as_bytes())?;
        return Ok(0);
    }

    match follow_until_exit(engine, &id).await? {
        Followed::Exited(code) => {
            if args.rm {
                remove_quietly(engine, &id).await;
            }
            Ok(code)
        }
        Followed::Detached => Ok(130),
    }
}

/// How following a container ended.
enum Followed {
    /// It exited with this code (or 125 if the engine reported an error).
    Exited(i32),
    /// The user interrupted three times; it still runs.
    Detached,
}

async fn remove_quietly(engine: &Engine, id: &str) {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    if let Err(e) = engine.docker().remove_container(id, Some(options)).await {
        let _ = err_out(format!("{}\n", engine.err(e)).as_bytes());
    }
}

/// Prints the container's output until it exits, forwarding SIGINT, SIGTERM,
/// SIGHUP and SIGQUIT to it meanwhile. A third SIGINT stops following and
/// leaves the container running.
async fn follow_until_exit(engine: &Engine, id: &str) -> Result<Followed> {
    use tokio::signal::unix::{signal, SignalKind};

    let docker = engine.streaming();
    let logs = docker.logs(
        id,
        Some(LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            tail: "all".to_string(),
            ..Default::default()
        }),
    );
    let printer = print_logs(engine, logs);
    tokio::pin!(printer);
    let waiter = wait_exit(engine, id);
    tokio::pin!(waiter);

    let mut signals = Vec::new();
    for (kind, name) in [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
    ] {
        if let Ok(s) = signal(kind) {
            signals.push((s, name));
        }
    }
    let (tx, mut forwarded) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    for (mut s, name) in signals {
        let tx = tx.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                if tx.send(name).is_err() {
                    break;
                }
            }
        });
    }

    let mut logs_done = false;
    let mut interrupts = 0;
    let code = loop {
        tokio::select! {
            r = &mut printer, if !logs_done => {
                logs_done = true;
                if let Err(e) = r {
                    if matches!(e, Error::Output(_)) {
                        return Err(e);
                    }
                    err_out(format!("{e}\n").as_bytes())?;
                }
            }
            waited = &mut waiter => {
                // As docker run: an error reported by wait means exit 125.
                break match waited? {
                    (_, Some(message)) => {
                        err_out(format!("{message}\n").as_bytes())?;
                        EXIT_USAGE
                    }
                    (code, None) => code,
                };
            }
            Some(name) = forwarded.recv() => {
                // A container may ignore SIGINT (a shell as PID 1 does): the
                // third one lets the user out, leaving the container running.
                if name == "SIGINT" {
                    interrupts += 1;
                    if interrupts >= 3 {
                        err_out(format!("system-docker: detached from {id}, which is still running\n").as_bytes())?;
                        return Ok(Followed::Detached);
                    }
                }
                let options = KillContainerOptions { signal: name.to_string() };
                if let Err(e) = engine.docker().kill_container(id, Some(options)).await {
                    err_out(format!("{}\n", engine.err(e)).as_bytes())?;
                }
            }
        }
    };
    if !logs_done {
        // The engine ends the log stream when the container stops; allow a
        // moment for the last lines, then give up on them.
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut printer).await;
    }
    Ok(Followed::Exited(code))
}

/// Writes log records to our stdout and stderr.
async fn print_logs(
    engine: &Engine,
    stream: impl Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>>,
) -> Result<()> {
    tokio::pin!(stream);
    while let Some(item) = stream.next().await {
        match item.map_err(|e| engine.err(e))? {
            LogOutput::StdErr { message } => err_out(&message)?,
            LogOutput::StdOut { message } | LogOutput::Console { message } => out(&message)?,
            LogOutput::StdIn { .. } => {}
        }
    }
    Ok(())
}

/// Waits for the container to stop; returns its exit code and the engine's
/// error message, if it reported one (a container that could not be started).
pub async fn wait_exit(engine: &Engine, id: &str) -> Result<(i32, Option<String>)> {
    #[derive(serde::Deserialize)]
    struct WaitError {
        #[serde(rename = "Message")]
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Waited {
        #[serde(rename = "StatusCode")]
        status_code: i64,
        #[serde(rename = "Error")]
        error: Option<WaitError>,
    }
    let path = format!("/containers/{}/wait", encode(id, false));
    let (_, body) = engine.raw(Method::POST, &path, RawBody::Empty).await?;
    let waited: Waited = serde_json::from_slice(&body)
        .map_err(|e| Error::Engine(format!("bad answer to wait: {e}")))?;
    let message = waited
        .error
        .and_then(|e| e.message)
        .filter(|m| !m.is_empty());
    let code = waited.status_code.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    Ok((code, message))
}

/// `start`.
pub async fn start(engine: &Engine, args: NamesArgs) -> Result<i32> {
    for_each_name(&args.containers, |name| async move {
        engine
            .docker()
            .start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| engine.err(e))
    })
    .await
}

/// `stop` and `restart`.
pub async fn stop(engine: &Engine, args: StopArgs, restart: bool) -> Result<i32> {
    // A stop may take as long as the grace period: no request timeout.
    let docker = engine.streaming();
    let docker = &docker;
    for_each_name(&args.containers, |name| async move {
        let result = if restart {
            docker
                .restart_container(
                    &name,
                    Some(RestartContainerOptions {
                        t: args.time,
                        signal: None,
                    }),
                )
                .await
        } else {
            docker
                .stop_container(
                    &name,
                    Some(StopContainerOptions {
                        t: args.time,
                        signal: None,
                    }),
                )
                .await
        };
        result.map_err(|e| engine.err(e))
    })
    .await
}

/// `kill`.
pub async fn kill(engine: &Engine, args: KillArgs) -> Result<i32> {
    let signal = &args.signal;
    for_each_name(&args.containers, |name| async move {
        engine
            .docker()
            .kill_container(
                &name,
                Some(KillContainerOptions {
                    signal: signal.clone(),
                }),
            )
            .await
            .map_err(|e| engine.err(e))
    })
    .await
}

/// `rm`.
pub async fn rm(engine: &Engine, args: RmArgs) -> Result<i32> {
    let docker = engine.streaming();
    let docker = &docker;
    for_each_name(&args.containers, |name| async move {
        docker
            .remove_container(
                &name,
                Some(RemoveContainerOptions {
                    force: args.force,
                    v: args.volumes,
                    link: false,
                }),
            )
            .await
            .map_err(|e| engine.err(e))
    })
    .await
}

/// `ps`.
pub async fn ps(engine: &Engine, args: PsArgs) -> Result<i32> {
    let filters = parse_filters(&args.filter)?;
    if let Some(template) = &args.format {
        crate::format::check_list_template(template)?;
    }
    let list = engine
        .docker()
        .list_containers(Some(ListContainersOptions {
            all: args.all,
            filters: (!filters.is_empty()).then(|| filters.clone()),
            ..Default::default()
        }))
        .await
        .map_err(|e| engine.err(e))?;
    // Also filtered here, for engines that ignore some filters.
    let list: Vec<_> = list
        .into_iter()
        .filter(|c| container_matches(c, &filters))
        .collect();
    let now = chrono::Utc::now().timestamp();
    let text = if args.quiet {
        list.iter()
            .map(|c| {
                let id = c.id.clone().unwrap_or_default();
                format!("{}\n", crate::format::short_id(&id, args.no_trunc))
            })
            .collect()
    } else if let Some(template) = &args.format {
        let mut text = String::new();
        for c in &list {
            let fields = serde_json::Value::Object(crate::format::ps_fields(c, args.no_trunc, now));
            text.push_str(&crate::format::apply_template(template, &fields)?);
            text.push('\n');
        }
        text
    } else {
        ps_table(&list, args.no_trunc, now)
    };
    out(text.as_bytes())?;
    Ok(0)
}

/// `-f KEY=VALUE` flags as the API's `filters` map.
fn parse_filters(flags: &[String]) -> Result<HashMap<String, Vec<String>>> {
    let mut filters: HashMap<String, Vec<String>> = HashMap::new();
    for f in flags {
        match f.split_once('=') {
            Some((k, v)) if !k.is_empty() => filters
                .entry(k.to_string())
                .or_default()
                .push(v.to_string()),
            _ => {
                return Err(Error::Usage(format!(
                    "bad format of filter '{f}': expected KEY=VALUE"
                )))
            }
        }
    }
    Ok(filters)
}

/// Docker's meaning of the filters we can check here (name: part of a name,
/// id: prefix, status: state, label: KEY or KEY=VALUE); values of one key are
/// alternatives, keys must all match. Other keys are left to the engine.
fn container_matches(c: &ContainerSummary, filters: &HashMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(key, values)| {
        values.iter().any(|value| match key.as_str() {
            "name" => c.names.iter().flatten().any(|n| {
                n.trim_start_matches('/')
                    .contains(value.trim_start_matches('/'))
            }),
            "id" => {
                c.id.as_deref()
                    .is_some_and(|id| id.starts_with(value.as_str()))
            }
            "status" => c.state.is_some_and(|s| s.to_string() == *value),
            "label" => {
                let labels = c.labels.clone().unwrap_or_default();
                match value.split_once('=') {
                    Some((k, v)) => labels.get(k).is_some_and(|l| l == v),
                    None => labels.contains_key(value.as_str()),
                }
            }
            _ => true,
        })
    })
}

/// `inspect`: the engine's JSON for each name, container first, then image,
/// printed as one array with docker's 4-space indentation.
pub async fn inspect(engine: &Engine, args: InspectArgs) -> Result<i32> {
    let kinds: &[&str] = match args.kind.as_deref() {
        None => &["containers", "images"],
        Some("container") => &["containers"],
        Some("image") => &["images"],
        Some(other) => {
            return Err(Error::Usage(format!(
                "invalid --type '{other}': expected container or image"
            )))
        }
    };
    let mut found = Vec::new();
    let mut missing = Vec::new();
    'names: for name in &args.names {
        for kind in kinds {
            let path = format!("/{kind}/{}/json", encode(name, true));
            match engine.raw(Method::GET, &path, RawBody::Empty).await {
                Ok((_, body)) => {
                    serde_json::from_slice::<serde::de::IgnoredAny>(&body)
                        .map_err(|e| Error::Engine(format!("bad answer to inspect {name}: {e}")))?;
                    found.push(String::from_utf8_lossy(&body).trim().to_string());
                    continue 'names;
                }
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        }
        missing.push(name.clone());
    }
    match &args.format {
        Some(template) => {
            let mut text = String::new();
            for body in &found {
                let value: serde_json::Value = serde_json::from_str(body)
                    .map_err(|e| Error::Engine(format!("bad answer to inspect: {e}")))?;
                let line = crate::format::apply_template(template, &value)?;
                text.push_str(&line);
                text.push('\n');
            }
            out(text.as_bytes())?;
        }
        None => {
            let array = format!("[{}]", found.join(","));
            out(format!("{}\n", to_json_4(array.as_bytes())).as_bytes())?;
        }
    }
    for name in &missing {
        err_out(format!("{}\n", Error::NoSuchObject(name.clone())).as_bytes())?;
    }
    Ok(if missing.is_empty() { 0 } else { 1 })
}

/// JSON with 4-space indentation, as `docker inspect` prints it, keeping the
/// engine's key order. Hand-written because serde_json's `Value` sorts keys
/// (its `preserve_order` feature would change map ordering for the whole
/// workspace) and a token-level re-indenter is short. `json` must be valid.
fn to_json_4(json: &[u8]) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let text = String::from_utf8_lossy(json);
    let chars: Vec<char> = text.chars().collect();
    let mut depth = 0usize;
    let mut i = 0;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"    ".repeat(depth));
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => {
                out.push('"');
                i += 1;
                while i < chars.len() {
                    out.push(chars[i]);
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        out.push(chars[i + 1]);
                        i += 1;
                    } else if chars[i] == '"' {
                        break;
                    }
                    i += 1;
                }
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                let mut j = i + 1;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if j < chars.len() && chars[j] == close {
                    out.push(c);
                    out.push(close);
                    i = j;
                } else {
                    out.push(c);
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// `logs`.
pub async fn logs(engine: &Engine, args: LogsArgs) -> Result<i32> {
    let tail = match args.tail.as_deref() {
        None | Some("all") => "all".to_string(),
        Some(n) if n.parse::<u64>().is_ok() => n.to_string(),
        Some(n) => {
            return Err(Error::Usage(format!(
                "invalid --tail '{n}': expected a number or all"
            )))
        }
    };
    let docker = if args.follow {
        engine.streaming()
    } else {
        engine.docker().clone()
    };
    let stream = docker.logs(
        &args.container,
        Some(LogsOptions {
            follow: args.follow,
            stdout: true,
            stderr: true,
            timestamps: args.timestamps,
            tail,
            ..Default::default()
        }),
    );
    print_logs(engine, stream).await?;
    Ok(0)
}

/// `wait`.
pub async fn wait(engine: &Engine, args: NamesArgs) -> Result<i32> {
    let mut code = 0;
    for name in &args.containers {
        match wait_exit(engine, name).await {
            // docker wait prints the status code even when wait reports an error
            Ok((status, _)) => out(format!("{status}\n").as_bytes())?,
            Err(e) => {
                if matches!(e, Error::CannotConnect { .. }) {
                    return Err(e);
                }
                err_out(format!("{e}\n").as_bytes())?;
                code = 1;
            }
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_filters_like_docker() {
        let c = ContainerSummary {
            id: Some("4e1a2c3d5f6b".into()),
            names: Some(vec!["/syslog".into()]),
            state: Some(bollard::models::ContainerSummaryStateEnum::EXITED),
            labels: Some([("io.rancher.os.scope".to_string(), "system".to_string())].into()),
            ..Default::default()
        };
        let matches = |flags: &[&str]| {
            let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
            container_matches(&c, &parse_filters(&flags).unwrap())
        };
        assert!(matches(&[]));
        assert!(matches(&["name=sys"]));
        assert!(matches(&["name=nope", "name=log"]));
        assert!(!matches(&["name=console"]));
        assert!(matches(&["id=4e1a"]));
        assert!(!matches(&["id=1a2c"]));
        assert!(matches(&["status=exited"]));
        assert!(!matches(&["status=running"]));
        assert!(matches(&["label=io.rancher.os.scope"]));
        assert!(matches(&[
            "label=io.rancher.os.scope=system",
            "status=exited"
        ]));
        assert!(!matches(&["label=io.rancher.os.scope=user"]));
        assert!(!matches(&["status=exited", "name=console"]));
        assert!(parse_filters(&["nokey".to_string()]).is_err());
    }

    #[test]
    fn start_failures_map_to_docker_codes() {
        let daemon = |m: &str| Error::Daemon {
            status: 400,
            message: m.to_string(),
        };
        assert_eq!(
            start_failure_code(&daemon(
                "failed to create shim task: exec: \"nosuch\": executable file not found in $PATH"
            )),
            127
        );
        assert_eq!(
            start_failure_code(&daemon("exec /etc/passwd: permission denied")),
            126
        );
        assert_eq!(
            start_failure_code(&daemon(
                "failed to start container 1: exec process failed with error error in executing \
                 process : executable '/etc/passwd' at path '\"/etc/passwd\"' does not have \
                 correct permissions"
            )),
            126
        );
        assert_eq!(
            start_failure_code(&daemon(
                "failed to start container 1: exec process failed with error error in executing \
                 process : executable 'nosuch' not found in $PATH"
            )),
            127
        );
        assert_eq!(start_failure_code(&daemon("cgroup setup failed")), 125);
    }

    #[test]
    fn inspect_output_is_indented_like_docker_in_engine_order() {
        let engine = br#"[{"Id":"x","Args":[],"State":{"Pid":1,"Status":"a,b:{c}\"]"},"Env":null,"Mounts":[{}]}]"#;
        let want = r#"[
    {
        "Id": "x",
        "Args": [],
        "State": {
            "Pid": 1,
            "Status": "a,b:{c}\"]"
        },
        "Env": null,
        "Mounts": [
            {}
        ]
    }
]"#;
        assert_eq!(to_json_4(engine), want);
        assert_eq!(to_json_4(b"[]"), "[]");
    }
}
