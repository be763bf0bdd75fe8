//! # cloudinit: applying a cloud-config at boot (`ros cloud-init-execute`)
//!
//! Not built yet: `ros cloud-init-execute` fails with a clear error.

pub mod cli {
    /// `ros cloud-init-execute ARGS` (`args[0]` is `cloud-init-execute`).
    pub fn main(_args: Vec<std::ffi::OsString>) -> i32 {
        eprintln!("ros cloud-init-execute: not supported yet");
        1
    }
}
