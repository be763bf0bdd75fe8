//! `system-dockerd`: the system engine daemon's command line.

use std::ffi::OsString;

pub fn main(_args: Vec<OsString>) -> i32 {
    eprintln!("system-dockerd: not built yet");
    1
}
