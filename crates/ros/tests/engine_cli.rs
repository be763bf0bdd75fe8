//! Acceptance tests of the system engine, driven by the real docker CLIs.
//!
//! Each test starts its own `ros system-dockerd` in a temporary directory and
//! talks to it with Debian's docker 20.10 CLI and with the newer docker CLI on
//! PATH, as a user would. They run real containers, so they need root: as
//! another user they print a loud SKIPPED message and pass.
//!
//! Waiting is always polling with a deadline ([`common::wait_for`]); the only
//! fixed sleeps are observation windows in which something must NOT happen.

mod common;

use common::{clis, kill9, pid_alive, signal, wait_for, Cli, Daemon, Registry, POLL_TIMEOUT};
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::{Compression, DockerArchive, OciLayout, TestImage};

/// Skips the test (loudly) unless it runs as root.
macro_rules! root_only {
    () => {
        if !common::require_root() {
            return;
        }
    };
}

const IMAGE: &str = "oxos-test/busybox:latest";

// ---------------------------------------------------------------------------
// Test images (from the testkit crate: busybox from the host, no network).

/// A docker-archive (`docker save` form, gzip layers) of busybox tagged `tag`.
fn docker_archive(dir: &Path, tag: &str) -> PathBuf {
    let tar = DockerArchive::new()
        .image(&TestImage::busybox(), &[tag])
        .compression(Compression::Gzip)
        .build();
    write_fixture(dir, &format!("{tag}.docker.tar"), &tar)
}

/// An OCI image-layout tar of busybox named `name`, layers in `compression`;
/// named as containerd and `docker save` do (`io.containerd.image.name`) or
/// with the full name in `org.opencontainers.image.ref.name`.
fn oci_archive(
    dir: &Path,
    name: &str,
    compression: Compression,
    containerd_names: bool,
) -> PathBuf {
    let tar = OciLayout::new()
        .image(&TestImage::busybox(), Some(name))
        .compression(compression)
        .containerd_names(containerd_names)
        .build();
    write_fixture(dir, &format!("{name}.oci.tar"), &tar)
}

fn write_fixture(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name.replace(['/', ':'], "_"));
    testkit::write_file(&path, bytes)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// Loads the busybox docker-archive as `tag` with `cli`.
fn load_busybox(daemon: &Daemon, cli: &Cli, tag: &str) {
    let archive = docker_archive(daemon.dir(), tag);
    let out = daemon.ok(cli, &["load", "-i", &archive.to_string_lossy()]);
    assert!(
        out.contains(tag),
        "`docker load` output does not name {tag}: {out}"
    );
}

/// `docker images` as sorted "repository:tag" lines.
fn image_list(daemon: &Daemon, cli: &Cli) -> Vec<String> {
    let out = daemon.ok(cli, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut list: Vec<String> = out.lines().map(str::to_string).collect();
    list.sort();
    list
}

/// `docker ps -a` as sorted "name status" lines.
fn container_list(daemon: &Daemon, cli: &Cli) -> Vec<String> {
    let out = daemon.ok(cli, &["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    let mut list: Vec<String> = out.lines().map(str::to_string).collect();
    list.sort();
    list
}

/// The status column of `docker ps -a` for container `name`, if listed.
fn ps_status(daemon: &Daemon, cli: &Cli, name: &str) -> Option<String> {
    container_list(daemon, cli)
        .into_iter()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_string))
}

fn state(daemon: &Daemon, cli: &Cli, name: &str) -> String {
    daemon.inspect(cli, name, "{{.State.Status}}")
}

fn pid_of(daemon: &Daemon, cli: &Cli, name: &str) -> i32 {
    let pid = daemon.inspect(cli, name, "{{.State.Pid}}");
    pid.parse()
        .unwrap_or_else(|_| panic!("State.Pid of {name} is not a number: {pid:?}"))
}

fn wait_state(daemon: &Daemon, cli: &Cli, name: &str, wanted: &str) {
    wait_for(&format!("{name} to be {wanted}"), POLL_TIMEOUT, || {
        (state(daemon, cli, name) == wanted).then_some(())
    });
}

// ---------------------------------------------------------------------------
// Images

#[test]
fn load_docker_archive_and_oci_layout_then_images_lists_their_tags() {
    root_only!();
    let daemon = Daemon::start();
    let clis = clis();
    let debian = &clis[0];
    let newest = clis.last().expect("at least one CLI");

    let docker_tar = docker_archive(daemon.dir(), "oxos-test/gzipped:v1");
    let out = daemon.ok(debian, &["load", "-i", &docker_tar.to_string_lossy()]);
    assert!(out.contains("oxos-test/gzipped:v1"), "load output: {out}");

    for (name, compression, containerd_names) in [
        ("oxos-test/zstd:v2", Compression::Zstd, true),
        ("oxos-test/xz:v3", Compression::Xz, false),
    ] {
        let oci_tar = oci_archive(daemon.dir(), name, compression, containerd_names);
        daemon.ok(newest, &["load", "-i", &oci_tar.to_string_lossy()]);
    }

    for cli in &clis {
        let images = image_list(&daemon, cli);
        for tag in [
            "oxos-test/gzipped:v1",
            "oxos-test/zstd:v2",
            "oxos-test/xz:v3",
        ] {
            assert!(
                images.iter().any(|i| i == tag),
                "{}: images lists {images:?}, not {tag}",
                cli.label
            );
        }
        // the images run
        let out = daemon.ok(
            cli,
            &["run", "--rm", "oxos-test/zstd:v2", "echo", "from-oci"],
        );
        assert_eq!(
            out, "from-oci",
            "{}: output of a container of the OCI image",
            cli.label
        );
    }
}

// ---------------------------------------------------------------------------
// Container lifecycle

#[test]
fn container_lifecycle_run_logs_ps_exec_stop_start_restart_rm_rmi() {
    root_only!();
    for cli in clis() {
        let daemon = Daemon::start();
        load_busybox(&daemon, &cli, IMAGE);
        let name = "lifecycle";

        let id = daemon.ok(
            &cli,
            &[
                "run",
                "-d",
                "--name",
                name,
                IMAGE,
                "sh",
                "-c",
                "echo first line; echo second line; exec sleep 1000",
            ],
        );
        assert_eq!(
            id.len(),
            64,
            "{}: run -d prints the container id, got {id:?}",
            cli.label
        );

        let logs = wait_for("the container's output in logs", POLL_TIMEOUT, || {
            let logs = daemon.ok(&cli, &["logs", name]);
            logs.contains("second line").then_some(logs)
        });
        assert_eq!(logs, "first line\nsecond line", "{}: logs", cli.label);

        let status = ps_status(&daemon, &cli, name).expect("ps lists the container");
        assert!(
            status.starts_with("Up"),
            "{}: ps status {status:?}",
            cli.label
        );
        let running = daemon.ok(&cli, &["ps", "-q", "--no-trunc"]);
        assert_eq!(
            running, id,
            "{}: ps -q lists the running container",
            cli.label
        );

        // exec: output and exit code
        let exec = daemon.docker(
            &cli,
            &["exec", name, "sh", "-c", "echo in-container; exit 3"],
        );
        assert_eq!(
            exec.stdout().trim(),
            "in-container",
            "{}",
            exec.describe("printed")
        );
        assert_eq!(exec.code(), Some(3), "{}", exec.describe("exit code"));
        let hostname = daemon.ok(&cli, &["exec", name, "cat", "/etc/hostname"]);
        assert!(
            id.starts_with(&hostname),
            "{}: hostname {hostname:?} is not the short id",
            cli.label
        );

        daemon.ok(&cli, &["stop", "-t", "1", name]);
        assert_eq!(state(&daemon, &cli, name), "exited");
        let status = ps_status(&daemon, &cli, name).expect("ps -a lists the stopped container");
        assert!(
            status.starts_with("Exited"),
            "{}: ps -a status {status:?}",
            cli.label
        );
        assert_eq!(
            daemon.ok(&cli, &["ps", "-q"]),
            "",
            "{}: ps lists no running container",
            cli.label
        );

        daemon.ok(&cli, &["start", name]);
        assert_eq!(state(&daemon, &cli, name), "running");
        let pid1 = pid_of(&daemon, &cli, name);
        assert!(
            pid_alive(pid1),
            "{}: State.Pid {pid1} is not a live process",
            cli.label
        );

        daemon.ok(&cli, &["restart", "-t", "1", name]);
        assert_eq!(state(&daemon, &cli, name), "running");
        let pid2 = pid_of(&daemon, &cli, name);
        assert!(
            pid2 != pid1 && pid_alive(pid2),
            "{}: restart gave pid {pid2} (was {pid1})",
            cli.label
        );
        wait_for(
            "the old process to be gone after restart",
            POLL_TIMEOUT,
            || (!pid_alive(pid1)).then_some(()),
        );

        // rm of a running container is refused, rm -f is not
        let refused = daemon.fails(&cli, &["rm", name]);
        assert!(
            refused.stderr().contains(name) || refused.stderr().contains(&id[..12]),
            "{}",
            refused.describe("error")
        );
        daemon.ok(&cli, &["rm", "-f", name]);
        assert_eq!(
            ps_status(&daemon, &cli, name),
            None,
            "{}: ps -a still lists the removed container",
            cli.label
        );
        wait_for(
            "the container's process to be gone after rm -f",
            POLL_TIMEOUT,
            || (!pid_alive(pid2)).then_some(()),
        );

        daemon.ok(&cli, &["rmi", IMAGE]);
        assert!(
            !image_list(&daemon, &cli).iter().any(|i| i == IMAGE),
            "{}: images still lists {IMAGE} after rmi",
            cli.label
        );
    }
}

#[test]
fn run_in_the_foreground_prints_output_and_exits_with_the_container_status() {
    root_only!();
    for cli in clis() {
        let daemon = Daemon::start();
        load_busybox(&daemon, &cli, IMAGE);
        let run = daemon.docker(
            &cli,
            &[
                "run",
                "--rm",
                IMAGE,
                "sh",
                "-c",
                "echo out; echo err >&2; exit 5",
            ],
        );
        assert_eq!(run.stdout().trim(), "out", "{}", run.describe("printed"));
        assert!(
            run.stderr().contains("err"),
            "{}",
            run.describe("printed on stderr")
        );
        assert_eq!(run.code(), Some(5), "{}", run.describe("exit code"));
        assert_eq!(
            container_list(&daemon, &cli),
            Vec::<String>::new(),
            "{}: --rm left a container",
            cli.label
        );
    }
}

#[test]
fn system_docker_client_runs_the_same_lifecycle() {
    root_only!();
    let daemon = Daemon::start();
    let ok = |args: &[&str]| {
        let run = daemon.system_docker(args);
        assert!(
            run.out.status.success(),
            "{}\n{}",
            run.describe("failed"),
            daemon.logs()
        );
        run.stdout().trim().to_string()
    };
    let archive = docker_archive(daemon.dir(), IMAGE);
    assert!(ok(&["load", "-i", &archive.to_string_lossy()]).contains(IMAGE));
    assert!(ok(&["images"]).contains("oxos-test/busybox"));

    let script = "echo hello; exec sleep 1000";
    let id = ok(&["run", "-d", "--name", "client", IMAGE, "sh", "-c", script]);
    assert_eq!(id.len(), 64, "run -d prints the id: {id:?}");
    let ps = ok(&["ps"]);
    assert!(ps.contains("client") && ps.contains("Up"), "ps:\n{ps}");
    wait_for("the container's output", POLL_TIMEOUT, || {
        (ok(&["logs", "client"]) == "hello").then_some(())
    });
    let exec = daemon.system_docker(&["exec", "client", "sh", "-c", "echo inside; exit 4"]);
    assert_eq!(
        exec.stdout().trim(),
        "inside",
        "{}",
        exec.describe("printed")
    );
    assert_eq!(exec.code(), Some(4), "{}", exec.describe("exit code"));

    let run = daemon.system_docker(&["run", "--rm", IMAGE, "sh", "-c", "echo fg; exit 3"]);
    assert_eq!(run.stdout().trim(), "fg", "{}", run.describe("printed"));
    assert_eq!(run.code(), Some(3), "{}", run.describe("exit code"));

    ok(&["stop", "-t", "1", "client"]);
    ok(&["rm", "client"]);
    assert!(
        !ok(&["ps", "-a"]).contains("client"),
        "ps -a still lists the removed container"
    );
}

#[test]
fn default_network_is_loopback_only_and_host_mode_shares_the_hosts() {
    root_only!();
    let cli = &clis()[0];
    let daemon = Daemon::start();
    load_busybox(&daemon, cli, IMAGE);
    let interfaces = |extra: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "ls", "/sys/class/net"]);
        let mut list: Vec<String> = daemon
            .ok(cli, &args)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        list.sort();
        list
    };
    assert_eq!(interfaces(&[]), ["lo"], "interfaces of a default container");
    assert_eq!(
        interfaces(&["--network", "none"]),
        ["lo"],
        "interfaces with --network none"
    );
    let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("the host's interfaces")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    host.sort();
    assert_eq!(
        interfaces(&["--network", "host"]),
        host,
        "interfaces with --network host"
    );
}

// ---------------------------------------------------------------------------
// Pull

#[test]
fn pull_from_a_local_registry_then_run() {
    root_only!();
    let registry = Registry::start();
    let scratch = tempfile::tempdir().expect("scratch dir");
    let archive = docker_archive(scratch.path(), "oxos-test/pushed:v1");
    let reference = registry.push_archive(&archive, "oxos-test/pulled:v1");

    for cli in clis() {
        let daemon = Daemon::start();
        daemon.ok(&cli, &["pull", &reference]);
        let images = image_list(&daemon, &cli);
        assert!(
            images.contains(&reference),
            "{}: images lists {images:?}, not {reference}",
            cli.label
        );

        let name = "pulled";
        daemon.ok(
            &cli,
            &[
                "run",
                "-d",
                "--name",
                name,
                &reference,
                "echo",
                "pulled image runs",
            ],
        );
        wait_state(&daemon, &cli, name, "exited");
        assert_eq!(daemon.inspect(&cli, name, "{{.State.ExitCode}}"), "0");
        assert_eq!(daemon.ok(&cli, &["logs", name]), "pulled image runs");
    }
}

// ---------------------------------------------------------------------------
// Restart policies

#[test]
fn restart_always_brings_back_a_container_killed_from_the_host() {
    root_only!();
    for cli in clis() {
        let daemon = Daemon::start();
        load_busybox(&daemon, &cli, IMAGE);
        let name = "always";
        daemon.ok(
            &cli,
            &[
                "run",
                "-d",
                "--restart",
                "always",
                "--name",
                name,
                IMAGE,
                "sleep",
                "1000",
            ],
        );
        wait_state(&daemon, &cli, name, "running");
        let pid = pid_of(&daemon, &cli, name);
        assert_eq!(daemon.inspect(&cli, name, "{{.RestartCount}}"), "0");

        kill9(pid);
        let new_pid = wait_for("the container to be restarted", POLL_TIMEOUT, || {
            let fields = daemon.inspect(
                &cli,
                name,
                "{{.State.Status}} {{.RestartCount}} {{.State.Pid}}",
            );
            match fields.split(' ').collect::<Vec<_>>().as_slice() {
                ["running", count, new_pid] if *count != "0" => new_pid.parse::<i32>().ok(),
                _ => None,
            }
        });
        assert_ne!(
            new_pid, pid,
            "{}: restarted container has the killed pid",
            cli.label
        );
        assert!(
            pid_alive(new_pid),
            "{}: restarted container's pid {new_pid} is not alive",
            cli.label
        );
        assert_eq!(daemon.inspect(&cli, name, "{{.RestartCount}}"), "1");
        daemon.ok(&cli, &["rm", "-f", name]);
    }
}

#[test]
fn restart_on_failure_gives_up_after_the_maximum_count() {
    root_only!();
    for cli in clis() {
        let daemon = Daemon::start();
        load_busybox(&daemon, &cli, IMAGE);
        let name = "onfailure";
        daemon.ok(
            &cli,
            &[
                "run",
                "-d",
                "--restart",
                "on-failure:2",
                "--name",
                name,
                IMAGE,
                "sh",
                "-c",
                "exit 1",
            ],
        );
        let format = "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}";
        wait_for("two restarts and a final exit", POLL_TIMEOUT, || {
            (daemon.inspect(&cli, name, format) == "exited 2 1").then_some(())
        });
        // Docker's backoff starts at 100 ms and doubles; a third restart
        // would come well within this window.
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(
            daemon.inspect(&cli, name, format),
            "exited 2 1",
            "{}: restarted again",
            cli.label
        );
    }
}

// ---------------------------------------------------------------------------
// Daemon restarts

#[test]
fn containers_survive_a_daemon_killed_and_restarted() {
    root_only!();
    for cli in clis() {
        daemon_restart_keeps_containers(&cli);
    }
}

fn daemon_restart_keeps_containers(cli: &Cli) {
    let mut daemon = Daemon::start();
    load_busybox(&daemon, cli, IMAGE);
    let script = "echo before the crash; exec sleep 1000";
    daemon.ok(
        cli,
        &["run", "-d", "--name", "survivor", IMAGE, "sh", "-c", script],
    );
    // Exits with 7 on SIGUSR1, sent while the daemon is down.
    let script = "trap 'exit 7' USR1; while :; do sleep 0.1; done";
    daemon.ok(
        cli,
        &[
            "run",
            "-d",
            "--name",
            "exits-meanwhile",
            IMAGE,
            "sh",
            "-c",
            script,
        ],
    );
    wait_state(&daemon, cli, "survivor", "running");
    wait_state(&daemon, cli, "exits-meanwhile", "running");
    let survivor = pid_of(&daemon, cli, "survivor");
    let short_lived = pid_of(&daemon, cli, "exits-meanwhile");
    wait_for("the survivor's output", POLL_TIMEOUT, || {
        daemon
            .ok(cli, &["logs", "survivor"])
            .contains("before the crash")
            .then_some(())
    });

    daemon.kill9();
    signal(short_lived, "USR1");
    wait_for(
        "the second container to exit while the daemon is down",
        POLL_TIMEOUT,
        || (!pid_alive(short_lived)).then_some(()),
    );
    assert!(
        pid_alive(survivor),
        "{}: the container died with the daemon",
        cli.label
    );
    daemon.restart();

    assert_eq!(state(&daemon, cli, "survivor"), "running");
    assert_eq!(pid_of(&daemon, cli, "survivor"), survivor);
    let status = ps_status(&daemon, cli, "survivor").expect("ps lists the survivor");
    assert!(
        status.starts_with("Up"),
        "{}: ps status after the daemon restart: {status:?}",
        cli.label
    );
    assert_eq!(daemon.ok(cli, &["logs", "survivor"]), "before the crash");
    assert_eq!(
        daemon.ok(cli, &["exec", "survivor", "echo", "still here"]),
        "still here"
    );
    // Its shim records the exit and then ends; when the daemon came back
    // before the shim ended, it learns of the exit from the shim a moment
    // later, so the state is polled.
    let mut last = String::new();
    let deadline = std::time::Instant::now() + POLL_TIMEOUT;
    while std::time::Instant::now() < deadline {
        let now = daemon.inspect(
            cli,
            "exits-meanwhile",
            "{{.State.Status}} {{.State.ExitCode}}",
        );
        if now != last && !last.is_empty() {
            eprintln!(
                "{}: exits-meanwhile went from {last:?} to {now:?}",
                cli.label
            );
        }
        last = now;
        if last == "exited 7" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        last, "exited 7",
        "{}: exit code of the container that exited while the daemon was down",
        cli.label
    );

    daemon.ok(cli, &["stop", "-t", "1", "survivor"]);
    assert_eq!(state(&daemon, cli, "survivor"), "exited");
    assert!(
        !pid_alive(survivor),
        "{}: stop after the daemon restart left the process running",
        cli.label
    );
    daemon.ok(cli, &["rm", "survivor", "exits-meanwhile"]);
    assert_eq!(container_list(&daemon, cli), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// Bad input

#[test]
fn broken_archives_are_refused_and_leave_the_store_as_it_was() {
    root_only!();
    let daemon = Daemon::start();
    let clis = clis();
    load_busybox(&daemon, &clis[0], IMAGE);
    let before = image_list(&daemon, &clis[0]);

    // A second image (distinct id) cut short in its layer, and one whose
    // layer does not hash to the diff id its config promises.
    let other = TestImage::busybox().comment("broken");
    let good = DockerArchive::new()
        .image(&other, &["oxos-test/broken:v1"])
        .compression(Compression::Gzip)
        .build();
    let truncated = write_fixture(
        daemon.dir(),
        "truncated.tar",
        &testkit::truncated(&good, good.len() * 2 / 3),
    );
    let mismatched = write_fixture(
        daemon.dir(),
        "mismatched.tar",
        &testkit::docker_archive_with_bad_layer(&other, &["oxos-test/broken:v1"]),
    );

    for cli in &clis {
        for bad in [&truncated, &mismatched] {
            let run = daemon.fails(cli, &["load", "-i", &bad.to_string_lossy()]);
            assert!(
                !run.stderr().trim().is_empty(),
                "{}",
                run.describe("gave no error message")
            );
            assert_eq!(
                image_list(&daemon, cli),
                before,
                "{}: the image list changed",
                run.what
            );
        }
    }
}

#[test]
fn unknown_images_and_names_in_use_give_errors_that_name_them() {
    root_only!();
    let daemon = Daemon::start();
    let clis = clis();
    load_busybox(&daemon, &clis[0], IMAGE);

    for cli in &clis {
        let existing = container_list(&daemon, cli);
        for args in [
            &["create", "--pull", "never", "nosuchimage"][..],
            &["run", "--pull", "never", "nosuchimage", "true"][..],
        ] {
            let run = daemon.fails(cli, args);
            assert!(
                run.stderr().contains("nosuchimage"),
                "{}",
                run.describe("error does not name the image")
            );
        }
        assert_eq!(
            container_list(&daemon, cli),
            existing,
            "{}: a failed create left a container",
            cli.label
        );

        let name = format!("taken-{}", cli.label.replace([' ', '+', '.'], "-"));
        daemon.ok(cli, &["create", "--name", &name, IMAGE, "true"]);
        let before = container_list(&daemon, cli);
        let run = daemon.fails(cli, &["create", "--name", &name, IMAGE, "true"]);
        assert!(
            run.stderr().contains(&name),
            "{}",
            run.describe("error does not name the container")
        );
        assert_eq!(
            container_list(&daemon, cli),
            before,
            "{}: the container list changed",
            run.what
        );
    }
}

#[test]
fn malformed_request_body_gets_400_and_a_json_message() {
    root_only!();
    let daemon = Daemon::start();
    let (status, body) = daemon
        .http("POST", "/v1.41/containers/create", Some(b"{bad json"))
        .expect("request over the engine socket");
    assert_eq!(
        status,
        400,
        "status of a malformed body: body {}",
        String::from_utf8_lossy(&body)
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "error body is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    let message = json["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "error body has no message: {json}");
    let cli = &clis()[0];
    assert_eq!(container_list(&daemon, cli), Vec::<String>::new());
}

#[test]
fn files_put_into_a_created_and_a_running_container_are_seen_inside() {
    root_only!();
    let daemon = Daemon::start();
    let cli = &clis()[0];
    load_busybox(&daemon, cli, IMAGE);

    // Put before the first start: the container prints what it finds.
    daemon.ok(
        cli,
        &[
            "create",
            "--name",
            "reader",
            IMAGE,
            "sh",
            "-c",
            "cat /etc/oxos/hello.txt; stat -c %a /etc/oxos/hello.txt",
        ],
    );
    let tar = testkit::LayerBuilder::new()
        .file("etc/oxos/hello.txt", b"put before the start\n", 0o640)
        .finish();
    let (status, body) = daemon
        .http("PUT", "/v1.41/containers/reader/archive?path=/", Some(&tar))
        .expect("request over the engine socket");
    assert_eq!(
        status,
        200,
        "PUT archive: {}",
        String::from_utf8_lossy(&body)
    );
    daemon.ok(cli, &["start", "reader"]);
    wait_state(&daemon, cli, "reader", "exited");
    assert_eq!(
        daemon.ok(cli, &["logs", "reader"]),
        "put before the start\n640"
    );

    // Put into a running container: seen at once.
    daemon.ok(
        cli,
        &["run", "-d", "--name", "running", IMAGE, "sleep", "1000"],
    );
    let tar = testkit::LayerBuilder::new()
        .file("live.txt", b"put while running\n", 0o600)
        .finish();
    let (status, body) = daemon
        .http(
            "PUT",
            "/v1.41/containers/running/archive?path=/tmp",
            Some(&tar),
        )
        .expect("request over the engine socket");
    assert_eq!(
        status,
        200,
        "PUT archive: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        daemon.ok(cli, &["exec", "running", "cat", "/tmp/live.txt"]),
        "put while running"
    );
    daemon.ok(cli, &["rm", "-f", "running"]);
}

#[test]
fn docker_cp_copies_files_and_directories_out_of_and_into_containers() {
    root_only!();
    let daemon = Daemon::start();
    let clis = clis();
    let cli = &clis[0];
    load_busybox(&daemon, cli, IMAGE);
    daemon.ok(cli, &["run", "-d", "--name", "box", IMAGE, "sleep", "1000"]);
    // A name longer than a tar header's 100 bytes, and a link to it.
    let long = "long-name-".repeat(12);
    daemon.ok(
        cli,
        &[
            "exec",
            "box",
            "sh",
            "-c",
            &format!(
                "mkdir -p /data/dir/sub && echo one > /data/dir/a.txt && chmod 640 /data/dir/a.txt \
                 && echo two > /data/dir/sub/b && ln -s /data/dir/a.txt /data/link \
                 && echo three > /data/dir/sub/{long} && ln -s /data/dir/sub/{long} /data/dir/to-long"
            ),
        ],
    );
    let local = daemon.dir().join("cp-local");
    std::fs::create_dir_all(local.join("in/tree")).unwrap();
    std::fs::write(local.join("in/hello.txt"), "hello\n").unwrap();
    std::fs::write(local.join("in/tree/leaf"), "leaf\n").unwrap();

    // The same copies with each docker CLI and with system-docker.
    for (i, (label, copy)) in copiers(&daemon, &clis).iter().enumerate() {
        let ok = |args: &[&str]| {
            let run = copy(args);
            assert!(
                run.out.status.success(),
                "{}\n{}",
                run.describe("failed"),
                daemon.logs()
            );
        };
        cp_both_ways(
            &daemon,
            cli,
            label,
            &local,
            &long,
            &format!("{i}"),
            &ok,
            copy,
        );
    }

    // `-`: the engine's tar archive on stdout, entries under the
    // directory's name.
    let run = daemon.system_docker(&["cp", "box:/data/dir", "-"]);
    assert!(run.out.status.success(), "{}", run.describe("failed"));
    let listing = String::from_utf8_lossy(&run.out.stdout);
    for name in ["dir/", "dir/a.txt", "dir/sub/b"] {
        assert!(
            listing.contains(&format!("{name}\0")),
            "{name} is not in the archive on stdout"
        );
    }

    // Paths are cleaned as Docker cleans them: DIR/sub/.. is DIR, and the
    // root's contents land in the new directory (system-docker: the docker
    // CLIs rename such copies their own way).
    let sd_ok = |args: &[&str]| {
        let run = daemon.system_docker(args);
        assert!(run.out.status.success(), "{}", run.describe("failed"));
    };
    let dotdot = local.join("dotdot");
    sd_ok(&["cp", "box:/data/dir/sub/..", &dotdot.to_string_lossy()]);
    assert_eq!(
        std::fs::read_to_string(dotdot.join("a.txt")).unwrap(),
        "one\n"
    );
    let root = local.join("root");
    sd_ok(&["cp", "box:/", &root.to_string_lossy()]);
    assert_eq!(
        std::fs::read_to_string(root.join("data/dir/sub/b")).unwrap(),
        "two\n"
    );
    assert!(root.join("bin/busybox").is_file());
    // Into an existing directory too (never into the host's /).
    let into = local.join("root-into");
    std::fs::create_dir(&into).unwrap();
    sd_ok(&["cp", "box:/data", &into.to_string_lossy()]);
    sd_ok(&["cp", "box:/", &into.to_string_lossy()]);
    assert!(into.join("data/dir/a.txt").is_file() && into.join("bin/busybox").is_file());
    assert!(!Path::new("/data/dir/a.txt").exists());

    // A container that never ran: its files come from its image and
    // what was put there.
    daemon.ok(cli, &["create", "--name", "fresh", IMAGE, "true"]);
    let hello = local.join("in/hello.txt").to_string_lossy().into_owned();
    daemon.ok(cli, &["cp", &hello, "fresh:/etc/"]);
    let back = local.join("fresh-hello.txt");
    daemon.ok(
        cli,
        &["cp", "fresh:/etc/hello.txt", &back.to_string_lossy()],
    );
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "hello\n");
    daemon.ok(cli, &["rm", "-f", "box", "fresh"]);
}

/// `cp` with `args` by one client: a docker CLI or system-docker.
type Copier<'a> = Box<dyn Fn(&[&str]) -> common::Run + 'a>;

/// `cp` by each docker CLI and by `ros system-docker`, with their labels.
fn copiers<'a>(daemon: &'a Daemon, clis: &'a [Cli]) -> Vec<(String, Copier<'a>)> {
    let mut copiers: Vec<(String, Copier)> = clis
        .iter()
        .map(|c| {
            let copy: Copier =
                Box::new(move |args: &[&str]| daemon.docker(c, &[&["cp"], args].concat()));
            (c.label.clone(), copy)
        })
        .collect();
    copiers.push((
        "system-docker".into(),
        Box::new(|args: &[&str]| daemon.system_docker(&[&["cp"], args].concat())),
    ));
    copiers
}

/// `docker cp -a` gives what it copies in to the container's user, looked
/// up in the container's own /etc/passwd; without `-a` the archive's owners
/// stay (the docker CLIs send the local owners, system-docker root's). And
/// the files a start writes (/etc/hostname and the others) read as the
/// container sees them, running or stopped.
#[test]
fn docker_cp_a_gives_files_the_containers_user_and_etc_reads_as_the_container_sees_it() {
    root_only!();
    let daemon = Daemon::start();
    let clis = clis();
    let cli = &clis[0];
    load_busybox(&daemon, cli, IMAGE);
    let local = daemon.dir().join("cp-owners");
    std::fs::create_dir_all(&local).unwrap();
    let hello = local.join("hello");
    std::fs::write(&hello, "hello\n").unwrap();
    std::os::unix::fs::chown(&hello, Some(777), Some(888)).unwrap();
    let hello = hello.to_string_lossy().into_owned();
    // A set-user-id program keeps its bit through the change of owner.
    let tool = local.join("tool");
    std::fs::write(&tool, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let tool = tool.to_string_lossy().into_owned();
    // A user by number, and a user by a name that only the container's
    // /etc/passwd and /etc/group know (put there before the first start).
    daemon.ok(
        cli,
        &[
            "run",
            "-d",
            "--name",
            "numeric",
            "--user",
            "1234:2345",
            "--hostname",
            "cp-host",
            IMAGE,
            "sleep",
            "1000",
        ],
    );
    daemon.ok(
        cli,
        &[
            "create", "--name", "named", "--user", "app", IMAGE, "sleep", "1000",
        ],
    );
    let etc = local.join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1500:1600::/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\napp:x:1600:\n").unwrap();
    daemon.ok(cli, &["cp", &format!("{}/.", etc.display()), "named:/etc"]);
    daemon.ok(cli, &["start", "named"]);

    let stat = |container: &str, path: &str| {
        daemon
            .ok(cli, &["exec", container, "stat", "-c", "%u:%g %a", path])
            .trim()
            .to_string()
    };
    for (i, (label, copy)) in copiers(&daemon, &clis).iter().enumerate() {
        let ok = |args: &[&str]| {
            let run = copy(args);
            assert!(
                run.out.status.success(),
                "{label}: {}\n{}",
                run.describe("failed"),
                daemon.logs()
            );
        };
        ok(&["-a", &hello, &format!("numeric:/a-{i}")]);
        assert_eq!(
            stat("numeric", &format!("/a-{i}")),
            "1234:2345 644",
            "{label}: cp -a, --user 1234:2345"
        );
        ok(&["-a", &tool, &format!("numeric:/tool-{i}")]);
        assert_eq!(
            stat("numeric", &format!("/tool-{i}")),
            "1234:2345 4755",
            "{label}: cp -a of a set-user-id file"
        );
        ok(&["-a", &hello, &format!("named:/a-{i}")]);
        assert_eq!(
            stat("named", &format!("/a-{i}")),
            "1500:1600 644",
            "{label}: cp -a, --user app"
        );
        ok(&[&hello, &format!("numeric:/plain-{i}")]);
        let plain = if label == "system-docker" {
            "0:0 644"
        } else {
            "777:888 644"
        };
        assert_eq!(
            stat("numeric", &format!("/plain-{i}")),
            plain,
            "{label}: cp without -a"
        );
    }

    // Refusals reach the client whole, also when it still has megabytes to
    // send: the engine reads the rest of the archive before it answers.
    let big = local.join("big");
    std::fs::write(&big, vec![b'x'; 16 << 20]).unwrap();
    let big = big.to_string_lossy().into_owned();
    // A user the container does not know: refused, by name, nothing written.
    daemon.ok(
        cli,
        &[
            "create",
            "--name",
            "nobody-here",
            "--user",
            "ghost",
            IMAGE,
            "true",
        ],
    );
    let run = daemon.docker(cli, &["cp", "-a", &big, "nobody-here:/"]);
    assert!(!run.out.status.success(), "{}", run.describe("succeeded"));
    assert!(
        run.stderr().contains("ghost"),
        "{}",
        run.describe("does not name the user")
    );

    // A file the engine writes at each start cannot be replaced (it is a
    // mount point, as at Docker); the error says so.
    let run = daemon.docker(cli, &["cp", &big, "numeric:/etc/hosts"]);
    assert!(!run.out.status.success(), "{}", run.describe("succeeded"));
    assert!(
        run.stderr().contains("mount point"),
        "{}",
        run.describe("does not say why")
    );
    // /etc/hostname as the container sees it, running and stopped.
    let out = local.join("hostname");
    for state in ["running", "stopped"] {
        let _ = std::fs::remove_file(&out);
        daemon.ok(
            cli,
            &["cp", "numeric:/etc/hostname", &out.to_string_lossy()],
        );
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "cp-host\n",
            "{state}"
        );
        let run = daemon.system_docker(&["cp", "numeric:/etc/hosts", "-"]);
        assert!(run.out.status.success(), "{}", run.describe("failed"));
        assert!(
            run.stdout().contains("cp-host"),
            "{state}: {}",
            run.stdout()
        );
        if state == "running" {
            daemon.ok(cli, &["stop", "-t", "1", "numeric"]);
        }
    }
    daemon.ok(cli, &["rm", "-f", "numeric", "named", "nobody-here"]);
}

/// One client's copies out of and into the container `box` (see the test
/// above); `exec_cli` checks the results inside.
#[allow(clippy::too_many_arguments)]
fn cp_both_ways(
    daemon: &Daemon,
    exec_cli: &Cli,
    label: &str,
    local: &Path,
    long: &str,
    tag: &str,
    ok: &dyn Fn(&[&str]),
    copy: &dyn Fn(&[&str]) -> common::Run,
) {
    let read = |p: &Path| {
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{label}: {}: {e}", p.display()))
    };
    let out = local.join(format!("out-{tag}"));
    std::fs::create_dir_all(out.join("existing")).unwrap();
    let to = |name: &str| out.join(name).to_string_lossy().into_owned();

    // A file keeps its contents and mode.
    ok(&["box:/data/dir/a.txt", &to("a.txt")]);
    assert_eq!(read(&out.join("a.txt")), "one\n", "{label}");
    let mode = std::fs::metadata(out.join("a.txt")).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o640,
        "{label}"
    );
    // A directory to a new name, its contents (DIR/.) to a new name, and a
    // directory into an existing one.
    ok(&["box:/data/dir", &to("copy")]);
    assert_eq!(read(&out.join("copy/sub/b")), "two\n", "{label}");
    assert_eq!(read(&out.join("copy/sub").join(long)), "three\n", "{label}");
    assert_eq!(
        std::fs::read_link(out.join("copy/to-long")).unwrap(),
        Path::new("/data/dir/sub").join(long),
        "{label}"
    );
    ok(&["box:/data/dir/.", &to("contents")]);
    assert_eq!(read(&out.join("contents/a.txt")), "one\n", "{label}");
    ok(&["box:/data/dir", &to("existing")]);
    assert_eq!(read(&out.join("existing/dir/sub/b")), "two\n", "{label}");
    // A symlink is copied as a link; with -L, what it points at.
    ok(&["box:/data/link", &to("link")]);
    assert_eq!(
        std::fs::read_link(out.join("link")).unwrap(),
        Path::new("/data/dir/a.txt"),
        "{label}"
    );
    ok(&["-L", "box:/data/link", &to("followed")]);
    assert_eq!(read(&out.join("followed")), "one\n", "{label}");
    // A missing path is an error that names it; nothing is written.
    let run = copy(&["box:/data/nope", &to("nope")]);
    assert!(
        !run.out.status.success() && run.stderr().contains("/data/nope"),
        "{}",
        run.describe("should fail and name the missing path")
    );
    assert!(!out.join("nope").exists(), "{label}");

    // Into the container: a file into an existing directory, a directory
    // to a new name.
    let dir = format!("/in-{tag}");
    daemon.ok(exec_cli, &["exec", "box", "mkdir", &dir]);
    let hello = local.join("in/hello.txt").to_string_lossy().into_owned();
    let tree = local.join("in/tree").to_string_lossy().into_owned();
    ok(&[&hello, &format!("box:{dir}")]);
    ok(&[&tree, &format!("box:{dir}/newtree")]);
    assert_eq!(
        daemon.ok(
            exec_cli,
            &[
                "exec",
                "box",
                "cat",
                &format!("{dir}/hello.txt"),
                &format!("{dir}/newtree/leaf")
            ]
        ),
        "hello\nleaf",
        "{label}"
    );
}
