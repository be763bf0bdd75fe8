//! `ros`: the OxOS multi-call binary.
//!
//! One statically linked binary carries every OxOS program; which one runs is
//! chosen by the name it was called by (argv[0], through symlinks such as
//! `/usr/bin/system-docker`) or, when called as `ros`, by the first argument.
//! This file only dispatches: every program lives in its own crate.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

mod config_cmd;
mod daemon;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let name = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = match name.as_str() {
        "system-dockerd" => daemon::main(args),
        "system-docker" => engine_client::main(args),
        // The kernel runs the initrd's /init; stage 2 runs as `init` too.
        "init" if std::process::id() == 1 => init::main(args),
        "reboot" | "poweroff" | "halt" | "shutdown" => power(&name, &args),
        // The kernel's module loader (/proc/sys/kernel/modprobe) and
        // modprobe for programs in system containers.
        "modprobe" => init::kmod::modprobe_main(&strings(&args)),
        _ => dispatch_subcommand(args),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

const USAGE: &str = "\
usage: ros [--root DIR] COMMAND [ARGS...]

OxOS's multi-call binary. Each command is also reachable through a symlink
named after it (for example /usr/bin/system-docker -> ros).

Options:
  --root DIR       treat DIR as the root of every system path (tests, unbooted images)

Commands:
  system-dockerd   run the system container engine (daemon)
  system-docker    client of the system container engine
  config (c)       read and change the cloud-config (ros config --help)
  service (s)      bring up and manage services (ros service --help)
  cloud-init-save  fetch user-data and metadata from the datasources
  netconf          configure the network from rancher.network (the network service)
  docker-init      run User Docker's dockerd with the options of rancher.docker
  console-init     set up users, SSH and getty, then run the console (the console service)
  cloud-init-execute
                   apply the cloud-config: sysctl, write_files, runcmd
  init             PID 1 (run by the kernel; ros init --help)
  reboot, poweroff, halt, shutdown
                   ask PID 1 for an orderly shutdown (-f: at once)
  modprobe         load kernel modules (also the kernel's module loader)
  shim             per-container runtime shim (started by the engine)
  help             show this help
";

fn dispatch_subcommand(mut args: Vec<OsString>) -> i32 {
    // `ros --root DIR COMMAND ...`: every system path relative to DIR (for
    // tests and for editing an image that is not booted). Commands read it
    // from ROS_ROOT.
    while let Some(first) = args.get(1).map(|a| a.to_string_lossy().into_owned()) {
        let root = if first == "--root" {
            if args.len() < 3 {
                eprintln!("ros: --root needs a directory\n\n{USAGE}");
                return 2;
            }
            let dir = args.remove(2);
            args.remove(1);
            dir
        } else if let Some(dir) = first.strip_prefix("--root=") {
            let dir = OsString::from(dir);
            args.remove(1);
            dir
        } else {
            break;
        };
        std::env::set_var("ROS_ROOT", root);
    }
    let sub = args.get(1).map(|a| a.to_string_lossy().into_owned());
    // The rest of the arguments, with the subcommand as the new argv[0].
    let rest: Vec<OsString> = args.iter().skip(1).cloned().collect();
    match sub.as_deref() {
        Some("system-dockerd") => daemon::main(rest),
        Some("system-docker") => engine_client::main(rest),
        Some("config") | Some("c") => config_cmd::main(rest),
        Some("service") | Some("s") => compose::cli::main(rest),
        Some("init") => init::main(rest),
        Some("cloud-init-save") => datasource::cli::main(rest),
        Some("netconf") => netconf::cli::main(rest),
        Some("docker-init") => userdocker::cli::main(rest),
        Some("console-init") => console::cli::main(rest),
        Some("cloud-init-execute") => cloudinit::cli::main(rest),
        Some(cmd @ ("reboot" | "poweroff" | "halt" | "shutdown")) => power(cmd, &rest),
        Some("shim") => shim_main(&rest),
        Some("modprobe") => init::kmod::modprobe_main(&strings(&rest)),
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{USAGE}");
            if sub.is_none() {
                2
            } else {
                0
            }
        }
        Some(other) => {
            eprintln!("ros: unknown command {other:?}\n\n{USAGE}");
            2
        }
    }
}

fn strings(args: &[OsString]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// `reboot`, `poweroff`, `halt`, `shutdown` (`args[0]` is the command).
fn power(name: &str, args: &[OsString]) -> i32 {
    let words: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    init::power::main(name, &words)
}

/// `ros shim run DIR` and `ros shim exec DIR EXEC_JSON`. Not meant to be run by
/// hand: the engine starts these.
fn shim_main(args: &[OsString]) -> i32 {
    let words: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [_, "run", dir] => runtime::shim::run_main(Path::new(dir)),
        [_, "exec", dir, config] => {
            let exec = match std::fs::read(config)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(exec) => exec,
                Err(e) => {
                    eprintln!("ros shim exec: cannot read {config}: {e}");
                    return 125;
                }
            };
            runtime::shim::exec_main(Path::new(dir), &exec)
        }
        _ => {
            eprintln!(
                "usage: ros shim run CONTAINER_DIR\n       ros shim exec CONTAINER_DIR EXEC_JSON\n\
                 (the shim is started by the system engine, one per container)"
            );
            2
        }
    }
}
