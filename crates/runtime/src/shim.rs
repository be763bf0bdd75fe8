//! The per-container shim process.

use crate::protocol::ExecConfig;
use std::path::Path;

/// `ros shim run DIR`: create, start and wait for the container described by
/// DIR/run.json. Returns the process exit code of the shim.
pub fn run_main(_container_dir: &Path) -> i32 {
    eprintln!("ros shim: not built yet");
    1
}

/// `ros shim exec DIR EXEC_JSON`: run one more process in the running
/// container of DIR with this process's stdin, stdout and stderr, and exit
/// with its exit code.
pub fn exec_main(_container_dir: &Path, _exec: &ExecConfig) -> i32 {
    eprintln!("ros shim exec: not built yet");
    1
}
