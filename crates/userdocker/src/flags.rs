//! dockerd's flags from the daemon keys of `rancher.docker`.
//!
//! RancherOS kept a struct of daemon options, each tagged with its flag
//! (`insecure_registry` -> `--insecure-registry`), and turned each set field
//! into flags by its Go type. OxOS keeps the same names and the same
//! conversion, in a table: a key's kind says which YAML values it takes, so a
//! wrong value is an error naming the key instead of a flag dockerd would
//! misread. A key missing from the table is converted by the type of its
//! value, so that any dockerd flag can be given (`snake_case` key ->
//! `--kebab-case` flag).

use std::collections::BTreeMap;

use config::Value;

use crate::error::{Error, Result};

/// How a key's value becomes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One string or number: `--flag VALUE`.
    Scalar,
    /// A boolean: `--flag` when true, `--flag=false` when false.
    Bool,
    /// A string or a list of them: `--flag VALUE` per item.
    List,
    /// A mapping (or a list of `KEY=VALUE` strings): `--flag KEY=VALUE` per
    /// pair.
    Pairs,
    /// A key dockerd no longer has: ignored, with a warning saying why.
    Gone(&'static str),
}

/// A daemon key that RancherOS knew, or that dockerd has under another
/// flag name.
struct Known {
    key: &'static str,
    flag: &'static str,
    kind: Kind,
}

const fn k(key: &'static str, flag: &'static str, kind: Kind) -> Known {
    Known { key, flag, kind }
}

/// The daemon keys of COMPAT.md and RancherOS's `EngineOpts`, plus the
/// common dockerd flags whose values a wrong YAML type would garble.
const KNOWN: &[Known] = &[
    k("bip", "bip", Kind::Scalar),
    k("bridge", "bridge", Kind::Scalar),
    k("cgroup_parent", "cgroup-parent", Kind::Scalar),
    k("config_file", "config-file", Kind::Scalar),
    k("containerd", "containerd", Kind::Scalar),
    k("data_root", "data-root", Kind::Scalar),
    k("debug", "debug", Kind::Bool),
    k("default_ulimit", "default-ulimit", Kind::List),
    k("dns", "dns", Kind::List),
    k("dns_opt", "dns-opt", Kind::List),
    k("dns_search", "dns-search", Kind::List),
    k("exec_opt", "exec-opt", Kind::List),
    k("exec_root", "exec-root", Kind::Scalar),
    k("experimental", "experimental", Kind::Bool),
    k("fixed_cidr", "fixed-cidr", Kind::Scalar),
    // dockerd 17.05 renamed --graph to --data-root and 23.0 removed it.
    k("graph", "data-root", Kind::Scalar),
    k("group", "group", Kind::Scalar),
    k("host", "host", Kind::List),
    k("icc", "icc", Kind::Bool),
    k("insecure_registry", "insecure-registry", Kind::List),
    k("ip_forward", "ip-forward", Kind::Bool),
    k("ip_masq", "ip-masq", Kind::Bool),
    k("ip6tables", "ip6tables", Kind::Bool),
    k("iptables", "iptables", Kind::Bool),
    k("ipv6", "ipv6", Kind::Bool),
    k("label", "label", Kind::List),
    k("live_restore", "live-restore", Kind::Bool),
    k("log_driver", "log-driver", Kind::Scalar),
    k("log_level", "log-level", Kind::Scalar),
    k("log_opts", "log-opt", Kind::Pairs),
    k("mtu", "mtu", Kind::Scalar),
    k("pid_file", "pidfile", Kind::Scalar),
    k("registry_mirror", "registry-mirror", Kind::List),
    k(
        "restart",
        "restart",
        Kind::Gone("dockerd has no --restart flag: restart policies of containers replaced it"),
    ),
    k("selinux_enabled", "selinux-enabled", Kind::Bool),
    k("storage_driver", "storage-driver", Kind::Scalar),
    k("storage_opt", "storage-opt", Kind::List),
    k("userland_proxy", "userland-proxy", Kind::Bool),
];

/// The flags of the daemon keys, in key order, and a warning per key that
/// is ignored. `section` names the keys in errors (`rancher.docker`).
pub fn daemon_flags(
    section: &str,
    daemon: &BTreeMap<String, Value>,
) -> Result<(Vec<String>, Vec<String>)> {
    let mut args = Vec::new();
    let mut warnings = Vec::new();
    for (key, value) in daemon {
        if value.is_null() {
            continue;
        }
        let name = format!("{section}.{key}");
        let (flag, kind) = match KNOWN.iter().find(|known| known.key == key) {
            Some(known) => (known.flag.to_string(), known.kind),
            None => (key.replace('_', "-"), infer(&name, value)?),
        };
        match kind {
            Kind::Gone(why) => warnings.push(format!("{name} is ignored: {why}")),
            Kind::Scalar => {
                if let Some(text) = scalar(&name, value, "a string")? {
                    args.extend([format!("--{flag}"), text]);
                }
            }
            Kind::Bool => match boolean(&name, value)? {
                true => args.push(format!("--{flag}")),
                false => args.push(format!("--{flag}=false")),
            },
            Kind::List => {
                for text in list(&name, value)? {
                    args.extend([format!("--{flag}"), text]);
                }
            }
            Kind::Pairs => {
                for pair in pairs(&name, value)? {
                    args.extend([format!("--{flag}"), pair]);
                }
            }
        }
    }
    Ok((args, warnings))
}

/// The kind of a key dockerd may have but the table does not: by its value.
fn infer(name: &str, value: &Value) -> Result<Kind> {
    Ok(match value {
        Value::Bool(_) => Kind::Bool,
        Value::String(_) | Value::Number(_) => Kind::Scalar,
        Value::Sequence(_) => Kind::List,
        Value::Mapping(_) => Kind::Pairs,
        Value::Null | Value::Tagged(_) => {
            return Err(bad(
                name,
                "a string, number, boolean, list or mapping",
                value,
            ))
        }
    })
}

/// A string or number as text; `None` for an empty string or null (an unset
/// flag, as RancherOS skipped empty strings).
fn scalar(name: &str, value: &Value, expected: &'static str) -> Result<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(bad(name, expected, value)),
    }
}

/// A boolean, with YAML 1.1's spellings (`yes`, `off`, ...) that RancherOS
/// read as booleans.
fn boolean(name: &str, value: &Value) -> Result<bool> {
    const EXPECTED: &str = "a boolean (true or false)";
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.as_str() {
            "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
                Ok(true)
            }
            "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False"
            | "FALSE" => Ok(false),
            _ => Err(bad(name, EXPECTED, value)),
        },
        _ => Err(bad(name, EXPECTED, value)),
    }
}

/// A string or a list of strings (numbers too); empty items are skipped.
fn list(name: &str, value: &Value) -> Result<Vec<String>> {
    const EXPECTED: &str = "a string or a list of strings";
    let items = match value {
        Value::Sequence(items) => items.as_slice(),
        other => std::slice::from_ref(other),
    };
    let mut out = Vec::new();
    for item in items {
        if let Some(text) = scalar(name, item, EXPECTED)? {
            out.push(text);
        }
    }
    Ok(out)
}

/// `KEY=VALUE` strings from a mapping of scalars, or from a list of such
/// strings; an empty value drops its key (as RancherOS did).
fn pairs(name: &str, value: &Value) -> Result<Vec<String>> {
    const EXPECTED: &str = "a mapping of strings (or a list of KEY=VALUE strings)";
    match value {
        Value::Mapping(map) => {
            let mut out = Vec::new();
            for (k, v) in map {
                let key = match k {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(bad(name, EXPECTED, k)),
                };
                let item = format!("{name}.{key}");
                let text = match v {
                    Value::Bool(b) => Some(b.to_string()),
                    other => scalar(&item, other, "a string")?,
                };
                if let Some(text) = text {
                    out.push(format!("{key}={text}"));
                }
            }
            Ok(out)
        }
        Value::Sequence(_) => list(name, value).map_err(|_| bad(name, EXPECTED, value)),
        _ => Err(bad(name, EXPECTED, value)),
    }
}

/// The error for `value` under `name`.
pub(crate) fn bad(name: &str, expected: &'static str, value: &Value) -> Error {
    Error::BadValue {
        key: name.to_string(),
        expected,
        found: describe(value),
    }
}

/// A value as an error shows it: scalars by value, collections by kind.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(yaml: &str) -> Result<(Vec<String>, Vec<String>)> {
        let daemon: BTreeMap<String, Value> = serde_norway::from_str(yaml).unwrap();
        daemon_flags("rancher.docker", &daemon)
    }

    #[test]
    fn each_kind_of_key_becomes_its_flags() {
        let cases: &[(&str, &[&str])] = &[
            ("bip: 172.19.0.1/16", &["--bip", "172.19.0.1/16"]),
            ("debug: true", &["--debug"]),
            ("debug: yes", &["--debug"]),
            ("live_restore: false", &["--live-restore=false"]),
            ("userland_proxy: off", &["--userland-proxy=false"]),
            (
                "host: [unix:///a.sock, tcp://127.0.0.1:2375]",
                &["--host", "unix:///a.sock", "--host", "tcp://127.0.0.1:2375"],
            ),
            (
                "host: tcp://127.0.0.1:2375",
                &["--host", "tcp://127.0.0.1:2375"],
            ),
            (
                "insecure_registry: [r:5000, '']",
                &["--insecure-registry", "r:5000"],
            ),
            (
                "registry_mirror: https://m",
                &["--registry-mirror", "https://m"],
            ),
            (
                "registry_mirror: [https://a, https://b]",
                &[
                    "--registry-mirror",
                    "https://a",
                    "--registry-mirror",
                    "https://b",
                ],
            ),
            (
                "log_opts: {max-size: 25m, max-file: 2, tag: ''}",
                &["--log-opt", "max-size=25m", "--log-opt", "max-file=2"],
            ),
            ("log_opts: [max-size=1m]", &["--log-opt", "max-size=1m"]),
            ("graph: /mnt/docker", &["--data-root", "/mnt/docker"]),
            ("data_root: /mnt/d", &["--data-root", "/mnt/d"]),
            ("pid_file: /run/d.pid", &["--pidfile", "/run/d.pid"]),
            ("mtu: 1450", &["--mtu", "1450"]),
            ("group: docker", &["--group", "docker"]),
            ("storage_driver: ''", &[]),
            ("bridge: ~", &[]),
            // Keys OxOS does not list: by the type of their value.
            (
                "max_concurrent_downloads: 6",
                &["--max-concurrent-downloads", "6"],
            ),
            ("no_new_privileges: true", &["--no-new-privileges"]),
            (
                "default_address_pool: [base=10.10.0.0/16]",
                &["--default-address-pool", "base=10.10.0.0/16"],
            ),
            (
                "default_runtime_opts: {a: 1}",
                &["--default-runtime-opts", "a=1"],
            ),
            // Several keys: in key order.
            (
                "storage_driver: overlay2\nbip: 10.1.0.1/24\ndebug: true",
                &[
                    "--bip",
                    "10.1.0.1/24",
                    "--debug",
                    "--storage-driver",
                    "overlay2",
                ],
            ),
        ];
        for (yaml, want) in cases {
            let (args, warnings) = flags(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            assert_eq!(args, *want, "{yaml}");
            assert!(warnings.is_empty(), "{yaml}: {warnings:?}");
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_names_the_key_and_what_it_takes() {
        let cases = [
            (
                "bip: {a: 1}",
                "rancher.docker.bip: expected a string, found a mapping",
            ),
            (
                "debug: maybe",
                "rancher.docker.debug: expected a boolean (true or false), found \"maybe\"",
            ),
            (
                "debug: [true]",
                "rancher.docker.debug: expected a boolean (true or false), found a list",
            ),
            (
                "host: [{a: 1}]",
                "rancher.docker.host: expected a string or a list of strings, found a mapping",
            ),
            (
                "insecure_registry: {r: 1}",
                "rancher.docker.insecure_registry: expected a string or a list of strings, found a mapping",
            ),
            (
                "log_opts: max-size=1m",
                "rancher.docker.log_opts: expected a mapping of strings (or a list of KEY=VALUE strings), found \"max-size=1m\"",
            ),
            (
                "log_opts: {max-size: [1m]}",
                "rancher.docker.log_opts.max-size: expected a string, found a list",
            ),
            (
                "group: true",
                "rancher.docker.group: expected a string, found true",
            ),
            (
                "some_flag: [[a]]",
                "rancher.docker.some_flag: expected a string or a list of strings, found a list",
            ),
        ];
        for (yaml, want) in cases {
            let err = flags(yaml).unwrap_err().to_string();
            assert_eq!(err, want, "{yaml}");
        }
    }

    #[test]
    fn restart_is_ignored_with_a_warning() {
        let (args, warnings) = flags("restart: false\ndebug: true").unwrap();
        assert_eq!(args, ["--debug"]);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("rancher.docker.restart is ignored: "),
            "{warnings:?}"
        );
    }
}
