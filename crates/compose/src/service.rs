//! The compose service model.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_norway::Value;

/// Label: `system` runs the service in the system engine.
pub const LABEL_SCOPE: &str = "io.rancher.os.scope";
/// Label: comma-separated services this one starts after.
pub const LABEL_AFTER: &str = "io.rancher.os.after";
/// Label: comma-separated services this one starts before.
pub const LABEL_BEFORE: &str = "io.rancher.os.before";
/// Label: `false` makes up wait for the container to exit.
pub const LABEL_DETACH: &str = "io.rancher.os.detach";
/// Label: `true` creates the container but never starts it.
pub const LABEL_CREATEONLY: &str = "io.rancher.os.createonly";
/// Label: `true` reloads the merged config after this service.
pub const LABEL_RELOADCONFIG: &str = "io.rancher.os.reloadconfig";
/// Label: `always` recreates on every up, `false` keeps the container.
pub const LABEL_REBUILD: &str = "io.docker.compose.rebuild";
/// Label: cron schedule of the service.
pub const LABEL_CRON: &str = "cron.schedule";

/// `command` or `entrypoint`: a shell string or an argument list.
///
/// List items may be YAML numbers or booleans (`[sleep, 10]`); they are kept as
/// their text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CommandLine {
    /// `command: echo hi`, kept as written.
    Shell(String),
    /// `command: [echo, hi]`.
    Args(Vec<String>),
}

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::Sequence(items) => items
                .into_iter()
                .map(|item| {
                    scalar(item)
                        .map_err(D::Error::custom)?
                        .ok_or_else(|| D::Error::custom("a command argument must not be null"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Self::Args),
            other => scalar(other)
                .map_err(D::Error::custom)?
                .map(Self::Shell)
                .ok_or_else(|| D::Error::custom("a command must not be null")),
        }
    }
}

/// `environment` or `labels`: a map, or a list of `KEY=VALUE` / `KEY` strings.
///
/// Order of the source is kept. A list entry without `=` has no value (`None`):
/// for `environment` that means "take it from the caller's environment".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValues(pub Vec<(String, Option<String>)>);

impl KeyValues {
    /// The value of `key`, if it is set with a value (the last one wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether `key` is present, with or without a value.
    pub fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A YAML scalar as a string; `None` for null. Numbers and booleans are common in
/// hand-written maps (`DEBUG: 1`, `io.rancher.os.detach: false`).
fn scalar(v: Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err("a value must be a string, number or boolean".to_string()),
    }
}

/// Written back as a list of `KEY=VALUE` (or `KEY`) strings, a form compose
/// accepts for both `environment` and `labels` and that keeps valueless entries.
impl Serialize for KeyValues {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        // The list form `KEY=VALUE` cannot hold a key with `=` in it (it is
        // split at the first `=` when read), so such entries use the map form.
        if self.0.iter().any(|(k, _)| k.contains('=')) {
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                map.serialize_entry(k, v)?;
            }
            return map.end();
        }
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            match v {
                Some(v) => seq.serialize_element(&format!("{k}={v}"))?,
                None => seq.serialize_element(k)?,
            }
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for KeyValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::Null => Ok(Self::default()),
            Value::Mapping(m) => {
                let mut out = Vec::with_capacity(m.len());
                for (k, v) in m {
                    let k = scalar(k)
                        .map_err(D::Error::custom)?
                        .ok_or_else(|| D::Error::custom("a key must not be null"))?;
                    out.push((k, scalar(v).map_err(D::Error::custom)?));
                }
                Ok(Self(out))
            }
            Value::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let s = scalar(item)
                        .map_err(D::Error::custom)?
                        .ok_or_else(|| D::Error::custom("a list entry must not be null"))?;
                    match s.split_once('=') {
                        Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
                        None => out.push((s, None)),
                    }
                }
                Ok(Self(out))
            }
            _ => Err(D::Error::custom(
                "expected a map or a list of KEY=VALUE strings",
            )),
        }
    }
}

/// One entry of `ulimits`: `nproc: 65535` or `nofile: {soft: 1024, hard: 4096}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ulimit {
    /// Soft and hard limit are the same.
    Single(i64),
    /// Separate soft and hard limits.
    Pair {
        /// Soft limit.
        soft: i64,
        /// Hard limit.
        hard: i64,
    },
}

/// Deserialize an optional string that may be written as a YAML number.
fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    scalar(Value::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A compose service (v1/v2 subset used by OxOS).
///
/// Serializing writes only the fields that are set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Service {
    /// Image reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Command (arguments to the entrypoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandLine>,
    /// Entrypoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<CommandLine>,
    /// Environment variables.
    #[serde(skip_serializing_if = "KeyValues::is_empty")]
    pub environment: KeyValues,
    /// Labels, including the `io.rancher.os.*` ones.
    #[serde(skip_serializing_if = "KeyValues::is_empty")]
    pub labels: KeyValues,
    /// Run privileged.
    #[serde(skip_serializing_if = "is_false")]
    pub privileged: bool,
    /// Network mode (`host`, `none`, `bridge`, `container:X`); also read from `network_mode`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        alias = "network_mode",
        deserialize_with = "opt_string"
    )]
    pub net: Option<String>,
    /// PID namespace (`host` or `container:X`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_string"
    )]
    pub pid: Option<String>,
    /// IPC namespace (`host` or `container:X`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_string"
    )]
    pub ipc: Option<String>,
    /// UTS namespace (`host`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_string"
    )]
    pub uts: Option<String>,
    /// Volumes (`/host:/ctr[:opts]`, `/ctr`, `name:/ctr`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Services whose volumes are mounted too (`name`, `name:ro`, `container:name`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    /// Restart policy (`no`, `always`, `on-failure[:N]`, `unless-stopped`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_string"
    )]
    pub restart: Option<String>,
    /// Read-only root filesystem.
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// Log driver.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_string"
    )]
    pub log_driver: Option<String>,
    /// Log driver options.
    #[serde(skip_serializing_if = "KeyValues::is_empty")]
    pub log_opt: KeyValues,
    /// Added capabilities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Devices (`/dev/x[:/dev/y[:rwm]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Allocate a TTY.
    #[serde(skip_serializing_if = "is_false")]
    pub tty: bool,
    /// Keep stdin open.
    #[serde(skip_serializing_if = "is_false")]
    pub stdin_open: bool,
    /// User (`name`, `uid`, `uid:gid`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_string"
    )]
    pub user: Option<String>,
    /// Working directory.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_string"
    )]
    pub working_dir: Option<String>,
    /// Hostname.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_string"
    )]
    pub hostname: Option<String>,
    /// Resource limits by name (`nofile`, `nproc`, ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    /// Fields this model does not know, kept as written.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Split a comma-separated label value into trimmed, non-empty names.
fn names(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl Service {
    /// The value of a label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key)
    }

    /// Whether `io.rancher.os.scope` is `system` (runs in the system engine).
    pub fn is_system(&self) -> bool {
        self.label(LABEL_SCOPE) == Some("system")
    }

    /// Services named by `io.rancher.os.after`.
    pub fn after(&self) -> Vec<String> {
        names(self.label(LABEL_AFTER))
    }

    /// Services named by `io.rancher.os.before`.
    pub fn before(&self) -> Vec<String> {
        names(self.label(LABEL_BEFORE))
    }

    /// Whether up returns without waiting for the container (false only for
    /// `io.rancher.os.detach: "false"`).
    pub fn detach(&self) -> bool {
        self.label(LABEL_DETACH) != Some("false")
    }

    /// Whether the container is only created (`io.rancher.os.createonly: "true"`).
    pub fn create_only(&self) -> bool {
        self.label(LABEL_CREATEONLY) == Some("true")
    }

    /// Whether the merged config is reloaded after this service.
    pub fn reload_config(&self) -> bool {
        self.label(LABEL_RELOADCONFIG) == Some("true")
    }

    /// `io.docker.compose.rebuild` as written (`always`, `false`, ...).
    pub fn rebuild(&self) -> Option<&str> {
        self.label(LABEL_REBUILD)
    }

    /// `cron.schedule`, if set.
    pub fn cron_schedule(&self) -> Option<&str> {
        self.label(LABEL_CRON)
    }
}
