//! From a compose service to an engine's create request.
//!
//! This is pure translation, kept apart from the engine calls so that it can
//! be tested without an engine: [`create_body`] maps each compose field onto
//! the Docker Engine API's `ContainerCreateBody`, and [`Environment`] fills
//! the service's environment from `rancher.environment` the way RancherOS
//! did.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, ResourcesUlimits};
use sha2::{Digest, Sha256};

use crate::{CommandLine, ComposeError, Service, Ulimit};

/// Label naming the project a container belongs to (`os` for system services).
pub const LABEL_PROJECT: &str = "io.docker.compose.project";
/// Label naming the service a container was made from.
pub const LABEL_SERVICE: &str = "io.docker.compose.service";
/// Label holding a hash of the service definition the container was made
/// from, so that `up` can tell when it changed and the container must be made anew.
pub const LABEL_CONFIG_HASH: &str = "io.docker.compose.config-hash";

/// `rancher.environment`: variables that services can take by name.
///
/// A service asks for a variable by listing it without a value
/// (`environment: [HTTP_PROXY]`); a name ending in `*` asks for every variable
/// with that prefix (`HTTP*`). A key `SERVICE/NAME` in `rancher.environment`
/// applies to that service only and wins over `NAME`; a variable that is not
/// found is left out. The rule is `config::environment`'s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// An environment with these variables.
    pub fn new(vars: BTreeMap<String, String>) -> Self {
        Self { vars }
    }

    /// The `NAME=value` entries that `name` resolves to for `service`
    /// (`config::environment::lookup`, the rule User Docker's environment
    /// follows too).
    pub fn lookup(&self, service: &str, name: &str) -> Vec<String> {
        config::environment::lookup(&self.vars, service, name)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    /// The environment of `service`: its `NAME=value` entries as they are, and
    /// its bare `NAME` / `PREFIX*` entries filled from this environment.
    pub fn resolve(&self, name: &str, service: &Service) -> Vec<String> {
        let mut out = Vec::new();
        for (key, value) in &service.environment.0 {
            match value {
                Some(value) => out.push(format!("{key}={value}")),
                None => out.extend(self.lookup(name, key)),
            }
        }
        out
    }
}

/// Splits a command written as one string the way a POSIX shell would, as
/// compose does (`command: sh -c 'echo hi'`).
fn words(
    field: &'static str,
    service: &str,
    command: &CommandLine,
) -> Result<Vec<String>, ComposeError> {
    match command {
        CommandLine::Args(args) => Ok(args.clone()),
        CommandLine::Shell(line) => shlex::split(line).ok_or_else(|| ComposeError::Field {
            service: service.to_string(),
            field,
            reason: format!("unbalanced quotes in {line:?}"),
        }),
    }
}

/// Fields the engine request has no place for, or that OxOS does not act on.
/// `up` warns about them instead of dropping them silently.
pub fn ignored_fields(service: &Service) -> Vec<&str> {
    service.extra.keys().map(String::as_str).collect()
}

/// The create request for `service` named `name` in `project`, with its
/// environment resolved from `env`. The container is named after the service.
pub fn create_body(
    project: &str,
    name: &str,
    service: &Service,
    env: &Environment,
) -> Result<ContainerCreateBody, ComposeError> {
    let field_error = |field: &'static str, reason: String| ComposeError::Field {
        service: name.to_string(),
        field,
        reason,
    };
    let image = service
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| field_error("image", "a service needs an image".into()))?;

    let mut binds = Vec::new();
    let mut anonymous = Vec::new();
    for spec in &service.volumes {
        match engine_client::parse::parse_volume(spec)
            .map_err(|e| field_error("volumes", e.to_string()))?
        {
            engine_client::parse::VolumeSpec::Bind(bind) => binds.push(bind),
            engine_client::parse::VolumeSpec::Anonymous(path) => anonymous.push(path),
        }
    }
    let restart_policy = service
        .restart
        .as_deref()
        .map(engine_client::parse::parse_restart)
        .transpose()
        .map_err(|e| field_error("restart", e.to_string()))?;
    let devices = service
        .devices
        .iter()
        .map(|d| engine_client::parse::parse_device(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| field_error("devices", e.to_string()))?;
    let ulimits = service
        .ulimits
        .iter()
        .map(|(name, limit)| {
            let (soft, hard) = match *limit {
                Ulimit::Single(n) => (n, n),
                Ulimit::Pair { soft, hard } => (soft, hard),
            };
            ResourcesUlimits {
                name: Some(name.clone()),
                soft: Some(soft),
                hard: Some(hard),
            }
        })
        .collect::<Vec<_>>();
    let log_config = service
        .log_driver
        .as_ref()
        .map(|driver| HostConfigLogConfig {
            typ: Some(driver.clone()),
            config: Some(
                service
                    .log_opt
                    .0
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
                    .collect(),
            ),
        });

    let mut labels: HashMap<String, String> = service
        .labels
        .0
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
        .collect();
    labels.insert(LABEL_PROJECT.into(), project.into());
    labels.insert(LABEL_SERVICE.into(), name.into());
    let environment = env.resolve(name, service);
    labels.insert(LABEL_CONFIG_HASH.into(), config_hash(service, &environment));

    let some_vec = |v: Vec<String>| (!v.is_empty()).then_some(v);
    Ok(ContainerCreateBody {
        image: Some(image),
        cmd: service
            .command
            .as_ref()
            .map(|c| words("command", name, c))
            .transpose()?,
        entrypoint: service
            .entrypoint
            .as_ref()
            .map(|c| words("entrypoint", name, c))
            .transpose()?,
        env: some_vec(environment),
        labels: Some(labels),
        user: service.user.clone(),
        working_dir: service.working_dir.clone(),
        hostname: service.hostname.clone(),
        tty: service.tty.then_some(true),
        open_stdin: service.stdin_open.then_some(true),
        volumes: some_vec(anonymous),
        host_config: Some(HostConfig {
            binds: some_vec(binds),
            volumes_from: some_vec(service.volumes_from.clone()),
            network_mode: service.net.clone(),
            pid_mode: service.pid.clone(),
            ipc_mode: service.ipc.clone(),
            uts_mode: service.uts.clone(),
            privileged: service.privileged.then_some(true),
            readonly_rootfs: service.read_only.then_some(true),
            cap_add: some_vec(service.cap_add.clone()),
            devices: (!devices.is_empty()).then_some(devices),
            ulimits: (!ulimits.is_empty()).then_some(ulimits),
            log_config,
            restart_policy,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A hash of what the container is made from: the service definition and
/// the environment it resolved to (a changed `rancher.environment` value
/// must make the container anew too).
pub fn config_hash(service: &Service, environment: &[String]) -> String {
    let mut hasher = Sha256::new();
    // The service serialises deterministically: its maps are ordered.
    hasher.update(serde_norway::to_string(service).unwrap_or_default());
    for entry in environment {
        hasher.update([0]);
        hasher.update(entry);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn every_compose_field_reaches_the_create_request() {
        let s = service(
            r#"
image: busybox:latest
command: sh -c 'echo "hi there"'
entrypoint: [/bin/env]
environment: {A: "1"}
labels: [io.rancher.os.scope=system]
privileged: true
net: host
pid: host
ipc: host
uts: host
volumes: [/etc:/host/etc:ro, /data]
volumes_from: [system-volumes]
restart: on-failure:3
read_only: true
log_driver: json-file
log_opt: {max-size: 10m}
cap_add: [NET_ADMIN]
devices: [/dev/fuse]
user: "1000"
working_dir: /tmp
hostname: box
ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 64}
"#,
        );
        let b = create_body("os", "web", &s, &Environment::default()).unwrap();
        assert_eq!(b.image.as_deref(), Some("busybox:latest"));
        assert_eq!(b.cmd.unwrap(), ["sh", "-c", "echo \"hi there\""]);
        assert_eq!(b.entrypoint.unwrap(), ["/bin/env"]);
        assert_eq!(b.env.unwrap(), ["A=1"]);
        let labels = b.labels.unwrap();
        assert_eq!(labels["io.rancher.os.scope"], "system");
        assert_eq!(labels[LABEL_PROJECT], "os");
        assert_eq!(labels[LABEL_SERVICE], "web");
        assert_eq!(labels[LABEL_CONFIG_HASH].len(), 64);
        assert_eq!(b.user.as_deref(), Some("1000"));
        assert_eq!(b.working_dir.as_deref(), Some("/tmp"));
        assert_eq!(b.hostname.as_deref(), Some("box"));
        assert_eq!(b.volumes.unwrap(), ["/data"]);
        let h = b.host_config.unwrap();
        assert_eq!(h.binds.unwrap(), ["/etc:/host/etc:ro"]);
        assert_eq!(h.volumes_from.unwrap(), ["system-volumes"]);
        assert_eq!(h.network_mode.as_deref(), Some("host"));
        assert_eq!(h.pid_mode.as_deref(), Some("host"));
        assert_eq!(h.ipc_mode.as_deref(), Some("host"));
        assert_eq!(h.uts_mode.as_deref(), Some("host"));
        assert_eq!(h.privileged, Some(true));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(h.cap_add.unwrap(), ["NET_ADMIN"]);
        assert_eq!(
            h.devices.unwrap()[0].path_on_host.as_deref(),
            Some("/dev/fuse")
        );
        let restart = h.restart_policy.unwrap();
        assert_eq!(restart.maximum_retry_count, Some(3));
        let log = h.log_config.unwrap();
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        assert_eq!(log.config.unwrap()["max-size"], "10m");
        let mut ulimits = h.ulimits.unwrap();
        ulimits.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            (ulimits[0].soft, ulimits[0].hard, ulimits[1].soft),
            (Some(1024), Some(2048), Some(64))
        );
    }

    #[test]
    fn bad_fields_name_the_service_and_the_field() {
        let cases = [
            ("command: [a]", "service s: image: a service needs an image"),
            (
                "image: x\nrestart: sometimes",
                "service s: restart: invalid restart policy 'sometimes'",
            ),
            (
                "image: x\nvolumes: ['/x:relative']",
                "service s: volumes: invalid volume specification",
            ),
            (
                "image: x\ncommand: echo 'unterminated",
                "service s: command: unbalanced quotes",
            ),
        ];
        for (yaml, want) in cases {
            let err = create_body("os", "s", &service(yaml), &Environment::default())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(want), "{yaml}: {err}");
        }
    }

    #[test]
    fn environment_fills_bare_names_globs_and_service_scoped_keys() {
        let env = Environment::new(
            [
                ("HTTP_PROXY", "http://proxy:3128"),
                ("HTTPS_PROXY", "http://proxy:3129"),
                ("NO_PROXY", "localhost"),
                ("docker/NO_PROXY", "docker.local"),
                ("ETCD", "x"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let s = service("image: x\nenvironment: [HTTP*, NO_PROXY, MISSING, SET=1]");
        assert_eq!(
            env.resolve("console", &s),
            [
                "HTTPS_PROXY=http://proxy:3129",
                "HTTP_PROXY=http://proxy:3128",
                "NO_PROXY=localhost",
                "SET=1"
            ]
        );
        assert_eq!(
            env.resolve("docker", &s)[2],
            "NO_PROXY=docker.local",
            "a service-scoped key wins"
        );
    }

    #[test]
    fn the_config_hash_changes_with_the_service_and_its_environment() {
        let a = service("image: x\ncommand: a");
        let b = service("image: x\ncommand: b");
        assert_eq!(config_hash(&a, &[]), config_hash(&a.clone(), &[]));
        assert_ne!(config_hash(&a, &[]), config_hash(&b, &[]));
        assert_ne!(config_hash(&a, &[]), config_hash(&a, &["X=1".into()]));
    }
}
