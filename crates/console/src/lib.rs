//! # console: the OxOS console (`ros console-init`)
//!
//! Not built yet: `ros console-init` fails with a clear error.

pub mod cli {
    /// `ros console-init ARGS` (`args[0]` is `console-init`). Returns the exit code.
    pub fn main(_args: Vec<std::ffi::OsString>) -> i32 {
        eprintln!("ros console-init: not supported yet");
        1
    }
}
