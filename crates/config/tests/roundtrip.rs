//! Export then parse gives back the same config.
//!
//! `ros config export` writes what the tree holds, and the next boot (or
//! `ros config merge` on another machine) reads it again, so every document a
//! user can write must survive the trip unchanged: the keys OxOS knows
//! (hostname, SSH keys, write_files, runcmd, DNS, environment, services,
//! services_include, sysctl) and the ones it does not. Values are drawn to be
//! awkward for YAML: strings that look like booleans, numbers, nulls,
//! comments or mappings, with leading spaces, newlines and non-ASCII text.

use std::path::Path;

use config::cli::{run, Io};
use config::model::CloudConfig;
use config::{Config, Mapping, Value};
use proptest::prelude::*;

/// Text a user could write anywhere a string goes.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        // Strings that YAML would read as something else unless quoted.
        prop::sample::select(vec![
            "",
            "yes",
            "no",
            "on",
            "off",
            "true",
            "False",
            "null",
            "~",
            "NULL",
            "0755",
            "1e3",
            "0x1F",
            ".inf",
            "-.nan",
            "- item",
            "a: b",
            "#not a comment",
            "key: [1, 2]",
            "{}",
            "[]",
            "&anchor",
            "*alias",
            "!tag",
            "%directive",
            "@at",
            "`tick",
            "'single'",
            "\"double\"",
            "|",
            ">",
            "---",
            "...",
            " leading",
            "trailing ",
            "tab\there",
            "line\nbreak",
            "two\n\nblank lines\n",
            "\u{e9}t\u{e9} \u{1f680}",
            "back\\slash",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9.-]{1,20}",
        "\\PC{0,30}",
        any::<String>(),
    ]
}

/// A key of an unknown section: names that must be quoted included.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,12}",
        prop::sample::select(vec!["1", "true", "null", "a.b", "with space", "-", "?"])
            .prop_map(str::to_owned),
    ]
}

/// Any YAML value a user could put under a key OxOS does not know.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|f| Value::Number(f.into())),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::btree_map(key(), inner, 0..4).prop_map(|m| {
                Value::Mapping(m.into_iter().map(|(k, v)| (Value::String(k), v)).collect())
            }),
        ]
    })
}

fn strings(v: Vec<String>) -> Value {
    Value::Sequence(v.into_iter().map(Value::String).collect())
}

fn mapping(entries: Vec<(&str, Value)>) -> Value {
    Value::Mapping(
        entries
            .into_iter()
            .map(|(k, v)| (Value::String(k.to_owned()), v))
            .collect(),
    )
}

fn write_file() -> impl Strategy<Value = Value> {
    (
        "/[a-z]{1,8}(/[a-z.]{1,8}){0,3}",
        text(),
        prop::option::of(prop::sample::select(vec!["0644", "0755", "0600", "644"])),
        prop::option::of(prop::sample::select(vec!["root", "rancher:rancher"])),
        prop::option::of(prop::sample::select(vec!["b64", "gzip", "gz+b64"])),
        prop::option::of(prop::sample::select(vec!["console", "ntp"])),
    )
        .prop_map(|(path, content, permissions, owner, encoding, container)| {
            let mut entries = vec![
                ("path", Value::String(path)),
                ("content", Value::String(content)),
            ];
            for (k, v) in [
                ("permissions", permissions),
                ("owner", owner),
                ("encoding", encoding),
                ("container", container),
            ] {
                if let Some(v) = v {
                    entries.push((k, Value::String(v.to_owned())));
                }
            }
            mapping(entries)
        })
}

fn command() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(Value::String),
        prop::collection::vec(text(), 1..4).prop_map(strings),
    ]
}

fn service() -> impl Strategy<Value = Value> {
    (
        "[a-z]{1,10}(/[a-z]{1,10})?(:[a-z0-9.]{1,6})?",
        prop::option::of(command()),
        prop::collection::btree_map("io\\.rancher\\.os\\.[a-z]{1,8}", text(), 0..3),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(vec!["always", "no", "on-failure"])),
    )
        .prop_map(|(image, command, labels, privileged, restart)| {
            let mut entries = vec![("image", Value::String(image))];
            if let Some(c) = command {
                entries.push(("command", c));
            }
            if !labels.is_empty() {
                entries.push((
                    "labels",
                    Value::Mapping(
                        labels
                            .into_iter()
                            .map(|(k, v)| (Value::String(k), Value::String(v)))
                            .collect(),
                    ),
                ));
            }
            if let Some(p) = privileged {
                entries.push(("privileged", Value::Bool(p)));
            }
            if let Some(r) = restart {
                entries.push(("restart", Value::String(r.to_owned())));
            }
            mapping(entries)
        })
}

fn ipv4() -> impl Strategy<Value = String> {
    any::<[u8; 4]>().prop_map(|[a, b, c, d]| format!("{a}.{b}.{c}.{d}"))
}

/// The parts of a generated document, each optional.
#[derive(Debug, Clone)]
struct Doc {
    hostname: Option<String>,
    ssh_keys: Vec<String>,
    write_files: Vec<Value>,
    runcmd: Vec<Value>,
    nameservers: Vec<String>,
    search: Vec<String>,
    environment: Vec<(String, String)>,
    services: Vec<(String, Value)>,
    services_include: Vec<(String, bool)>,
    sysctl: Vec<(String, i64)>,
    unknown_top: Vec<(String, Value)>,
    unknown_rancher: Vec<(String, Value)>,
}

fn doc() -> impl Strategy<Value = Doc> {
    (
        (
            prop::option::of(text()),
            prop::collection::vec(text(), 0..3),
            prop::collection::vec(write_file(), 0..3),
            prop::collection::vec(command(), 0..3),
            prop::collection::vec(ipv4(), 0..3),
            prop::collection::vec("[a-z]{1,8}(\\.[a-z]{2,4})?", 0..3),
        ),
        (
            prop::collection::vec(("[A-Z_][A-Z0-9_]{0,8}\\*?", text()), 0..4),
            prop::collection::vec(("[a-z][a-z0-9-]{0,10}", service()), 0..3),
            prop::collection::vec(
                (
                    prop_oneof![
                        "[a-z][a-z0-9-]{0,12}",
                        "/var/lib/rancher/conf/[a-z]{1,8}\\.yml",
                        "https://example\\.com/[a-z]{1,8}\\.yml",
                    ],
                    any::<bool>(),
                ),
                0..4,
            ),
            prop::collection::vec(
                (
                    "(net|vm|kernel)\\.[a-z_]{1,10}(\\.[a-z_]{1,8})?",
                    any::<i64>(),
                ),
                0..3,
            ),
            // `x_` keeps unknown keys apart from the known ones.
            prop::collection::vec(("x_[a-z0-9_]{1,10}", any_value()), 0..3),
            prop::collection::vec((key().prop_map(|k| format!("x_{k}")), any_value()), 0..3),
        ),
    )
        .prop_map(
            |(
                (hostname, ssh_keys, write_files, runcmd, nameservers, search),
                (environment, services, services_include, sysctl, unknown_top, unknown_rancher),
            )| Doc {
                hostname,
                ssh_keys,
                write_files,
                runcmd,
                nameservers,
                search,
                environment,
                services,
                services_include,
                sysctl,
                unknown_top,
                unknown_rancher,
            },
        )
}

fn pairs<V>(entries: Vec<(String, V)>, f: impl Fn(V) -> Value) -> Value {
    Value::Mapping(
        entries
            .into_iter()
            .map(|(k, v)| (Value::String(k), f(v)))
            .collect::<Mapping>(),
    )
}

/// The document as a config tree, built the way `ros config set` and
/// `merge` build it.
fn build(doc: &Doc) -> Config {
    let d = doc.clone();
    let mut c = Config::new();
    let mut set = |key: &str, value: Value| c.set(key, value).expect("generated keys are valid");
    if let Some(h) = d.hostname {
        set("hostname", Value::String(h));
    }
    if !d.ssh_keys.is_empty() {
        set("ssh_authorized_keys", strings(d.ssh_keys));
    }
    if !d.write_files.is_empty() {
        set("write_files", Value::Sequence(d.write_files));
    }
    if !d.runcmd.is_empty() {
        set("runcmd", Value::Sequence(d.runcmd));
    }
    if !d.nameservers.is_empty() {
        set("rancher.network.dns.nameservers", strings(d.nameservers));
    }
    if !d.search.is_empty() {
        set("rancher.network.dns.search", strings(d.search));
    }
    if !d.environment.is_empty() {
        set("rancher.environment", pairs(d.environment, Value::String));
    }
    if !d.services.is_empty() {
        set("rancher.services", pairs(d.services, |v| v));
    }
    if !d.services_include.is_empty() {
        set(
            "rancher.services_include",
            pairs(d.services_include, Value::Bool),
        );
    }
    if !d.sysctl.is_empty() {
        // Names with dots: only `merge` (a whole mapping) can write them.
        set(
            "rancher.sysctl",
            pairs(d.sysctl, |n| Value::Number(n.into())),
        );
    }
    for (k, v) in d.unknown_rancher {
        c.as_mapping_mut()
            .entry(Value::String("rancher".into()))
            .or_insert_with(|| Value::Mapping(Mapping::new()))
            .as_mapping_mut()
            .expect("rancher is a mapping")
            .insert(Value::String(k), v);
    }
    for (k, v) in d.unknown_top {
        c.as_mapping_mut().insert(Value::String(k), v);
    }
    c
}

fn reparse(text: &str) -> Config {
    match Config::parse(text, Path::new("export.yml")) {
        Ok(c) => c,
        Err(e) => panic!("export does not parse back: {e}\n--- export:\n{text}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The tree survives export and parse, and so does its typed view.
    #[test]
    fn export_then_parse_gives_the_same_config(doc in doc()) {
        let config = build(&doc);
        let text = config.to_yaml().expect("export");
        let again = reparse(&text);
        prop_assert_eq!(&again, &config, "export:\n{}", text);

        // What the services and the network read is what was written.
        let typed: CloudConfig = again.typed().expect("typed view of a generated config");
        prop_assert_eq!(typed.hostname, doc.hostname.clone());
        prop_assert_eq!(typed.ssh_authorized_keys, doc.ssh_keys.clone());
        prop_assert_eq!(typed.rancher.network.dns.nameservers, doc.nameservers.clone());
        prop_assert_eq!(typed.runcmd, doc.runcmd.clone());
        prop_assert_eq!(typed.write_files.len(), doc.write_files.len());
        prop_assert_eq!(
            typed.rancher.services_include.into_iter().collect::<Vec<_>>(),
            doc.services_include
                .iter()
                .cloned()
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_iter()
                .collect::<Vec<_>>()
        );
        prop_assert_eq!(typed.rancher.services.len(), {
            let names: std::collections::BTreeSet<_> = doc.services.iter().map(|(n, _)| n).collect();
            names.len()
        });
    }
}

proptest! {
    // Each case writes files under a temporary root; fewer cases.
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `ros config merge` of a document, then `ros config export --private`,
    /// prints the same document.
    #[test]
    fn ros_config_merge_then_export_gives_the_same_config(doc in doc()) {
        let config = build(&doc);
        let input = config.to_yaml().expect("export");
        let tmp = tempfile::tempdir().expect("temporary root");
        let root = tmp.path().as_os_str().to_owned();
        let ros = |args: &[&str], stdin: &str| {
            let mut argv: Vec<std::ffi::OsString> = vec!["config".into(), "--root".into(), root.clone()];
            argv.extend(args.iter().map(Into::into));
            let mut stdin = stdin.as_bytes();
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            let code = run(argv, &mut Io { stdin: &mut stdin, stdout: &mut stdout, stderr: &mut stderr });
            (code, String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
        };
        let (code, _, stderr) = ros(&["merge"], &input);
        prop_assert_eq!(code, 0, "merge failed: {}", stderr);
        let (code, exported, stderr) = ros(&["export", "--private"], "");
        prop_assert_eq!(code, 0, "export failed: {}", stderr);
        prop_assert_eq!(reparse(&exported), config, "export:\n{}", exported);
    }
}
