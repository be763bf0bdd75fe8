//! Compose services for OxOS: service definitions, `io.rancher.os.*` labels and
//! the start order of a project.
//!
//! # Background
//!
//! Every system service of OxOS (console, network, ntp, the user engine, volume
//! containers) is described in the compose v1/v2 format, as RancherOS did, under
//! `rancher.services` of the configuration or in a stand-alone compose file.
//! Ordering is not expressed with `depends_on` but with the
//! `io.rancher.os.after` / `io.rancher.os.before` labels, plus the implicit
//! dependencies that `volumes_from` and `net|ipc|pid: container:X` create.
//!
//! # Design
//!
//! * [`Service`] is a serde model of the compose fields OxOS uses; fields it does
//!   not know are kept in [`Service::extra`] so nothing is lost on a round trip.
//!   Both the string and list forms of `command`/`entrypoint` ([`CommandLine`]) and
//!   the map and list forms of `environment`/`labels` ([`KeyValues`]) are accepted.
//! * [`Project`] keeps services in file order, parsed from a `rancher.services`
//!   section, a v2 file with a top-level `services:` key, or a v1 file whose
//!   top level is the service map.
//! * [`Project::start_order`] builds the dependency graph and returns a
//!   topological order where ties are broken by name, so the same project always
//!   starts the same way. A cycle is reported as `a -> b -> a`.
//! * [`container`] turns a service into the engine's create request (the
//!   container is named after the service and labelled with the project, the
//!   service and a hash of its definition) and fills its environment from
//!   `rancher.environment` ([`container::Environment`]).
//! * [`up`] brings a project up against the engines: system-scope services
//!   in the system engine, the others in User Docker, in start order, with
//!   `createonly`, `detach: "false"`, `rebuild` and `reloadconfig`; it also
//!   starts, stops, restarts, removes, kills, lists, pulls and shows the logs
//!   of a project's containers. A failing service is reported and does not
//!   stop the others.
//! * [`files`] puts the config's `write_files` entries for a service's
//!   container (`container: SERVICE`, decoded by the cloudinit crate) into
//!   it before each start: one tar through the engine's
//!   `PUT /containers/{id}/archive`. They come with the project
//!   ([`cli::load_project`]) and reach [`up`] in [`up::Context::files`]
//!   and [`up::Reloaded::files`].
//! * [`cli`] is `ros service`, over the merged cloud-config.
//!
//! # Limitations
//!
//! * Scalar fields typed as strings (`user`, `hostname`, ...) must be written as
//!   YAML strings or integers; other YAML types are rejected.
//! * `after`/`before` naming an unknown service is ignored (as RancherOS did);
//!   `volumes_from` and `container:`/`service:` links to an unknown service are
//!   errors, so a link to a container outside the project is not supported yet.
//! * Variable interpolation (`${VAR}`) and `extends` are not supported yet.
//! * Fields the engine request has no place for are reported by `up` as
//!   ignored (a warning line per field), not applied.
//! * `cron.schedule` is parsed but services are not run on a schedule yet.

pub mod cli;
pub mod container;
pub mod files;
pub mod include;
mod project;
mod service;
pub mod up;

pub use include::{Included, Includes, Index};
pub use project::Project;
pub use service::{
    CommandLine, KeyValues, Service, Ulimit, LABEL_AFTER, LABEL_BEFORE, LABEL_CREATEONLY,
    LABEL_CRON, LABEL_DETACH, LABEL_REBUILD, LABEL_RELOADCONFIG, LABEL_SCOPE,
};

/// Errors of the compose crate.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The document is not valid YAML.
    #[error("compose file is not valid yaml: {0}")]
    Yaml(#[source] serde_norway::Error),
    /// The services section is not a mapping of names to services.
    #[error("compose services must be a mapping of service names to services, found {0}")]
    NotAMapping(&'static str),
    /// A service name is not a string.
    #[error("compose service name must be a string")]
    BadName,
    /// One service could not be parsed.
    #[error("service {name}: {source}")]
    Service {
        /// The service name.
        name: String,
        /// What was wrong.
        #[source]
        source: serde_norway::Error,
    },
    /// A service depends on a service the project does not define.
    #[error("service {service}: {via} refers to unknown service {dependency}")]
    UnknownDependency {
        /// The service with the dependency.
        service: String,
        /// The missing service.
        dependency: String,
        /// The field that creates the dependency (volumes_from, net, ipc, pid).
        via: &'static str,
    },
    /// The dependency graph has a cycle, e.g. `a -> b -> a`.
    #[error("dependency cycle between services: {0}")]
    Cycle(String),
    /// A field of a service has a value the engine cannot take.
    #[error("service {service}: {field}: {reason}")]
    Field {
        /// The service.
        service: String,
        /// The compose field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The engine a service runs in cannot be reached.
    #[error("{engine} is not running (cannot connect to {host})")]
    EngineUnavailable {
        /// "the system engine" or "User Docker".
        engine: &'static str,
        /// Its address.
        host: String,
    },
    /// The engine refused or failed a request for a service.
    #[error("service {service}: {message}")]
    Engine {
        /// The service.
        service: String,
        /// The engine's answer.
        message: String,
    },
    /// A service name that the project does not define.
    #[error("no service named {0} in the configuration (see ros service list)")]
    UnknownService(String),
    /// The configuration the project comes from could not be read.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// The HTTP client for `services_include` downloads could not be made.
    #[error("cannot create the http client for services_include: {0}")]
    HttpClient(String),
    /// A `services_include` key is not a name, an absolute path or a URL.
    #[error("services_include {entry:?}: {reason}")]
    IncludeInvalidName {
        /// The key.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `services_include` entry is in none of the places searched.
    #[error("services_include {entry}: not found in {searched}")]
    IncludeNotFound {
        /// The key.
        entry: String,
        /// The repositories (name and URL) or the location searched.
        searched: String,
    },
    /// A `services_include` entry could not be read and is not cached.
    #[error("services_include {entry}: cannot load {location}: {reason}")]
    IncludeUnavailable {
        /// The key.
        entry: String,
        /// The path or URL tried.
        location: String,
        /// Why it failed.
        reason: String,
    },
    /// A `services_include` entry is not a valid compose document.
    #[error("services_include {entry} ({location}): {source}")]
    IncludeInvalid {
        /// The key.
        entry: String,
        /// The path or URL it came from.
        location: String,
        /// What is wrong with the document.
        #[source]
        source: Box<ComposeError>,
    },
    /// A repository's index.yml could not be read and is not cached.
    #[error("service index {repository}: cannot load {location}: {reason}")]
    IndexUnavailable {
        /// The repository's name.
        repository: String,
        /// The path or URL of its index.yml.
        location: String,
        /// Why it failed.
        reason: String,
    },
    /// A repository's index.yml is not a list of entries.
    #[error("service index {location}: {reason}")]
    IndexInvalid {
        /// The path or URL of the index.yml.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
}

#[cfg(test)]
mod tests;
