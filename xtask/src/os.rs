//! `cargo xtask boot`: build the OxOS image and boot it in QEMU.
//!
//! The boot is two steps that will also be reachable on their own: [`build`]
//! (kernel, initrd, system images, ISO and disk image into `dist/`) and [`run`]
//! (QEMU with `-accel tcg` and user networking restricted to 127.0.0.1, see
//! the design). Today only the `ros` binary exists, so [`build`] builds it in
//! release mode and then stops with a plain "not built yet" error: what exists
//! is built, and nothing pretends to boot.

use crate::cmd::{cargo, run_step, target_dir};
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct BootArgs {}

#[derive(Args)]
pub struct BuildArgs {}

#[derive(Args)]
pub struct RunArgs {}

pub fn build_cmd(_args: &BuildArgs) -> Result<()> {
    build().map(|_| ())
}

pub fn run_cmd(_args: &RunArgs) -> Result<()> {
    bail!("the QEMU boot is not implemented yet: there is no OS image in dist/ to boot")
}

/// What [`build`] produces, for [`run`].
pub struct Artifacts {
    pub ros: PathBuf,
}

pub fn boot(_args: &BootArgs) -> Result<()> {
    let artifacts = build()?;
    run(&artifacts)
}

/// Builds everything the OS is made of.
pub fn build() -> Result<Artifacts> {
    run_step(
        "release build of ros",
        cargo().args(["build", "--release", "--package", "ros"]),
    )?;
    let ros = target_dir().join("release/ros");
    eprintln!("xtask: built {}", ros.display());
    bail!(
        "the OxOS image build is not implemented yet: the image build and QEMU boot are \
         not built yet (the ros binary was built: {})",
        ros.display()
    )
}

/// Boots the built image in QEMU.
pub fn run(artifacts: &Artifacts) -> Result<()> {
    bail!(
        "the QEMU boot is not implemented yet: the image build and QEMU boot are not built \
         yet (nothing to boot {} in)",
        artifacts.ros.display()
    )
}
