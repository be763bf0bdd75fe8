//! `ros docker-init`: the command line.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;

use crate::{launch, opts, settings, Error, Launch};

const AFTER_HELP: &str = "\
User Docker's service (docker) runs this as its last step; it is not meant to
be run by hand except with --dry-run.

dockerd's command line, in order:
  1. rancher.docker.args without a leading daemon/dockerd word, or, when args
     is empty: --group 233 --host unix:///var/run/docker.sock
  2. the daemon keys of rancher.docker, in key order: a key foo_bar is the
     flag --foo-bar (bip, bridge, debug, group, host, insecure_registry,
     registry_mirror, log_driver, log_opts, storage_driver, live_restore,
     data_root or graph, mtu, userland_proxy, ...); true is --foo-bar, false
     --foo-bar=false, a list repeats the flag, log_opts gives --log-opt K=V
  3. rancher.docker.extra_args
  4. $DOCKER_OPTS from /var/lib/rancher/conf/docker
  5. the arguments after --

Added to its environment: HTTP_PROXY, HTTPS_PROXY, NO_PROXY (and their
lower-case twins) from rancher.network.http_proxy, https_proxy and no_proxy;
the options file's export lines; rancher.docker.environment, where NAME=value
is taken as it is and NAME or PREFIX* is looked up in rancher.environment
(docker/NAME first).

rancher.docker.tls: true is not supported yet (an error).

Examples:
  ros config set rancher.docker.extra_args '[--mtu, \"1400\"]'
  ros config set rancher.docker.registry_mirror https://mirror.example:5000
  ros config set rancher.network.http_proxy http://proxy.example:3128
  ros docker-init --dry-run      print dockerd's command line and environment
  system-docker restart docker   apply the change

Keys and examples: docs/engines.md (User Docker's options).";

#[derive(Debug, Parser)]
#[command(
    name = "ros docker-init",
    bin_name = "ros docker-init",
    about = "Start User Docker's dockerd with the options of rancher.docker, rancher.network's proxies and /var/lib/rancher/conf/docker",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Print dockerd's command line (one shell-quoted line) and the variables
    /// added to its environment (NAME=VALUE, one a line); start nothing
    #[arg(long)]
    dry_run: bool,
    /// The dockerd to run
    #[arg(long, value_name = "PATH", default_value = "/usr/sbin/dockerd")]
    dockerd: PathBuf,
    /// The root whose config and options file are read (tests, unbooted images)
    #[arg(long, value_name = "DIR", env = "ROS_ROOT", default_value = "/")]
    root: PathBuf,
    /// More dockerd arguments, after all the others
    #[arg(last = true, value_name = "DOCKERD_ARGS")]
    extra: Vec<String>,
}

/// Runs `ros docker-init` with `args` (`args[0]` is `docker-init`); the exit
/// code. Without `--dry-run` it does not return when dockerd starts.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli: Cli = match service_cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    service_cli::init_logging();
    match run(&cli, &mut std::io::stdout().lock()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ros docker-init: {}", service_cli::error_chain(&e));
            1
        }
    }
}

fn run(cli: &Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    let root = config::Root::new(&cli.root);
    let merged = config::load(&root).context("failed to read the config")?;
    let cfg = settings(&merged)?;
    let file = opts::read(&root.join(opts::PATH))?;
    let plan = launch(&cfg, &file, &cli.extra)?;
    for w in &plan.warnings {
        tracing::warn!("{w}");
    }
    if cli.dry_run {
        write!(out, "{}", describe(&cli.dockerd, &plan))
            .context("failed to write standard output")?;
        return Ok(());
    }
    tracing::info!("starting {}", command_line(&cli.dockerd, &plan.args));
    // exec returns only when dockerd could not be started.
    let source = std::process::Command::new(&cli.dockerd)
        .args(&plan.args)
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .exec();
    Err(Error::Exec {
        path: cli.dockerd.clone(),
        source,
    }
    .into())
}

/// What `--dry-run` prints: the command line, then `NAME=VALUE` per added
/// variable, the value shell-quoted.
fn describe(dockerd: &Path, plan: &Launch) -> String {
    let mut text = command_line(dockerd, &plan.args);
    text.push('\n');
    for (name, value) in &plan.env {
        text.push_str(&format!("{name}={}\n", quote(value)));
    }
    text
}

/// The program and its arguments as one shell-quoted line.
fn command_line(program: &Path, args: &[String]) -> String {
    let mut words = vec![quote(&program.to_string_lossy())];
    words.extend(args.iter().map(|a| quote(a)));
    words.join(" ")
}

/// `word` as a shell reads it back. Words made only of characters that no
/// shell treats specially (Python's `shlex.quote` set) are left bare, so
/// that `--log-opt max-size=10m` reads as written; shlex quotes `=` and `,`
/// too, which is safe but harder to read.
fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_string();
    }
    // shlex refuses only NUL, which no argument or variable can hold.
    shlex::try_quote(word).map_or_else(|_| format!("{word:?}"), |q| q.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn dry_run(root: &Path, extra: &[&str]) -> anyhow::Result<String> {
        let mut args = vec!["docker-init", "--dry-run", "--root"];
        args.push(root.to_str().unwrap());
        args.push("--");
        args.extend(extra);
        let cli = Cli::try_parse_from(args).unwrap();
        let mut out = Vec::new();
        run(&cli, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn dry_run_prints_the_command_line_and_the_added_environment() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "/usr/share/ros/os-config.yml",
            "rancher:\n  environment:\n    REGION: eu\n",
        );
        write(
            root,
            "/var/lib/rancher/conf/cloud-config.yml",
            "#cloud-config
rancher:
  network:
    http_proxy: http://proxy.local:3128
    no_proxy: localhost,.local
  docker:
    registry_mirror: https://mirror.local
    insecure_registry: [registry.local:5000]
    log_opts: {max-size: 10m}
    extra_args: [--label, 'site=two words']
    environment: [REGION, GREETING=hello world]
",
        );
        write(
            root,
            "/var/lib/rancher/conf/docker",
            "DOCKER_OPTS='--mtu 1400'\n",
        );
        let text = dry_run(root, &["--ipv6"]).unwrap();
        assert_eq!(
            text,
            "/usr/sbin/dockerd --group 233 --host unix:///var/run/docker.sock \
             --insecure-registry registry.local:5000 --log-opt max-size=10m \
             --registry-mirror https://mirror.local --label 'site=two words' \
             --mtu 1400 --ipv6
HTTP_PROXY=http://proxy.local:3128
http_proxy=http://proxy.local:3128
NO_PROXY=localhost,.local
no_proxy=localhost,.local
REGION=eu
GREETING='hello world'
"
        );
    }

    #[test]
    fn an_empty_root_gives_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            dry_run(dir.path(), &[]).unwrap(),
            "/usr/sbin/dockerd --group 233 --host unix:///var/run/docker.sock\n"
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "/var/lib/rancher/conf/cloud-config.yml",
            "rancher: {docker: {tls: true}}\n",
        );
        let err = service_cli::error_chain(&dry_run(root, &[]).unwrap_err());
        assert!(
            err.starts_with("rancher.docker.tls is not supported yet"),
            "{err}"
        );
        write(
            root,
            "/var/lib/rancher/conf/cloud-config.yml",
            "rancher: {docker: {storage_driver: {a: b}}}\n",
        );
        let err = service_cli::error_chain(&dry_run(root, &[]).unwrap_err());
        assert_eq!(
            err,
            "rancher.docker.storage_driver: expected a string, found a mapping"
        );
        write(
            root,
            "/var/lib/rancher/conf/cloud-config.yml",
            "rancher: {docker: {debug: true}}\n",
        );
        write(root, "/var/lib/rancher/conf/docker", "DOCKER_OPTS=\"$X\"\n");
        let err = service_cli::error_chain(&dry_run(root, &[]).unwrap_err());
        assert!(
            err.contains("/var/lib/rancher/conf/docker:1: variables"),
            "{err}"
        );
    }

    #[test]
    fn a_dockerd_that_cannot_run_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-dockerd");
        let cli = Cli::try_parse_from([
            "docker-init",
            "--root",
            dir.path().to_str().unwrap(),
            "--dockerd",
            missing.to_str().unwrap(),
        ])
        .unwrap();
        let err = service_cli::error_chain(&run(&cli, &mut Vec::new()).unwrap_err());
        assert!(
            err.starts_with(&format!("failed to run {}: ", missing.display())),
            "{err}"
        );
    }
}
