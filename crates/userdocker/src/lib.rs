//! # userdocker: User Docker's start (`ros docker-init`)
//!
//! # Background
//!
//! User Docker is the Docker Engine that users' containers run in: the
//! `docker` system service, a container of the system engine holding
//! Debian's dockerd. RancherOS and BurmillaOS started it from
//! `rancher.docker` (COMPAT.md): `args` (the daemon's base command line),
//! daemon keys such as `bip`, `debug`, `insecure_registry`, `log_opts`
//! (each a dockerd flag), `extra_args`, `environment`, and `tls` with its
//! certificates; the proxies of `rancher.network` reached dockerd as
//! `HTTP_PROXY` and friends, and /var/lib/rancher/conf/docker could add
//! `DOCKER_OPTS`. OxOS reads the same keys.
//!
//! # Design
//!
//! The service's entrypoint (`docker-start` in the docker images) prepares
//! the container (the engine's CLI for the console, cgroup delegation) and
//! then execs `ros docker-init -- "$@"`, which:
//!
//! 1. reads the merged config ([`settings`]: only `rancher.docker`, the
//!    proxy keys of `rancher.network` and `rancher.environment`, so that a
//!    broken key elsewhere does not keep User Docker down);
//! 2. computes dockerd's command line and added environment ([`launch`]),
//!    a pure function tested on tables of snippets. The command line is, in
//!    order: `args` without a leading `daemon`/`dockerd` word, or when
//!    `args` is empty [`DEFAULT_ARGS`]; the daemon keys in key order
//!    ([`flags`]); `extra_args`; `$DOCKER_OPTS` from the options file
//!    ([`opts`]); the arguments after `--`. Later flags win where dockerd
//!    keeps one value. The environment ([`mod@env`]) adds the proxies, the
//!    file's exported variables and `rancher.docker.environment`, looked up
//!    in `rancher.environment` as compose does for every service;
//! 3. logs the command line and execs dockerd (`--dry-run` prints both
//!    instead). dockerd then is the service's main process, so the system
//!    engine sees its exit and restarts it; an error here exits 1 and is
//!    retried the same way.
//!
//! # Limitations
//!
//! - `tls: true` is not supported yet: it is an error naming the key (the
//!   certificates of `ca_cert`, `server_cert`, ... are not generated).
//!   `tls_args`, `engine`, `image`, `storage_context`, `client_args` and
//!   `exec` are not read here.
//! - Flags are not checked against dockerd's: an unknown key becomes a flag
//!   that dockerd refuses with its own message.
//! - The options file is read, not run by a shell (see [`opts`]):
//!   `$DOCKER_OPTS` is replaced even inside single quotes, and other
//!   expansions are errors.
//! - `PREFIX*` entries look only in `rancher.environment`, not in the
//!   service's own environment.

pub mod cli;
pub mod env;
mod error;
pub mod flags;
pub mod opts;

use config::model::CloudConfig;

pub use error::{Error, Result};
pub use opts::DockerOpts;

/// dockerd's base command line when `rancher.docker.args` is empty: the
/// console's `docker` group (gid 233) owns the socket, at the path the
/// console's clients use.
pub const DEFAULT_ARGS: &[&str] = &["--group", "233", "--host", "unix:///var/run/docker.sock"];

/// The keys of the merged config that User Docker's start reads.
pub const KEYS: &[&str] = &[
    "rancher.docker",
    "rancher.network.http_proxy",
    "rancher.network.https_proxy",
    "rancher.network.no_proxy",
    "rancher.environment",
];

/// What dockerd is started with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launch {
    /// The arguments after the program name.
    pub args: Vec<String>,
    /// Variables added to the inherited environment, in order.
    pub env: Vec<(String, String)>,
    /// Settings that were ignored, each with the reason.
    pub warnings: Vec<String>,
}

/// The typed view of [`KEYS`] in `merged`; a value of the wrong type is an
/// error naming its key.
pub fn settings(merged: &config::Config) -> Result<CloudConfig> {
    let mut picked = config::Config::new();
    for key in KEYS {
        if let Some(value) = merged.get(key)? {
            picked.set(key, value.clone())?;
        }
    }
    Ok(picked.typed()?)
}

/// dockerd's arguments and added environment from the config, the options
/// file and the arguments given after `--` (`extra`).
pub fn launch(cfg: &CloudConfig, file: &DockerOpts, extra: &[String]) -> Result<Launch> {
    let docker = &cfg.rancher.docker;
    if docker.tls == Some(true) {
        return Err(Error::TlsNotSupported);
    }
    let mut args: Vec<String> = if docker.args.is_empty() {
        DEFAULT_ARGS.iter().map(|s| s.to_string()).collect()
    } else {
        // RancherOS's args named the program before the flags: `daemon`
        // (run as `docker daemon`), later `dockerd`.
        let program =
            |word: &str| word == "daemon" || word == "dockerd" || word.ends_with("/dockerd");
        let skip = match docker.args.as_slice() {
            [docker, daemon, ..] if docker == "docker" && daemon == "daemon" => 2,
            [first, ..] if program(first) => 1,
            _ => 0,
        };
        docker.args[skip..].to_vec()
    };
    let (flags, mut warnings) = flags::daemon_flags("rancher.docker", &docker.daemon)?;
    args.extend(flags);
    args.extend(docker.extra_args.iter().cloned());
    args.extend(file.args.iter().cloned());
    args.extend(extra.iter().cloned());

    let (vars, problems) = config::environment::variables(&cfg.rancher.environment);
    warnings.extend(problems);
    let env = env::environment(docker, &cfg.rancher.network, &file.env, &vars)?;
    warnings.extend(file.warnings.iter().cloned());
    Ok(Launch {
        args,
        env,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(yaml: &str) -> Result<CloudConfig> {
        settings(&config::Config::parse(yaml, Path::new("cloud-config.yml"))?)
    }

    fn args(yaml: &str) -> Vec<String> {
        let c = cfg(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        launch(&c, &DockerOpts::default(), &[])
            .unwrap_or_else(|e| panic!("{yaml}: {e}"))
            .args
    }

    #[test]
    fn rancher_docker_snippets_give_these_command_lines() {
        let cases: &[(&str, &[&str])] = &[
            ("", DEFAULT_ARGS),
            ("rancher: {docker: {}}", DEFAULT_ARGS),
            (
                "rancher: {docker: {extra_args: [--mtu, '1400']}}",
                &[
                    "--group",
                    "233",
                    "--host",
                    "unix:///var/run/docker.sock",
                    "--mtu",
                    "1400",
                ],
            ),
            (
                // args replaces the defaults; its leading program word goes.
                "rancher: {docker: {args: [daemon, --host, 'unix:///x.sock'], debug: true}}",
                &["--host", "unix:///x.sock", "--debug"],
            ),
            ("rancher: {docker: {args: [dockerd, -D]}}", &["-D"]),
            ("rancher: {docker: {args: [docker, daemon, -D]}}", &["-D"]),
            (
                "rancher: {docker: {args: [-D, dockerd]}}",
                &["-D", "dockerd"],
            ),
            (
                "rancher: {docker: {args: [/usr/bin/dockerd], group: docker}}",
                &["--group", "docker"],
            ),
            (
                "
rancher:
  docker:
    engine: docker-26.1
    tls: false
    tls_args: [--tlsverify]
    storage_driver: overlay2
    registry_mirror: https://mirror.local
    insecure_registry: [r.local:5000]
    log_opts: {max-size: 25m, max-file: '2'}
    live_restore: false
    extra_args: [--experimental]
",
                &[
                    "--group",
                    "233",
                    "--host",
                    "unix:///var/run/docker.sock",
                    "--insecure-registry",
                    "r.local:5000",
                    "--live-restore=false",
                    "--log-opt",
                    "max-size=25m",
                    "--log-opt",
                    "max-file=2",
                    "--registry-mirror",
                    "https://mirror.local",
                    "--storage-driver",
                    "overlay2",
                    "--experimental",
                ],
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(args(yaml), *want, "{yaml}");
        }
    }

    #[test]
    fn the_options_file_and_the_args_after_dashes_come_last() {
        let c = cfg("rancher: {docker: {extra_args: [--debug]}}").unwrap();
        let file = DockerOpts {
            args: vec!["--mtu".into(), "1400".into()],
            env: vec![("A".into(), "file".into()), ("B".into(), "file".into())],
            warnings: vec!["w".into()],
        };
        let l = launch(&c, &file, &["--ipv6".into()]).unwrap();
        assert_eq!(
            l.args[DEFAULT_ARGS.len()..],
            ["--debug", "--mtu", "1400", "--ipv6"]
        );
        assert_eq!(l.warnings, ["w"]);
        let c = cfg("rancher: {network: {no_proxy: net}, docker: {environment: [B=config, NO_PROXY=config]}}")
            .unwrap();
        let l = launch(&c, &file, &[]).unwrap();
        let env: Vec<String> = l.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            env,
            ["no_proxy=net", "A=file", "B=config", "NO_PROXY=config"]
        );
    }

    #[test]
    fn tls_is_not_supported_yet() {
        for yaml in [
            "rancher: {docker: {tls: true}}",
            "rancher: {docker: {tls: yes}}",
        ] {
            let err = launch(&cfg(yaml).unwrap(), &DockerOpts::default(), &[])
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("rancher.docker.tls is not supported yet"),
                "{err}"
            );
        }
    }

    #[test]
    fn values_of_the_wrong_type_are_errors_naming_the_key() {
        let cases = [
            ("rancher: {docker: {extra_args: --debug}}", "rancher.docker"),
            ("rancher: {docker: {environment: {A: b}}}", "rancher.docker"),
            ("rancher: {docker: {tls: maybe}}", "rancher.docker"),
            (
                "rancher: {network: {http_proxy: [a]}}",
                "rancher.network.http_proxy",
            ),
            ("rancher: {docker: {bip: [a]}}", "rancher.docker.bip"),
            (
                "rancher: {docker: {log_opts: {max-size: {a: b}}}}",
                "rancher.docker.log_opts.max-size",
            ),
        ];
        for (yaml, key) in cases {
            let err = cfg(yaml)
                .and_then(|c| launch(&c, &DockerOpts::default(), &[]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn a_broken_key_elsewhere_does_not_stop_user_docker() {
        let c = cfg("rancher: {ssh: {port: lots}, docker: {debug: true}}").unwrap();
        let l = launch(&c, &DockerOpts::default(), &[]).unwrap();
        assert_eq!(l.args.last().map(String::as_str), Some("--debug"));
    }
}
