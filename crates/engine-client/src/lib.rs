//! # engine-client: `system-docker`
//!
//! ## Background
//!
//! RancherOS called the engine that runs its own services "System Docker" and
//! shipped `system-docker`, a docker CLI pointed at that engine's socket. OxOS
//! keeps the name and the habit: the system engine (crate `engine`, run as
//! `system-dockerd`) serves the Docker Engine API on
//! `/var/run/system-docker.sock`, and `system-docker` is its client, a
//! personality of the `ros` multi-call binary. The real docker CLI works
//! against the same socket; `system-docker` exists so that the OS needs no Go
//! binary for its own administration.
//!
//! ## Design
//!
//! - [`cli`]: the command line (clap derive), with docker's flag names and
//!   short forms (`-h` is `--hostname` on `run`/`create`, as in docker).
//! - [`parse`]: flag values to Docker API structures (volumes, restart policy,
//!   memory sizes, env files, devices, `import -c` changes). Pure functions,
//!   unit tested.
//! - [`format`](mod@format): docker's table layout, human sizes and durations, on an
//!   injected clock so that tests are exact.
//! - [`client`]: the connection. Requests go through `bollard` (Docker's API
//!   models); a few go through a raw HTTP/1.1 request on the unix socket where
//!   bollard cannot send what the docker CLI sends (see that module).
//! - [`commands`]: one function a command; [`progress`]: pull progress.
//!
//! The address is `-H unix:///path`, or `$SYSTEM_DOCKER_HOST` (not
//! `$DOCKER_HOST`, which belongs to User Docker), defaulting to
//! `unix:///var/run/system-docker.sock`. The client speaks API v1.41 (Docker
//! 20.10's), which the engine serves; the raw requests carry the `/v1.41`
//! prefix, while bollard 0.21 sends unversioned paths (it drops the prefix
//! when joining the path), which an engine answers at its own version.
//!
//! Exit codes follow docker: 0 on success; 1 for errors (printed as
//! `Error response from daemon: MESSAGE` when the engine refused); 125 for
//! flag errors and for `run`/`create` failures; `run` without `-d` and `exec`
//! exit with the container's (or command's) exit code; 126/127 when `run`
//! cannot start the command (not executable / not found).
//!
//! ## Limitations
//!
//! - No TTY (`-t`) and no stdin for `run` (`-i` without `-d`): `run` shows the
//!   container's output through its logs (requested right after the start,
//!   with `follow`; so a container with `--log-driver none` shows nothing),
//!   and forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT to the container.
//! - Only unix sockets; no TLS, no tcp://.
//! - Templates (`ps --format`, `images --format`, `inspect -f`) know only
//!   `{{.Path}}` and `{{json .Path}}` actions and say so for anything else
//!   (`range`, `index`, "table" layouts...).
//! - `ps -f` checks name, id, status and label here too; other filters are
//!   left to the engine.
//! - `images REPOSITORY[:TAG]` matches exact names (no globs).
//! - `exec -i` sends stdin only if the engine accepts it (the system engine
//!   refuses it for now, with a clear error).
//! - `run` without `-d` removes the container itself (after it exits) for
//!   `--rm`, instead of asking the engine to, so that the exit code can be read.
//!
//! ## Example
//!
//! ```text
//! system-docker load -i /usr/share/ros/images/console.tar
//! system-docker run -d --name console --net host --privileged \
//!     --restart always -v /home:/home oxos/console
//! system-docker exec console cat /etc/os-release
//! system-docker inspect -f '{{.State.Pid}}' console
//! system-docker run --rm busybox sh -c 'exit 3'; echo $?    # 3
//! ```

pub mod cli;
pub mod client;
pub mod commands;
pub mod error;
pub mod format;
pub mod parse;
pub mod progress;

use std::ffi::OsString;
use std::io::Write;

use clap::error::ErrorKind;
use clap::Parser;

pub use error::{Error, Result};

/// Exit code of docker for flag errors and for failures of `run`/`create`.
pub const EXIT_USAGE: i32 = 125;

/// Entry point of the `system-docker` personality; returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => EXIT_USAGE,
            };
            let _ = e.print();
            return code;
        }
    };
    if cli.debug {
        // Also shows bollard's `log` records (tracing-subscriber's log bridge).
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::DEBUG)
            .try_init();
    }
    if cli.version {
        println!("{}", commands::system::client_version_line());
        return 0;
    }
    let Some(command) = cli.command else {
        // `system-docker -H x` alone: like docker, show the usage.
        let _ = <cli::Cli as clap::CommandFactory>::command().print_help();
        return 0;
    };

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("system-docker: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let is_run = matches!(command, cli::Command::Run(_) | cli::Command::Create(_));
    // An empty $SYSTEM_DOCKER_HOST means the default, as an empty $DOCKER_HOST does for docker.
    let host = if cli.host.is_empty() {
        cli::DEFAULT_HOST
    } else {
        cli.host.as_str()
    };
    let result = runtime.block_on(commands::dispatch(host, command));
    let _ = std::io::stdout().flush();
    match result {
        Ok(code) => code,
        // A closed pipe (`system-docker logs x | head`) ends the command
        // quietly, as a SIGPIPE would end docker.
        Err(Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => 141,
        Err(e) => {
            if cli.debug {
                eprintln!("{e:?}");
            }
            eprintln!("{e}");
            if is_run || matches!(e, Error::Usage(_)) {
                EXIT_USAGE
            } else {
                1
            }
        }
    }
}
