use crate::{CommandLine, ComposeError, Project, Service, Ulimit};

fn service(yaml: &str) -> Service {
    let p = Project::from_yaml(&format!("s:\n{yaml}")).expect("parses");
    p.get("s").expect("service s").clone()
}

fn args(a: &[&str]) -> Option<CommandLine> {
    Some(CommandLine::Args(a.iter().map(|s| s.to_string()).collect()))
}

#[test]
fn command_and_entrypoint_forms() {
    let cases: &[(&str, Option<CommandLine>, Option<CommandLine>)] = &[
        (
            "  command: echo hi\n",
            Some(CommandLine::Shell("echo hi".into())),
            None,
        ),
        ("  command: [echo, hi]\n", args(&["echo", "hi"]), None),
        (
            "  entrypoint: /usr/bin/ros entrypoint\n",
            None,
            Some(CommandLine::Shell("/usr/bin/ros entrypoint".into())),
        ),
        (
            "  entrypoint:\n  - /bin/sh\n  - -c\n  command: [true]\n",
            args(&["true"]),
            args(&["/bin/sh", "-c"]),
        ),
        ("  image: x\n", None, None),
    ];
    for (yaml, command, entrypoint) in cases {
        let s = service(yaml);
        assert_eq!(&s.command, command, "{yaml}");
        assert_eq!(&s.entrypoint, entrypoint, "{yaml}");
    }
}

#[test]
fn environment_and_labels_forms() {
    let cases: &[(&str, &str, Option<&str>, bool)] = &[
        ("  environment:\n    A: b\n", "A", Some("b"), true),
        ("  environment:\n    DEBUG: 1\n", "DEBUG", Some("1"), true),
        ("  environment:\n  - A=b=c\n", "A", Some("b=c"), true),
        ("  environment:\n  - HTTP_PROXY\n", "HTTP_PROXY", None, true),
        ("  environment:\n  - A=b\n", "B", None, false),
        (
            "  labels:\n    io.rancher.os.scope: system\n",
            "io.rancher.os.scope",
            Some("system"),
            true,
        ),
        (
            "  labels:\n  - io.rancher.os.detach=false\n",
            "io.rancher.os.detach",
            Some("false"),
            true,
        ),
        (
            "  labels:\n    io.rancher.os.detach: false\n",
            "io.rancher.os.detach",
            Some("false"),
            true,
        ),
    ];
    for (yaml, key, value, present) in cases {
        let s = service(yaml);
        let kv = if yaml.contains("labels") {
            &s.labels
        } else {
            &s.environment
        };
        assert_eq!(kv.get(key), *value, "{yaml}");
        assert_eq!(kv.contains(key), *present, "{yaml}");
    }
}

#[test]
fn fields_and_unknown_fields_kept() {
    let s = service(
        "  image: rancher/os-console:v1\n  privileged: true\n  network_mode: host\n  pid: host\n  ipc: host\n  uts: host\n  volumes_from: [all-volumes]\n  volumes: [/home:/home]\n  restart: always\n  read_only: true\n  log_driver: json-file\n  log_opt: {max-size: 25m}\n  cap_add: [NET_ADMIN]\n  devices: [/dev/kvm]\n  tty: true\n  stdin_open: true\n  user: 0\n  working_dir: /root\n  hostname: box\n  ulimits:\n    nproc: 65535\n    nofile: {soft: 1024, hard: 4096}\n  depends_on: [x]\n  mem_limit: 64m\n",
    );
    assert_eq!(s.image.as_deref(), Some("rancher/os-console:v1"));
    assert!(s.privileged && s.read_only && s.tty && s.stdin_open);
    assert_eq!(s.net.as_deref(), Some("host"));
    assert_eq!(s.pid.as_deref(), Some("host"));
    assert_eq!(s.ipc.as_deref(), Some("host"));
    assert_eq!(s.uts.as_deref(), Some("host"));
    assert_eq!(s.volumes_from, ["all-volumes"]);
    assert_eq!(s.volumes, ["/home:/home"]);
    assert_eq!(s.restart.as_deref(), Some("always"));
    assert_eq!(s.log_driver.as_deref(), Some("json-file"));
    assert_eq!(s.log_opt.get("max-size"), Some("25m"));
    assert_eq!(s.cap_add, ["NET_ADMIN"]);
    assert_eq!(s.devices, ["/dev/kvm"]);
    assert_eq!(s.user.as_deref(), Some("0"));
    assert_eq!(s.working_dir.as_deref(), Some("/root"));
    assert_eq!(s.hostname.as_deref(), Some("box"));
    assert_eq!(s.ulimits.get("nproc"), Some(&Ulimit::Single(65535)));
    assert_eq!(
        s.ulimits.get("nofile"),
        Some(&Ulimit::Pair {
            soft: 1024,
            hard: 4096
        })
    );
    let extra: Vec<&str> = s.extra.keys().map(String::as_str).collect();
    assert_eq!(extra, ["depends_on", "mem_limit"]);
    assert_eq!(s.extra["mem_limit"].as_str(), Some("64m"));
}

#[test]
fn label_accessors() {
    let s = service(
        "  labels:\n    io.rancher.os.scope: system\n    io.rancher.os.after: ' network, udev ,'\n    io.rancher.os.before: console\n    io.rancher.os.detach: 'false'\n    io.rancher.os.createonly: 'true'\n    io.rancher.os.reloadconfig: 'true'\n    io.docker.compose.rebuild: always\n    cron.schedule: '@hourly'\n",
    );
    assert!(s.is_system());
    assert_eq!(s.after(), ["network", "udev"]);
    assert_eq!(s.before(), ["console"]);
    assert!(!s.detach());
    assert!(s.create_only());
    assert!(s.reload_config());
    assert_eq!(s.rebuild(), Some("always"));
    assert_eq!(s.cron_schedule(), Some("@hourly"));

    let d = service("  image: x\n");
    assert!(!d.is_system() && d.detach() && !d.create_only() && !d.reload_config());
    assert!(d.after().is_empty() && d.rebuild().is_none() && d.cron_schedule().is_none());
}

#[test]
fn project_document_forms_keep_order() {
    let cases = [
        "rancher:\n  services:\n    zeta: {image: z}\n    alpha: {image: a}\n",
        "version: '2'\nservices:\n  zeta: {image: z}\n  alpha: {image: a}\n",
        "zeta: {image: z}\nalpha: {image: a}\n",
    ];
    for yaml in cases {
        let p = Project::from_yaml(yaml).expect(yaml);
        assert_eq!(p.names().collect::<Vec<_>>(), ["zeta", "alpha"], "{yaml}");
        assert_eq!(p.get("alpha").and_then(|s| s.image.as_deref()), Some("a"));
    }
    assert!(Project::from_yaml("").expect("empty").is_empty());
}

#[test]
fn parse_errors_name_the_service() {
    let cases = [
        ("web:\n  privileged: maybe\n", "service web"),
        ("web:\n  environment: 3\n", "service web"),
        ("- a\n- b\n", "found a list"),
        ("a: [\n", "not valid yaml"),
        ("a: {}\na: {}\n", "duplicate"),
        ("1: {}\n", "name must be a string"),
    ];
    for (yaml, want) in cases {
        let err = Project::from_yaml(yaml).expect_err(yaml).to_string();
        assert!(err.contains(want), "{yaml}: {err}");
    }
}

fn order(yaml: &str) -> Result<Vec<String>, ComposeError> {
    Project::from_yaml(yaml).expect(yaml).start_order()
}

#[test]
fn start_order() {
    let cases: &[(&str, &[&str])] = &[
        ("c: {}\nb: {}\na: {}\n", &["a", "b", "c"]),
        (
            "a: {labels: {io.rancher.os.after: 'b'}}\nb: {}\n",
            &["b", "a"],
        ),
        (
            "a: {labels: {io.rancher.os.before: 'b,c'}}\nb: {}\nc: {}\nz: {}\n",
            &["a", "b", "c", "z"],
        ),
        (
            "console: {volumes_from: ['all-volumes:ro'], net: host}\nall-volumes: {volumes_from: [system-volumes]}\nsystem-volumes: {}\n",
            &["system-volumes", "all-volumes", "console"],
        ),
        (
            "a: {net: 'container:z', ipc: 'container:y', pid: 'service:x'}\nx: {}\ny: {}\nz: {}\n",
            &["x", "y", "z", "a"],
        ),
        (
            "a: {labels: {io.rancher.os.after: 'missing'}}\nb: {}\n",
            &["a", "b"],
        ),
    ];
    for (yaml, want) in cases {
        assert_eq!(order(yaml).expect(yaml), *want, "{yaml}");
    }
}

#[test]
fn order_errors() {
    let cases = [
        (
            "a: {labels: {io.rancher.os.after: b}}\nb: {labels: {io.rancher.os.after: c}}\nc: {labels: {io.rancher.os.after: a}}\nd: {}\n",
            "a -> b -> c -> a",
        ),
        ("a: {labels: {io.rancher.os.after: a}}\n", "a -> a"),
        (
            "x: {}\nb: {volumes_from: [c]}\nc: {labels: {io.rancher.os.after: b}}\n",
            "b -> c -> b",
        ),
        (
            "a: {volumes_from: [gone]}\n",
            "service a: volumes_from refers to unknown service gone",
        ),
        (
            "a: {net: 'container:gone'}\n",
            "service a: net refers to unknown service gone",
        ),
    ];
    for (yaml, want) in cases {
        let err = order(yaml).expect_err(yaml).to_string();
        assert!(err.contains(want), "{yaml}: {err}");
    }
}

#[test]
fn service_round_trips_through_yaml() {
    let s = service(
        "  image: x\n  command: [sleep, 10]\n  environment: {A: b}\n  labels: [io.rancher.os.scope=system, flag]\n  net: host\n  privileged: true\n  ulimits: {nofile: {soft: 1, hard: 2}}\n  mem_limit: 64m\n",
    );
    let text = serde_norway::to_string(&s).expect("serializes");
    assert!(!text.contains("null"), "unset fields are left out: {text}");
    let back: Service = serde_norway::from_str(&text).expect(&text);
    assert_eq!(back, s, "{text}");
    assert!(back.is_system() && back.labels.contains("flag"));
}

#[test]
fn a_key_holding_equals_survives_a_round_trip() {
    // Found by the compose_project fuzz target: the list form `a=b=c`
    // would read back as key `a`.
    let s = service("  image: x\n  labels:\n    a=b: c\n    plain: v\n  environment: [K=V]\n");
    let text = serde_norway::to_string(&s).unwrap();
    let back: Service = serde_norway::from_str(&text).unwrap();
    assert_eq!(back, s, "{text}");
    assert_eq!(back.labels.get("a=b"), Some("c"));
}
