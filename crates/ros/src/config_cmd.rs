//! `ros config` (alias `ros c`): read and change the cloud-config. The
//! command lives in the `config` crate; this only hands it the arguments.

use std::ffi::OsString;

/// `ros config ARGS...`, with `config` (or `c`) as ARGS[0].
pub fn main(args: Vec<OsString>) -> i32 {
    config::cli::main(args)
}
