//! Image records and the parts of the image config the engine uses.
//!
//! The config is parsed with a lenient serde model of its own rather than
//! `oci_spec::image::ImageConfiguration`: Docker writes `null` for empty
//! lists and maps, and images in the wild carry fields that the OCI
//! structs reject. The raw bytes are kept alongside for `inspect`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// An image in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// `sha256:<hex>` of the config blob.
    pub id: String,
    /// Tags in familiar form, e.g. `busybox:latest`, sorted.
    pub repo_tags: Vec<String>,
    /// `name@sha256:<manifest digest>` for images pulled from a registry.
    pub repo_digests: Vec<String>,
    /// RFC 3339 creation time from the config.
    pub created: Option<String>,
    /// Bytes on disk of all its layers.
    pub size: u64,
    /// The parsed config.
    pub config: ImageConfig,
    /// The config exactly as stored (hashes to `id`).
    pub raw_config: Vec<u8>,
}

impl Image {
    /// The layer diff ids, lowest first.
    pub fn diff_ids(&self) -> &[String] {
        &self.config.rootfs_diff_ids
    }
}

/// The image config (`application/vnd.oci.image.config.v1+json`, or Docker's
/// `container_config`-bearing equivalent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub config: ContainerConfig,
    #[serde(rename = "rootfs", with = "rootfs")]
    pub rootfs_diff_ids: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<HistoryEntry>,
}

impl ImageConfig {
    /// Parses a config blob.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let cfg: ImageConfig = serde_json::from_slice(bytes)
            .map_err(|e| Error::InvalidConfig(format!("cannot parse image config: {e}")))?;
        for d in &cfg.rootfs_diff_ids {
            crate::store::digest_hex(d)
                .map_err(|_| Error::InvalidConfig(format!("invalid diff id {d:?}")))?;
        }
        Ok(cfg)
    }
}

/// The runtime defaults of an image (`config` in the image config).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    #[serde(
        default,
        deserialize_with = "empty_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    #[serde(
        default,
        deserialize_with = "empty_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub user: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// e.g. `80/tcp`; serialised as Docker's `{"80/tcp": {}}` map.
    #[serde(
        default,
        with = "set_as_map",
        skip_serializing_if = "BTreeSet::is_empty"
    )]
    pub exposed_ports: BTreeSet<String>,
    /// Container paths; serialised as Docker's `{"/data": {}}` map.
    #[serde(
        default,
        with = "set_as_map",
        skip_serializing_if = "BTreeSet::is_empty"
    )]
    pub volumes: BTreeSet<String>,
    #[serde(
        default,
        deserialize_with = "empty_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
}

/// One `history` entry of an image config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

fn null_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn empty_none<'de, D>(d: D) -> std::result::Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

mod set_as_map {
    use super::*;

    pub fn serialize<S: Serializer>(
        set: &BTreeSet<String>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let map: BTreeMap<&String, serde_json::Map<String, serde_json::Value>> =
            set.iter().map(|k| (k, serde_json::Map::new())).collect();
        map.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<BTreeSet<String>, D::Error> {
        let map: Option<BTreeMap<String, serde_json::Value>> = Option::deserialize(d)?;
        Ok(map.unwrap_or_default().into_keys().collect())
    }
}

mod rootfs {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct RootFs {
        #[serde(rename = "type", default = "layers")]
        kind: String,
        #[serde(default, deserialize_with = "null_default")]
        diff_ids: Vec<String>,
    }

    fn layers() -> String {
        "layers".to_string()
    }

    pub fn serialize<S: Serializer>(ids: &[String], s: S) -> std::result::Result<S::Ok, S::Error> {
        RootFs {
            kind: layers(),
            diff_ids: ids.to_vec(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Vec<String>, D::Error> {
        Ok(RootFs::deserialize(d)?.diff_ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_config_with_nulls() {
        let raw = br#"{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z",
            "config":{"Env":null,"Cmd":["sh"],"Labels":null,"WorkingDir":"","ExposedPorts":{"80/tcp":{}},
            "Volumes":null,"User":""},
            "rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]},
            "history":[{"created_by":"x","empty_layer":true}]}"#;
        let c = ImageConfig::from_json(raw).unwrap();
        assert_eq!(c.config.cmd, Some(vec!["sh".to_string()]));
        assert!(c.config.env.is_empty());
        assert_eq!(c.config.working_dir, None);
        assert_eq!(c.config.user, None);
        assert!(c.config.exposed_ports.contains("80/tcp"));
        assert_eq!(c.rootfs_diff_ids.len(), 1);
        assert!(c.history[0].empty_layer);
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(
            back["config"]["ExposedPorts"]["80/tcp"],
            serde_json::json!({})
        );
        assert_eq!(back["rootfs"]["type"], "layers");
    }

    #[test]
    fn rejects_bad_diff_id() {
        let raw = br#"{"rootfs":{"type":"layers","diff_ids":["sha256:zz"]}}"#;
        assert!(matches!(
            ImageConfig::from_json(raw),
            Err(Error::InvalidConfig(_))
        ));
    }
}
