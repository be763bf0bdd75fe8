//! Attaching a file to a loop device (read-only, cleared on last close).
//!
//! `LOOP_CTL_GET_FREE` on /dev/loop-control gives a free device number and
//! `LOOP_CONFIGURE` (Linux 5.8) binds the file and sets the flags in one
//! call. Hand-written: the `loopdev` crate generates its bindings with
//! bindgen at build time (libclang), and libc has neither the ioctl numbers
//! nor `struct loop_config`.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::Error;

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` of <linux/loop.h>.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` of <linux/loop.h>.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// A loop device attached to a file, held open: with autoclear, the device
/// detaches when its last user closes it, so keep this until the device is
/// mounted (the mount then holds it).
pub struct Attached {
    /// The device, e.g. /dev/loop0.
    pub device: PathBuf,
    _held: std::fs::File,
}

/// Attaches `file` read-only to a free loop device under `dev`. The device
/// detaches itself when its last user (the mount) goes away.
pub fn attach_read_only(dev: &Path, file: &Path) -> Result<Attached, Error> {
    let control = std::fs::File::open(dev.join("loop-control"))
        .map_err(io(format!("open {}/loop-control", dev.display())))?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
    let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    if n < 0 {
        return Err(io("find a free loop device".into())(
            std::io::Error::last_os_error(),
        ));
    }
    let device = dev.join(format!("loop{n}"));
    let backing = std::fs::File::open(file).map_err(io(format!("open {}", file.display())))?;
    let loop_dev = std::fs::OpenOptions::new()
        .read(true)
        .open(&device)
        .map_err(io(format!("open {}", device.display())))?;
    let mut config = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info: LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
            lo_file_name: [0; 64],
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        },
        reserved: [0; 8],
    };
    let name = file.as_os_str().as_encoded_bytes();
    let len = name.len().min(63);
    config.info.lo_file_name[..len].copy_from_slice(&name[..len]);
    // SAFETY: LOOP_CONFIGURE reads a struct loop_config that lives for the call.
    let rc = unsafe {
        libc::ioctl(
            loop_dev.as_raw_fd(),
            LOOP_CONFIGURE as _,
            &config as *const LoopConfig,
        )
    };
    if rc < 0 {
        return Err(io(format!(
            "attach {} to {}",
            file.display(),
            device.display()
        ))(std::io::Error::last_os_error()));
    }
    Ok(Attached {
        device,
        _held: loop_dev,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_structs_have_the_kernels_sizes() {
        assert_eq!(std::mem::size_of::<super::LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<super::LoopConfig>(), 304);
    }
}
