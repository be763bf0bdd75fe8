//! What the end-to-end tests share: where the build's artefacts are, and
//! the console line that shows OxOS's own code has started.

use std::path::{Path, PathBuf};

/// The build's `dist/`.
pub fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist")
}

/// What ros's stage 1 logs first on the serial console: before it, only the
/// firmware, the kernel and QEMU have run (a boot that ends earlier is
/// tried once more).
pub const STAGE1_STARTED: &str = "starting on Linux";
