//! `PUT /containers/{id}/archive?path=DIR`: a tar archive extracted into a
//! container's filesystem, as Docker does it.
//!
//! Docker resolves the destination, and every path of the archive, as the
//! container sees it: inside its root (an absolute symlink of the image,
//! such as `/var/run -> /run`, leads to the container's /run, never to the
//! host's), and through its volumes and bind mounts (a file put under a
//! volume lands in the volume). This module builds that view and extracts
//! into it:
//!
//! 1. A thread of its own unshares its mount namespace (and with it its
//!    root and working directory) and makes every mount in it private:
//!    nothing it mounts is seen by the engine or the host, and everything
//!    goes away with the thread.
//! 2. The container's root filesystem, there. A container that is not
//!    running gets its overlay mounted on its `rootfs` directory, as the
//!    shim mounts it at a start: the image's layers below, the container's
//!    `upper` on top. The kernel then does the copy-up, the whiteouts and
//!    the opaque directories; no code here interprets layers. A running
//!    container's overlay is already mounted there by its shim, in the
//!    engine's namespace, which the thread's copy shows; the files appear
//!    in the running container at once. A read-only root filesystem
//!    (`--read-only`) is read-only in this view too.
//! 3. The container's volumes and bind mounts, bound onto their
//!    destinations (resolved inside the root with `pathrs`, created when
//!    missing as a start creates them); read-only ones read-only.
//! 4. chroot into it. From there every path of the archive is resolved by
//!    the kernel as in the container, symlinks and `..` included, and
//!    cannot leave the root, also when the container's own processes
//!    change its files meanwhile. Each entry replaces what is at its path
//!    (a directory on a directory only gets the entry's mode and owner);
//!    missing parent directories are made with mode 0755, as Docker makes
//!    them. Modes, numeric owners and modification times come from the
//!    headers.
//!
//! Writing into `upper` directly, without the mount, was the other way: but
//! then the path would have to be resolved through every layer by hand
//! (symlinks, whiteouts, opaque directories), and a file under a volume
//! would land in the layer, hidden by the volume at the next start.
//!
//! The caller holds the container's `op` lock for the whole extraction, so
//! no start, stop or removal interleaves with it (a start would mount the
//! same `upper` a second time).
//!
//! Not done: the files the engine writes at each start (`/etc/hostname`,
//! `/etc/hosts`, `/etc/resolv.conf`, unless the container mounts its own)
//! are bound over the container's at the start, so writing them here has
//! no effect on the container; extended attributes are not restored.

use crate::engine::{Container, Engine};
use crate::error::{Error, Result};
use crate::record::{MountRecord, Status};
use crate::runconfig;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use runtime::protocol::Rootfs;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// How an archive is extracted (the request's query parameters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// `noOverwriteDirNonDir`: an archive entry that would replace a
    /// directory with a non-directory, or the other way round, is an error
    /// instead of a replacement.
    pub no_overwrite_dir_non_dir: bool,
}

impl Engine {
    /// `PUT /containers/{id}/archive?path=DIR`: extracts the tar archive
    /// `body` (uncompressed, gzip, xz or zstd) into `DIR` of the container,
    /// which must exist there and be a directory. Works on created,
    /// stopped and running containers.
    pub async fn put_archive(
        self: &Arc<Self>,
        name_or_id: &str,
        path: &str,
        options: PutOptions,
        body: impl Read + Send + 'static,
    ) -> Result<()> {
        let c = self.get(name_or_id)?;
        let dir = destination(path)?;
        let _op = c.op.lock().await;
        if c.is_removed() {
            return Err(Error::NotFound(format!("No such container: {name_or_id}")));
        }
        let job = self.job(&c, dir, options)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("put-archive".into())
            .spawn(move || {
                let _ = tx.send(job.run(body));
            })
            .map_err(|e| Error::internal("cannot start a thread for the extraction", e))?;
        rx.await.map_err(|_| {
            Error::Internal(format!(
                "the extraction into container {} ended without an answer",
                c.id
            ))
        })?
    }

    /// What the extracting thread needs, from the record (the caller holds
    /// the `op` lock).
    fn job(&self, c: &Container, dir: String, options: PutOptions) -> Result<Job> {
        let rec = c.snapshot();
        let name = rec.name.clone();
        let running = match rec.state.status {
            Status::Running => true,
            Status::Removing => {
                return Err(Error::Conflict(format!(
                    "container {name} is being removed"
                )))
            }
            Status::Created | Status::Exited | Status::Restarting | Status::Dead => false,
        };
        let target = c.dir.join("rootfs");
        let lower = if running {
            if !is_mount_point(&target) {
                return Err(Error::Conflict(format!(
                    "container {name} is running: its root filesystem is not mounted at {} where the engine can reach it",
                    target.display()
                )));
            }
            Vec::new()
        } else {
            // A shim killed before its cleanup may have left it mounted.
            runconfig::cleanup_rootfs(&c.dir);
            runconfig::ensure_mount_sources(&rec)?;
            self.images.layer_paths(&rec.image_id)?
        };
        Ok(Job {
            name,
            dir,
            running,
            rootfs: Rootfs {
                lower,
                upper: c.dir.join("upper"),
                work: c.dir.join("work"),
                target,
            },
            scratch: c.dir.clone(),
            read_only: rec.host_config.readonly_rootfs.unwrap_or(false),
            mounts: rec.mounts.clone(),
            options,
        })
    }
}

/// The `path` parameter as an absolute path in the container: empty or
/// with a NUL byte is a bad request; a relative path is taken from `/`.
fn destination(path: &str) -> Result<String> {
    if path.is_empty() {
        return Err(Error::InvalidArgument(
            "bad parameter: path cannot be empty".into(),
        ));
    }
    if path.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "bad parameter: path {path:?} contains a NUL byte"
        )));
    }
    Ok(if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    })
}

/// Whether something is mounted on `path` (its device differs from its
/// parent's). Read through the calling thread's own view, unlike
/// /proc/self/mountinfo, which shows the main thread's.
fn is_mount_point(path: &Path) -> bool {
    let parent = path.parent().unwrap_or(Path::new("/"));
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

/// One extraction, run by a thread of its own (see the module's docs).
struct Job {
    /// The container's name, for messages.
    name: String,
    /// Where to extract, absolute in the container.
    dir: String,
    /// Running: its shim has the root filesystem mounted already.
    running: bool,
    rootfs: Rootfs,
    /// The container's directory (for the overlay's helper directories).
    scratch: PathBuf,
    read_only: bool,
    mounts: Vec<MountRecord>,
    options: PutOptions,
}

impl Job {
    fn run(self, body: impl Read) -> Result<()> {
        use nix::sched::{unshare, CloneFlags};
        // CLONE_NEWNS implies CLONE_FS: the chroot and chdir below are
        // this thread's alone.
        unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS)
            .map_err(|e| Error::internal("cannot unshare the mount namespace", e))?;
        // The umask is this thread's too now: modes are the archive's, and
        // missing parents exactly 0755.
        nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| Error::internal("cannot make the mounts private", e))?;
        let target = &self.rootfs.target;
        if self.running {
            if !is_mount_point(target) {
                return Err(Error::Conflict(format!(
                    "container {} stopped during the extraction; try again",
                    self.name
                )));
            }
        } else {
            runtime::overlay::mount_rootfs(&self.rootfs, &self.scratch).map_err(|e| {
                Error::internal(
                    format!(
                        "cannot mount the root filesystem of container {}",
                        self.name
                    ),
                    e,
                )
            })?;
        }
        let result = self.extract_in(target, body);
        if !self.running {
            // The namespace goes with the thread anyway; unmounting now
            // releases the overlay before the caller may start the
            // container.
            let _ = umount2(target, MntFlags::MNT_DETACH);
        }
        result
    }

    /// Read-only view, volumes, chroot and extraction, on the mounted root.
    fn extract_in(&self, target: &Path, body: impl Read) -> Result<()> {
        if self.read_only {
            remount_read_only(target).map_err(|e| {
                Error::internal(
                    format!("cannot make the root of container {} read-only", self.name),
                    e,
                )
            })?;
        }
        for m in &self.mounts {
            bind(target, m).map_err(|e| {
                Error::Internal(format!(
                    "cannot mount {} on {} in container {}: {e}",
                    m.source, m.destination, self.name
                ))
            })?;
        }
        let real_root = std::fs::File::open("/")
            .map_err(|e| Error::internal("cannot open the real root", e))?;
        nix::unistd::chroot(target)
            .and_then(|()| nix::unistd::chdir("/"))
            .map_err(|e| Error::internal(format!("cannot enter {}", target.display()), e))?;
        let result = extract(&self.dir, body, self.options, &self.name);
        // Back out, so that the caller can unmount by path.
        let _ = nix::unistd::fchdir(real_root.as_raw_fd()).and_then(|()| nix::unistd::chroot("."));
        result
    }
}

/// Makes the mount at `path` read-only (in this namespace only).
fn remount_read_only(path: &Path) -> nix::Result<()> {
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
        None::<&str>,
    )
}

/// `/proc/self/fd/N` of a handle: mount(2) on it acts on the very inode
/// the handle was resolved to, whatever a path may point at meanwhile.
fn fd_path(handle: &impl AsFd) -> String {
    format!("/proc/self/fd/{}", handle.as_fd().as_raw_fd())
}

/// Binds a volume or bind mount of the container onto its destination in
/// the root at `root_dir`, as a start would: the destination resolved
/// inside the root and created when missing (a directory, or an empty
/// file for a file).
fn bind(root_dir: &Path, m: &MountRecord) -> std::result::Result<(), String> {
    use pathrs::{InodeType, Root};
    let pathrs_err = |e: pathrs::error::Error| e.to_string();
    let root = Root::open(root_dir).map_err(pathrs_err)?;
    let source = Path::new(&m.source);
    let is_dir = std::fs::metadata(source)
        .map_err(|e| e.to_string())?
        .is_dir();
    let dest = Path::new(&m.destination);
    let handle = if is_dir {
        root.mkdir_all(dest, &std::fs::Permissions::from_mode(0o755))
            .map_err(pathrs_err)?
    } else {
        match root.resolve(dest) {
            Ok(h) => h,
            Err(_) => {
                if let Some(parent) = dest.parent() {
                    root.mkdir_all(parent, &std::fs::Permissions::from_mode(0o755))
                        .map_err(pathrs_err)?;
                }
                root.create(
                    dest,
                    &InodeType::File(std::fs::Permissions::from_mode(0o644)),
                )
                .map_err(pathrs_err)?;
                root.resolve(dest).map_err(pathrs_err)?
            }
        }
    };
    mount(
        Some(source),
        fd_path(&handle).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| e.to_string())?;
    if m.read_only {
        // Resolved again: now it is the root of the new mount.
        let top = root.resolve(dest).map_err(pathrs_err)?;
        remount_read_only(Path::new(&fd_path(&top))).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Extracts `body` into `dir`, in the container's root (the caller has
/// chrooted into it).
fn extract(dir: &str, body: impl Read, options: PutOptions, name: &str) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::InvalidArgument(format!(
                "extraction point is not a directory: {dir} in container {name}"
            )))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(Error::NotFound(format!(
                "Could not find the file {dir} in container {name}"
            )))
        }
        Err(e) => return Err(Error::internal(format!("cannot open {dir}"), e)),
    }
    std::env::set_current_dir(dir)
        .map_err(|e| Error::internal(format!("cannot enter {dir}"), e))?;
    let bad_archive = |e: std::io::Error| Error::InvalidArgument(format!("invalid archive: {e}"));
    let reader = image_store::decompressing_reader(body).map_err(bad_archive)?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    for entry in archive.entries().map_err(bad_archive)? {
        let mut entry = entry.map_err(bad_archive)?;
        let path = entry.path().map_err(bad_archive)?.into_owned();
        let Some(rel) = relative(&path)? else {
            // The extraction directory itself: left as it is.
            continue;
        };
        unpack_entry(&mut entry, &rel, options).map_err(|e| match e {
            Unpack::Refused(msg) => Error::InvalidArgument(msg),
            Unpack::Io(e) if e.kind() == ErrorKind::ReadOnlyFilesystem => {
                Error::Forbidden(format!(
                "cannot extract {} into {dir} of container {name}: the file system is read-only",
                path.display()
            ))
            }
            Unpack::Io(e) => Error::Internal(format!(
                "cannot extract {} into {dir} of container {name}: {e}",
                path.display()
            )),
        })?;
    }
    Ok(())
}

/// An archive path made relative (leading `/` and `.` dropped); `None` for
/// the extraction directory itself. `..` is refused: an archive names what
/// is below the directory.
fn relative(path: &Path) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::InvalidArgument(format!(
                    "invalid archive: entry {} leads out of the extraction directory",
                    path.display()
                )))
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Why one entry could not be unpacked.
enum Unpack {
    /// The request's options refuse it.
    Refused(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for Unpack {
    fn from(e: std::io::Error) -> Self {
        Unpack::Io(e)
    }
}

/// Unpacks one entry at `rel` (relative to the working directory, the
/// extraction directory): missing parents made, what is in the way removed.
fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<R>,
    rel: &Path,
    options: PutOptions,
) -> std::result::Result<(), Unpack> {
    use tar::EntryType as T;
    let kind = entry.header().entry_type();
    if matches!(
        kind,
        T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
    ) {
        return Ok(());
    }
    if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    let want_dir = kind.is_dir();
    match std::fs::symlink_metadata(rel) {
        Ok(m) if m.is_dir() && want_dir => {}
        Ok(m) => {
            if options.no_overwrite_dir_non_dir && m.is_dir() != want_dir {
                let (what, with) = if m.is_dir() {
                    ("directory", "non-directory")
                } else {
                    ("non-directory", "directory")
                };
                return Err(Unpack::Refused(format!(
                    "cannot overwrite {what} {} with {with}",
                    rel.display()
                )));
            }
            if m.is_dir() {
                std::fs::remove_dir_all(rel)?;
            } else {
                std::fs::remove_file(rel)?;
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    match kind {
        T::Link => {
            let target = entry
                .link_name()?
                .ok_or_else(|| std::io::Error::other("a hard link without a target"))?;
            let target = relative(&target).ok().flatten().ok_or_else(|| {
                std::io::Error::other(format!(
                    "hard link to {} outside the extraction directory",
                    target.display()
                ))
            })?;
            std::fs::hard_link(target, rel)?;
        }
        T::Char | T::Block | T::Fifo => {
            use nix::sys::stat::{makedev, mknod, Mode, SFlag};
            let h = entry.header();
            let mode = h.mode()? & 0o7777;
            let flag = match kind {
                T::Char => SFlag::S_IFCHR,
                T::Block => SFlag::S_IFBLK,
                _ => SFlag::S_IFIFO,
            };
            let dev = makedev(
                u64::from(h.device_major()?.unwrap_or(0)),
                u64::from(h.device_minor()?.unwrap_or(0)),
            );
            mknod(rel, flag, Mode::from_bits_truncate(mode), dev).map_err(std::io::Error::from)?;
            let id = |v: u64| u32::try_from(v).map_err(std::io::Error::other);
            std::os::unix::fs::lchown(rel, Some(id(h.uid()?)?), Some(id(h.gid()?)?))?;
            std::fs::set_permissions(rel, std::fs::Permissions::from_mode(mode))?;
        }
        _ => {
            entry.unpack(rel)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_absolute_and_not_empty() {
        assert_eq!(destination("/etc").unwrap(), "/etc");
        assert_eq!(destination("etc").unwrap(), "/etc");
        assert_eq!(destination("").unwrap_err().status(), 400);
        assert_eq!(destination("/a\0b").unwrap_err().status(), 400);
    }

    #[test]
    fn archive_paths_stay_below_the_directory() {
        let rel = |p: &str| relative(Path::new(p));
        assert_eq!(rel("./a/b").unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(rel("/a//b/").unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(rel("./").unwrap(), None);
        assert_eq!(rel("a/../../b").unwrap_err().status(), 400);
    }
}
