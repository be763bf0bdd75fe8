//! A reserve of space on the state partition, so that a full disk does not
//! stop the boot.
//!
//! # Background
//!
//! Everything OxOS writes lives on the state partition: the system
//! engine's container records and writable layers, User Docker's data, the
//! config. When a user's container fills that partition, the next boot
//! cannot create the containers of its own services (console, network,
//! sshd): the machine would come up without a way in to free the space.
//!
//! # Design
//!
//! PID 1 keeps a file of [`RESERVE`] bytes, allocated on the disk
//! (`fallocate`), at [`PATH`]. At each boot, before the engine starts:
//!
//! - when the partition has less than [`LOW`] bytes available and the
//!   reserve is there, the reserve is deleted: the boot has its space back,
//!   and the console says that the state disk is full;
//! - when there is no reserve and at least [`RESERVE`] + 2 × [`LOW`] bytes
//!   are available, the reserve is made (again);
//! - on a state in memory (tmpfs: no state disk) there is no reserve, as it
//!   would only take memory.
//!
//! The reserve is not a quota: a container may still fill the disk while
//! the system runs. It only makes sure the next boot gets its services up.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use std::os::fd::AsRawFd;

use nix::sys::statfs::{statfs, FsType, Statfs, TMPFS_MAGIC};

/// ramfs (linux/magic.h), which nix and libc do not name.
const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);

/// The reserve file, on the state partition.
pub const PATH: &str = "/var/lib/rancher/.state-reserve";
/// Its size: what a boot needs to create its containers and write its logs,
/// with room to spare.
pub const RESERVE: u64 = 32 << 20;
/// Below this many available bytes the partition counts as full.
pub const LOW: u64 = 16 << 20;

/// What [`keep`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The state is in memory: no reserve.
    InMemory,
    /// The reserve is there and the disk has room.
    Kept,
    /// The reserve was made at this boot.
    Made,
    /// The disk was full: the reserve was deleted. The bytes available now.
    Released(u64),
    /// The disk is full and there is no reserve to release. The bytes
    /// available.
    Full(u64),
    /// There is no reserve and not enough room to make one yet.
    NoRoom(u64),
}

/// Bytes available to an unprivileged writer on the file system `fs`.
fn available(fs: &Statfs) -> u64 {
    fs.blocks_available() * fs.block_size() as u64
}

/// Keeps (or releases) the reserve at `path`; see the module docs.
pub fn keep(path: &Path) -> std::io::Result<Outcome> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    let fs = statfs(dir)?;
    if fs.filesystem_type() == TMPFS_MAGIC || fs.filesystem_type() == RAMFS_MAGIC {
        return Ok(Outcome::InMemory);
    }
    let free = available(&fs);
    let exists = path.exists();
    if exists && free < LOW {
        std::fs::remove_file(path)?;
        return Ok(Outcome::Released(available(&statfs(dir)?)));
    }
    if exists {
        return Ok(Outcome::Kept);
    }
    if free < LOW {
        return Ok(Outcome::Full(free));
    }
    if free < RESERVE + 2 * LOW {
        return Ok(Outcome::NoRoom(free));
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    if let Err(e) = nix::fcntl::fallocate(
        file.as_raw_fd(),
        nix::fcntl::FallocateFlags::empty(),
        0,
        RESERVE as i64,
    ) {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(e.into());
    }
    file.sync_all()?;
    Ok(Outcome::Made)
}

/// [`keep`] at boot, with what it did on the console.
pub fn at_boot() {
    const MIB: u64 = 1 << 20;
    match keep(Path::new(PATH)) {
        Ok(Outcome::Released(free)) => tracing::error!(
            "state disk is full: released the {} MiB reserve ({PATH}) so that the system \
             services can start; {} MiB are free now. Free space on it (du -sh /var/lib/docker \
             /var/lib/rancher /home), the reserve is made again at the next boot",
            RESERVE / MIB,
            free / MIB
        ),
        Ok(Outcome::Full(free)) => tracing::error!(
            "state disk is full ({} MiB free) and has no reserve left: services may fail to start",
            free / MIB
        ),
        Ok(Outcome::Made) => tracing::info!(
            "state disk: kept a reserve of {} MiB for a boot on a full disk ({PATH})",
            RESERVE / MIB
        ),
        Ok(Outcome::NoRoom(free)) => tracing::warn!(
            "state disk: only {} MiB free, no reserve kept for a boot on a full disk",
            free / MIB
        ),
        Ok(Outcome::Kept | Outcome::InMemory) => {}
        Err(e) => tracing::warn!("state disk reserve {PATH}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_a_tmpfs_no_reserve_is_made() {
        // /dev/shm is a tmpfs on every Linux this builds on.
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let path = dir.path().join("reserve");
        assert_eq!(keep(&path).unwrap(), Outcome::InMemory);
        assert!(!path.exists());
    }

    #[test]
    fn on_a_disk_with_room_the_reserve_is_made_then_kept() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("rancher/.state-reserve");
        match keep(&path).unwrap() {
            Outcome::Made => {
                use std::os::unix::fs::MetadataExt;
                let meta = std::fs::metadata(&path).unwrap();
                assert_eq!(meta.len(), RESERVE);
                // Allocated, not sparse.
                assert!(meta.blocks() * 512 >= RESERVE);
                assert_eq!(keep(&path).unwrap(), Outcome::Kept);
            }
            // A nearly full build machine: nothing to check here.
            Outcome::NoRoom(_) | Outcome::Full(_) => {}
            other => panic!("{other:?}"),
        }
    }
}
