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
//!
//! # Limitations
//!
//! * Scalar fields typed as strings (`user`, `hostname`, ...) must be written as
//!   YAML strings or integers; other YAML types are rejected.
//! * `after`/`before` naming an unknown service is ignored (as RancherOS did);
//!   `volumes_from` and `container:`/`service:` links to an unknown service are
//!   errors, so a link to a container outside the project is not supported yet.
//! * Variable interpolation (`${VAR}`), `extends`, `services_include` and
//!   project up/down are not part of this crate yet.

mod project;
mod service;

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
}

#[cfg(test)]
mod tests;
