//! Running child processes: streamed output, failures that name the step.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}

/// Cargo's target directory (`CARGO_TARGET_DIR` or `target/` in the
/// workspace root).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// A `cargo` command run from the workspace root, with the same cargo that runs
/// this task.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(workspace_root());
    c
}

/// Runs `cmd` with inherited stdout and stderr (output streams as it comes)
/// and fails with an error naming `step` unless it exits with status 0.
pub fn run_step(step: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: == {step}: {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("{step}: cannot start {}", display(cmd)))?;
    if !status.success() {
        bail!("{step} failed ({status}): {}", display(cmd));
    }
    Ok(())
}

/// The command line of `cmd`, for messages.
pub fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether this process runs as root (the integration tests need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
