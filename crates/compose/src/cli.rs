//! `ros service` (alias `ros s`): the services of the merged cloud-config,
//! brought up and managed in their engines.
//!
//! The project is `rancher.services` of the merged config (every layer, see
//! `ros config --help`) under the project name `os`; `rancher.environment`
//! fills the services' environment. Services with `io.rancher.os.scope:
//! system` run in the system engine, the others in User Docker.
//! `enable`, `disable` and `delete` edit `rancher.services_include` in
//! /var/lib/rancher/conf/cloud-config.yml, written atomically. `up`,
//! `start` and `restart` put the config's `write_files` entries with
//! `container: SERVICE` into that service's container before starting it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use config::{Config, Root, Value};

use crate::container::Environment;
use crate::up::{self, Action, Context, Engines, LogSink, Outcome, Step};
use crate::{ComposeError, Project};

const AFTER_HELP: &str = "\
Services come from rancher.services of the merged config; system services
(io.rancher.os.scope: system) run in the system engine, the others in User
Docker. Service names may be given to act on some only; up also brings up
what they depend on (io.rancher.os.after, volumes_from, container: links).
up, start and restart first write the write_files entries whose container
is the service into its container (owners numeric or root).

Examples:
  ros service up                  bring up every service, in dependency order
  ros service up ntp              bring up ntp and what it depends on
  ros service ps
  ros service logs -f --lines 20 network
  ros service restart syslog
  ros service enable my-service   set rancher.services_include.my-service=true";

/// Manage the OxOS system and user services of the cloud-config.
#[derive(Debug, Parser)]
#[command(name = "ros service", bin_name = "ros service", after_help = AFTER_HELP)]
struct Cli {
    /// Directory that every system path is relative to
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/",
        env = "ROS_ROOT"
    )]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the services of the config and of rancher.services_include
    #[command(visible_alias = "ls")]
    List {
        /// Also list services_include entries that are disabled
        #[arg(long)]
        all: bool,
    },
    /// Enable a service: set rancher.services_include.NAME to true
    Enable {
        /// A service name, a local compose file, or a URL
        name: String,
    },
    /// Disable a service: set rancher.services_include.NAME to false
    Disable {
        /// The name given to enable
        name: String,
    },
    /// Remove a service from rancher.services_include
    Delete {
        /// The name given to enable
        name: String,
    },
    /// Create and start services in dependency order
    Up {
        /// Services (default: all)
        services: Vec<String>,
    },
    /// Start existing service containers
    Start {
        /// Services (default: all)
        services: Vec<String>,
    },
    /// Stop service containers
    Stop {
        /// Seconds to wait before killing
        #[arg(short = 't', long = "timeout", default_value_t = 10)]
        timeout: u64,
        /// Services (default: all, in reverse start order)
        services: Vec<String>,
    },
    /// Restart service containers
    Restart {
        /// Seconds to wait before killing
        #[arg(short = 't', long = "timeout", default_value_t = 10)]
        timeout: u64,
        /// Services (default: all)
        services: Vec<String>,
    },
    /// Remove stopped service containers
    Rm {
        /// Also remove running containers
        #[arg(short, long)]
        force: bool,
        /// Services (default: all, in reverse start order)
        services: Vec<String>,
    },
    /// Kill service containers (SIGKILL)
    Kill {
        /// Services (default: all)
        services: Vec<String>,
    },
    /// Show the output of services
    Logs {
        /// Keep following new output
        #[arg(short, long)]
        follow: bool,
        /// Show only the last N lines of each service
        #[arg(long, short = 'n', value_name = "N")]
        lines: Option<u64>,
        /// Services (default: all)
        services: Vec<String>,
    },
    /// Show the state of services
    Ps {
        /// Services (default: all)
        services: Vec<String>,
    },
    /// Pull the images of services
    Pull {
        /// Services (default: all)
        services: Vec<String>,
    },
}

/// `ros service ARGS...` (`ARGS[0]` is the command's name); returns the exit
/// code: 0 done, 1 failed (a service failed), 2 bad usage.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli: Cli = match service_cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match service_cli::runtime("ros service") {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(execute(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ros service: {e}");
            1
        }
    }
}

/// Errors of the command: the config, or a compose error.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// The project of a system, and what went wrong on the way.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// `rancher.services` and every enabled `rancher.services_include` entry.
    pub project: Project,
    /// `rancher.environment`.
    pub env: Environment,
    /// Entries of `services_include` that could not be loaded, each with
    /// why; the rest of the project is still there.
    pub warnings: Vec<String>,
    /// `rancher.restart_services`.
    pub restart_services: Vec<String>,
    /// The `write_files` entries for the services' containers (all but the
    /// console's), by service.
    pub files: crate::files::ServiceFiles,
    /// `write_files` entries for containers that could not be used (each
    /// names `write_files[N]` and why); they are not written, the others
    /// are.
    pub errors: Vec<String>,
}

/// The project and environment of the merged config under `root`: the
/// services of `rancher.services`, then those of each enabled
/// `rancher.services_include` entry (downloads cached under
/// /var/lib/rancher/cache); and the `write_files` entries for the
/// services' containers.
pub async fn load_project(root: &Root) -> Result<Loaded, ComposeError> {
    let merged = config::load(root)?;
    let (mut project, env) = project_of(&merged)?;
    let (files, errors) = cloudinit::write_files::for_containers(&merged);
    let model: config::model::CloudConfig = merged.typed()?;
    let mut warnings = Vec::new();
    let enabled: Vec<&String> = model
        .rancher
        .services_include
        .iter()
        .filter(|(_, on)| **on)
        .map(|(name, _)| name)
        .collect();
    if !enabled.is_empty() {
        let repositories = crate::include::repository_urls(&model.rancher.repositories);
        // An include that cannot be loaded is a warning: the rest of the
        // project (the OS's own services) must still come up.
        match crate::include::Includes::new(root.join("/var/lib/rancher/cache")) {
            Ok(includes) => {
                for entry in enabled {
                    match includes.resolve_entry(entry, &repositories).await {
                        Ok(included) => project.merge(included.project),
                        Err(e) => warnings.push(format!("services_include {entry}: {e}")),
                    }
                }
            }
            Err(e) => warnings.push(e.to_string()),
        }
    }
    for (container, list) in &files {
        if project.get(container).is_none() {
            let paths: Vec<&str> = list.iter().map(|f| f.path.as_str()).collect();
            warnings.push(format!(
                "write_files: container {container} is not a service of the config; {} not written",
                paths.join(", ")
            ));
        }
    }
    Ok(Loaded {
        project,
        env,
        warnings,
        restart_services: model.rancher.restart_services,
        files,
        errors,
    })
}

/// A reload for [`up::up`]: loads the project again, printing the
/// warnings with `warn` and the errors with `error`.
pub fn reloader(
    root: Root,
    warn: fn(&str),
    error: fn(&str),
) -> impl FnMut() -> futures_util::future::BoxFuture<'static, Result<up::Reloaded, ComposeError>> {
    move || {
        let root = root.clone();
        Box::pin(async move {
            let loaded = load_project(&root).await?;
            for w in &loaded.warnings {
                warn(w);
            }
            for e in &loaded.errors {
                error(e);
            }
            Ok(up::Reloaded {
                project: loaded.project,
                env: loaded.env,
                files: loaded.files,
                restart: loaded.restart_services,
            })
        })
    }
}

fn project_of(merged: &Config) -> Result<(Project, Environment), ComposeError> {
    let services = merged
        .get("rancher.services")
        .ok()
        .flatten()
        .cloned()
        .unwrap_or(Value::Null);
    let project = Project::from_services(services)?;
    let mut values = BTreeMap::new();
    if let Ok(Some(Value::Mapping(env))) = merged.get("rancher.environment") {
        for (k, v) in env {
            if let Some(k) = scalar(k) {
                values.insert(k, v.clone());
            }
        }
    }
    let (vars, problems) = config::environment::variables(&values);
    for problem in problems {
        tracing::warn!("{problem}");
    }
    Ok((project, Environment::new(vars)))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The engines' sockets: under the root, or `$SYSTEM_DOCKER_HOST` /
/// `$DOCKER_HOST` (unix:// addresses) when set.
fn engines(root: &Root) -> Engines {
    let from_env = |var: &str| {
        std::env::var(var)
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
            .filter(|p| !p.as_os_str().is_empty())
    };
    Engines {
        system: from_env("SYSTEM_DOCKER_HOST")
            .unwrap_or_else(|| root.join("/var/run/system-docker.sock")),
        user: from_env("DOCKER_HOST").unwrap_or_else(|| root.join("/var/run/docker.sock")),
    }
}

fn progress_line(line: &str) {
    eprintln!("{line}");
}

/// The exit code for steps: 1 when one failed.
fn steps_code(steps: &[Step]) -> i32 {
    i32::from(
        steps
            .iter()
            .any(|s| matches!(s.outcome, Outcome::Failed(_))),
    )
}

async fn execute(cli: Cli) -> Result<i32, CliError> {
    let root = Root::new(cli.root);
    match cli.command {
        Command::Enable { name } => return edit_include(&root, &name, Some(true)),
        Command::Disable { name } => return edit_include(&root, &name, Some(false)),
        Command::Delete { name } => return edit_include(&root, &name, None),
        Command::List { all } => return list(&root, all).await,
        _ => {}
    }
    let loaded = load_project(&root).await?;
    for warning in &loaded.warnings {
        eprintln!("ros service: warning: {warning}");
    }
    for error in &loaded.errors {
        eprintln!("ros service: error: {error}");
    }
    let (project, env) = (loaded.project, loaded.env);
    let ctx = Context {
        project: "os".into(),
        engines: engines(&root),
        env,
        files: loaded.files,
        progress: &progress_line,
    };
    let code = match cli.command {
        Command::Up { services } => {
            let mut reload = reloader(
                root.clone(),
                |w| eprintln!("ros service: warning: {w}"),
                |e| eprintln!("ros service: error: {e}"),
            );
            steps_code(&up::up(&ctx, &project, &services, Some(&mut reload)).await?)
        }
        Command::Start { services } => {
            steps_code(&up::act(&ctx, &project, &services, Action::Start).await?)
        }
        Command::Stop { timeout, services } => steps_code(
            &up::act(
                &ctx,
                &project,
                &services,
                Action::Stop(Duration::from_secs(timeout)),
            )
            .await?,
        ),
        Command::Restart { timeout, services } => steps_code(
            &up::act(
                &ctx,
                &project,
                &services,
                Action::Restart(Duration::from_secs(timeout)),
            )
            .await?,
        ),
        Command::Rm { force, services } => {
            steps_code(&up::act(&ctx, &project, &services, Action::Remove { force }).await?)
        }
        Command::Kill { services } => {
            steps_code(&up::act(&ctx, &project, &services, Action::Kill).await?)
        }
        Command::Pull { services } => steps_code(&up::pull(&ctx, &project, &services).await?),
        Command::Ps { services } => {
            let rows = up::ps(&ctx, &project, &services).await?;
            let mut out = std::io::stdout().lock();
            let width = rows
                .iter()
                .map(|r| r.service.len())
                .max()
                .unwrap_or(0)
                .max(4);
            let image_width = rows.iter().map(|r| r.image.len()).max().unwrap_or(0).max(5);
            writeln!(
                out,
                "{:width$}   {:6}   {:image_width$}   {:11}   STATUS",
                "NAME", "SCOPE", "IMAGE", "STATE"
            )?;
            for r in rows {
                writeln!(
                    out,
                    "{:width$}   {:6}   {:image_width$}   {:11}   {}",
                    r.service, r.scope, r.image, r.state, r.status
                )?;
            }
            0
        }
        Command::Logs {
            follow,
            lines,
            services,
        } => {
            let prefix = services.len() != 1;
            let width = if services.is_empty() {
                project.names().map(str::len).max().unwrap_or(0)
            } else {
                services.iter().map(String::len).max().unwrap_or(0)
            };
            let mut sink = Printer {
                prefix,
                width,
                partial: BTreeMap::new(),
            };
            up::logs(&ctx, &project, &services, follow, lines, &mut sink).await?;
            sink.flush();
            0
        }
        Command::Enable { .. }
        | Command::Disable { .. }
        | Command::Delete { .. }
        | Command::List { .. } => 0,
    };
    Ok(code)
}

/// Writes logs to stdout and stderr, each line prefixed by its service
/// (`network | ...`) when more than one service is shown.
struct Printer {
    prefix: bool,
    width: usize,
    /// Bytes of a line not finished yet, per service and stream.
    partial: BTreeMap<(String, bool), Vec<u8>>,
}

impl Printer {
    fn emit(&self, service: &str, stderr: bool, line: &[u8]) {
        let mut text = Vec::with_capacity(line.len() + self.width + 3);
        if self.prefix {
            text.extend_from_slice(format!("{service:width$} | ", width = self.width).as_bytes());
        }
        text.extend_from_slice(line);
        // A closed pipe (`ros service logs | head`) is not worth an error.
        let _ = if stderr {
            std::io::stderr().lock().write_all(&text)
        } else {
            std::io::stdout().lock().write_all(&text)
        };
    }

    fn flush(&mut self) {
        for ((service, stderr), rest) in std::mem::take(&mut self.partial) {
            if !rest.is_empty() {
                let mut rest = rest;
                rest.push(b'\n');
                self.emit(&service, stderr, &rest);
            }
        }
        let _ = std::io::stdout().flush();
    }
}

impl LogSink for Printer {
    fn write(&mut self, service: &str, stderr: bool, bytes: &[u8]) {
        if !self.prefix {
            self.emit(service, stderr, bytes);
            return;
        }
        let key = (service.to_string(), stderr);
        let mut buf = self.partial.remove(&key).unwrap_or_default();
        buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = buf[start..start + end + 1].to_vec();
            self.emit(service, stderr, &line);
            start += end + 1;
        }
        buf.drain(..start);
        if !buf.is_empty() {
            self.partial.insert(key, buf);
        }
    }
}

/// The user's own config file (cloud-config.yml), or an empty one.
fn user_config(root: &Root) -> Result<Config, config::Error> {
    let path = root.cloud_config();
    match std::fs::metadata(&path) {
        Ok(_) => Config::load(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::new()),
        Err(source) => Err(config::Error::Read { path, source }),
    }
}

/// The mapping under `key` in `map`, made (replacing a non-mapping value)
/// when there is none.
fn child_mapping<'a>(map: &'a mut config::Mapping, key: &str) -> &'a mut config::Mapping {
    let value = map
        .entry(Value::String(key.into()))
        .or_insert_with(|| Value::Mapping(Default::default()));
    if !value.is_mapping() {
        *value = Value::Mapping(Default::default());
    }
    match value {
        Value::Mapping(m) => m,
        _ => unreachable!("made a mapping just above"),
    }
}

/// Sets (`Some`) or removes (`None`) `rancher.services_include.NAME` in the
/// user's config. The name is a key of its own even when it holds dots or
/// slashes (a URL), so the mapping is edited directly, not by dotted key.
fn edit_include(root: &Root, name: &str, enabled: Option<bool>) -> Result<i32, CliError> {
    let mut user = user_config(root)?;
    let rancher = child_mapping(user.as_mapping_mut(), "rancher");
    let include = child_mapping(rancher, "services_include");
    let key = Value::String(name.to_string());
    match enabled {
        Some(on) => {
            include.insert(key, Value::Bool(on));
        }
        None => {
            if include.shift_remove(&key).is_none() {
                eprintln!("ros service: {name} is not in rancher.services_include");
                return Ok(1);
            }
        }
    }
    config::layers::write_atomic(&root.cloud_config(), &user.to_yaml()?)?;
    Ok(0)
}

/// `list`: the services of rancher.services, the services_include entries,
/// and (with `--all`) the services of the repositories' indexes not enabled.
async fn list(root: &Root, all: bool) -> Result<i32, CliError> {
    let merged = config::load(root)?;
    let (project, _) = project_of(&merged)?;
    let model: config::model::CloudConfig = merged.typed()?;
    let mut lines = Vec::new();
    for name in project.names() {
        lines.push(("enabled", name.to_string()));
    }
    for (name, on) in &model.rancher.services_include {
        if *on || all {
            lines.push((if *on { "enabled" } else { "disabled" }, name.clone()));
        }
    }
    let repositories = crate::include::repository_urls(&model.rancher.repositories);
    if all && !repositories.is_empty() {
        let includes = crate::include::Includes::new(root.join("/var/lib/rancher/cache"))?;
        for index in includes.list(&repositories).await {
            match index {
                Ok(index) => {
                    for name in index.services {
                        if !model.rancher.services_include.contains_key(&name) {
                            lines.push(("disabled", name));
                        }
                    }
                }
                Err(e) => eprintln!("ros service: warning: {e}"),
            }
        }
    }
    let mut out = std::io::stdout().lock();
    for (state, name) in lines {
        writeln!(out, "{state:<8}  {name}")?;
    }
    Ok(0)
}
