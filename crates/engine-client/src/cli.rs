//! The command line of `system-docker`, as clap derive structures.
//!
//! Flags follow the `docker` CLI: same names, same short forms, same value
//! syntax. Values that need more than a type check (volume specs, memory sizes,
//! restart policies, ...) are kept as strings here and parsed by
//! [`crate::parse`] so that the errors read like Docker's and the parsing can be
//! tested without clap.

// Flag docs are clap help texts: `[:OPTS]` there is docker's usage syntax, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

use clap::{ArgAction, Args, Parser, Subcommand};

/// The default address of the system engine.
pub const DEFAULT_HOST: &str = "unix:///var/run/system-docker.sock";

/// `system-docker`: the client of the OxOS system engine.
#[derive(Debug, Parser)]
#[command(
    name = "system-docker",
    about = "Manage the system containers of OxOS (the system engine's client)",
    long_about = "Manage the system containers of OxOS.\n\n\
        system-docker talks to the system engine (system-dockerd) over its unix socket, \
        by default unix:///var/run/system-docker.sock. Its commands and flags are those of \
        the docker CLI; the real docker CLI works against the same socket too.\n\n\
        Example:\n  system-docker ps -a\n  system-docker -H unix:///tmp/x.sock images",
    disable_version_flag = true,
    disable_help_subcommand = true,
    subcommand_required = false,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Engine socket to connect to (unix:///path); also $SYSTEM_DOCKER_HOST
    #[arg(
        short = 'H',
        long = "host",
        env = "SYSTEM_DOCKER_HOST",
        default_value = DEFAULT_HOST,
        value_name = "unix:///PATH"
    )]
    pub host: String,

    /// Print debug logs of the client (requests, responses) to stderr
    #[arg(short = 'D', long)]
    pub debug: bool,

    /// Print the client version and exit
    #[arg(short = 'v', long = "version")]
    pub version: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the client and engine versions
    ///
    /// Example: system-docker version
    Version,
    /// Show system-wide information about the engine
    ///
    /// Example: system-docker info
    Info,
    /// List images
    ///
    /// Example: system-docker images -q busybox
    Images(ImagesArgs),
    /// Load images from a tar archive (docker save or OCI layout), stdin by default
    ///
    /// Example: system-docker load -i busybox.tar
    Load(LoadArgs),
    /// Create an image from a root filesystem tarball
    ///
    /// Example: system-docker import -c 'CMD ["/bin/sh"]' rootfs.tar myroot:1.0
    Import(ImportArgs),
    /// Pull an image from a registry
    ///
    /// Example: system-docker pull 127.0.0.1:5000/busybox:latest
    Pull(PullArgs),
    /// Give an image another name
    ///
    /// Example: system-docker tag busybox:latest mybox:1
    Tag(TagArgs),
    /// Remove images
    ///
    /// Example: system-docker rmi -f mybox:1
    Rmi(RmiArgs),
    /// Create a container without starting it; prints its id
    ///
    /// Example: system-docker create --name web -v /srv:/srv:ro busybox httpd -f
    Create(CreateArgs),
    /// Create and start a container; without -d, prints its output and exits with its exit code
    ///
    /// Example: system-docker run --rm --net host busybox ip addr
    Run(RunArgs),
    /// Start stopped containers
    ///
    /// Example: system-docker start web
    Start(NamesArgs),
    /// Stop running containers (SIGTERM, then SIGKILL after a grace period)
    ///
    /// Example: system-docker stop -t 2 web
    Stop(StopArgs),
    /// Send a signal to running containers
    ///
    /// Example: system-docker kill -s HUP syslog
    Kill(KillArgs),
    /// Restart containers
    ///
    /// Example: system-docker restart -t 2 web
    Restart(StopArgs),
    /// Remove containers
    ///
    /// Example: system-docker rm -f web
    Rm(RmArgs),
    /// List containers
    ///
    /// Example: system-docker ps -a -f status=exited --format '{{.Names}}'
    Ps(PsArgs),
    /// Show low-level information on containers or images, as a JSON array
    ///
    /// Example: system-docker inspect -f '{{.State.Pid}}' console
    Inspect(InspectArgs),
    /// Show the logs of a container
    ///
    /// Example: system-docker logs -f --tail 10 syslog
    Logs(LogsArgs),
    /// Wait for containers to stop; prints their exit codes
    ///
    /// Example: system-docker wait job
    Wait(NamesArgs),
    /// Run a command in a running container, printing its output and exiting with its exit code
    ///
    /// Example: system-docker exec -e A=1 console ls /
    Exec(ExecArgs),
    /// Copy files between a container and the local file system (a tar archive with -)
    ///
    /// Example: system-docker cp ntp:/etc/ntp.conf .
    Cp(CpArgs),
}

/// `images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show all images (including intermediate ones)
    #[arg(short, long)]
    pub all: bool,
    /// Only show image ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate the output
    #[arg(long)]
    pub no_trunc: bool,
    /// Print each image through a template, e.g. '{{.Repository}}:{{.Tag}}'
    /// (fields: Repository, Tag, ID, CreatedSince, CreatedAt, Size)
    #[arg(long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    /// Only images matching this repository (and tag)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

/// `load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from this tar archive instead of stdin
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Tarball of a root filesystem, "-" for stdin, or an http(s) URL
    #[arg(value_name = "FILE|URL|-")]
    pub source: String,
    /// Name of the new image
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
    /// Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL, ONBUILD)
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Commit message of the imported image
    #[arg(short, long)]
    pub message: Option<String>,
}

/// `pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image to pull
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub name: String,
    /// Suppress the progress output
    #[arg(short, long)]
    pub quiet: bool,
}

/// `tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Existing image
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    /// New name
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

/// `rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove the image even if it is in use or has several tags
    #[arg(short, long)]
    pub force: bool,
    /// Images to remove
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// Flags shared by `create` and `run`: they describe the container.
#[derive(Debug, Args, Default, Clone)]
pub struct ContainerArgs {
    /// Name of the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines, # comments)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<String>,
    /// Set a label (KEY=VALUE)
    #[arg(short, long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Bind mount (SRC:DST[:ro|rw|rshared|rslave|rprivate|shared|slave|private|z|Z]) or anonymous volume (DST)
    #[arg(short, long = "volume", value_name = "SRC:DST[:OPTS]")]
    pub volume: Vec<String>,
    /// Mount the volumes of another container (NAME[:ro|rw])
    #[arg(long = "volumes-from", value_name = "CONTAINER[:ro|rw]")]
    pub volumes_from: Vec<String>,
    /// Network mode: host or none (default: the engine's default, an isolated network)
    #[arg(long = "net", visible_alias = "network", value_name = "MODE")]
    pub net: Option<String>,
    /// PID namespace: host
    #[arg(long, value_name = "MODE")]
    pub pid: Option<String>,
    /// IPC namespace: host
    #[arg(long, value_name = "MODE")]
    pub ipc: Option<String>,
    /// UTS namespace: host
    #[arg(long, value_name = "MODE")]
    pub uts: Option<String>,
    /// Give all capabilities and devices to the container
    #[arg(long)]
    pub privileged: bool,
    /// Mount the container's root filesystem read-only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Add a Linux capability (or ALL)
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability (or ALL)
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Add a host device (HOST[:CONTAINER][:PERMISSIONS])
    #[arg(long, value_name = "HOST[:CONTAINER][:rwm]")]
    pub device: Vec<String>,
    /// Hostname of the container
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Memory limit (bytes, or with a k, m or g suffix)
    #[arg(short, long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// Number of CPUs (fractional, e.g. 1.5)
    #[arg(long, value_name = "DECIMAL")]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares", value_name = "N")]
    pub cpu_shares: Option<i64>,
    /// Limit on the number of processes (-1 for unlimited)
    #[arg(long = "pids-limit", value_name = "N", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Adjust the OOM killer's preference for the container (-1000 to 1000)
    #[arg(
        long = "oom-score-adj",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub oom_score_adj: Option<i64>,
    /// Restart policy: no, always, on-failure[:MAX_RETRIES] or unless-stopped
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// Override the image's entrypoint ("" to reset it)
    #[arg(long, value_name = "COMMAND")]
    pub entrypoint: Option<String>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as (NAME|UID[:GROUP|GID])
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Logging driver of the container
    #[arg(long = "log-driver", value_name = "DRIVER")]
    pub log_driver: Option<String>,
    /// Logging option (e.g. max-size=10m)
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// When to pull the image: missing (default), always or never
    #[arg(long, value_name = "POLICY", default_value = "missing")]
    pub pull: String,
    /// Allocate a pseudo-TTY (not supported yet)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep stdin open (accepted for compatibility; stdin is not attached)
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// The image, then the command and its arguments (which override the
    /// image's CMD). Flags end at the image, as in docker: what follows it
    /// belongs to the command.
    #[arg(
        value_name = "IMAGE [COMMAND] [ARG...]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub image_and_command: Vec<String>,
}

impl ContainerArgs {
    /// The image to create the container from.
    pub fn image(&self) -> &str {
        self.image_and_command.first().map_or("", String::as_str)
    }

    /// The command given after the image (empty: the image's CMD).
    pub fn command(&self) -> &[String] {
        self.image_and_command.get(1..).unwrap_or_default()
    }
}

/// `create`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Print help (-h is --hostname here, as in docker)
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    #[command(flatten)]
    pub container: ContainerArgs,
}

/// `run`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help (-h is --hostname here, as in docker)
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Run in the background and print the container id
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    #[command(flatten)]
    pub container: ContainerArgs,
}

/// Commands that take a list of containers.
#[derive(Debug, Args)]
pub struct NamesArgs {
    /// Containers (names or ids)
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `stop` and `restart`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait for the container to stop before killing it
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    pub time: Option<i32>,
    /// Containers (names or ids)
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send (name like HUP or SIGHUP, or number)
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    /// Containers (names or ids)
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill and remove running containers
    #[arg(short, long)]
    pub force: bool,
    /// Also remove the anonymous volumes of the containers
    #[arg(short, long)]
    pub volumes: bool,
    /// Containers (names or ids)
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only show container ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate the output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only containers matching KEY=VALUE: name (part of a name), id (prefix),
    /// status (created, running, exited, ...), label (KEY or KEY=VALUE)
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Print each container through a template, e.g. '{{.ID}} {{.Names}}'
    /// (fields: ID, Image, Command, CreatedAt, RunningFor, Ports, State,
    /// Status, Names, Labels)
    #[arg(long, value_name = "TEMPLATE")]
    pub format: Option<String>,
}

/// `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Only look for this kind of object: container or image
    #[arg(long = "type", value_name = "container|image")]
    pub kind: Option<String>,
    /// Print each object through a template: text with {{.Field.Sub}} and
    /// {{json .Field}} actions (the rest of Go's template language is not supported)
    #[arg(short, long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    /// Containers or images (names or ids)
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

/// `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow the log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs ("all" by default)
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Container (name or id)
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// `cp`.
#[derive(Debug, Args)]
#[command(after_help = "\
CONTAINER:PATH names a path in a container (a path that starts with / or . \
is always local). A directory is copied with everything below it; DIR/. \
copies its contents. Into an existing directory a copy keeps its name; to a \
path that does not exist it takes that path's name. A file does not replace \
a directory, nor a directory a file. With - as the source, a tar archive \
read from stdin is extracted into the container's directory; with - as the \
destination, the tar archive is written to stdout.

Examples:
  system-docker cp ntp:/etc/ntp.conf .           a file out, under its name
  system-docker cp console:/home/rancher/. bak   a directory's contents, to bak
  system-docker cp -L console:/etc/localtime lt  what the link points at
  system-docker cp rules.conf udev:/etc/udev/    a file into a directory
  system-docker cp syslog:/var/log - | tar t     the tar archive, on stdout")]
pub struct CpArgs {
    /// What goes into a container belongs to the container's user (its
    /// --user or its image's USER), or keeps its local owners (uid:gid) in
    /// a container without one; by default it belongs to root
    #[arg(short, long)]
    pub archive: bool,
    /// Copy what a symlink SRC_PATH points at, not the link
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Print nothing on success
    #[arg(short, long)]
    pub quiet: bool,
    /// What to copy: CONTAINER:SRC_PATH, a local path, or -
    #[arg(value_name = "SRC")]
    pub src: String,
    /// Where to: a local path, CONTAINER:DEST_PATH, or -
    #[arg(value_name = "DEST")]
    pub dest: String,
}

/// `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Run in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Set an environment variable (KEY=VALUE)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as (NAME|UID[:GROUP|GID])
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Pass this process's stdin to the command
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY (not supported yet)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Container (name or id)
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// Command and its arguments
    #[arg(
        required = true,
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Cli {
        let mut full = vec!["system-docker"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).expect("parses")
    }

    #[test]
    fn flags_after_the_image_belong_to_the_command() {
        let Some(Command::Run(run)) = parse(&["run", "-d", "busybox", "--name", "x", "-v"]).command
        else {
            panic!("not run");
        };
        assert!(run.detach);
        assert_eq!(run.container.name, None);
        assert_eq!(run.container.image(), "busybox");
        assert_eq!(run.container.command(), ["--name", "x", "-v"]);
    }

    #[test]
    fn exec_takes_the_rest_as_the_command() {
        let Some(Command::Exec(exec)) =
            parse(&["exec", "-e", "A=1", "console", "sh", "-c", "ls -l"]).command
        else {
            panic!("not exec");
        };
        assert_eq!(exec.container, "console");
        assert_eq!(exec.command, ["sh", "-c", "ls -l"]);
        assert_eq!(exec.env, ["A=1"]);
    }

    #[test]
    fn global_flags_and_short_forms() {
        let cli = parse(&["-H", "unix:///tmp/x.sock", "-D", "ps", "-aq"]);
        assert_eq!(cli.host, "unix:///tmp/x.sock");
        assert!(cli.debug);
        let Some(Command::Ps(ps)) = cli.command else {
            panic!("not ps");
        };
        assert!(ps.all && ps.quiet);
        // -h is the hostname on run, and --help still asks for help
        let Some(Command::Run(run)) = parse(&["run", "-h", "box", "busybox"]).command else {
            panic!("not run");
        };
        assert_eq!(run.container.hostname.as_deref(), Some("box"));
        let err = Cli::try_parse_from(["system-docker", "run", "--help"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        // every command explains itself with an example
        let mut cmd = <Cli as clap::CommandFactory>::command();
        for sub in cmd.get_subcommands_mut() {
            let help = sub.render_long_help().to_string();
            assert!(
                help.contains("Example: system-docker"),
                "{}",
                sub.get_name()
            );
        }
    }
}
