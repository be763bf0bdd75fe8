//! `ros docker-init`: the command line.

use std::ffi::OsString;

/// Runs `ros docker-init` with `args` (argv[0] first); the exit code.
pub fn main(_args: Vec<OsString>) -> i32 {
    eprintln!("ros docker-init: not supported yet");
    1
}
