//! What the console reads from the merged config.

use std::collections::BTreeMap;

use config::layers::{self, Selection};
use config::{Config, Root, Value};
use serde::Deserialize;

use crate::error::{Error, Result};

/// The console's settings, read from the config layers.
#[derive(Clone, Default, PartialEq)]
pub struct Settings {
    /// `hostname`.
    pub hostname: Option<String>,
    /// `ssh_authorized_keys`: public keys that may log in as rancher.
    pub authorized_keys: Vec<String>,
    /// `rancher.ssh.port` (22 when unset).
    pub ssh_port: u16,
    /// `rancher.ssh.listen_address`.
    pub ssh_listen_address: Option<String>,
    /// `rancher.ssh.daemon` (true when unset): whether sshd runs.
    pub ssh_daemon: bool,
    /// `rancher.ssh.keys`: host keys by file name (`ssh_host_ed25519_key`,
    /// `ssh_host_ed25519_key.pub`, ...).
    pub ssh_host_keys: BTreeMap<String, String>,
    /// `rancher.password`, from the kernel command line only.
    pub password: Option<String>,
    /// `rancher.autologin`, from the kernel command line only: the ttys
    /// where rancher is logged in without a password.
    pub autologin: Vec<String>,
    /// `rancher.console`: the console's name (`default` when unset).
    pub console: String,
    /// `console=` arguments of the kernel command line: (tty, baud).
    pub kernel_consoles: Vec<(String, Option<u32>)>,
}

// The password stays out of logs and panics.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("hostname", &self.hostname)
            .field("authorized_keys", &self.authorized_keys.len())
            .field("ssh_port", &self.ssh_port)
            .field("ssh_listen_address", &self.ssh_listen_address)
            .field("ssh_daemon", &self.ssh_daemon)
            .field("ssh_host_keys", &self.ssh_host_keys.keys())
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("autologin", &self.autologin)
            .field("console", &self.console)
            .field("kernel_consoles", &self.kernel_consoles)
            .finish()
    }
}

/// The keys of the merged config that the console reads, typed with the
/// config crate's model so that a wrong type names its key.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Keys {
    hostname: Option<String>,
    ssh_authorized_keys: Vec<String>,
    rancher: RancherKeys,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RancherKeys {
    console: Option<String>,
    ssh: config::model::SshConfig,
}

/// The keys read from the merged config. Only these are copied out of it
/// before typing, so that a wrong value elsewhere (a network setting, say)
/// does not keep the console, and with it SSH, from starting.
const KEYS: [&str; 4] = [
    "hostname",
    "ssh_authorized_keys",
    "rancher.console",
    "rancher.ssh",
];

impl Settings {
    /// Reads every config layer under `root` (as [`config::load`] does) and
    /// the kernel command line.
    pub fn load(root: &Root) -> Result<Self> {
        let layers = layers::read_layers(root, Selection::ALL)?;
        let cmdline = match std::fs::read_to_string(root.proc_cmdline()) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(Error::Read {
                    path: root.proc_cmdline(),
                    source,
                })
            }
        };
        // Keys and hostname from a cloud's metadata (saved by
        // cloud-init-save). The file is the system's, not the user's: if it
        // cannot be read, SSH still starts with the config's keys.
        let metadata = match datasource::load_metadata(root.dir()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("ignoring the saved metadata: {e}");
                None
            }
        };
        Self::from_layers(root, &layers, &cmdline, metadata.as_ref())
    }

    /// The settings of `layers` (in merge order, as
    /// [`layers::read_layers`] gives them); `cmdline` is the text of
    /// /proc/cmdline; `metadata`, a datasource's metadata, is applied after
    /// every layer (its hostname only if the config has none, its SSH keys
    /// added to `ssh_authorized_keys`), as COMPAT.md says.
    ///
    /// `rancher.password` and `rancher.autologin` are read only from the
    /// layers that come from the kernel command line (/proc/cmdline, and
    /// cloud-config.d/init.yml where the args after `--` are kept), as in
    /// RancherOS: a password in user-data, which a metadata service may
    /// show to anyone on the network, is ignored.
    pub fn from_layers(
        root: &Root,
        layers: &[layers::Layer],
        cmdline: &str,
        metadata: Option<&datasource::Metadata>,
    ) -> Result<Self> {
        let mut merged = layers::merge_layers(layers);
        if let Some(m) = metadata {
            layers::apply_metadata(&mut merged, m.hostname.as_deref(), &m.public_keys)?;
        }
        let mut subset = Config::new();
        for key in KEYS {
            if let Some(value) = merged.get(key)? {
                subset.set(key, value.clone())?;
            }
        }
        let keys: Keys = subset.typed()?;

        let init_yml = root.cloud_config_d().join(layers::INIT_YML);
        let from_cmdline: Vec<layers::Layer> = layers
            .iter()
            .filter(|l| l.source == root.proc_cmdline() || l.source == init_yml)
            .cloned()
            .collect();
        let kernel = layers::merge_layers(&from_cmdline);

        let password = raw_password(cmdline, &kernel)?;
        let autologin = match kernel.get("rancher.autologin")? {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(scalar_text)
                .filter(|s| !s.is_empty())
                .collect(),
            Some(other) => {
                return Err(Error::InvalidValue {
                    key: "rancher.autologin".into(),
                    reason: format!(
                        "expected a tty name or a list, found a {}",
                        config::kind(other)
                    ),
                })
            }
        };
        for tty in &autologin {
            check_tty_name("rancher.autologin", tty)?;
        }

        let ssh = keys.rancher.ssh;
        if ssh.port == Some(0) {
            return Err(Error::InvalidValue {
                key: "rancher.ssh.port".into(),
                reason: "0 is not a port".into(),
            });
        }
        let listen = ssh.listen_address.filter(|a| !a.trim().is_empty());
        if let Some(addr) = &listen {
            if addr.chars().any(|c| c.is_whitespace() || c == '#') {
                return Err(Error::InvalidValue {
                    key: "rancher.ssh.listen_address".into(),
                    reason: format!("{addr:?} is not an address"),
                });
            }
        }
        for name in ssh.keys.keys() {
            if !is_host_key_name(name) {
                return Err(Error::InvalidValue {
                    key: format!("rancher.ssh.keys.{name}"),
                    reason: "a host key is named ssh_host_<type>_key or ssh_host_<type>_key.pub"
                        .into(),
                });
            }
        }

        let kernel_consoles = config::cmdline::split_words(cmdline)
            .into_iter()
            .take_while(|w| w != "--")
            .filter_map(|w| w.strip_prefix("console=").map(str::to_owned))
            .filter_map(|spec| {
                let (name, opts) = spec.split_once(',').unwrap_or((&spec, ""));
                let name = name.strip_prefix("/dev/").unwrap_or(name);
                let baud = opts
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .ok();
                check_tty_name("console", name)
                    .ok()
                    .map(|_| (name.to_owned(), baud))
            })
            .collect();

        Ok(Settings {
            hostname: keys.hostname.filter(|h| !h.is_empty()),
            authorized_keys: keys.ssh_authorized_keys,
            ssh_port: ssh.port.unwrap_or(22),
            ssh_listen_address: listen,
            ssh_daemon: ssh.daemon.unwrap_or(true),
            ssh_host_keys: ssh.keys,
            password,
            autologin,
            console: keys
                .rancher
                .console
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "default".into()),
            kernel_consoles,
        })
    }
}

/// The text of a scalar (a number or boolean as written in YAML).
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `rancher.password` as typed on the command line. The config layers hold
/// it parsed as a YAML scalar (`007` would be the number 7), so the raw word
/// of /proc/cmdline is used when it is there; the layer's value (from
/// init.yml, which keeps the args after `--`) otherwise.
fn raw_password(cmdline: &str, kernel: &Config) -> Result<Option<String>> {
    const KEY: &str = "rancher.password=";
    let words = config::cmdline::split_words(cmdline);
    let (before, after) = match words.iter().position(|w| w == "--") {
        Some(i) => (&words[..i], &words[i + 1..]),
        None => (&words[..], &[][..]),
    };
    let last = |ws: &[String]| {
        ws.iter()
            .rev()
            .find_map(|w| w.strip_prefix(KEY).map(str::to_owned))
    };
    // Layer order: the kernel's words, then init.yml, then the words after `--`.
    if let Some(p) = last(after) {
        return Ok(Some(p));
    }
    match kernel.get("rancher.password")? {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            let from_kernel = last(before);
            let text = scalar_text(value).ok_or_else(|| Error::InvalidValue {
                key: "rancher.password".into(),
                reason: format!("expected text, found a {}", config::kind(value)),
            })?;
            // The merged value is the kernel word's unless init.yml set it.
            match from_kernel {
                Some(raw) if config::cmdline::parse_value(&raw) == *value => Ok(Some(raw)),
                _ => Ok(Some(text)),
            }
        }
    }
}

/// A tty name: letters, digits, no path.
fn check_tty_name(key: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
    {
        return Err(Error::InvalidValue {
            key: key.into(),
            reason: format!("{name:?} is not a tty name"),
        });
    }
    Ok(())
}

/// `ssh_host_<type>_key` or `ssh_host_<type>_key.pub`.
pub fn is_host_key_name(name: &str) -> bool {
    let base = name.strip_suffix(".pub").unwrap_or(name);
    base.strip_prefix("ssh_host_")
        .and_then(|rest| rest.strip_suffix("_key"))
        .is_some_and(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric()))
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
    fn defaults_when_nothing_is_configured() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Settings::load(&Root::new(tmp.path())).unwrap();
        assert_eq!(s.ssh_port, 22);
        assert!(s.ssh_daemon);
        assert_eq!(s.password, None);
        assert!(s.autologin.is_empty());
        assert_eq!(s.console, "default");
    }

    #[test]
    fn password_and_autologin_come_only_from_the_command_line() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        write(
            &root,
            "/var/lib/rancher/conf/cloud-config.yml",
            "rancher:\n  password: fromfile\n  autologin: tty1\n  ssh: {port: 2222}\n",
        );
        let s = Settings::load(&root).unwrap();
        assert_eq!(s.password, None);
        assert!(s.autologin.is_empty());
        assert_eq!(s.ssh_port, 2222);

        write(
            &root,
            "/proc/cmdline",
            "console=tty0 console=ttyS1,38400n8 rancher.password=007 rancher.autologin=[tty1,ttyS1]\n",
        );
        let s = Settings::load(&root).unwrap();
        // As typed, not as a YAML number.
        assert_eq!(s.password.as_deref(), Some("007"));
        assert_eq!(s.autologin, ["tty1", "ttyS1"]);
        assert_eq!(
            s.kernel_consoles,
            [("tty0".to_owned(), None), ("ttyS1".to_owned(), Some(38400))]
        );
        assert!(
            !format!("{s:?}").contains("007"),
            "password in Debug output"
        );
    }

    #[test]
    fn hidden_args_after_dashes_count_as_command_line() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        write(
            &root,
            "/var/lib/rancher/conf/cloud-config.d/init.yml",
            "rancher: {password: hidden, autologin: ttyS0}\n",
        );
        write(&root, "/proc/cmdline", "rancher.password=shown\n");
        let s = Settings::load(&root).unwrap();
        assert_eq!(s.password.as_deref(), Some("hidden"));
        assert_eq!(s.autologin, ["ttyS0"]);
        // At boot, before init hid them, the words after `--` win.
        write(
            &root,
            "/proc/cmdline",
            "rancher.password=shown -- rancher.password=007\n",
        );
        assert_eq!(
            Settings::load(&root).unwrap().password.as_deref(),
            Some("007")
        );
    }

    #[test]
    fn metadata_keys_are_added_and_its_hostname_fills_a_gap() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        write(
            &root,
            "/var/lib/rancher/conf/cloud-config.yml",
            "ssh_authorized_keys: [ssh-ed25519 A user]\n",
        );
        write(
            &root,
            "/var/lib/rancher/conf/metadata",
            "source: ec2\nhostname: meta\npublic_keys: [ssh-ed25519 B cloud, ssh-ed25519 A user]\n",
        );
        let s = Settings::load(&root).unwrap();
        assert_eq!(
            s.authorized_keys,
            ["ssh-ed25519 A user", "ssh-ed25519 B cloud"]
        );
        assert_eq!(s.hostname.as_deref(), Some("meta"));
        // A metadata file that does not parse costs its keys, not the console.
        write(&root, "/var/lib/rancher/conf/metadata", "public_keys: {\n");
        let s = Settings::load(&root).unwrap();
        assert_eq!(s.authorized_keys, ["ssh-ed25519 A user"]);
    }

    #[test]
    fn bad_values_name_their_key() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        let cases = [
            ("rancher: {ssh: {port: lots}}", "rancher.ssh.port"),
            ("rancher: {ssh: {port: 0}}", "rancher.ssh.port"),
            (
                "rancher: {ssh: {listen_address: \"a b\"}}",
                "rancher.ssh.listen_address",
            ),
            (
                "rancher: {ssh: {keys: {\"../x\": y}}}",
                "rancher.ssh.keys.../x",
            ),
            ("ssh_authorized_keys: key", "ssh_authorized_keys"),
        ];
        for (text, key) in cases {
            write(&root, "/var/lib/rancher/conf/cloud-config.yml", text);
            let err = Settings::load(&root).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        // A wrong value in a key the console does not read is not its concern.
        write(
            &root,
            "/var/lib/rancher/conf/cloud-config.yml",
            "rancher: {network: {dhcp_timeout: soon}}",
        );
        assert!(Settings::load(&root).is_ok());
    }

    #[test]
    fn host_key_names() {
        assert!(is_host_key_name("ssh_host_ed25519_key"));
        assert!(is_host_key_name("ssh_host_rsa_key.pub"));
        assert!(!is_host_key_name("ssh_host__key"));
        assert!(!is_host_key_name("authorized_keys"));
        assert!(!is_host_key_name("ssh_host_../x_key"));
    }
}
