//! Where the config files live and the order in which they merge.
//!
//! Merge order, later wins (COMPAT.md): os-config.yml, oem-config.yml,
//! cloud-config.d/* sorted by name (dotfiles skipped), cloud-config.yml, the
//! kernel command line, the args after `--`.
//!
//! The args after `--` are hidden from /proc/cmdline once the system runs, so
//! init saves them to cloud-config.d/init.yml; that file is therefore not
//! merged with the rest of cloud-config.d but last, where the args belong. If
//! the command line read still holds a `--` (as in the initrd), its args are
//! merged at the same place, after init.yml.

use std::path::{Path, PathBuf};

use crate::cmdline;
use crate::error::{Error, Result};
use crate::tree::Config;

/// The directory every system path is relative to: `/` on a running system,
/// a temporary directory in tests, the target of `ros --root DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    dir: PathBuf,
}

impl Default for Root {
    fn default() -> Self {
        Self::new("/")
    }
}

/// The name, inside cloud-config.d, of the saved args after `--`.
pub const INIT_YML: &str = "init.yml";

impl Root {
    /// A root at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `path` (absolute, as on the running system) under this root.
    pub fn join(&self, path: &str) -> PathBuf {
        self.dir.join(path.trim_start_matches('/'))
    }

    /// The OS's own default config.
    pub fn os_config(&self) -> PathBuf {
        self.join("/usr/share/ros/os-config.yml")
    }

    /// The OEM partition's config.
    pub fn oem_config(&self) -> PathBuf {
        self.join("/usr/share/ros/oem/oem-config.yml")
    }

    /// The directory of saved configs (boot.yml, network.yml, init.yml, ...).
    pub fn cloud_config_d(&self) -> PathBuf {
        self.join("/var/lib/rancher/conf/cloud-config.d")
    }

    /// What `ros config set` and `merge` write.
    pub fn cloud_config(&self) -> PathBuf {
        self.join("/var/lib/rancher/conf/cloud-config.yml")
    }

    /// The kernel command line.
    pub fn proc_cmdline(&self) -> PathBuf {
        self.join("/proc/cmdline")
    }
}

/// One layer of the merged config: where it came from and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// The file, or `/proc/cmdline` for the kernel command line.
    pub source: PathBuf,
    pub config: Config,
}

/// Reads a file if it exists; a missing file is an empty layer.
fn optional(path: &Path) -> Result<Option<Config>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Config::parse(&text, path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The files of cloud-config.d in merge order: sorted by name, dotfiles and
/// directories skipped, init.yml left out (it is merged last).
pub fn cloud_config_d_files(root: &Root) -> Result<Vec<PathBuf>> {
    let dir = root.cloud_config_d();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Read { path: dir, source }),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == INIT_YML {
            continue;
        }
        if entry.path().is_dir() {
            continue;
        }
        files.push(entry.path());
    }
    files.sort();
    Ok(files)
}

/// Which layers to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// Include os-config.yml (the OS's defaults).
    pub os_defaults: bool,
    /// Include the kernel command line (and init.yml).
    pub cmdline: bool,
}

impl Selection {
    /// Every layer.
    pub const ALL: Selection = Selection {
        os_defaults: true,
        cmdline: true,
    };
}

/// Reads every existing layer, in merge order. A layer that is not a valid
/// cloud-config is left out and logged (file, line, column): see
/// [`read_layers_reporting`].
pub fn read_layers(root: &Root, which: Selection) -> Result<Vec<Layer>> {
    let (layers, broken) = read_layers_reporting(root, which)?;
    for error in &broken {
        tracing::error!("config: {error}; this file is left out");
    }
    Ok(layers)
}

/// Whether `error` is about what a layer's file says (its YAML), rather
/// than about reading it.
fn is_broken_document(error: &Error) -> bool {
    matches!(
        error,
        Error::Syntax { .. } | Error::Parse { .. } | Error::TopLevelNotMapping { .. }
    )
}

/// Reads every existing layer, in merge order, and lists apart the files
/// that are not a valid cloud-config (each error names the file, and the
/// line and column when the parser gives them). A mistake in one file must
/// not take the others down: the machine boots with the remaining layers
/// (as RancherOS did), and `ros config validate` shows the mistake. A file
/// that exists but cannot be read is still an error.
pub fn read_layers_reporting(root: &Root, which: Selection) -> Result<(Vec<Layer>, Vec<Error>)> {
    let mut paths = Vec::new();
    if which.os_defaults {
        paths.push(root.os_config());
    }
    paths.push(root.oem_config());
    paths.extend(cloud_config_d_files(root)?);
    paths.push(root.cloud_config());
    let mut layers = Vec::new();
    let mut broken = Vec::new();
    let mut read = |path: PathBuf, layers: &mut Vec<Layer>| -> Result<()> {
        match optional(&path) {
            Ok(Some(config)) => layers.push(Layer {
                source: path,
                config,
            }),
            Ok(None) => {}
            Err(e) if is_broken_document(&e) => broken.push(e),
            Err(e) => return Err(e),
        }
        Ok(())
    };
    for path in paths {
        read(path, &mut layers)?;
    }
    if which.cmdline {
        let proc_cmdline = root.proc_cmdline();
        let line = match std::fs::read_to_string(&proc_cmdline) {
            Ok(line) => line,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(Error::Read {
                    path: proc_cmdline,
                    source,
                })
            }
        };
        let parsed = cmdline::parse(&line);
        if !parsed.kernel.is_empty() {
            layers.push(Layer {
                source: proc_cmdline.clone(),
                config: parsed.kernel,
            });
        }
        read(root.cloud_config_d().join(INIT_YML), &mut layers)?;
        if !parsed.after_dashes.is_empty() {
            layers.push(Layer {
                source: proc_cmdline,
                config: parsed.after_dashes,
            });
        }
    }
    Ok((layers, broken))
}

/// Merges layers in order.
pub fn merge_layers(layers: &[Layer]) -> Config {
    let mut merged = Config::new();
    for layer in layers {
        merged.merge(&layer.config);
    }
    merged
}

/// The merged config of a system: every layer.
pub fn load(root: &Root) -> Result<Config> {
    Ok(merge_layers(&read_layers(root, Selection::ALL)?))
}

/// Applies what a datasource's metadata says, after every layer (COMPAT.md):
/// the hostname only if the config has none, and SSH keys appended to
/// `ssh_authorized_keys` (a key already there is not added twice).
pub fn apply_metadata(
    config: &mut Config,
    hostname: Option<&str>,
    ssh_keys: &[String],
) -> Result<()> {
    use serde_norway::Value;
    if let Some(name) = hostname.filter(|n| !n.is_empty()) {
        let unset = match config.get("hostname")? {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if unset {
            config.set("hostname", Value::String(name.to_owned()))?;
        }
    }
    if !ssh_keys.is_empty() {
        let mut keys = match config.get("ssh_authorized_keys")? {
            Some(Value::Sequence(list)) => list.clone(),
            _ => Vec::new(),
        };
        for key in ssh_keys {
            let key = Value::String(key.clone());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        config.set("ssh_authorized_keys", Value::Sequence(keys))?;
    }
    Ok(())
}

/// Saves the args that followed `--` on the boot line to
/// cloud-config.d/init.yml, where [`read_layers`] finds them after they have
/// been hidden from /proc/cmdline. An empty config removes the file.
pub fn save_init_yml(root: &Root, after_dashes: &Config) -> Result<()> {
    let path = root.cloud_config_d().join(INIT_YML);
    if after_dashes.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::Write { path, source: e })
            }
            _ => Ok(()),
        };
    }
    write_atomic(&path, &after_dashes.to_yaml()?)
}

/// Writes `config` to `path` atomically: a temporary file in the same
/// directory, fsync, rename over the old file, fsync of the directory. A
/// crash leaves either the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    // The user's config may hold secrets (passwords, keys): owner only.
    atomic_file::Options::new()
        .mode(0o600)
        .write(path, text.as_bytes())
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Root, path: &str, text: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn later_layers_win() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        let d = "/var/lib/rancher/conf/cloud-config.d";
        // Each layer sets `rancher.who` (the later wins) and its own key
        // (every layer is merged, none is lost).
        write(
            &root,
            "/usr/share/ros/os-config.yml",
            "rancher: {who: os, os: 1}",
        );
        write(
            &root,
            "/usr/share/ros/oem/oem-config.yml",
            "rancher: {who: oem, oem: 1}",
        );
        write(&root, &format!("{d}/b.yml"), "rancher: {who: b, b: 1}");
        write(&root, &format!("{d}/a.yml"), "rancher: {who: a, a: 1}");
        write(&root, &format!("{d}/.hidden.yml"), "rancher: {who: hidden}");
        write(
            &root,
            &format!("{d}/init.yml"),
            "rancher: {who: init, init: 1}",
        );
        write(
            &root,
            "/var/lib/rancher/conf/cloud-config.yml",
            "rancher: {who: user, user: 1}",
        );
        write(
            &root,
            "/proc/cmdline",
            "quiet rancher.who=kernel rancher.kernel=1\n",
        );

        let merged = load(&root).unwrap();
        assert_eq!(
            merged.get("rancher.who").unwrap(),
            Some(&serde_norway::Value::String("init".into()))
        );
        for key in ["os", "oem", "a", "b", "init", "user", "kernel"] {
            assert!(
                merged.get(&format!("rancher.{key}")).unwrap().is_some(),
                "layer {key} lost"
            );
        }

        // Peel the layers from the top: each one wins over all before it.
        let order = |root: &Root| {
            read_layers(root, Selection::ALL)
                .unwrap()
                .iter()
                .map(|l| l.config.get("rancher.who").unwrap().cloned())
                .map(|v| {
                    v.and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            order(&root),
            ["os", "oem", "a", "b", "user", "kernel", "init"]
        );

        write(
            &root,
            "/proc/cmdline",
            "rancher.who=kernel -- rancher.who=dashes\n",
        );
        assert_eq!(
            order(&root),
            ["os", "oem", "a", "b", "user", "kernel", "init", "dashes"]
        );
        assert_eq!(
            load(&root).unwrap().get("rancher.who").unwrap(),
            Some(&serde_norway::Value::String("dashes".into()))
        );
    }

    #[test]
    fn missing_files_are_empty_layers_and_bad_ones_are_left_out_and_named() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        assert!(load(&root).unwrap().is_empty());
        write(
            &root,
            "/var/lib/rancher/conf/cloud-config.d/net.yml",
            "a: [\n",
        );
        write(
            &root,
            "/var/lib/rancher/conf/cloud-config.d/list.yml",
            "- x\n",
        );
        write(
            &root,
            "/var/lib/rancher/conf/cloud-config.yml",
            "hostname: kept\n",
        );
        // The other layers still count.
        let merged = load(&root).unwrap();
        assert_eq!(
            merged.get("hostname").unwrap(),
            Some(&serde_norway::Value::String("kept".into()))
        );
        let (layers, broken) = read_layers_reporting(&root, Selection::ALL).unwrap();
        assert_eq!(layers.len(), 1);
        let broken: Vec<String> = broken.iter().map(ToString::to_string).collect();
        assert_eq!(broken.len(), 2, "{broken:?}");
        assert!(broken[0].contains("cloud-config.d/list.yml"), "{broken:?}");
        assert!(broken[0].contains("must be a mapping"), "{broken:?}");
        assert!(
            broken[1].contains("cloud-config.d/net.yml:2:"),
            "{broken:?}"
        );
    }

    #[test]
    fn an_unreadable_layer_is_still_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        // A directory where the user's file should be cannot be read.
        std::fs::create_dir_all(root.cloud_config()).unwrap();
        let err = load(&root).unwrap_err().to_string();
        assert!(err.contains("failed to read"), "{err}");
    }

    #[test]
    fn args_after_dashes_survive_being_hidden() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        // At boot the loader's line still holds them; init saves them ...
        let boot = cmdline::parse("quiet rancher.a=1 -- rancher.password=pw");
        save_init_yml(&root, &boot.after_dashes).unwrap();
        // ... and the running system's /proc/cmdline no longer has them.
        write(&root, "/proc/cmdline", "quiet rancher.a=1\n");
        write(
            &root,
            "/var/lib/rancher/conf/cloud-config.yml",
            "rancher: {password: file}",
        );
        let merged = load(&root).unwrap();
        assert_eq!(
            merged.get("rancher.password").unwrap(),
            Some(&serde_norway::Value::String("pw".into()))
        );
        save_init_yml(&root, &Config::new()).unwrap();
        assert!(!root.cloud_config_d().join(INIT_YML).exists());
    }

    #[test]
    fn metadata_fills_the_hostname_only_if_unset_and_appends_keys() {
        let keys = vec![
            "ssh-ed25519 B meta".to_owned(),
            "ssh-ed25519 A user".to_owned(),
        ];
        let mut set = Config::parse(
            "hostname: mine\nssh_authorized_keys: [ssh-ed25519 A user]\n",
            Path::new("t"),
        )
        .unwrap();
        apply_metadata(&mut set, Some("from-metadata"), &keys).unwrap();
        assert_eq!(
            set,
            Config::parse(
                "hostname: mine\nssh_authorized_keys: [ssh-ed25519 A user, ssh-ed25519 B meta]\n",
                Path::new("t")
            )
            .unwrap()
        );
        let mut unset = Config::new();
        apply_metadata(&mut unset, Some("from-metadata"), &[]).unwrap();
        assert_eq!(
            unset.get("hostname").unwrap(),
            Some(&serde_norway::Value::String("from-metadata".into()))
        );
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x/cloud-config.yml");
        write_atomic(&path, "a: 1\n").unwrap();
        write_atomic(&path, "a: 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a: 2\n");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["cloud-config.yml"], "no temporary file left");
    }
}
