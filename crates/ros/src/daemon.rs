//! `system-dockerd`: the system engine daemon's command line.

use anyhow::Context;
use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;

/// The OxOS system container engine.
///
/// Serves the Docker Engine API on a unix socket, so that `system-docker` and
/// the `docker` CLI (with `-H unix:///var/run/system-docker.sock`) manage the
/// system containers. Containers keep running when the daemon stops or is
/// killed; a new daemon on the same data root finds them again.
///
/// Example:
///   system-dockerd --data-root /var/lib/system-docker -H unix:///var/run/system-docker.sock
#[derive(Debug, Parser)]
#[command(name = "system-dockerd", version, verbatim_doc_comment)]
struct Args {
    /// Where images, containers and volumes are kept.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/system-docker",
        alias = "graph",
        short = 'g'
    )]
    data_root: PathBuf,

    /// The socket to serve the API on (unix:///path only).
    #[arg(
        short = 'H',
        long = "host",
        value_name = "unix:///PATH",
        default_value = "unix:///var/run/system-docker.sock"
    )]
    host: String,

    /// A registry reached over plain http (HOST[:PORT] or a CIDR); may repeat.
    /// 127.0.0.0/8 is always insecure, as in Docker.
    #[arg(long = "insecure-registry", value_name = "REGISTRY")]
    insecure_registries: Vec<String>,

    /// Parent cgroup of the containers.
    #[arg(long, default_value = "system-docker")]
    cgroup_parent: String,

    /// Debug logging.
    #[arg(short = 'D', long)]
    debug: bool,

    /// Log level: error, warn, info, debug, trace.
    #[arg(short = 'l', long, default_value = "info")]
    log_level: String,
}

pub fn main(args: Vec<OsString>) -> i32 {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let level = if args.debug {
        "debug".to_string()
    } else {
        args.log_level.clone()
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(format!(
                    "{level},libcontainer=warn,libcgroups=warn"
                ))
            }),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("system-dockerd: {e:#}");
            1
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let socket = engine::server::socket_path(&args.host).map_err(anyhow::Error::msg)?;
    engine::memory::limit_arenas();
    // Errors of some libraries capture a backtrace when RUST_BACKTRACE is set,
    // and symbolizing it keeps megabytes of debug info resident for good.
    // Panics still print their backtrace.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    // One thread: the daemon's work is waiting; the shims do the rest.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let mut config = engine::Config::new(&args.data_root);
        config.insecure_registries = args.insecure_registries.clone();
        config.cgroup_parent = args.cgroup_parent.clone();
        let engine = engine::Engine::open(config)
            .with_context(|| format!("cannot open the data root {}", args.data_root.display()))?;
        let listener = engine::server::bind(&socket)
            .with_context(|| format!("cannot listen on {}", socket.display()))?;
        tracing::info!("system engine serving on unix://{}", socket.display());
        let shutdown = async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                std::future::pending::<()>().await;
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("stopping the API; containers keep running");
        };
        engine::server::serve(engine, listener, shutdown)
            .await
            .context("serving the API")?;
        let _ = std::fs::remove_file(&socket);
        Ok(())
    })
}
