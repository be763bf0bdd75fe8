//! `ros docker-init` as a process: this test program runs itself again with
//! `DOCKER_INIT_CHILD` set, and the child is `ros docker-init` (it calls
//! `userdocker::cli::main` with its arguments), so that its exit code, its
//! output and its exec of dockerd are seen from outside, as the engine
//! sees them. dockerd is a shell script that writes down its arguments and
//! environment.
//!
//! A plain `main` (harness = false): the child must print only what
//! `ros docker-init` prints, which a test harness would not allow.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};

const CHILD: &str = "DOCKER_INIT_CHILD";

fn main() {
    if std::env::var_os(CHILD).is_some() {
        let args: Vec<OsString> = std::env::args_os().skip(1).collect();
        std::process::exit(userdocker::cli::main(args));
    }
    dry_run_prints_and_exits_zero();
    dockerd_gets_the_arguments_and_the_environment();
    tls_exits_non_zero_naming_the_key();
    println!("docker_init: 3 tests passed");
}

/// Runs `ros docker-init ARGS` with `--root root`.
fn docker_init(root: &Path, args: &[&str]) -> Output {
    let out = Command::new(std::env::current_exe().expect("the test program's path"))
        .env(CHILD, "1")
        .env("INHERITED", "kept")
        .env("ROS_LOG", "info")
        .arg("docker-init")
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("run the test program as ros docker-init");
    eprintln!(
        "ros docker-init {args:?}: {}\nstdout:\n{}stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A root with the OS defaults and a user's cloud-config.
fn root_with(cloud_config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "/usr/share/ros/os-config.yml",
        "hostname: oxos\nrancher:\n  environment:\n    ZONE: a\n",
    );
    write(
        dir.path(),
        "/var/lib/rancher/conf/cloud-config.yml",
        cloud_config,
    );
    dir
}

const CLOUD_CONFIG: &str = "#cloud-config
rancher:
  network:
    https_proxy: http://proxy.local:3129
  docker:
    storage_driver: overlay2
    debug: false
    environment: [ZONE, A=1]
    extra_args: [--max-concurrent-downloads, '6']
";

fn dry_run_prints_and_exits_zero() {
    let dir = root_with(CLOUD_CONFIG);
    let out = docker_init(dir.path(), &["--dry-run", "--", "--ipv6"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/usr/sbin/dockerd --group 233 --host unix:///var/run/docker.sock \
         --debug=false --storage-driver overlay2 --max-concurrent-downloads 6 --ipv6
HTTPS_PROXY=http://proxy.local:3129
https_proxy=http://proxy.local:3129
ZONE=a
A=1
"
    );
}

fn dockerd_gets_the_arguments_and_the_environment() {
    let dir = root_with(CLOUD_CONFIG);
    write(
        dir.path(),
        "/var/lib/rancher/conf/docker",
        "DOCKER_OPTS=\"--mtu 1400\"\n",
    );
    let script = dir.path().join("dockerd");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {0}/args\nenv > {0}/env\nexit 7\n",
            dir.path().display()
        ),
    )
    .expect("write the fake dockerd");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the fake dockerd");
    let out = docker_init(
        dir.path(),
        &[
            "--dockerd",
            script.to_str().expect("utf-8 path"),
            "--",
            "-D",
        ],
    );
    // dockerd replaced ros docker-init: its exit code is the service's.
    assert_eq!(out.status.code(), Some(7));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("starting {} --group 233", script.display())),
        "{stderr}"
    );
    let args = std::fs::read_to_string(dir.path().join("args")).expect("dockerd's args");
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "--group",
            "233",
            "--host",
            "unix:///var/run/docker.sock",
            "--debug=false",
            "--storage-driver",
            "overlay2",
            "--max-concurrent-downloads",
            "6",
            "--mtu",
            "1400",
            "-D",
        ]
    );
    let env = std::fs::read_to_string(dir.path().join("env")).expect("dockerd's environment");
    for line in [
        "INHERITED=kept",
        "HTTPS_PROXY=http://proxy.local:3129",
        "https_proxy=http://proxy.local:3129",
        "ZONE=a",
        "A=1",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} not in\n{env}");
    }
}

fn tls_exits_non_zero_naming_the_key() {
    let dir = root_with("rancher:\n  docker:\n    tls: true\n");
    let out = docker_init(dir.path(), &["--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("ros docker-init: rancher.docker.tls is not supported yet"),
        "{stderr}"
    );
}
