//! Saving what a datasource gave to the places of COMPAT.md, under a root
//! directory (`/` on a running system).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::{Error, Result};
use crate::fetch::Fetched;
use crate::metadata::Metadata;
use crate::userdata::UserData;

/// Where the results go, relative to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavePaths {
    /// cloud-config user-data (or wrapped compose):
    /// /var/lib/rancher/conf/cloud-config.d/boot.yml
    pub boot_yml: PathBuf,
    /// `rancher.network` from metadata:
    /// /var/lib/rancher/conf/cloud-config.d/network.yml
    pub network_yml: PathBuf,
    /// a `#!` user-data script, mode 0755:
    /// /var/lib/rancher/conf/cloud-config-script
    pub script: PathBuf,
    /// the metadata as YAML: /var/lib/rancher/conf/metadata
    pub metadata: PathBuf,
}

impl SavePaths {
    /// The paths under `root`.
    pub fn new(root: &Path) -> Self {
        let conf = root.join("var/lib/rancher/conf");
        Self {
            boot_yml: conf.join("cloud-config.d/boot.yml"),
            network_yml: conf.join("cloud-config.d/network.yml"),
            script: conf.join("cloud-config-script"),
            metadata: conf.join("metadata"),
        }
    }
}

/// Saves `fetched` under `root`, replacing what an earlier boot saved:
///
/// - cloud-config user-data (and wrapped `#compose`) to boot.yml,
/// - a `#!` script to cloud-config-script (mode 0755),
/// - the metadata as YAML (`source`, `hostname`, `public_keys`) to metadata,
/// - network config from the metadata, as `rancher: {network: ...}`, to
///   network.yml.
///
/// A result the source did not give removes the earlier boot's file (user
/// data that became a script no longer leaves the old boot.yml behind).
/// Each file is written to a temporary file in its directory, synced and
/// renamed over the old one, so a crash leaves the old or the new file,
/// never half of one. Files other than the script are mode 0600: user-data
/// may hold passwords and keys.
pub fn save(root: &Path, fetched: &Fetched) -> Result<()> {
    let paths = SavePaths::new(root);
    match &fetched.user_data {
        Some(UserData::CloudConfig(text)) => {
            write_atomic(&paths.boot_yml, text.as_bytes(), 0o600)?;
            remove(&paths.script)?;
        }
        Some(UserData::Script(script)) => {
            write_atomic(&paths.script, script, 0o755)?;
            remove(&paths.boot_yml)?;
        }
        None => {
            remove(&paths.boot_yml)?;
            remove(&paths.script)?;
        }
    }
    let metadata = Metadata {
        network: None,
        ..fetched.metadata.clone()
    };
    write_atomic(
        &paths.metadata,
        to_yaml("metadata", &metadata)?.as_bytes(),
        0o600,
    )?;
    match &fetched.metadata.network {
        Some(network) => {
            let doc = json!({ "rancher": { "network": network } });
            let text = format!("#cloud-config\n{}", to_yaml("network config", &doc)?);
            write_atomic(&paths.network_yml, text.as_bytes(), 0o600)?;
        }
        None => remove(&paths.network_yml)?,
    }
    Ok(())
}

/// Reads back the metadata [`save`] wrote under `root` (the caller applies
/// its hostname and keys to the merged config); `None` if there is none.
/// The network config is not part of it (it is in network.yml).
pub fn load_metadata(root: &Path) -> Result<Option<Metadata>> {
    let path = SavePaths::new(root).metadata;
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::ReadSaved { path, source }),
    };
    serde_norway::from_str(&text)
        .map(Some)
        .map_err(|e| Error::InvalidSaved {
            path,
            message: e.to_string(),
        })
}

fn to_yaml<T: serde::Serialize>(what: &'static str, value: &T) -> Result<String> {
    serde_norway::to_string(value).map_err(|e| Error::Serialize {
        what,
        message: e.to_string(),
    })
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::Write {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Writes `data` to `path` with `mode`, atomically and durably
/// (`atomic_file`), making its directory first.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).map_err(err)?;
    atomic_file::Options::new()
        .mode(mode)
        .write(path, data)
        .map_err(err)
}

/// Where PID 1 notes which local datasource answered at this boot (under
/// /run, so it lasts one boot): `ros cloud-init-save --network-only` then
/// leaves the network datasources alone, as the first answer wins.
pub const SAVED_AT_BOOT: &str = "/run/oxos/user-data-source";

/// Notes under `root` that `source` answered at this boot.
pub fn mark_saved_at_boot(root: &Path, source: &str) -> Result<()> {
    let path = root.join(SAVED_AT_BOOT.trim_start_matches('/'));
    write_atomic(&path, format!("{source}\n").as_bytes(), 0o644)
}

/// The source that answered at this boot before the network, if any.
pub fn saved_at_boot(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join(SAVED_AT_BOOT.trim_start_matches('/')))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Source;
    use std::os::unix::fs::PermissionsExt;

    fn fetched(user_data: Option<UserData>, metadata: Metadata) -> Fetched {
        Fetched {
            source: Source::Cmdline,
            user_data,
            metadata,
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_script_is_executable_and_replaces_an_earlier_cloud_config() {
        let root = tempfile::tempdir().unwrap();
        let paths = SavePaths::new(root.path());
        let cc = UserData::CloudConfig("#cloud-config\nhostname: a\n".into());
        save(root.path(), &fetched(Some(cc), Metadata::default())).unwrap();
        assert_eq!(
            fs::read_to_string(&paths.boot_yml).unwrap(),
            "#cloud-config\nhostname: a\n"
        );
        assert_eq!(mode(&paths.boot_yml), 0o600);
        assert!(!paths.script.exists());

        let script = UserData::Script(b"#!/bin/sh\ntrue\n".to_vec());
        save(root.path(), &fetched(Some(script), Metadata::default())).unwrap();
        assert_eq!(fs::read(&paths.script).unwrap(), b"#!/bin/sh\ntrue\n");
        assert_eq!(mode(&paths.script), 0o755);
        assert!(!paths.boot_yml.exists(), "the old boot.yml must go");

        save(root.path(), &fetched(None, Metadata::default())).unwrap();
        assert!(!paths.script.exists() && !paths.boot_yml.exists());
        let leftovers: Vec<_> = fs::read_dir(paths.boot_yml.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            leftovers.is_empty(),
            "no temporary files left: {leftovers:?}"
        );
    }

    #[test]
    fn metadata_is_yaml_and_reads_back_and_network_goes_to_network_yml() {
        let root = tempfile::tempdir().unwrap();
        let paths = SavePaths::new(root.path());
        assert_eq!(load_metadata(root.path()).unwrap(), None);
        let metadata = Metadata {
            source: "nocloud".into(),
            hostname: Some("h1".into()),
            public_keys: vec!["ssh-ed25519 AAAA k".into()],
            network: Some(json!({"interfaces": {"eth0": {"dhcp": true}}})),
        };
        save(root.path(), &fetched(None, metadata.clone())).unwrap();
        assert_eq!(
            fs::read_to_string(&paths.metadata).unwrap(),
            "source: nocloud\nhostname: h1\npublic_keys:\n- ssh-ed25519 AAAA k\n"
        );
        let back = load_metadata(root.path()).unwrap().unwrap();
        assert_eq!(
            back,
            Metadata {
                network: None,
                ..metadata.clone()
            }
        );
        let net = fs::read_to_string(&paths.network_yml).unwrap();
        assert_eq!(
            net,
            "#cloud-config\nrancher:\n  network:\n    interfaces:\n      eth0:\n        dhcp: true\n"
        );

        save(root.path(), &fetched(None, Metadata::default())).unwrap();
        assert!(
            !paths.network_yml.exists(),
            "no network config, no network.yml"
        );
    }

    #[test]
    fn a_broken_metadata_file_is_reported_with_its_path() {
        let root = tempfile::tempdir().unwrap();
        let path = SavePaths::new(root.path()).metadata;
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "hostname: [\n").unwrap();
        let err = load_metadata(root.path()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{} is invalid", path.display())),
            "{err}"
        );
    }
}
