//! What the end-to-end tests share: where the build's artefacts are.

use std::path::{Path, PathBuf};

/// The build's `dist/`.
pub fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist")
}
