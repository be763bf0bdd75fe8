//! Typed views of the cloud-config keys of COMPAT.md.
//!
//! These structs are read from the value tree ([`crate::Config::typed`]) by
//! the crates that act on the config; they are never written back, so a key
//! missing here is not lost, only unread. Every field is optional (serde
//! defaults): an absent key and an empty value mean the same. Keys whose form
//! varies between releases, or that belong to another crate (compose
//! services), are kept as [`Value`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_norway::Value;

/// The whole document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CloudConfig {
    pub hostname: Option<String>,
    pub ssh_authorized_keys: Vec<String>,
    pub write_files: Vec<WriteFile>,
    /// Commands: each a string (run by a shell) or a list (argv).
    pub runcmd: Vec<Value>,
    pub bootcmd: Vec<Value>,
    /// 4-tuples: device, mount point, type, options.
    pub mounts: Vec<Vec<String>>,
    pub rancher: RancherConfig,
}

/// One `write_files` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WriteFile {
    pub path: String,
    pub content: String,
    /// `b64`, `gzip`, `gz+b64`, ... or empty for plain text.
    pub encoding: Option<String>,
    pub owner: Option<String>,
    /// Octal, as a string ("0644").
    pub permissions: Option<String>,
    /// The container that writes the file; `console` when unset.
    pub container: Option<String>,
}

/// The `rancher:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RancherConfig {
    /// Compose services by name; read by the compose crate.
    pub services: BTreeMap<String, Value>,
    /// Service name, local path or URL -> enabled.
    pub services_include: BTreeMap<String, bool>,
    pub bootstrap: BTreeMap<String, Value>,
    pub cloud_init_services: BTreeMap<String, Value>,
    pub console: Option<String>,
    pub docker: EngineConfig,
    pub system_docker: EngineConfig,
    pub bootstrap_docker: EngineConfig,
    pub network: NetworkConfig,
    pub state: StateConfig,
    pub cloud_init: CloudInit,
    /// Variables for every service; a glob key (`B*`) copies matching host
    /// variables.
    pub environment: BTreeMap<String, Value>,
    pub sysctl: BTreeMap<String, Value>,
    pub modules: Vec<String>,
    pub ssh: SshConfig,
    pub upgrade: UpgradeConfig,
    pub registry_auths: BTreeMap<String, RegistryAuth>,
    pub repositories: BTreeMap<String, Repository>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub hypervisor_service: Option<bool>,
    pub resize_device: Option<String>,
    pub restart_services: Vec<String>,
    pub shutdown_timeout: Option<u64>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub debug: Option<bool>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub log: Option<bool>,
    pub disable: Vec<String>,
    /// Defaults that the rest of the config may override.
    pub defaults: Defaults,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub force_console_rebuild: Option<bool>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub recovery: Option<bool>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub rm_usr: Option<bool>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub no_sharedroot: Option<bool>,
    pub http_load_retries: Option<u32>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub preload_wait: Option<bool>,
    /// Kernel command line only.
    pub password: Option<String>,
    /// Kernel command line only (`tty1`, `ttyS0`, ...).
    pub autologin: Option<String>,
}

/// `rancher.defaults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Defaults {
    pub hostname: Option<String>,
    pub docker: Option<Value>,
    pub network: NetworkConfig,
    pub system_docker_logs: Option<String>,
}

/// Options of an engine (`docker`, `system_docker`, `bootstrap_docker`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// The engine to run (`docker-26.1`, ...), User Docker only.
    pub engine: Option<String>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub tls: Option<bool>,
    pub tls_args: Vec<String>,
    pub extra_args: Vec<String>,
    /// The container whose filesystem the engine sees; `console` by default.
    pub storage_context: Option<String>,
    pub environment: Vec<String>,
    pub args: Vec<String>,
    pub image: Option<String>,
    pub ca_cert: Option<String>,
    pub ca_key: Option<String>,
    pub server_cert: Option<String>,
    pub server_key: Option<String>,
    pub client_args: Vec<String>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub exec: Option<bool>,
    /// Daemon flags (`bridge`, `bip`, `debug`, `host`, `insecure_registry`,
    /// `log_driver`, `storage_driver`, `live_restore`, `data_root`, ...) by
    /// name, each turned into `--name value` by the engine's starter.
    #[serde(flatten)]
    pub daemon: BTreeMap<String, Value>,
}

/// `rancher.network`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkConfig {
    pub dns: DnsConfig,
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
    pub pre_cmds: Vec<Value>,
    pub post_cmds: Vec<Value>,
    pub dhcp_timeout: Option<u64>,
    /// By interface name, glob (`eth*`) or `mac=...`.
    pub interfaces: BTreeMap<String, InterfaceConfig>,
}

/// `rancher.network.dns`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsConfig {
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
}

/// One interface of `rancher.network.interfaces`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InterfaceConfig {
    #[serde(rename = "match")]
    pub match_: Option<String>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub dhcp: Option<bool>,
    pub dhcp_args: Option<String>,
    pub address: Option<String>,
    pub addresses: Vec<String>,
    pub gateway: Option<String>,
    pub gateway_ipv6: Option<String>,
    pub mtu: Option<u32>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub ipv4ll: Option<bool>,
    pub bridge: Option<Value>,
    pub bond: Option<String>,
    pub bond_opts: BTreeMap<String, Value>,
    pub vlans: Option<String>,
    pub pre_up: Vec<Value>,
    pub post_up: Vec<Value>,
}

/// `rancher.state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateConfig {
    pub dev: Option<String>,
    pub fstype: Option<String>,
    pub directory: Option<String>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub wait: Option<bool>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub required: Option<bool>,
    pub autoformat: Vec<String>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub mdadm_scan: Option<bool>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub lvm_scan: Option<bool>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub cryptsetup: Option<bool>,
    pub script: Option<String>,
    pub oem_dev: Option<String>,
    pub oem_fstype: Option<String>,
    pub boot_dev: Option<String>,
    pub boot_fstype: Option<String>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub rngd: Option<bool>,
}

/// `rancher.cloud_init`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CloudInit {
    /// `configdrive[:path]`, `cmdline`, `url:U`, `file:P`, `ec2`, ..., `*`.
    pub datasources: Vec<String>,
}

/// `rancher.ssh`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SshConfig {
    /// Host keys by file name (`ssh_host_rsa_key`, ...).
    pub keys: BTreeMap<String, String>,
    pub port: Option<u16>,
    pub listen_address: Option<String>,
    #[serde(deserialize_with = "yaml11::opt_bool")]
    pub daemon: Option<bool>,
}

/// `rancher.upgrade`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpgradeConfig {
    pub url: Option<String>,
    pub image: Option<String>,
    pub rollback: Option<String>,
    pub policy: Option<String>,
}

/// One entry of `rancher.registry_auths`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub auth: Option<String>,
    pub email: Option<String>,
    pub identitytoken: Option<String>,
}

/// One entry of `rancher.repositories`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Repository {
    pub url: Option<String>,
}

/// YAML 1.1 booleans. RancherOS read its config with a YAML 1.1 parser, in
/// which `yes`, `no`, `on` and `off` are booleans; YAML 1.2 (serde_norway)
/// reads them as strings. Boolean keys accept both so that old configs keep
/// their meaning; string keys keep the text.
mod yaml11 {
    use serde::de::{Deserialize, Deserializer, Error, Unexpected};
    use serde_norway::Value;

    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::String(s)) => match s.as_str() {
                "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True"
                | "TRUE" => Ok(Some(true)),
                "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False"
                | "FALSE" => Ok(Some(false)),
                other => Err(D::Error::invalid_value(
                    Unexpected::Str(other),
                    &"a boolean",
                )),
            },
            Some(Value::Number(n)) => Err(D::Error::invalid_type(
                Unexpected::Other(&format!("number {n}")),
                &"a boolean",
            )),
            Some(_) => Err(D::Error::invalid_type(
                Unexpected::Other("a list or mapping"),
                &"a boolean",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use std::path::Path;

    #[test]
    fn typed_view_reads_a_rancheros_document() {
        let text = r#"
#cloud-config
hostname: box
ssh_authorized_keys: [ssh-rsa AAA user]
write_files:
  - path: /etc/rc.local
    permissions: "0755"
    content: echo hi
runcmd:
  - echo one
  - [touch, /tmp/two]
mounts:
  - [/dev/vdb, /mnt/b, ext4, ""]
rancher:
  console: debian
  docker:
    engine: docker-26.1
    tls: true
    bip: 172.19.0.1/16
    insecure_registry: [r:5000]
  network:
    dns: {nameservers: [8.8.8.8]}
    interfaces:
      eth*: {dhcp: true}
      "mac=52:54:00:12:34:56": {address: 10.0.0.2/24, gateway: 10.0.0.1, mtu: 1500}
  state: {dev: LABEL=RANCHER_STATE, autoformat: [/dev/sda]}
  cloud_init: {datasources: [configdrive:/media/config-2]}
  services_include: {open-vm-tools: true}
  ssh: {port: 2222}
  some_future_key: 1
"#;
        let c = Config::parse(text, Path::new("t.yml")).unwrap();
        let m: CloudConfig = c.typed().unwrap();
        assert_eq!(m.hostname.as_deref(), Some("box"));
        assert_eq!(m.write_files[0].permissions.as_deref(), Some("0755"));
        assert_eq!(m.write_files[0].container, None);
        assert_eq!(m.runcmd.len(), 2);
        assert_eq!(m.mounts[0], ["/dev/vdb", "/mnt/b", "ext4", ""]);
        assert_eq!(m.rancher.console.as_deref(), Some("debian"));
        assert_eq!(m.rancher.docker.tls, Some(true));
        assert!(m.rancher.docker.daemon.contains_key("bip"));
        assert!(m.rancher.docker.daemon.contains_key("insecure_registry"));
        assert_eq!(m.rancher.network.dns.nameservers, ["8.8.8.8"]);
        assert_eq!(
            m.rancher.network.interfaces["mac=52:54:00:12:34:56"].mtu,
            Some(1500)
        );
        assert_eq!(m.rancher.state.autoformat, ["/dev/sda"]);
        assert_eq!(m.rancher.ssh.port, Some(2222));
        assert!(m.rancher.services_include["open-vm-tools"]);
    }

    #[test]
    fn empty_keys_read_as_unset() {
        let c = Config::parse(
            "rancher:\n  services_include:\n  network:\n    dns:\n  console:\n",
            Path::new("t.yml"),
        )
        .unwrap();
        let m: CloudConfig = c.typed().unwrap();
        assert!(m.rancher.services_include.is_empty());
        assert_eq!(m.rancher.console, None);
    }

    #[test]
    fn yaml_1_1_booleans_are_booleans() {
        let c = Config::parse(
            "rancher:\n  state: {wait: yes, required: off}\n  ssh: {daemon: true}\n",
            Path::new("t.yml"),
        )
        .unwrap();
        let m: CloudConfig = c.typed().unwrap();
        assert_eq!(m.rancher.state.wait, Some(true));
        assert_eq!(m.rancher.state.required, Some(false));
        assert_eq!(m.rancher.ssh.daemon, Some(true));
        let bad = Config::parse("rancher:\n  state: {wait: maybe}\n", Path::new("t.yml")).unwrap();
        let err = bad.typed::<CloudConfig>().unwrap_err().to_string();
        // The parser names the section (rancher.state) and the value.
        assert!(err.contains("rancher.state"), "{err}");
        assert!(err.contains("\"maybe\", expected a boolean"), "{err}");
    }

    #[test]
    fn a_wrong_type_names_the_key() {
        let c = Config::parse("rancher:\n  ssh:\n    port: lots\n", Path::new("t.yml")).unwrap();
        let err = c.typed::<CloudConfig>().unwrap_err().to_string();
        assert!(err.contains("rancher.ssh.port"), "{err}");
    }
}
