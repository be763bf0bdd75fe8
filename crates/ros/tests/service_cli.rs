//! `ros service` against real engines: a small project of system services
//! brought up in the system engine, and a user-scope service in a second
//! engine standing for User Docker.

mod common;

use std::path::Path;
use std::process::Command;

use common::{require_root, ros_bin, try_run_with_timeout, Daemon, Run, COMMAND_TIMEOUT};
use testkit::{Compression, DockerArchive, TestImage};

const IMAGE: &str = "oxos-test/busybox:latest";

/// The project: a createonly volume container (`data`) used through
/// volumes_from; `first` before `second` (a `before` label); `setup` after
/// `second` that does not detach; `third` after `setup`; and one user-scope
/// service. Each writes to the shared volume so that order can be checked
/// from inside.
const CONFIG: &str = r#"
rancher:
  environment:
    GREETING: hello
    PROXY_A: a
    PROXY_B: b
  services:
    third:
      image: oxos-test/busybox:latest
      command: sh -c 'echo "third saw $(cat /shared/setup)"; exec sleep 1000'
      volumes_from: [data]
      labels:
        io.rancher.os.scope: system
        io.rancher.os.after: setup
    second:
      image: oxos-test/busybox:latest
      command: ["sh", "-c", "test -f /shared/first && echo second saw first; echo greeting=$GREETING; env | grep ^PROXY_ | sort; exec sleep 1000"]
      environment: [GREETING, PROXY_*, UNSET_VARIABLE]
      volumes_from: [data]
      labels:
        io.rancher.os.scope: system
    first:
      image: oxos-test/busybox:latest
      command: sh -c 'echo first > /shared/first; echo first started; exec sleep 1000'
      volumes_from: [data]
      labels:
        io.rancher.os.scope: system
        io.rancher.os.before: second
    setup:
      image: oxos-test/busybox:latest
      command: sh -c 'sleep 1; echo setup ran > /shared/setup; echo setup done'
      volumes_from: [data]
      labels:
        io.rancher.os.scope: system
        io.rancher.os.after: second
        io.rancher.os.detach: "false"
    data:
      image: oxos-test/busybox:latest
      volumes: [/shared]
      labels:
        io.rancher.os.scope: system
        io.rancher.os.createonly: "true"
    user-app:
      image: oxos-test/busybox:latest
      command: sh -c 'echo user app; exec sleep 1000'
"#;

struct Fixture {
    system: Daemon,
    user: Daemon,
    root: tempfile::TempDir,
}

impl Fixture {
    fn new(config: &str) -> Fixture {
        let system = Daemon::start();
        let user = Daemon::start();
        for daemon in [&system, &user] {
            let tar = DockerArchive::new()
                .image(&TestImage::busybox(), &[IMAGE])
                .compression(Compression::Gzip)
                .build();
            let path = daemon.dir().join("busybox.tar");
            testkit::write_file(&path, &tar).unwrap();
            let load = daemon.system_docker(&["load", "-i", &path.to_string_lossy()]);
            assert!(load.out.status.success(), "{}", load.describe("failed"));
        }
        let root = tempfile::tempdir().unwrap();
        let conf = root.path().join("var/lib/rancher/conf");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("cloud-config.yml"), config).unwrap();
        Fixture { system, user, root }
    }

    fn ros(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(ros_bin());
        cmd.arg("--root")
            .arg(self.root.path())
            .args(args)
            .env("SYSTEM_DOCKER_HOST", self.system.host())
            .env("DOCKER_HOST", self.user.host())
            .env_remove("ROS_ROOT");
        let out = try_run_with_timeout(cmd, COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("ros {}: {e}\n{}", args.join(" "), self.system.logs()));
        Run {
            what: format!("ros {}", args.join(" ")),
            out,
        }
    }

    fn ok(&self, args: &[&str]) -> Run {
        let run = self.ros(args);
        assert!(
            run.out.status.success(),
            "{}\n{}",
            run.describe("failed"),
            self.system.logs()
        );
        run
    }

    fn id(&self, daemon: &Daemon, name: &str) -> String {
        let run = daemon.system_docker(&["inspect", "-f", "{{.Id}}", name]);
        assert!(run.out.status.success(), "{}", run.describe("failed"));
        run.stdout().trim().to_string()
    }
}

/// The position of `needle` in `haystack`, failing with both when absent.
fn position(haystack: &str, needle: &str) -> usize {
    haystack
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not found in:\n{haystack}"))
}

fn ps_state(ps: &str, service: &str) -> String {
    ps.lines()
        .find(|l| l.split_whitespace().next() == Some(service))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or_else(|| panic!("no row for {service} in:\n{ps}"))
        .to_string()
}

#[test]
fn a_project_comes_up_in_order_with_its_volume_environment_and_logs() {
    if !require_root() {
        return;
    }
    let f = Fixture::new(CONFIG);

    let up = f.ok(&["service", "up"]);
    let progress = up.stderr();
    // Start order: data is created first, then first before second (before
    // label), setup after second, third only after setup has exited.
    let created_data = position(&progress, "Creating data");
    let started = |name: &str| position(&progress, &format!("Starting {name}\n"));
    assert!(created_data < started("first"), "{progress}");
    assert!(started("first") < started("second"), "{progress}");
    assert!(started("second") < started("setup"), "{progress}");
    assert!(
        position(&progress, "setup exited with 0") < started("third"),
        "{progress}"
    );
    assert!(
        !progress.contains("Starting data"),
        "a createonly container is never started:\n{progress}"
    );

    // The states a user sees.
    let ps = f.ok(&["service", "ps"]).stdout();
    assert_eq!(ps_state(&ps, "data"), "created", "{ps}");
    assert_eq!(ps_state(&ps, "setup"), "exited", "{ps}");
    for running in ["first", "second", "third", "user-app"] {
        assert_eq!(ps_state(&ps, running), "running", "{ps}");
    }

    // The volume of the volume container is shared by the others.
    let cat = f
        .system
        .system_docker(&["exec", "third", "cat", "/shared/setup", "/shared/first"]);
    assert_eq!(cat.stdout(), "setup ran\nfirst\n", "{}", cat.describe(""));

    // Logs of one service, bare; environment filled from rancher.environment
    // (a bare name, a glob; an unknown name is left out).
    // A detached service may still be writing when `up` returns: wait for
    // its last line, then compare the whole.
    let second = wait_for_logs(&f, "second", "PROXY_B=b\n");
    assert_eq!(
        second, "second saw first\ngreeting=hello\nPROXY_A=a\nPROXY_B=b\n",
        "logs of second"
    );
    let env = f.system.system_docker(&["exec", "second", "env"]).stdout();
    assert!(!env.contains("UNSET_VARIABLE"), "{env}");
    assert_eq!(
        wait_for_logs(&f, "third", "third saw setup ran\n"),
        "third saw setup ran\n"
    );
    wait_for_logs(&f, "first", "first started\n");
    // Several services: each line names its service; --lines keeps the last N.
    let all = f.ok(&["service", "logs", "setup", "first"]).stdout();
    assert!(all.contains("setup | setup done\n"), "{all}");
    assert!(all.contains("first | first started\n"), "{all}");
    let last = f
        .ok(&["service", "logs", "--lines", "1", "second"])
        .stdout();
    assert_eq!(last, "PROXY_B=b\n");

    // The user-scope service runs in User Docker, not in the system engine.
    assert_eq!(wait_for_logs(&f, "user-app", "user app\n"), "user app\n");
    assert!(f
        .user
        .system_docker(&["inspect", "user-app"])
        .out
        .status
        .success());
    assert!(!f
        .system
        .system_docker(&["inspect", "user-app"])
        .out
        .status
        .success());

    // A second up keeps unchanged containers; a changed environment value
    // makes only the service that uses it anew.
    let first_id = f.id(&f.system, "first");
    let second_id = f.id(&f.system, "second");
    f.ok(&["service", "up"]);
    assert_eq!(f.id(&f.system, "first"), first_id);
    assert_eq!(f.id(&f.system, "second"), second_id);
    f.ok(&["config", "set", "rancher.environment.GREETING", "bonjour"]);
    let again = f.ok(&["service", "up"]).stderr();
    assert!(again.contains("Recreating second"), "{again}");
    assert!(!again.contains("Recreating first"), "{again}");
    assert_eq!(f.id(&f.system, "first"), first_id);
    assert_ne!(f.id(&f.system, "second"), second_id);
    common::wait_for("the new greeting", common::POLL_TIMEOUT, || {
        f.ros(&["service", "logs", "second"])
            .stdout()
            .contains("greeting=bonjour")
            .then_some(())
    });

    // stop, start and rm act on the project's containers.
    f.ok(&["service", "stop", "-t", "1", "first"]);
    assert_eq!(
        ps_state(&f.ok(&["service", "ps"]).stdout(), "first"),
        "exited"
    );
    f.ok(&["service", "start", "first"]);
    assert_eq!(
        ps_state(&f.ok(&["service", "ps"]).stdout(), "first"),
        "running"
    );
    f.ok(&["service", "rm", "-f"]);
    let ps = f.ok(&["service", "ps"]).stdout();
    for name in ["data", "first", "second", "setup", "third", "user-app"] {
        assert_eq!(ps_state(&ps, name), "not", "{name} removed:\n{ps}");
    }
}

#[test]
fn a_failing_service_is_reported_and_the_others_still_come_up() {
    if !require_root() {
        return;
    }
    let f = Fixture::new(
        r#"
rancher:
  services:
    broken:
      image: 127.0.0.1:9/oxos-test/missing:1
      labels: {io.rancher.os.scope: system}
    fails:
      image: oxos-test/busybox:latest
      command: sh -c 'exit 3'
      labels: {io.rancher.os.scope: system, io.rancher.os.detach: "false"}
    fine:
      image: oxos-test/busybox:latest
      command: sleep 1000
      labels: {io.rancher.os.scope: system, io.rancher.os.after: "broken,fails"}
"#,
    );
    let up = f.ros(&["service", "up"]);
    assert_eq!(up.code(), Some(1), "{}", up.describe(""));
    let err = up.stderr();
    assert!(err.contains("broken: failed:"), "{err}");
    assert!(
        err.contains("missing"),
        "the message names the image: {err}"
    );
    assert!(
        err.contains("fails: failed: service fails: exited with 3"),
        "{err}"
    );
    let ps = f.ok(&["service", "ps"]).stdout();
    assert_eq!(ps_state(&ps, "fine"), "running", "{ps}");

    // Unknown services are named.
    let unknown = f.ros(&["service", "restart", "nope"]);
    assert_eq!(unknown.code(), Some(1));
    assert!(
        unknown
            .stderr()
            .contains("no service named nope in the configuration"),
        "{}",
        unknown.stderr()
    );
}

#[test]
fn enable_disable_and_delete_edit_services_include() {
    let root = tempfile::tempdir().unwrap();
    let ros = |args: &[&str]| {
        Command::new(ros_bin())
            .arg("--root")
            .arg(root.path())
            .args(args)
            .env_remove("ROS_ROOT")
            .output()
            .unwrap()
    };
    let text = |p: &Path| std::fs::read_to_string(p).unwrap();
    assert!(ros(&["service", "enable", "kernel-headers"])
        .status
        .success());
    assert!(ros(&["service", "enable", "https://example.test/s.yml"])
        .status
        .success());
    assert!(ros(&["service", "disable", "kernel-headers"])
        .status
        .success());
    let path = root.path().join("var/lib/rancher/conf/cloud-config.yml");
    let saved = text(&path);
    assert!(saved.contains("kernel-headers: false"), "{saved}");
    assert!(
        saved.contains("https://example.test/s.yml: true"),
        "{saved}"
    );
    let get = ros(&["config", "get", "rancher.services_include"]);
    assert!(String::from_utf8_lossy(&get.stdout).contains("kernel-headers: false"));
    let list = String::from_utf8_lossy(&ros(&["service", "list", "--all"]).stdout).to_string();
    assert!(list.contains("disabled  kernel-headers"), "{list}");
    assert!(
        list.contains("enabled   https://example.test/s.yml"),
        "{list}"
    );
    assert!(ros(&["service", "delete", "kernel-headers"])
        .status
        .success());
    assert!(!text(&path).contains("kernel-headers"));
    let again = ros(&["service", "delete", "kernel-headers"]);
    assert_eq!(again.status.code(), Some(1));
}

#[test]
fn an_enabled_service_from_a_repository_comes_up_and_a_missing_one_is_named() {
    if !require_root() {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("index.yml"), "services: [extra, other]\n").unwrap();
    std::fs::create_dir(repo.path().join("e")).unwrap();
    std::fs::write(
        repo.path().join("e/extra.yml"),
        "extra:\n  image: oxos-test/busybox:latest\n  command: sh -c 'echo extra here; exec sleep 1000'\n  labels: {io.rancher.os.scope: system}\n",
    )
    .unwrap();
    let f = Fixture::new(&format!(
        "rancher:\n  repositories:\n    local: {{url: {}}}\n",
        repo.path().display()
    ));
    f.ok(&["service", "enable", "extra"]);
    f.ok(&["service", "enable", "missing-one"]);
    let list = f.ok(&["service", "list", "--all"]).stdout();
    assert!(list.contains("enabled   extra"), "{list}");
    assert!(list.contains("disabled  other"), "{list}");

    let up = f.ok(&["service", "up"]);
    let err = up.stderr();
    assert!(
        err.contains("services_include missing-one:"),
        "the entry that cannot be found is named: {err}"
    );
    assert_eq!(wait_for_logs(&f, "extra", "extra here\n"), "extra here\n");
}

#[test]
fn rebuild_labels_and_reloadconfig_behave_as_documented() {
    if !require_root() {
        return;
    }
    // `writer` does not detach and reloads the config after it: it adds the
    // service `late` through cloud-config.d, which must then come up in the
    // same `up`.
    let f = Fixture::new("");
    let conf_d = f.root.path().join("var/lib/rancher/conf/cloud-config.d");
    std::fs::create_dir_all(&conf_d).unwrap();
    std::fs::write(
        f.root.path().join("var/lib/rancher/conf/cloud-config.yml"),
        format!(
            r#"
rancher:
  environment: {{V: "1"}}
  services:
    always:
      image: oxos-test/busybox:latest
      command: sleep 1000
      labels: {{io.rancher.os.scope: system, io.docker.compose.rebuild: always}}
    kept:
      image: oxos-test/busybox:latest
      command: sleep 1000
      environment: [V]
      labels: {{io.rancher.os.scope: system, io.docker.compose.rebuild: "false"}}
    writer:
      image: oxos-test/busybox:latest
      command: ["sh", "-c", "printf 'rancher:\n  services:\n    late:\n      image: oxos-test/busybox:latest\n      command: sh -c \"echo late came up; exec sleep 1000\"\n      labels: {{io.rancher.os.scope: system}}\n' > /conf.d/late.yml"]
      volumes: ["{}:/conf.d"]
      labels:
        io.rancher.os.scope: system
        io.rancher.os.detach: "false"
        io.rancher.os.reloadconfig: "true"
        io.rancher.os.after: kept
"#,
            conf_d.display()
        ),
    )
    .unwrap();
    let up = f.ok(&["service", "up"]).stderr();
    assert!(up.contains("Reloading the configuration"), "{up}");
    assert_eq!(
        wait_for_logs(&f, "late", "late came up\n"),
        "late came up\n",
        "a service added by a reloadconfig service comes up in the same up:\n{up}"
    );

    let always_id = f.id(&f.system, "always");
    let kept_id = f.id(&f.system, "kept");
    // A changed environment value would make `kept` anew, but its rebuild
    // label says keep; `always` is made anew on every up.
    f.ok(&["config", "set", "rancher.environment.V", "2"]);
    let again = f.ok(&["service", "up"]).stderr();
    assert_ne!(f.id(&f.system, "always"), always_id, "{again}");
    assert_eq!(f.id(&f.system, "kept"), kept_id, "{again}");
}

#[test]
fn write_files_for_a_container_are_put_into_it_before_each_start() {
    if !require_root() {
        return;
    }
    // `reader` (system engine) and `user-reader` (the second engine,
    // standing for User Docker) print the files put into them; `sealed`
    // has a read-only root, so its file cannot be written and it fails.
    let config = |content: &str| {
        format!(
            r#"
write_files:
  - path: /etc/oxos/greeting
    container: reader
    permissions: "0640"
    owner: "1000:50"
    content: "{content}\n"
  - path: /etc/oxos/named-owner
    container: reader
    owner: rancher
    content: never
  - path: /srv/user
    container: user-reader
    encoding: b64
    content: ZnJvbSB1c2VyLWRhdGEK
  - path: /etc/oxos/console-only
    content: console
  - path: /etc/nowhere
    container: absent
    content: x
  - path: /tmp/sealed
    container: sealed
    content: s
rancher:
  services:
    reader:
      image: oxos-test/busybox:latest
      command: sh -c 'cat /etc/oxos/greeting; stat -c "%a %u %g" /etc/oxos/greeting; ls /etc/oxos; exec sleep 1000'
      labels: {{io.rancher.os.scope: system}}
    user-reader:
      image: oxos-test/busybox:latest
      command: sh -c 'cat /srv/user; exec sleep 1000'
    sealed:
      image: oxos-test/busybox:latest
      command: sleep 1000
      read_only: true
      labels: {{io.rancher.os.scope: system}}
"#
        )
    };
    let f = Fixture::new(&config("first"));
    let up = f.ros(&["service", "up"]);
    assert_eq!(up.code(), Some(1), "{}", up.describe("sealed fails"));
    let err = up.stderr();
    assert!(
        err.contains(
            "error: write_files[1] /etc/oxos/named-owner: owner \"rancher\": for container reader, only numeric ids"
        ),
        "{err}"
    );
    assert!(
        err.contains("write_files: container absent is not a service of the config; /etc/nowhere not written"),
        "{err}"
    );
    assert!(
        err.contains("sealed: failed: service sealed: cannot write /tmp/sealed (write_files) into its container:")
            && err.contains("read-only"),
        "{err}"
    );
    let logs = wait_for_logs(&f, "reader", "greeting");
    assert_eq!(logs, "first\n640 1000 50\ngreeting\n", "{err}");
    assert_eq!(
        wait_for_logs(&f, "user-reader", "from user-data"),
        "from user-data\n"
    );

    // A changed entry reaches the running container at its restart.
    std::fs::write(
        f.root.path().join("var/lib/rancher/conf/cloud-config.yml"),
        config("second"),
    )
    .unwrap();
    let restart = f.ok(&["service", "restart", "reader"]).stderr();
    assert!(
        restart.contains("Writing /etc/oxos/greeting into reader (write_files)"),
        "{restart}"
    );
    wait_for_logs(&f, "reader", "second");
}

/// The logs of `service` once they contain `text`.
fn wait_for_logs(f: &Fixture, service: &str, text: &str) -> String {
    common::wait_for(
        &format!("{service}'s logs to show {text:?}"),
        common::POLL_TIMEOUT,
        || {
            let logs = f.ok(&["service", "logs", service]).stdout();
            logs.contains(text).then_some(logs)
        },
    )
}
