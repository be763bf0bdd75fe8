//! # netconf: the network of OxOS (`ros netconf`)
//!
//! Not built yet: `ros netconf` fails with a clear error.

pub mod cli {
    /// `ros netconf ARGS` (`args[0]` is `netconf`). Returns the exit code.
    pub fn main(_args: Vec<std::ffi::OsString>) -> i32 {
        eprintln!("ros netconf: not supported yet");
        1
    }
}
