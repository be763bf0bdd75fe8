//! A project: services in file order and their start order.

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::Value;

use crate::{ComposeError, Service};

/// Services of one compose document, in the order they were written.
///
/// Kept as a vector of pairs: the order matters for display and names are unique
/// because they come from a YAML mapping.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Project {
    services: Vec<(String, Service)>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A `container:X` or `service:X` link, returning X.
fn link_target(mode: Option<&str>) -> Option<&str> {
    let mode = mode?;
    mode.strip_prefix("container:")
        .or_else(|| mode.strip_prefix("service:"))
}

impl Project {
    /// Parse a YAML document: a config with `rancher.services`, a v2 file with a
    /// top-level `services:` key, or a v1 file whose top level is the service map.
    pub fn from_yaml(text: &str) -> Result<Self, ComposeError> {
        let value: Value = serde_norway::from_str(text).map_err(ComposeError::Yaml)?;
        Self::from_value(value)
    }

    /// Like [`Project::from_yaml`], from an already parsed value.
    pub fn from_value(value: Value) -> Result<Self, ComposeError> {
        let section = match &value {
            Value::Mapping(m) => {
                if let Some(s) = m
                    .get("rancher")
                    .and_then(|r| r.get("services"))
                    .filter(|s| s.is_mapping())
                {
                    s.clone()
                } else if let Some(s) = m.get("services").filter(|s| s.is_mapping()) {
                    s.clone()
                } else {
                    value
                }
            }
            Value::Null => return Ok(Self::default()),
            other => return Err(ComposeError::NotAMapping(kind(other))),
        };
        Self::from_services(section)
    }

    /// Parse a mapping of service names to services.
    pub fn from_services(value: Value) -> Result<Self, ComposeError> {
        let map = match value {
            Value::Mapping(m) => m,
            Value::Null => return Ok(Self::default()),
            other => return Err(ComposeError::NotAMapping(kind(&other))),
        };
        let mut services = Vec::with_capacity(map.len());
        for (k, v) in map {
            let Value::String(name) = k else {
                return Err(ComposeError::BadName);
            };
            let service = if v.is_null() {
                Service::default()
            } else {
                serde_norway::from_value(v).map_err(|source| ComposeError::Service {
                    name: name.clone(),
                    source,
                })?
            };
            services.push((name, service));
        }
        Ok(Self { services })
    }

    /// Adds the services of `other`; one with a name this project has
    /// already replaces it where it stands (a later layer wins).
    pub fn merge(&mut self, other: Project) {
        for (name, service) in other.services {
            match self.services.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = service,
                None => self.services.push((name, service)),
            }
        }
    }

    /// The service called `name`.
    pub fn get(&self, name: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    /// Services in file order.
    pub fn services(&self) -> impl Iterator<Item = (&str, &Service)> {
        self.services.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// Service names in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(|(n, _)| n.as_str())
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether the project has no services.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Dependencies of every service: name -> services that must start first.
    ///
    /// Edges come from `io.rancher.os.after`/`before` (unknown names ignored),
    /// `volumes_from` and `net`/`ipc`/`pid` `container:X` links (unknown names
    /// are errors).
    pub fn dependencies(&self) -> Result<BTreeMap<&str, BTreeSet<&str>>, ComposeError> {
        let known: BTreeSet<&str> = self.names().collect();
        let mut deps: BTreeMap<&str, BTreeSet<&str>> =
            known.iter().map(|n| (*n, BTreeSet::new())).collect();
        for (name, service) in self.services() {
            for after in service.after() {
                if let Some(dep) = known.get(after.as_str()) {
                    deps.entry(name).or_default().insert(dep);
                } else {
                    tracing::debug!(service = name, after = %after, "ignoring after on unknown service");
                }
            }
            for before in service.before() {
                if let Some(later) = known.get(before.as_str()) {
                    deps.entry(later).or_default().insert(name);
                } else {
                    tracing::debug!(service = name, before = %before, "ignoring before on unknown service");
                }
            }
            let mut required: Vec<(&'static str, &str)> = Vec::new();
            for from in &service.volumes_from {
                let target = from.strip_prefix("container:").unwrap_or(from);
                let target = match target.rsplit_once(':') {
                    Some((t, "ro" | "rw")) => t,
                    _ => target,
                };
                required.push(("volumes_from", target));
            }
            for (via, mode) in [
                ("net", service.net.as_deref()),
                ("ipc", service.ipc.as_deref()),
                ("pid", service.pid.as_deref()),
            ] {
                if let Some(target) = link_target(mode) {
                    required.push((via, target));
                }
            }
            for (via, target) in required {
                let Some(dep) = known.get(target) else {
                    return Err(ComposeError::UnknownDependency {
                        service: name.to_string(),
                        dependency: target.to_string(),
                        via,
                    });
                };
                deps.entry(name).or_default().insert(dep);
            }
        }
        Ok(deps)
    }

    /// A start order: every service after its dependencies; among services that
    /// are ready at the same time the smallest name comes first.
    pub fn start_order(&self) -> Result<Vec<String>, ComposeError> {
        let deps = self.dependencies()?;
        let mut waiting: BTreeMap<&str, usize> = deps.iter().map(|(n, d)| (*n, d.len())).collect();
        let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, ds) in &deps {
            for d in ds {
                dependents.entry(d).or_default().push(name);
            }
        }
        let mut ready: BTreeSet<&str> = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(s, _)| *s)
            .collect();
        let mut order = Vec::with_capacity(deps.len());
        while let Some(next) = ready.pop_first() {
            waiting.remove(next);
            order.push(next.to_string());
            for d in dependents.get(next).into_iter().flatten() {
                if let Some(n) = waiting.get_mut(d) {
                    *n -= 1;
                    if *n == 0 {
                        ready.insert(d);
                    }
                }
            }
        }
        if waiting.is_empty() {
            return Ok(order);
        }
        Err(ComposeError::Cycle(find_cycle(&deps, &waiting)))
    }
}

/// A cycle among the services still waiting, as `a -> b -> a` where each
/// service is followed by one it waits for, starting at the smallest name.
fn find_cycle(deps: &BTreeMap<&str, BTreeSet<&str>>, waiting: &BTreeMap<&str, usize>) -> String {
    // Every waiting service waits for at least one other waiting service, so
    // walking "first waiting dependency" from any of them must revisit a node.
    let Some(start) = waiting.keys().next() else {
        return String::new();
    };
    let mut path: Vec<&str> = vec![start];
    loop {
        let Some(current) = path.last() else {
            return String::new();
        };
        let Some(next) = deps
            .get(current)
            .and_then(|ds| ds.iter().find(|d| waiting.contains_key(*d)))
        else {
            return path.join(" -> ");
        };
        if let Some(pos) = path.iter().position(|p| p == next) {
            let mut cycle: Vec<&str> = path[pos..].to_vec();
            // Rotate so the smallest name leads, for a stable message.
            if let Some(min) = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, n)| **n)
                .map(|(i, _)| i)
            {
                cycle.rotate_left(min);
            }
            cycle.push(cycle[0]);
            return cycle.join(" -> ");
        }
        path.push(next);
    }
}
