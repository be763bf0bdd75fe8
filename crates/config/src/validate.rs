//! Validation: unknown keys, wrong types, and known keys whose behaviour is
//! not implemented yet.
//!
//! The known keys are a static schema ([`SCHEMA`]) written from COMPAT.md.
//! It is a second list beside the typed [`crate::model`] on purpose: the
//! model says how a key is read, the schema says which keys exist, which
//! names are free (service names, interface names, variables) and what is
//! implemented. Syntax errors (file, line, column) come from parsing, before
//! this module runs.

use std::path::Path;

use serde_norway::{Mapping, Value};

use crate::model::CloudConfig;
use crate::tree::Config;

/// How far a key's behaviour has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// OxOS acts on the key.
    Implemented,
    /// OxOS accepts the key but does nothing with it yet.
    NotYet,
    /// Read from the kernel command line only; in a file it does nothing.
    CmdlineOnly,
}

/// The shape of the value under a key.
#[derive(Debug)]
pub enum Node {
    /// A mapping with these known keys.
    Map(&'static [Field]),
    /// A mapping whose keys are names chosen by the user (services,
    /// interfaces, variables), each value of this shape.
    Named(&'static Node),
    /// A list, each item of this shape.
    List(&'static Node),
    /// Anything: a scalar, a list, or a mapping checked elsewhere (compose
    /// services are checked by the compose crate).
    Any,
}

/// A known key.
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub node: Node,
    pub status: Status,
}

const fn f(name: &'static str, node: Node, status: Status) -> Field {
    Field { name, node, status }
}

const fn leaf(name: &'static str) -> Field {
    f(name, Node::Any, Status::NotYet)
}

/// A key that OxOS acts on.
const fn done(name: &'static str) -> Field {
    f(name, Node::Any, Status::Implemented)
}

use Status::{CmdlineOnly, NotYet};

// What `ros docker-init` reads for User Docker (`rancher.docker`); the
// system engines (`system_docker`, `bootstrap_docker`) are not set from
// these yet and say so at their top.
const ENGINE: &[Field] = &[
    leaf("engine"),
    leaf("tls"),
    leaf("tls_args"),
    done("extra_args"),
    leaf("storage_context"),
    done("environment"),
    done("args"),
    leaf("image"),
    leaf("ca_cert"),
    leaf("ca_key"),
    leaf("server_cert"),
    leaf("server_key"),
    leaf("client_args"),
    leaf("exec"),
    // daemon flags
    done("bridge"),
    done("bip"),
    done("config_file"),
    done("containerd"),
    done("data_root"),
    done("debug"),
    done("default_ulimit"),
    done("dns"),
    done("exec_opt"),
    done("exec_root"),
    done("experimental"),
    done("fixed_cidr"),
    done("graph"),
    done("group"),
    done("host"),
    done("icc"),
    done("insecure_registry"),
    done("ip_masq"),
    done("iptables"),
    leaf("ipv6"),
    done("live_restore"),
    done("log_driver"),
    done("log_opts"),
    done("mtu"),
    done("pid_file"),
    done("registry_mirror"),
    done("restart"),
    done("selinux_enabled"),
    done("storage_driver"),
    done("storage_opt"),
    done("userland_proxy"),
];

const INTERFACE: Node = Node::Map(&[
    done("match"),
    done("dhcp"),
    leaf("dhcp_args"),
    done("address"),
    done("addresses"),
    done("gateway"),
    done("gateway_ipv6"),
    done("mtu"),
    leaf("ipv4ll"),
    done("bridge"),
    leaf("bond"),
    leaf("bond_opts"),
    done("vlans"),
    leaf("pre_up"),
    leaf("post_up"),
]);

const NETWORK: &[Field] = &[
    f(
        "dns",
        Node::Map(&[done("nameservers"), done("search")]),
        Status::Implemented,
    ),
    // Given to User Docker by ros docker-init.
    done("http_proxy"),
    done("https_proxy"),
    done("no_proxy"),
    leaf("pre_cmds"),
    leaf("post_cmds"),
    done("dhcp_timeout"),
    f("interfaces", Node::Named(&INTERFACE), Status::Implemented),
    f("wifi_networks", Node::Named(&Node::Any), NotYet),
    f("modem_networks", Node::Named(&Node::Any), NotYet),
];

const STATE: &[Field] = &[
    done("dev"),
    done("fstype"),
    done("directory"),
    done("wait"),
    done("required"),
    done("autoformat"),
    leaf("mdadm_scan"),
    leaf("lvm_scan"),
    leaf("cryptsetup"),
    leaf("script"),
    leaf("oem_dev"),
    leaf("oem_fstype"),
    leaf("boot_dev"),
    leaf("boot_fstype"),
    leaf("rngd"),
];

const RANCHER: &[Field] = &[
    f("services", Node::Named(&Node::Any), Status::Implemented),
    f(
        "services_include",
        Node::Named(&Node::Any),
        Status::Implemented,
    ),
    f("bootstrap", Node::Named(&Node::Any), NotYet),
    f("cloud_init_services", Node::Named(&Node::Any), NotYet),
    leaf("console"),
    f("docker", Node::Map(ENGINE), Status::Implemented),
    f("system_docker", Node::Map(ENGINE), NotYet),
    f("bootstrap_docker", Node::Map(ENGINE), NotYet),
    f("network", Node::Map(NETWORK), Status::Implemented),
    f("state", Node::Map(STATE), Status::Implemented),
    f(
        "cloud_init",
        Node::Map(&[done("datasources")]),
        Status::Implemented,
    ),
    f("environment", Node::Named(&Node::Any), Status::Implemented),
    f("sysctl", Node::Named(&Node::Any), Status::Implemented),
    done("modules"),
    f(
        "ssh",
        Node::Map(&[
            f("keys", Node::Named(&Node::Any), Status::Implemented),
            done("port"),
            done("listen_address"),
            done("daemon"),
        ]),
        Status::Implemented,
    ),
    f(
        "upgrade",
        Node::Map(&[leaf("url"), leaf("image"), leaf("rollback"), leaf("policy")]),
        NotYet,
    ),
    f(
        "registry_auths",
        Node::Named(&Node::Map(&[
            leaf("username"),
            leaf("password"),
            leaf("auth"),
            leaf("email"),
            leaf("identitytoken"),
        ])),
        NotYet,
    ),
    f(
        "repositories",
        Node::Named(&Node::Map(&[done("url")])),
        Status::Implemented,
    ),
    leaf("hypervisor_service"),
    leaf("resize_device"),
    done("restart_services"),
    leaf("shutdown_timeout"),
    leaf("debug"),
    leaf("log"),
    leaf("disable"),
    f("autoformat", Node::Named(&Node::Any), NotYet),
    f(
        "defaults",
        Node::Map(&[
            leaf("hostname"),
            leaf("docker"),
            f("network", Node::Map(NETWORK), NotYet),
            leaf("system_docker_logs"),
        ]),
        NotYet,
    ),
    leaf("rm_usr"),
    leaf("no_sharedroot"),
    leaf("force_console_rebuild"),
    leaf("recovery"),
    leaf("http_load_retries"),
    leaf("preload_wait"),
    f("password", Node::Any, CmdlineOnly),
    f("autologin", Node::Any, CmdlineOnly),
];

/// Every known key of a cloud-config document.
pub const SCHEMA: Node = Node::Map(&[
    done("hostname"),
    done("ssh_authorized_keys"),
    f(
        "write_files",
        Node::List(&Node::Map(&[
            done("path"),
            done("content"),
            done("encoding"),
            done("owner"),
            done("permissions"),
            done("container"),
        ])),
        Status::Implemented,
    ),
    done("runcmd"),
    done("bootcmd"),
    done("mounts"),
    // A section, not a behaviour: its keys are noted one by one.
    f("rancher", Node::Map(RANCHER), Status::Implemented),
]);

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Accepted, but it does nothing (yet, or in this place).
    Note,
    /// Wrong: an unknown key or a value of the wrong type.
    Error,
}

/// One finding of [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// The dotted key it is about (empty for the whole document).
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let word = match self.severity {
            Severity::Note => "note",
            Severity::Error => "error",
        };
        if self.key.is_empty() {
            write!(f, "{word}: {}", self.message)
        } else {
            write!(f, "{word}: {}: {}", self.key, self.message)
        }
    }
}

/// The closest known name, if one is close enough to be a likely typo.
pub fn suggest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = if name.chars().count() >= 8 { 3 } else { 2 };
    known
        .into_iter()
        .map(|k| (strsim::levenshtein(name, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default(),
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn walk(node: &Node, value: &Value, path: &str, noted: bool, out: &mut Vec<Finding>) {
    match (node, value) {
        (Node::Any, _) => {}
        (Node::Named(inner), Value::Mapping(map)) => {
            for (k, v) in map {
                walk(inner, v, &join(path, &key_name(k)), noted, out);
            }
        }
        (Node::Map(fields), Value::Mapping(map)) => walk_map(fields, map, path, noted, out),
        (Node::List(inner), Value::Sequence(items)) => {
            for (i, item) in items.iter().enumerate() {
                walk(inner, item, &join(path, &i.to_string()), noted, out);
            }
        }
        // A null is an empty section; a wrong type is reported by the typed
        // model with the expected type.
        _ => {}
    }
}

fn walk_map(fields: &[Field], map: &Mapping, path: &str, noted: bool, out: &mut Vec<Finding>) {
    for (k, v) in map {
        let name = key_name(k);
        let key = join(path, &name);
        let Some(field) = fields.iter().find(|f| f.name == name) else {
            let message = match suggest(&name, fields.iter().map(|f| f.name)) {
                Some(s) => format!("unknown key, did you mean {}?", join(path, s)),
                None => "unknown key".to_owned(),
            };
            out.push(Finding {
                severity: Severity::Error,
                key,
                message,
            });
            continue;
        };
        let mut noted_here = noted;
        match field.status {
            Status::Implemented => {}
            Status::NotYet if !noted => {
                out.push(Finding {
                    severity: Severity::Note,
                    key: key.clone(),
                    message: "accepted, but not implemented yet: it has no effect".to_owned(),
                });
                noted_here = true;
            }
            Status::NotYet => {}
            Status::CmdlineOnly => out.push(Finding {
                severity: Severity::Note,
                key: key.clone(),
                message: "read from the kernel command line only: it has no effect in a file"
                    .to_owned(),
            }),
        }
        walk(&field.node, v, &key, noted_here, out);
    }
}

/// Checks a parsed document: unknown keys (with a suggestion when a known
/// key is close), values of the wrong type, and keys accepted but without
/// effect. The findings are in document order, errors and notes mixed.
pub fn validate(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Err(e) = config.typed::<CloudConfig>() {
        let message = e.to_string();
        let message = message.trim_start_matches("invalid config: ");
        // "rancher.ssh.port: invalid type ..." -> key and message.
        let (key, message) = match message.split_once(": ") {
            Some((k, m)) if !k.contains(' ') => (k.to_owned(), m.to_owned()),
            _ => (String::new(), message.to_owned()),
        };
        out.push(Finding {
            severity: Severity::Error,
            key,
            message,
        });
    }
    walk(&SCHEMA, &config.to_value(), "", false, &mut out);
    out
}

/// Checks a dotted key alone (for `ros config get` and `set`): `None` if it
/// is known or under a free name, else an error finding with a suggestion.
pub fn check_key(key: &str) -> Option<Finding> {
    let mut node = &SCHEMA;
    let mut path = String::new();
    for part in key.split('.') {
        match node {
            Node::Any => return None,
            Node::Named(inner) | Node::List(inner) => node = inner,
            Node::Map(fields) => match fields.iter().find(|f| f.name == part) {
                Some(field) => node = &field.node,
                None => {
                    let message = match suggest(part, fields.iter().map(|f| f.name)) {
                        Some(s) => format!("unknown key, did you mean {}?", join(&path, s)),
                        None => "unknown key".to_owned(),
                    };
                    return Some(Finding {
                        severity: Severity::Error,
                        key: join(&path, part),
                        message,
                    });
                }
            },
        }
        path = join(&path, part);
    }
    None
}

/// Parses and checks a document's text; a syntax error is one finding that
/// names the file, line and column.
pub fn validate_text(text: &str, file: &Path) -> Vec<Finding> {
    match Config::parse(text, file) {
        Ok(config) => validate(&config),
        Err(e) => vec![Finding {
            severity: Severity::Error,
            key: String::new(),
            message: e.to_string(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(text: &str) -> Vec<String> {
        validate_text(text, Path::new("user.yml"))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn errors(text: &str) -> Vec<String> {
        validate_text(text, Path::new("user.yml"))
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_typo_gets_a_suggestion() {
        let cases: &[(&str, &str)] = &[
            (
                "rancher: {netwrok: {}}",
                "error: rancher.netwrok: unknown key, did you mean rancher.network?",
            ),
            (
                "hostnme: x",
                "error: hostnme: unknown key, did you mean hostname?",
            ),
            (
                "rancher: {network: {dns: {nameserver: [1.1.1.1]}}}",
                "error: rancher.network.dns.nameserver: unknown key, did you mean rancher.network.dns.nameservers?",
            ),
            (
                "rancher: {docker: {storage_drvier: overlay2}}",
                "error: rancher.docker.storage_drvier: unknown key, did you mean rancher.docker.storage_driver?",
            ),
            (
                "rancher: {network: {interfaces: {eth0: {adress: 10.0.0.1/8}}}}",
                "error: rancher.network.interfaces.eth0.adress: unknown key, did you mean rancher.network.interfaces.eth0.address?",
            ),
            ("users: []", "error: users: unknown key"),
        ];
        for (text, want) in cases {
            assert_eq!(errors(text), [*want], "document {text:?}");
        }
    }

    #[test]
    fn free_names_are_not_unknown_keys() {
        let text = "rancher:\n  services:\n    my-service: {image: x, whatever: 1}\n  environment: {B*: '', FOO: bar}\n  sysctl: {net.ipv4.ip_forward: 1}\n  network:\n    interfaces:\n      eth*: {dhcp: true}\n  registry_auths:\n    r.example: {username: u, password: p}\n";
        assert_eq!(errors(text), Vec::<String>::new());
    }

    #[test]
    fn wrong_types_name_the_key() {
        let errs = errors("rancher:\n  ssh:\n    port: lots\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("error: rancher.ssh.port: invalid type"),
            "{errs:?}"
        );
    }

    #[test]
    fn unimplemented_keys_are_named_once_at_their_top() {
        let got = findings(
            "hostname: h\nrancher:\n  network:\n    dns: {nameservers: [8.8.8.8]}\n    pre_cmds: [true]\n  password: x\n  state: {dev: /dev/vdb, mdadm_scan: true}\n",
        );
        assert_eq!(
            got,
            [
                "note: rancher.network.pre_cmds: accepted, but not implemented yet: it has no effect",
                "note: rancher.password: read from the kernel command line only: it has no effect in a file",
                "note: rancher.state.mdadm_scan: accepted, but not implemented yet: it has no effect",
            ]
        );
    }

    #[test]
    fn syntax_errors_have_file_line_and_column() {
        let got = findings("rancher:\n  console: [debian\n");
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("error: user.yml:3:"), "{got:?}");
    }

    #[test]
    fn list_items_are_checked() {
        assert_eq!(
            errors("write_files:\n  - path: /x\n    contnet: hi\n"),
            ["error: write_files.0.contnet: unknown key, did you mean write_files.0.content?"]
        );
    }

    #[test]
    fn single_keys_are_checked() {
        let cases: &[(&str, Option<&str>)] = &[
            ("rancher.network.dns.nameservers", None),
            ("rancher.services.anything.image", None),
            ("rancher.network.interfaces.eth0.mtu", None),
            ("future", Some("error: future: unknown key")),
            (
                "rancher.network.interfaces.eth0.mut",
                Some("error: rancher.network.interfaces.eth0.mut: unknown key, did you mean rancher.network.interfaces.eth0.mtu?"),
            ),
            (
                "rancher.sate.dev",
                Some("error: rancher.sate: unknown key, did you mean rancher.state?"),
            ),
        ];
        for (key, want) in cases {
            assert_eq!(
                check_key(key).map(|f| f.to_string()).as_deref(),
                *want,
                "key {key}"
            );
        }
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(suggest("netwrok", ["network", "state"]), Some("network"));
        assert_eq!(suggest("zzz", ["network", "state"]), None);
    }
}
