//! # service-cli: the start every `ros` command shares
//!
//! `ros` is a multi-call binary; each command (`ros netconf`,
//! `ros cloud-init-execute`, `ros docker-init`, `ros service`, ...) lives in
//! its own crate with its own clap parser. They all begin the same way:
//!
//! - [`parse`]: clap's parse, where `--help` and `--version` print and end
//!   with 0 and a usage error prints and ends with 2, returned as the exit
//!   code instead of exiting, since PID 1 runs some of them in-process;
//! - [`init_logging`]: `tracing` to standard error, filtered by `ROS_LOG`
//!   (default `info`), without timestamps (the engine that keeps a
//!   service's log stamps each line) and with colours only on a terminal;
//! - [`runtime`]: a current-thread tokio runtime, or the error message and
//!   exit code 1;
//! - [`error_chain`]: an error and its causes on one line, for the command's
//!   last words.

use std::ffi::OsString;

/// Parses `args` (`args[0]` is the command's name) into `C`; on `--help`,
/// `--version` or a usage error, prints clap's text and returns the exit
/// code (0 or 2).
pub fn parse<C: clap::Parser>(args: Vec<OsString>) -> Result<C, i32> {
    C::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            2
        } else {
            0
        }
    })
}

/// Logs to standard error as a system service does: `ROS_LOG` filters
/// (default `info`), no time stamps, no targets, colours on a terminal only.
/// A second call does nothing.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        // The service's log is timestamped by the engine that keeps it.
        .without_time()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// A current-thread tokio runtime for `command`; when it cannot start, the
/// message is printed and the exit code (1) returned.
pub fn runtime(command: &str) -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("{command}: cannot start the async runtime: {e}");
            1
        })
}

/// The error and its causes on one line, each said once: messages that
/// already end with their cause ("failed to read X: permission denied")
/// are not followed by it again.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[arg(long)]
        name: String,
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn parse_gives_the_value_or_the_exit_code() {
        let cli: Cli = parse(args(&["x", "--name", "a"])).unwrap();
        assert_eq!(cli.name, "a");
        assert_eq!(parse::<Cli>(args(&["x", "--help"])).unwrap_err(), 0);
        assert_eq!(parse::<Cli>(args(&["x", "--bogus"])).unwrap_err(), 2);
        assert_eq!(parse::<Cli>(args(&["x"])).unwrap_err(), 2);
    }

    #[test]
    fn error_chains_say_each_cause_once() {
        let io = std::io::Error::other("permission denied");
        let e = anyhow::Error::new(io).context("failed to read /x");
        assert_eq!(error_chain(&e), "failed to read /x: permission denied");
        let said = anyhow::anyhow!("failed to read /x: permission denied").context("config");
        assert_eq!(
            error_chain(&said),
            "config: failed to read /x: permission denied"
        );
    }

    #[test]
    fn the_runtime_runs_futures() {
        let rt = runtime("test").unwrap();
        assert_eq!(rt.block_on(async { 7 }), 7);
    }
}
