//! `cargo xtask images` and `cargo xtask lock`: system images from
//! `images/<name>/` and the Debian package lock. Not built yet.

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args)]
pub struct ImagesArgs {}

#[derive(Args)]
pub struct LockArgs {}

pub fn run(_args: &ImagesArgs) -> Result<()> {
    bail!("building system images is not implemented yet")
}

pub fn lock(_args: &LockArgs) -> Result<()> {
    bail!("refreshing the package lock is not implemented yet")
}
