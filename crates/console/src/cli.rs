//! `ros console-init`: the console service's entrypoint.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use config::Root;

use crate::settings::Settings;
use crate::ssh::{self, InProcessEd25519, SshKeygen};
use crate::supervise::{self, Backoff};

const AFTER_HELP: &str = "\
At every start, from the merged config: the user rancher (uid 1100, groups
docker and sudo, sudo without a password; password locked unless
rancher.password is on the kernel command line), its authorized_keys from
ssh_authorized_keys, SSH host keys (kept in /var/lib/rancher/conf/ssh;
Ed25519 is made before sshd starts, ECDSA and RSA after it, in the
background, and served from sshd's next start), an
sshd drop-in from rancher.ssh (port, listen_address), links for ros,
system-docker, docker, reboot, poweroff, halt and shutdown. Then sshd and a
getty on tty1, ttyS0 and the console= ttys run until SIGTERM, each
restarted when it exits. rancher.autologin=TTY (kernel command line) logs
rancher in on TTY without a password. See docs/console.md.";

/// Set up users, SSH and getty, then run the console.
#[derive(Debug, Parser)]
#[command(name = "ros console-init", bin_name = "ros console-init", after_help = AFTER_HELP)]
struct Cli {
    /// Directory that every system path is relative to
    #[arg(long, value_name = "DIR", default_value = "/", env = "ROS_ROOT")]
    root: PathBuf,
    /// Set up and exit without running sshd and the gettys
    #[arg(long)]
    setup_only: bool,
    /// Only make the host keys that are made after sshd has started (RSA),
    /// at the lowest CPU priority, keep them on the state disk, and exit.
    /// The console runs this itself when a key is missing
    #[arg(long, conflicts_with = "setup_only")]
    finish_host_keys: bool,
}

/// `ros console-init ARGS` (`args[0]` is `console-init`). Returns the exit
/// code: 0 after SIGTERM (or after the setup with `--setup-only`), 1 on an
/// error, 2 on bad usage.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli: Cli = match service_cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_logging();
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            1
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if !cli.setup_only && !cli.finish_host_keys && cli.root != std::path::Path::new("/") {
        anyhow::bail!(
            "running sshd and getty under --root {} is not supported; use --setup-only",
            cli.root.display()
        );
    }
    let root = Root::new(&cli.root);
    if cli.finish_host_keys {
        lowest_priority();
        let made = ssh::finish_host_keys(&root, &SshKeygen)
            .context("failed to make the remaining host keys")?;
        tracing::info!(
            "{made} host key(s) made in the background, kept in {}; sshd serves them from its next start",
            ssh::PERSISTED_KEYS
        );
        return Ok(());
    }
    let settings = Settings::load(&root).context("failed to read the config")?;
    let plan = crate::setup(&root, &settings, &InProcessEd25519)
        .context("failed to set up the console")?;
    if cli.setup_only {
        tracing::info!("set up (--setup-only: not starting sshd and getty)");
        return Ok(());
    }
    // The setup's allocations are over: what they freed goes back to the
    // kernel before this process supervises sshd and the gettys for good.
    heap_trim::release_free_heap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime
        .block_on(supervise::run(
            plan.programs,
            plan.scripts,
            plan.background,
            Backoff::default(),
        ))
        .context("failed to install the signal handlers")?;
    tracing::info!("stopped");
    Ok(())
}

/// Lowers this process's CPU priority (and that of the programs it starts)
/// to the lowest, so that the key generation does not slow the logins it
/// runs beside. A failure only costs speed, so it is logged.
fn lowest_priority() {
    // SAFETY: setpriority reads no memory of ours; it changes only the
    // scheduling priority of this process (who = 0).
    let rc = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, 19) };
    if rc != 0 {
        tracing::warn!(
            "could not lower the priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Log lines on stderr (the container's log), each `console: MESSAGE`,
/// warnings and errors marked as such. RUST_LOG=debug shows more.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(LineFormat)
        .try_init();
}

struct LineFormat;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for LineFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "console: ")?;
        match *event.metadata().level() {
            tracing::Level::ERROR => write!(writer, "error: ")?,
            tracing::Level::WARN => write!(writer, "warning: ")?,
            _ => {}
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
