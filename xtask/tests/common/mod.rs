//! What the end-to-end tests share: where the build's artefacts are, and a
//! writable copy-on-write view of the installed disk.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The build's `dist/`.
pub fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist")
}

/// A qcow2 overlay of dist/oxos.qcow2 in `dir`: the guest writes there, so
/// the built disk stays pristine for every other test, and the overlay
/// keeps a test's writes across its own reboots.
pub fn disk_overlay(dir: &Path) -> PathBuf {
    let overlay = dir.join("disk.qcow2");
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(dist().join("oxos.qcow2").canonicalize().unwrap())
        .arg(&overlay)
        .status()
        .unwrap();
    assert!(status.success(), "qemu-img create failed");
    overlay
}
