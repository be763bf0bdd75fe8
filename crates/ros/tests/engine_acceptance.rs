//! The system engine's promises, checked with real containers and the real
//! docker CLIs as clients: Debian's docker.io 20.10 and the newer one on PATH.
//!
//! Each test starts its own daemon in a temporary directory (see `common`),
//! loads images built from the host's busybox (`testkit`), and drives the
//! daemon the way a user would. Nothing here reaches beyond 127.0.0.1.

mod common;

use common::{free_port, pid_alive, wait_for, Cli, Daemon, POLL_TIMEOUT};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testkit::{Compression, DockerArchive, OciLayout, TestImage};

/// A container command that prints two lines (stdout, stderr) and then runs
/// until it is asked to stop (it exits 0 on SIGTERM).
const SERVICE: &str =
    "trap 'exit 0' TERM; echo line-one; echo line-two >&2; while true; do sleep 1; done";

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("cannot write a test archive");
    path.to_string_lossy().into_owned()
}

/// The docker-archive (gzip layers) and OCI-layout (zstd layers) test images.
fn load_test_images(d: &Daemon, cli: &Cli) {
    let gz = DockerArchive::new()
        .image(
            &TestImage::busybox().label("form", "docker-archive"),
            &["busy:gz"],
        )
        .compression(Compression::Gzip)
        .build();
    let oci = OciLayout::new()
        .image(
            &TestImage::busybox().label("form", "oci"),
            Some("busyoci:v1"),
        )
        .compression(Compression::Zstd)
        .build();
    let out = d.ok(cli, &["load", "-i", &write(d.dir(), "gz.tar", &gz)]);
    assert!(out.contains("busy:gz"), "{}: load said {out:?}", cli.label);
    let out = d.ok(cli, &["load", "-i", &write(d.dir(), "oci.tar", &oci)]);
    assert!(
        out.contains("busyoci:v1"),
        "{}: load said {out:?}",
        cli.label
    );
}

fn images(d: &Daemon, cli: &Cli) -> String {
    d.ok(cli, &["images", "--format", "{{.Repository}}:{{.Tag}}"])
}

fn state(d: &Daemon, cli: &Cli, name: &str) -> String {
    d.inspect(cli, name, "{{.State.Status}}")
}

fn wait_state(d: &Daemon, cli: &Cli, name: &str, want: &str) {
    wait_for(&format!("{name} to be {want}"), POLL_TIMEOUT, || {
        (state(d, cli, name) == want).then_some(())
    });
}

#[test]
fn both_clis_drive_the_whole_container_lifecycle() {
    if !common::require_root() {
        return;
    }
    for cli in common::clis() {
        let d = Daemon::start();
        load_test_images(&d, &cli);
        let listed = images(&d, &cli);
        assert!(
            listed.contains("busy:gz") && listed.contains("busyoci:v1"),
            "{}: images: {listed}",
            cli.label
        );

        for image in ["busy:gz", "busyoci:v1"] {
            let name = format!("svc-{}", image.replace([':', '.'], "-"));
            d.ok(
                &cli,
                &["run", "-d", "--name", &name, image, "sh", "-c", SERVICE],
            );
            wait_for("the container's output in its log", POLL_TIMEOUT, || {
                let logs = d.docker(&cli, &["logs", &name]);
                (logs.stdout().contains("line-one") && logs.stderr().contains("line-two"))
                    .then_some(())
            });
            let ps = d.ok(&cli, &["ps"]);
            assert!(
                ps.contains(&name) && ps.contains("Up"),
                "{}: ps: {ps}",
                cli.label
            );

            let exec = d.docker(
                &cli,
                &[
                    "exec",
                    &name,
                    "sh",
                    "-c",
                    "echo from-exec; cat /etc/hostname; exit 7",
                ],
            );
            assert_eq!(exec.code(), Some(7), "{}", exec.describe("exec"));
            assert!(
                exec.stdout().contains("from-exec"),
                "{}",
                exec.describe("exec")
            );

            d.ok(&cli, &["stop", &name]);
            assert_eq!(state(&d, &cli, &name), "exited");
            let ps = d.ok(&cli, &["ps", "-a"]);
            assert!(
                ps.contains("Exited (0)"),
                "{}: ps -a after stop: {ps}",
                cli.label
            );

            d.ok(&cli, &["start", &name]);
            wait_state(&d, &cli, &name, "running");
            let first_start = d.inspect(&cli, &name, "{{.State.StartedAt}}");
            d.ok(&cli, &["restart", "-t", "5", &name]);
            wait_state(&d, &cli, &name, "running");
            let second_start = d.inspect(&cli, &name, "{{.State.StartedAt}}");
            assert_ne!(
                first_start, second_start,
                "{}: restart did not start the container again",
                cli.label
            );
            wait_for("three runs of output in the log", POLL_TIMEOUT, || {
                let logs = d.docker(&cli, &["logs", &name]).stdout();
                (logs.matches("line-one").count() >= 3).then_some(())
            });

            d.ok(&cli, &["rm", "-f", &name]);
            let ps = d.ok(&cli, &["ps", "-a", "--format", "{{.Names}}"]);
            assert!(
                !ps.contains(&name),
                "{}: {name} still listed after rm: {ps}",
                cli.label
            );
            d.ok(&cli, &["rmi", image]);
        }
        let listed = images(&d, &cli);
        assert!(
            !listed.contains("busy"),
            "{}: images after rmi: {listed}",
            cli.label
        );
    }
}

/// Debian's docker-registry on 127.0.0.1, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().expect("registry dir");
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start docker-registry (Debian package docker-registry)");
        let reg = Registry {
            child,
            port,
            _dir: dir,
        };
        wait_for("the registry to answer", POLL_TIMEOUT, || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        reg
    }

    /// Pushes a docker-archive into the registry with skopeo.
    fn push(&self, archive: &str, name: &str) {
        let out = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
            .arg(format!("docker-archive:{archive}"))
            .arg(format!("docker://127.0.0.1:{}/{name}", self.port))
            .output()
            .expect("cannot run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn both_clis_pull_from_a_local_registry_and_run_it() {
    if !common::require_root() {
        return;
    }
    let registry = Registry::start();
    let scratch = tempfile::tempdir().unwrap();
    let archive = write(
        scratch.path(),
        "pushed.tar",
        &DockerArchive::new()
            .image(&TestImage::busybox().label("pulled", "yes"), &["pushed:1"])
            .compression(Compression::Gzip)
            .build(),
    );
    registry.push(&archive, "team/pushed:1");
    let reference = format!("127.0.0.1:{}/team/pushed:1", registry.port);
    for cli in common::clis() {
        let d = Daemon::start();
        let out = d.ok(&cli, &["pull", &reference]);
        assert!(
            out.contains(&reference) || out.contains("Downloaded"),
            "{}: pull said {out}",
            cli.label
        );
        let listed = images(&d, &cli);
        assert!(
            listed.contains(&reference),
            "{}: images after pull: {listed}",
            cli.label
        );
        let label = d.inspect(&cli, &reference, "{{index .Config.Labels \"pulled\"}}");
        assert_eq!(label, "yes", "{}: the pulled image's config", cli.label);
        d.ok(
            &cli,
            &[
                "run",
                "-d",
                "--name",
                "from-registry",
                &reference,
                "sh",
                "-c",
                SERVICE,
            ],
        );
        wait_for("the pulled image to run", POLL_TIMEOUT, || {
            d.docker(&cli, &["logs", "from-registry"])
                .stdout()
                .contains("line-one")
                .then_some(())
        });
        d.ok(&cli, &["rm", "-f", "from-registry"]);
        // An unknown tag is an error that names it, and adds nothing.
        let missing = format!("127.0.0.1:{}/team/pushed:nope", registry.port);
        let run = d.fails(&cli, &["pull", &missing]);
        assert!(
            run.stderr().contains("nope") || run.stdout().contains("nope"),
            "{}",
            run.describe("pull of a missing tag")
        );
        assert_eq!(
            images(&d, &cli),
            listed,
            "{}: a failed pull changed the image list",
            cli.label
        );
    }
}

fn busybox_daemon(cli: &Cli) -> Daemon {
    let d = Daemon::start();
    let archive = write(
        d.dir(),
        "bb.tar",
        &testkit::busybox_archive(&["busybox:latest"]),
    );
    d.ok(cli, &["load", "-i", &archive]);
    d
}

fn restart_count(d: &Daemon, cli: &Cli, name: &str) -> i64 {
    d.inspect(cli, name, "{{.RestartCount}}")
        .parse()
        .unwrap_or(-1)
}

#[test]
fn restart_always_brings_a_killed_container_back() {
    if !common::require_root() {
        return;
    }
    let cli = &common::clis()[0];
    let d = busybox_daemon(cli);
    d.ok(
        cli,
        &[
            "run",
            "-d",
            "--name",
            "always",
            "--restart",
            "always",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    for round in 1..=2 {
        let pid: i32 = d.inspect(cli, "always", "{{.State.Pid}}").parse().unwrap();
        assert!(pid > 0 && pid_alive(pid));
        common::kill9(pid);
        wait_for(
            "the container to come back with a new process",
            POLL_TIMEOUT,
            || {
                let new_pid: i32 = d
                    .inspect(cli, "always", "{{.State.Pid}}")
                    .parse()
                    .unwrap_or(0);
                (state(&d, cli, "always") == "running" && new_pid > 0 && new_pid != pid)
                    .then_some(())
            },
        );
        assert_eq!(restart_count(&d, cli, "always"), round);
    }
    // A stop by the user is not undone by the policy.
    d.ok(cli, &["stop", "always"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(&d, cli, "always"), "exited");
}

#[test]
fn restart_on_failure_2_retries_twice_then_stays_exited() {
    if !common::require_root() {
        return;
    }
    let cli = &common::clis()[0];
    let d = busybox_daemon(cli);
    d.ok(
        cli,
        &[
            "run",
            "-d",
            "--name",
            "flaky",
            "--restart",
            "on-failure:2",
            "busybox",
            "sh",
            "-c",
            "echo try; exit 1",
        ],
    );
    wait_for("two restarts and a final exit", POLL_TIMEOUT, || {
        (restart_count(&d, cli, "flaky") == 2 && state(&d, cli, "flaky") == "exited").then_some(())
    });
    // Well past the back-off (100 ms, 200 ms, ...): no third restart.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(restart_count(&d, cli, "flaky"), 2);
    assert_eq!(state(&d, cli, "flaky"), "exited");
    assert_eq!(d.inspect(cli, "flaky", "{{.State.ExitCode}}"), "1");
    let runs = d
        .docker(cli, &["logs", "flaky"])
        .stdout()
        .matches("try")
        .count();
    assert_eq!(runs, 3, "the first run and two restarts");
    // A successful exit is not a failure: no restart.
    d.ok(
        cli,
        &[
            "run",
            "-d",
            "--name",
            "fine",
            "--restart",
            "on-failure:2",
            "busybox",
            "true",
        ],
    );
    wait_state(&d, cli, "fine", "exited");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(restart_count(&d, cli, "fine"), 0);
}

#[test]
fn killed_daemon_leaves_containers_running_and_finds_them_again() {
    if !common::require_root() {
        return;
    }
    for cli in common::clis() {
        let mut d = busybox_daemon(&cli);
        d.ok(
            &cli,
            &[
                "run", "-d", "--name", "survivor", "busybox", "sh", "-c", SERVICE,
            ],
        );
        d.ok(
            &cli,
            &[
                "run",
                "-d",
                "--name",
                "ends-alone",
                "busybox",
                "sh",
                "-c",
                "sleep 2; exit 5",
            ],
        );
        let pid: i32 = d
            .inspect(&cli, "survivor", "{{.State.Pid}}")
            .parse()
            .unwrap();

        d.kill9();
        // While no daemon runs, one container keeps running, the other exits.
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            pid_alive(pid),
            "{}: the container died with the daemon",
            cli.label
        );
        d.restart();

        assert_eq!(state(&d, &cli, "survivor"), "running");
        assert_eq!(
            d.inspect(&cli, "survivor", "{{.State.Pid}}"),
            pid.to_string()
        );
        let ps = d.ok(&cli, &["ps", "--format", "{{.Names}}"]);
        assert!(
            ps.contains("survivor"),
            "{}: ps after the daemon restart: {ps}",
            cli.label
        );
        wait_state(&d, &cli, "ends-alone", "exited");
        assert_eq!(
            d.inspect(&cli, "ends-alone", "{{.State.ExitCode}}"),
            "5",
            "{}: exit recorded while no daemon ran",
            cli.label
        );
        assert!(d
            .docker(&cli, &["logs", "survivor"])
            .stdout()
            .contains("line-one"));
        let exec = d.docker(&cli, &["exec", "survivor", "echo", "still-here"]);
        assert!(
            exec.stdout().contains("still-here"),
            "{}",
            exec.describe("exec after restart")
        );

        d.ok(&cli, &["stop", "survivor"]);
        assert!(
            !pid_alive(pid),
            "{}: stop left the process running",
            cli.label
        );
        assert_eq!(state(&d, &cli, "survivor"), "exited");
        d.ok(&cli, &["rm", "survivor", "ends-alone"]);
        assert_eq!(d.ok(&cli, &["ps", "-aq"]), "");
    }
}

/// What an image load must never change when it fails.
fn store_snapshot(d: &Daemon, cli: &Cli) -> (String, Vec<String>) {
    let images = d.ok(cli, &["images", "-q", "--no-trunc"]);
    let mut files: Vec<String> = walk(&d.data_root().join("image"));
    files.sort();
    (images, files)
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        // Inside layers, the top-level entries are enough.
        out.push(p.to_string_lossy().into_owned());
        if p.is_dir() && !p.parent().is_some_and(|parent| parent.ends_with("layers")) {
            out.extend(walk(&p));
        }
    }
    out
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    if !common::require_root() {
        return;
    }
    for cli in common::clis() {
        let d = busybox_daemon(&cli);
        let before = store_snapshot(&d, &cli);

        // A truncated archive.
        let whole = DockerArchive::new()
            .image(&TestImage::busybox().label("x", "1"), &["cut:1"])
            .compression(Compression::Gzip)
            .build();
        let cut = write(
            d.dir(),
            "cut.tar",
            &testkit::truncated(&whole, whole.len() * 2 / 3),
        );
        let run = d.fails(&cli, &["load", "-i", &cut]);
        assert!(
            !run.stderr().trim().is_empty(),
            "{}",
            run.describe("load of a truncated tar")
        );
        assert_eq!(
            store_snapshot(&d, &cli),
            before,
            "{}: a truncated load changed the store",
            cli.label
        );

        // A layer whose content does not match its digest.
        let bad = testkit::docker_archive_with_bad_layer(
            &TestImage::busybox().label("x", "2"),
            &["bad:1"],
        );
        let run = d.fails(&cli, &["load", "-i", &write(d.dir(), "bad.tar", &bad)]);
        assert!(
            run.stderr().contains("digest"),
            "{}",
            run.describe("load of a layer with a wrong digest")
        );
        assert_eq!(
            store_snapshot(&d, &cli),
            before,
            "{}: a bad-digest load changed the store",
            cli.label
        );

        // An unknown image.
        let run = d.fails(&cli, &["create", "--pull", "never", "nosuch:1"]);
        assert!(
            run.stderr().contains("nosuch"),
            "{}",
            run.describe("create of an unknown image")
        );

        // A name already in use.
        d.ok(&cli, &["create", "--name", "taken", "busybox", "true"]);
        let run = d.fails(&cli, &["create", "--name", "taken", "busybox", "true"]);
        assert!(
            run.stderr().contains("taken") && run.stderr().contains("already in use"),
            "{}",
            run.describe("create with a name in use")
        );
        assert_eq!(
            d.ok(&cli, &["ps", "-aq"]).lines().count(),
            1,
            "{}: the failed create left a container",
            cli.label
        );

        // A malformed request body.
        let (status, body) = d
            .http("POST", "/v1.41/containers/create", Some(b"{bad json"))
            .expect("http");
        assert_eq!(
            status,
            400,
            "malformed body: {}",
            String::from_utf8_lossy(&body)
        );
        let v: serde_json::Value = serde_json::from_slice(&body).expect("the error is JSON");
        assert!(
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("invalid JSON")),
            "{v}"
        );

        // Something the engine does not do is refused by name.
        let run = d.fails(&cli, &["create", "-p", "8080:80", "busybox", "true"]);
        assert!(
            run.stderr().contains("not supported"),
            "{}",
            run.describe("create with -p")
        );
        assert_eq!(
            store_snapshot(&d, &cli),
            before,
            "{}: refused requests changed the store",
            cli.label
        );
    }
}

#[test]
fn system_docker_client_runs_the_common_commands() {
    if !common::require_root() {
        return;
    }
    let cli = &common::clis()[0];
    let d = busybox_daemon(cli);
    let run = d.system_docker(&["run", "-d", "--name", "own", "busybox", "sh", "-c", SERVICE]);
    assert!(
        run.out.status.success(),
        "{}",
        run.describe("system-docker run -d")
    );
    wait_for("system-docker logs", POLL_TIMEOUT, || {
        d.system_docker(&["logs", "own"])
            .stdout()
            .contains("line-one")
            .then_some(())
    });
    let ps = d.system_docker(&["ps"]).stdout();
    assert!(
        ps.contains("own") && ps.contains("Up"),
        "system-docker ps: {ps}"
    );
    let exec = d.system_docker(&["exec", "own", "sh", "-c", "echo hi; exit 4"]);
    assert_eq!(
        exec.code(),
        Some(4),
        "{}",
        exec.describe("system-docker exec")
    );
    assert!(exec.stdout().contains("hi"));
    let stop = d.system_docker(&["stop", "own"]);
    assert!(
        stop.out.status.success(),
        "{}",
        stop.describe("system-docker stop")
    );
    let rm = d.system_docker(&["rm", "own"]);
    assert!(
        rm.out.status.success(),
        "{}",
        rm.describe("system-docker rm")
    );
    let missing = d.system_docker(&["inspect", "own"]);
    assert_eq!(missing.code(), Some(1));
    assert!(
        missing.stderr().contains("own"),
        "{}",
        missing.describe("inspect of a removed container")
    );
}

/// Interfaces as `ip -o link` lists them: "1: lo: <...>".
fn interfaces(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn foreground_run_networking_and_xz_layers() {
    if !common::require_root() {
        return;
    }
    let host_ifaces = interfaces(&String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .expect("ip -o link")
            .stdout,
    ));
    for cli in common::clis() {
        let d = Daemon::start();
        let xz = OciLayout::new()
            .image(&TestImage::busybox().label("form", "xz"), Some("busyxz:v1"))
            .compression(Compression::Xz)
            .build();
        d.ok(&cli, &["load", "-i", &write(d.dir(), "xz.tar", &xz)]);

        // In the foreground: the output on the right streams, the exit code, --rm.
        let run = d.docker(
            &cli,
            &[
                "run",
                "--rm",
                "busyxz:v1",
                "sh",
                "-c",
                "echo to-out; echo to-err >&2; exit 3",
            ],
        );
        assert_eq!(
            run.code(),
            Some(3),
            "{}",
            run.describe("run in the foreground")
        );
        assert!(
            run.stdout().contains("to-out") && run.stderr().contains("to-err"),
            "{}",
            run.describe("run")
        );
        assert_eq!(
            d.ok(&cli, &["ps", "-aq"]),
            "",
            "{}: --rm left a container",
            cli.label
        );

        // The default network is an empty namespace: loopback only.
        let own = d.ok(&cli, &["run", "--rm", "busyxz:v1", "ip", "-o", "link"]);
        assert_eq!(
            interfaces(&own),
            vec!["lo"],
            "{}: default network",
            cli.label
        );
        let none = d.ok(
            &cli,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "busyxz:v1",
                "ip",
                "-o",
                "link",
            ],
        );
        assert_eq!(
            interfaces(&none),
            vec!["lo"],
            "{}: --network none",
            cli.label
        );
        let host = d.ok(
            &cli,
            &[
                "run",
                "--rm",
                "--network",
                "host",
                "busyxz:v1",
                "ip",
                "-o",
                "link",
            ],
        );
        assert_eq!(
            interfaces(&host),
            host_ifaces,
            "{}: --network host",
            cli.label
        );

        // A running container is not removed without -f.
        d.ok(
            &cli,
            &["run", "-d", "--name", "busy", "busyxz:v1", "sleep", "1000"],
        );
        let run = d.fails(&cli, &["rm", "busy"]);
        assert!(
            run.stderr().contains("running"),
            "{}",
            run.describe("rm of a running container")
        );
        assert_eq!(state(&d, &cli, "busy"), "running");
        d.ok(&cli, &["rm", "-f", "busy"]);
    }
}
