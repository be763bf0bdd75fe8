//! # engine-client: `system-docker`

use std::ffi::OsString;

/// Entry point of the `system-docker` personality; returns the exit code.
pub fn main(_args: Vec<OsString>) -> i32 {
    eprintln!("system-docker: not built yet");
    1
}
