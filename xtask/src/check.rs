//! Static checks: formatting and clippy, as `.ci/run` runs them.

use crate::cmd::{cargo, run_step};
use anyhow::Result;

/// `cargo fmt --all -- --check`.
pub fn fmt_check() -> Result<()> {
    run_step(
        "format check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )
}

/// `cargo clippy --workspace --all-targets -- -D warnings`.
pub fn lint() -> Result<()> {
    run_step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )
}
