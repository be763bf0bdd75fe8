//! Project up, and the other operations on a project's containers, against
//! the engines.
//!
//! Each service runs in one of two engines: `io.rancher.os.scope: system`
//! in the system engine, anything else in User Docker. Both speak the
//! Docker Engine API, so one client (the `engine-client` crate, over
//! bollard) serves both. A container is named after its service and carries
//! the labels of [`crate::container`], among them a hash of its definition.
//!
//! [`up`] starts each service once everything it depends on has been
//! brought up, services that do not depend on each other side by side
//! (a service that reloads the config alone, see step 5), and for each:
//! 1. pulls the image when the engine does not have it;
//! 2. keeps the existing container when its definition is unchanged, makes it
//!    anew when it changed (or on every up with
//!    `io.docker.compose.rebuild: always`; never with `false`);
//! 3. creates it, and starts it unless it is `io.rancher.os.createonly`;
//!    before each start, puts the service's files into its container
//!    ([`Context::files`], the config's `write_files` entries for it, see
//!    [`crate::files`]);
//! 4. waits for it to exit when it is `io.rancher.os.detach: "false"`, and
//!    counts a non-zero exit as a failure;
//! 5. after an `io.rancher.os.reloadconfig` service, asks the caller for the
//!    project again (the service may have changed the config), restarts
//!    the services of `rancher.restart_services` it has already started (so
//!    they see what the new config brought), and goes on with the services
//!    not brought up yet. Such a service keeps its place in the start
//!    order: it starts once all before it are up, and none after it starts
//!    before it has finished.
//!
//! A failing service is reported and the others still come up: one broken
//! service must not hold up the rest of the system.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    InspectContainerOptions, KillContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, RestartContainerOptions, StopContainerOptions,
};
use engine_client::client::Engine;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;

use crate::container::{create_body, ignored_fields, Environment, LABEL_CONFIG_HASH};
use crate::files::{self, ContainerFile, ServiceFiles};
use crate::{ComposeError, Project, Service};

/// The two engines services run in.
#[derive(Debug, Clone)]
pub struct Engines {
    /// The system engine's socket (/var/run/system-docker.sock).
    pub system: PathBuf,
    /// User Docker's socket (/var/run/docker.sock).
    pub user: PathBuf,
}

impl Engines {
    /// The engine `service` runs in, connected.
    pub fn for_service(&self, service: &Service) -> Result<Engine, ComposeError> {
        let (socket, what) = if service.is_system() {
            (&self.system, "the system engine")
        } else {
            (&self.user, "User Docker")
        };
        let host = format!("unix://{}", socket.display());
        Engine::new(&host).map_err(|_| ComposeError::EngineUnavailable {
            engine: what,
            host: host.clone(),
        })
    }
}

/// What `up` did with one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Created and not started (`createonly`).
    Created,
    /// Started (or was running already with the same definition).
    Running,
    /// Ran to completion with exit code 0 (`detach: "false"`).
    Completed,
    /// Nothing to do: the container exists with the same definition and is
    /// running, or is a volume container.
    UpToDate,
    /// Could not be brought up; the reason.
    Failed(String),
}

/// One service's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The service name.
    pub service: String,
    /// What happened.
    pub outcome: Outcome,
}

/// What every operation needs: the project name, the engines, the
/// environment, and where progress lines go.
pub struct Context<'a> {
    /// The compose project name (`os` for the OS's services).
    pub project: String,
    /// Where services run.
    pub engines: Engines,
    /// `rancher.environment`.
    pub env: Environment,
    /// Files put into a service's container before each start of it
    /// (`write_files` entries with `container: SERVICE`).
    pub files: ServiceFiles,
    /// Receives one line per thing done ("Starting network").
    pub progress: &'a (dyn Fn(&str) + Sync),
}

/// What a reload gives [`up`]: the new project and environment, and the
/// services to restart if they are up already (`rancher.restart_services`).
#[derive(Debug, Clone, Default)]
pub struct Reloaded {
    /// The project of the config as it is now.
    pub project: Project,
    /// `rancher.environment` as it is now.
    pub env: Environment,
    /// The services' files as they are now (see [`Context::files`]).
    pub files: ServiceFiles,
    /// Services to restart when this `up` has already started them.
    pub restart: Vec<String>,
}

/// Asks for the project again after an `io.rancher.os.reloadconfig` service.
pub type Reload<'a> =
    &'a mut dyn FnMut() -> futures_util::future::BoxFuture<'static, Result<Reloaded, ComposeError>>;

/// The services to act on: `names` and everything they depend on, in start
/// order; all services when `names` is empty. Unknown names are an error.
pub fn selection(project: &Project, names: &[String]) -> Result<Vec<String>, ComposeError> {
    let order = project.start_order()?;
    if names.is_empty() {
        return Ok(order);
    }
    for name in names {
        if project.get(name).is_none() {
            return Err(ComposeError::UnknownService(name.clone()));
        }
    }
    let deps = project.dependencies()?;
    let mut wanted: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    let mut stack: Vec<&str> = names.iter().map(String::as_str).collect();
    while let Some(name) = stack.pop() {
        if wanted.insert(name) {
            if let Some(ds) = deps.get(name) {
                stack.extend(ds.iter().copied());
            }
        }
    }
    Ok(order
        .into_iter()
        .filter(|n| wanted.contains(n.as_str()))
        .collect())
}

/// `names` alone (all services when empty), checked, in start order.
fn in_start_order(project: &Project, names: &[String]) -> Result<Vec<String>, ComposeError> {
    Ok(selection(project, names)?
        .into_iter()
        .filter(|n| names.is_empty() || names.contains(n))
        .collect())
}

/// A service's dependencies, by name (see [`Project::dependencies`]).
type Dependencies = BTreeMap<String, BTreeSet<String>>;

fn dependencies(project: &Project) -> Result<Dependencies, ComposeError> {
    Ok(project
        .dependencies()?
        .into_iter()
        .map(|(name, deps)| {
            (
                name.to_string(),
                deps.into_iter().map(str::to_string).collect(),
            )
        })
        .collect())
}

/// The services of `todo` (in start order) to start now, while those of
/// `starting` are being brought up: each whose dependencies are neither
/// waiting nor starting. A service that reloads the config (`is_barrier`)
/// keeps its place in the order: it starts alone, once everything before
/// it has been brought up, and nothing after it starts before it has
/// finished, so that what follows it sees the reloaded config exactly as
/// when services started one by one.
fn launchable(
    todo: &[String],
    deps: &Dependencies,
    starting: &BTreeSet<String>,
    is_barrier: impl Fn(&str) -> bool,
) -> Vec<String> {
    if starting.iter().any(|n| is_barrier(n)) {
        return Vec::new();
    }
    let ready = |name: &String| {
        deps.get(name).is_none_or(|ds| {
            ds.iter()
                .all(|d| !starting.contains(d) && !todo.contains(d))
        })
    };
    let mut now = Vec::new();
    for name in todo {
        if is_barrier(name) {
            if starting.is_empty() && now.is_empty() && ready(name) {
                now.push(name.clone());
            }
            break;
        }
        if ready(name) {
            now.push(name.clone());
        }
    }
    now
}

/// What one service's start gives back to [`up`].
type Started<'f> =
    futures_util::future::BoxFuture<'f, (String, bool, Result<Outcome, ComposeError>)>;

/// Brings up `names` (all services when empty) and their dependencies.
///
/// A service starts as soon as everything it depends on has been brought
/// up, whatever the outcome (a failed dependency does not hold back its
/// dependents), so services that do not depend on each other start side by
/// side, as RancherOS's libcompose started them. A service that reloads
/// the config starts alone (see [`launchable`]).
pub async fn up(
    ctx: &Context<'_>,
    project: &Project,
    names: &[String],
    mut reload: Option<Reload<'_>>,
) -> Result<Vec<Step>, ComposeError> {
    let mut project = project.clone();
    let mut env = ctx.env.clone();
    let mut service_files = ctx.files.clone();
    let mut todo = selection(&project, names)?;
    let mut deps = dependencies(&project)?;
    let mut done: Vec<Step> = Vec::new();
    let mut starting: BTreeSet<String> = BTreeSet::new();
    let mut running: FuturesUnordered<Started<'_>> = FuturesUnordered::new();
    loop {
        let is_barrier = |n: &str| project.get(n).is_some_and(Service::reload_config);
        let mut now = launchable(&todo, &deps, &starting, is_barrier);
        if now.is_empty() && starting.is_empty() {
            // Cannot happen (the first service waiting has all its
            // dependencies done), but a service must never be left out.
            now.extend(todo.first().cloned());
        }
        for name in now {
            todo.retain(|n| n != &name);
            let Some(service) = project.get(&name).cloned() else {
                continue;
            };
            starting.insert(name.clone());
            let env = env.clone();
            let files = files::of(&service_files, &name).to_vec();
            running.push(Box::pin(async move {
                let result = up_one(ctx, &env, &files, &name, &service).await;
                (name, service.reload_config(), result)
            }));
        }
        let Some((name, reload_config, result)) = running.next().await else {
            break;
        };
        starting.remove(&name);
        let done_step = step(ctx, name, result);
        let reloads = reload_config && !matches!(done_step.outcome, Outcome::Failed(_));
        done.push(done_step);
        if reloads {
            if let Some(reload) = reload.as_mut() {
                match reload().await {
                    Ok(reloaded) => {
                        (ctx.progress)("Reloading the configuration");
                        project = reloaded.project;
                        env = reloaded.env;
                        service_files = reloaded.files;
                        restart_started(ctx, &project, &service_files, &done, &reloaded.restart)
                            .await;
                        // The same selection in the new project, minus what is done.
                        let wanted = if names.is_empty() {
                            Vec::new()
                        } else {
                            names
                                .iter()
                                .filter(|n| project.get(n).is_some())
                                .cloned()
                                .collect()
                        };
                        todo = selection(&project, &wanted)?
                            .into_iter()
                            .filter(|n| !done.iter().any(|s| &s.service == n))
                            .collect();
                        deps = dependencies(&project)?;
                    }
                    Err(e) => (ctx.progress)(&format!(
                        "cannot reload the configuration, going on with the old one: {e}"
                    )),
                }
            }
        }
    }
    Ok(done)
}

/// Restarts each service of `names` that `done` shows started and running
/// (a one-shot that completed, a volume container or a failure is left
/// alone; a service not started yet will start with the new config anyway),
/// with its files of the new config.
async fn restart_started(
    ctx: &Context<'_>,
    project: &Project,
    service_files: &ServiceFiles,
    done: &[Step],
    names: &[String],
) {
    for name in names {
        let started = done.iter().any(|s| {
            &s.service == name && matches!(s.outcome, Outcome::Running | Outcome::UpToDate)
        });
        let Some(service) = project.get(name).filter(|_| started) else {
            continue;
        };
        if service.create_only() {
            continue;
        }
        (ctx.progress)(&format!("Restarting {name} (rancher.restart_services)"));
        let restart = Action::Restart(Duration::from_secs(10));
        let files = files::of(service_files, name);
        if let Err(e) = act_one(ctx, name, service, restart, files).await {
            (ctx.progress)(&format!("cannot restart {name}: {e}"));
        }
    }
}

fn engine_error(name: &str, e: impl std::fmt::Display) -> ComposeError {
    ComposeError::Engine {
        service: name.to_string(),
        message: e.to_string(),
    }
}

/// Whether the engine answered "no such container/image".
fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

async fn up_one(
    ctx: &Context<'_>,
    env: &Environment,
    files: &[ContainerFile],
    name: &str,
    service: &Service,
) -> Result<Outcome, ComposeError> {
    let body = create_body(&ctx.project, name, service, env)?;
    for field in ignored_fields(service) {
        (ctx.progress)(&format!(
            "{name}: warning: field {field} is not supported and is ignored"
        ));
    }
    let engine = ctx.engines.for_service(service)?;
    let docker = engine.docker();
    let image = body.image.clone().unwrap_or_default();

    if let Err(e) = docker.inspect_image(&image).await {
        if !is_not_found(&e) {
            return Err(engine_error(name, engine.err(e)));
        }
        (ctx.progress)(&format!("Pulling {name} ({image})"));
        engine_client::commands::image::pull_image(
            &engine,
            &image,
            engine_client::progress::Target::Quiet,
        )
        .await
        .map_err(|e| engine_error(name, e))?;
    }

    let wanted_hash = body
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_CONFIG_HASH))
        .cloned();
    let existing = match docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
    {
        Ok(c) => Some(c),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(engine_error(name, engine.err(e))),
    };
    let mut running = false;
    if let Some(existing) = existing {
        let hash = existing
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(LABEL_CONFIG_HASH))
            .cloned();
        let recreate = match service.rebuild() {
            Some("always") => true,
            Some("false") => false,
            _ => hash != wanted_hash,
        };
        if recreate {
            (ctx.progress)(&format!("Recreating {name}"));
            docker
                .remove_container(
                    name,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await
                .map_err(|e| engine_error(name, engine.err(e)))?;
        } else {
            running = existing
                .state
                .as_ref()
                .and_then(|s| s.running)
                .unwrap_or(false);
            if service.create_only() || (running && service.detach()) {
                return Ok(Outcome::UpToDate);
            }
            return start(ctx, &engine, name, service, files).await;
        }
    }
    debug_assert!(!running);
    (ctx.progress)(&format!("Creating {name}"));
    docker
        .create_container(
            Some(bollard::query_parameters::CreateContainerOptions {
                name: Some(name.to_string()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(|e| engine_error(name, engine.err(e)))?;
    if service.create_only() {
        return Ok(Outcome::Created);
    }
    start(ctx, &engine, name, service, files).await
}

/// Starts a created container, its files put in first; waits for it when
/// it does not detach.
async fn start(
    ctx: &Context<'_>,
    engine: &Engine,
    name: &str,
    service: &Service,
    files: &[ContainerFile],
) -> Result<Outcome, ComposeError> {
    files::put(engine, name, files, ctx.progress).await?;
    (ctx.progress)(&format!("Starting {name}"));
    engine
        .docker()
        .start_container(
            name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(|e| engine_error(name, engine.err(e)))?;
    if service.detach() {
        return Ok(Outcome::Running);
    }
    let (code, message) = engine_client::commands::container::wait_exit(engine, name)
        .await
        .map_err(|e| engine_error(name, e))?;
    match (code, message) {
        (0, None) => {
            (ctx.progress)(&format!("{name} exited with 0"));
            Ok(Outcome::Completed)
        }
        (code, Some(message)) => Err(engine_error(name, format!("exited with {code}: {message}"))),
        (code, None) => Err(engine_error(name, format!("exited with {code}"))),
    }
}

/// The step of one service: its outcome, or its failure, reported.
fn step(ctx: &Context<'_>, service: String, result: Result<Outcome, ComposeError>) -> Step {
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => {
            (ctx.progress)(&format!("{service}: failed: {e}"));
            Outcome::Failed(e.to_string())
        }
    };
    Step { service, outcome }
}

/// `names` checked against the project, or every service in start order
/// when `names` is empty.
fn named_or_all(project: &Project, names: &[String]) -> Result<Vec<String>, ComposeError> {
    if names.is_empty() {
        return project.start_order();
    }
    match names.iter().find(|n| project.get(n).is_none()) {
        Some(unknown) => Err(ComposeError::UnknownService(unknown.clone())),
        None => Ok(names.to_vec()),
    }
}

/// A lifecycle action on existing containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start (created or stopped containers).
    Start,
    /// Stop with the given grace period.
    Stop(Duration),
    /// Restart with the given grace period.
    Restart(Duration),
    /// Remove (stopped containers; `force` also running ones).
    Remove {
        /// Remove running containers too.
        force: bool,
    },
    /// Send SIGKILL.
    Kill,
}

/// Applies `action` to the containers of `names` (all services when empty),
/// in start order, or in reverse start order for stop and remove. Returns
/// one step per service; a missing container is a failure of that service.
pub async fn act(
    ctx: &Context<'_>,
    project: &Project,
    names: &[String],
    action: Action,
) -> Result<Vec<Step>, ComposeError> {
    let mut order = named_or_all(project, names)?;
    if matches!(action, Action::Stop(_) | Action::Remove { .. }) && names.is_empty() {
        order.reverse();
    }
    let mut steps = Vec::new();
    for name in order {
        let Some(service) = project.get(&name) else {
            continue;
        };
        let result = act_one(ctx, &name, service, action, files::of(&ctx.files, &name)).await;
        steps.push(step(ctx, name, result));
    }
    Ok(steps)
}

/// One action on one container; `files` are put into it before a start or
/// a restart.
async fn act_one(
    ctx: &Context<'_>,
    name: &str,
    service: &Service,
    action: Action,
    files: &[ContainerFile],
) -> Result<Outcome, ComposeError> {
    let engine = ctx.engines.for_service(service)?;
    let docker = engine.docker();
    let secs = |d: Duration| d.as_secs().min(i32::MAX as u64) as i32;
    let result = match action {
        Action::Start => {
            if service.create_only() {
                return Ok(Outcome::UpToDate);
            }
            files::put(&engine, name, files, ctx.progress).await?;
            (ctx.progress)(&format!("Starting {name}"));
            docker
                .start_container(
                    name,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
        }
        Action::Stop(grace) => {
            (ctx.progress)(&format!("Stopping {name}"));
            docker
                .stop_container(
                    name,
                    Some(StopContainerOptions {
                        t: Some(secs(grace)),
                        ..Default::default()
                    }),
                )
                .await
        }
        Action::Restart(grace) => {
            if service.create_only() {
                return Ok(Outcome::UpToDate);
            }
            // Into the running container (the engine writes into its
            // mounted root), then the restart: the engine's restart stays
            // one operation.
            files::put(&engine, name, files, ctx.progress).await?;
            (ctx.progress)(&format!("Restarting {name}"));
            docker
                .restart_container(
                    name,
                    Some(RestartContainerOptions {
                        t: Some(secs(grace)),
                        ..Default::default()
                    }),
                )
                .await
        }
        Action::Remove { force } => {
            (ctx.progress)(&format!("Removing {name}"));
            docker
                .remove_container(
                    name,
                    Some(RemoveContainerOptions {
                        force,
                        ..Default::default()
                    }),
                )
                .await
        }
        Action::Kill => {
            (ctx.progress)(&format!("Killing {name}"));
            docker
                .kill_container(
                    name,
                    Some(KillContainerOptions {
                        signal: "KILL".into(),
                    }),
                )
                .await
        }
    };
    match result {
        Ok(()) => Ok(match action {
            Action::Start | Action::Restart(_) => Outcome::Running,
            _ => Outcome::UpToDate,
        }),
        Err(e) => Err(engine_error(name, engine.err(e))),
    }
}

/// One row of [`ps`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The service name.
    pub service: String,
    /// `system` or `user`.
    pub scope: &'static str,
    /// The image the service names.
    pub image: String,
    /// The container's state ("running", "exited", ...), or "not created",
    /// or why the engine could not be asked.
    pub state: String,
    /// The engine's status text ("Up 3 minutes", "Exited (0) 2 seconds ago").
    pub status: String,
}

/// The state of every service of `names` (all when empty), in start order.
pub async fn ps(
    ctx: &Context<'_>,
    project: &Project,
    names: &[String],
) -> Result<Vec<Row>, ComposeError> {
    let order = in_start_order(project, names)?;
    let mut rows = Vec::new();
    let mut listed: [Option<Result<Vec<ContainerSummary>, String>>; 2] = [None, None];
    for name in order {
        let Some(service) = project.get(&name) else {
            continue;
        };
        let slot = usize::from(!service.is_system());
        if listed[slot].is_none() {
            listed[slot] = Some(match ctx.engines.for_service(service) {
                Ok(engine) => engine
                    .docker()
                    .list_containers(Some(ListContainersOptions {
                        all: true,
                        ..Default::default()
                    }))
                    .await
                    .map_err(|e| engine.err(e).to_string()),
                Err(e) => Err(e.to_string()),
            });
        }
        let (state, status) = match listed[slot].as_ref() {
            Some(Ok(containers)) => containers
                .iter()
                .find(|c| {
                    c.names
                        .iter()
                        .flatten()
                        .any(|n| n.trim_start_matches('/') == name)
                })
                .map(|c| {
                    (
                        c.state
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "unknown".into()),
                        c.status.clone().unwrap_or_default(),
                    )
                })
                .unwrap_or_else(|| ("not created".into(), String::new())),
            Some(Err(e)) => ("unknown".into(), e.clone()),
            None => ("unknown".into(), String::new()),
        };
        rows.push(Row {
            scope: if service.is_system() {
                "system"
            } else {
                "user"
            },
            image: service.image.clone().unwrap_or_default(),
            service: name,
            state,
            status,
        });
    }
    Ok(rows)
}

/// Pulls the image of every service of `names` (all when empty).
pub async fn pull(
    ctx: &Context<'_>,
    project: &Project,
    names: &[String],
) -> Result<Vec<Step>, ComposeError> {
    let mut steps = Vec::new();
    for name in in_start_order(project, names)? {
        let Some(service) = project.get(&name) else {
            continue;
        };
        let image = service.image.clone().unwrap_or_default();
        let result = async {
            if image.is_empty() {
                return Err(ComposeError::Field {
                    service: name.clone(),
                    field: "image",
                    reason: "a service needs an image".into(),
                });
            }
            let engine = ctx.engines.for_service(service)?;
            (ctx.progress)(&format!("Pulling {name} ({image})"));
            engine_client::commands::image::pull_image(
                &engine,
                &image,
                engine_client::progress::Target::Quiet,
            )
            .await
            .map_err(|e| engine_error(&name, e))
        }
        .await;
        steps.push(step(ctx, name, result.map(|()| Outcome::UpToDate)));
    }
    Ok(steps)
}

/// Where [`logs`] writes.
pub trait LogSink: Send {
    /// One chunk of a service's output (usually a line, with its newline).
    fn write(&mut self, service: &str, stderr: bool, bytes: &[u8]);
}

/// Streams the logs of `names` (all services when empty) to `sink`: the last
/// `lines` lines of each (all when `None`), then, with `follow`, new lines as
/// they come until every container stops.
pub async fn logs(
    ctx: &Context<'_>,
    project: &Project,
    names: &[String],
    follow: bool,
    lines: Option<u64>,
    sink: &mut dyn LogSink,
) -> Result<(), ComposeError> {
    let order = named_or_all(project, names)?;
    let mut streams = Vec::new();
    for name in order {
        let Some(service) = project.get(&name) else {
            continue;
        };
        let engine = ctx.engines.for_service(service)?;
        let docker = if follow {
            engine.streaming()
        } else {
            engine.docker().clone()
        };
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            tail: lines.map_or_else(|| "all".to_string(), |n| n.to_string()),
            ..Default::default()
        };
        let stream = docker
            .logs(&name, Some(options))
            .map(move |item| (name.clone(), item, engine.host.clone()));
        streams.push(stream.boxed());
    }
    // Interleave the services' streams as their lines come.
    let mut all = futures_util::stream::select_all(streams);
    while let Some((name, item, host)) = all.next().await {
        use bollard::container::LogOutput;
        match item {
            Ok(LogOutput::StdErr { message }) => sink.write(&name, true, &message),
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                sink.write(&name, false, &message)
            }
            Ok(LogOutput::StdIn { .. }) => {}
            Err(e) if is_not_found(&e) => {
                return Err(ComposeError::Engine {
                    service: name,
                    message: "no container: bring it up first (ros service up)".into(),
                })
            }
            Err(e) => {
                return Err(engine_error(
                    &name,
                    engine_client::Error::from_bollard(e, &host),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    /// The OS's shape: volumes, udev-cold, udev, then acpid, network,
    /// syslog; cloud-init-execute (reloads) after network; ntp after
    /// network; console after cloud-init-execute; docker after console.
    fn os_like() -> (Vec<String>, Dependencies) {
        let deps: Dependencies = [
            ("volumes", &[][..]),
            ("udev-cold", &["volumes"][..]),
            ("udev", &["udev-cold"][..]),
            ("acpid", &["udev"][..]),
            ("network", &["udev"][..]),
            ("syslog", &["udev"][..]),
            ("cloud-init-execute", &["network"][..]),
            ("ntp", &["network"][..]),
            ("console", &["cloud-init-execute", "volumes"][..]),
            ("docker", &["console"][..]),
        ]
        .into_iter()
        .map(|(n, ds)| (n.to_string(), ds.iter().map(|d| d.to_string()).collect()))
        .collect();
        let order = names(&[
            "volumes",
            "udev-cold",
            "udev",
            "acpid",
            "network",
            "cloud-init-execute",
            "ntp",
            "syslog",
            "console",
            "docker",
        ]);
        (order, deps)
    }

    /// Runs [`launchable`] to the end, finishing what started in the order
    /// given by `finish` (the first of the running ones it names); returns
    /// each round's started services.
    fn rounds(order: &[String], deps: &Dependencies, finish: &[&str]) -> Vec<Vec<String>> {
        let barrier = |n: &str| n == "cloud-init-execute";
        let mut todo = order.to_vec();
        let mut starting = BTreeSet::new();
        let mut out = Vec::new();
        loop {
            let now = launchable(&todo, deps, &starting, barrier);
            todo.retain(|n| !now.contains(n));
            starting.extend(now.iter().cloned());
            out.push(now);
            let Some(first) = finish
                .iter()
                .map(|f| f.to_string())
                .chain(starting.iter().cloned())
                .find(|n| starting.contains(n))
            else {
                break;
            };
            starting.remove(&first);
        }
        assert!(todo.is_empty(), "left out: {todo:?}");
        out.retain(|r| !r.is_empty());
        out
    }

    #[test]
    fn independent_services_start_together_and_a_reload_starts_alone() {
        let (order, deps) = os_like();
        let got = rounds(&order, &deps, &["network", "acpid", "syslog"]);
        assert_eq!(
            got,
            [
                names(&["volumes"]),
                names(&["udev-cold"]),
                names(&["udev"]),
                // syslog comes after the reload in the start order: it waits
                // for it, so that it starts with the reloaded config.
                names(&["acpid", "network"]),
                names(&["cloud-init-execute"]),
                // console does not wait for ntp or syslog.
                names(&["ntp", "syslog", "console"]),
                names(&["docker"]),
            ]
        );
    }

    #[test]
    fn a_reload_waits_for_everything_before_it_and_holds_back_what_follows() {
        let (order, deps) = os_like();
        let barrier = |n: &str| n == "cloud-init-execute";
        let todo = names(&["cloud-init-execute", "ntp", "syslog", "console", "docker"]);
        // acpid, before it in the order, is still starting: nothing starts.
        let starting: BTreeSet<String> = names(&["acpid"]).into_iter().collect();
        assert!(launchable(&todo, &deps, &starting, barrier).is_empty());
        // Everything before it done: it starts alone.
        assert_eq!(
            launchable(&todo, &deps, &BTreeSet::new(), barrier),
            names(&["cloud-init-execute"])
        );
        // While it runs, nothing else starts, not even what does not
        // depend on it.
        let starting: BTreeSet<String> = names(&["cloud-init-execute"]).into_iter().collect();
        assert!(launchable(&todo[1..], &deps, &starting, barrier).is_empty());
        // Without a reload, the order alone does not hold anything back.
        assert_eq!(
            launchable(&order, &deps, &BTreeSet::new(), |_| false),
            names(&["volumes"])
        );
    }

    #[test]
    fn a_service_waits_for_dependencies_that_are_starting_or_waiting() {
        let (_, deps) = os_like();
        let todo = names(&["console", "docker"]);
        let starting: BTreeSet<String> = names(&["volumes"]).into_iter().collect();
        assert!(launchable(&todo, &deps, &starting, |_| false).is_empty());
        assert_eq!(
            launchable(&todo, &deps, &BTreeSet::new(), |_| false),
            names(&["console"])
        );
        // A dependency outside the selection (not waiting, not starting)
        // holds nothing back.
        assert_eq!(
            launchable(&names(&["docker"]), &deps, &BTreeSet::new(), |_| false),
            names(&["docker"])
        );
    }
}
