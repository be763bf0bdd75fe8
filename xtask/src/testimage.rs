//! The busybox test image, from the workspace's test image kit (built from
//! the host's /bin/busybox, no network).

use anyhow::{ensure, Result};
use std::path::Path;

fn check_busybox() -> Result<()> {
    // testkit panics on a missing busybox (it is a test crate); say it here
    // as an error instead.
    ensure!(
        Path::new(testkit::BUSYBOX).is_file(),
        "{} is missing: install busybox-static (cargo xtask test does)",
        testkit::BUSYBOX
    );
    Ok(())
}

/// A docker-archive (`docker save` form, gzip layers) of the busybox image
/// tagged `tag`.
pub fn busybox_docker_archive(tag: &str) -> Result<Vec<u8>> {
    check_busybox()?;
    Ok(testkit::DockerArchive::new()
        .image(&testkit::TestImage::busybox(), &[tag])
        .compression(testkit::Compression::Gzip)
        .build())
}

/// The busybox root filesystem as one uncompressed layer tar.
pub fn busybox_rootfs_tar() -> Result<Vec<u8>> {
    check_busybox()?;
    Ok(testkit::busybox_rootfs_tar())
}
