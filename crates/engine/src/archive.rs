//! `/containers/{id}/archive`, the API of `docker cp`: `PUT ?path=DIR`
//! extracts a tar archive into a container's filesystem, `HEAD ?path=PATH`
//! says what is at a path ([`PathStat`]) and `GET ?path=PATH` streams a tar
//! archive of it, as Docker does them.
//!
//! Docker resolves the paths, and every path of an archive, as the
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
//! 4. chroot into it. A `HEAD` or `GET` reads from there (a thread of its
//!    own, holding the container's `op` lock until the archive is sent);
//!    for a `PUT`, every path of the archive is resolved by
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
//! The files the engine writes at each start (`/etc/hostname`,
//! `/etc/hosts`, `/etc/resolv.conf`, unless the container mounts its own)
//! are bound in the view as a start binds them, once the container has
//! started: `GET` reads them as the container sees them, and a `PUT` that
//! would replace one fails as at Docker (a mount point cannot be removed).
//!
//! `copyUIDGID` gives every extracted entry the container's user (looked up
//! in the container's own `/etc/passwd`, where Docker looks in the host's).
//!
//! Not done: extended attributes are neither restored nor archived.

use crate::engine::{Container, Engine};
use crate::error::{Error, Result};
use crate::record::{MountRecord, Status};
use crate::runconfig;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use runtime::protocol::Rootfs;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// How an archive is extracted (the request's query parameters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// `noOverwriteDirNonDir`: an archive entry that would replace a
    /// directory with a non-directory, or the other way round, is an error
    /// instead of a replacement.
    pub no_overwrite_dir_non_dir: bool,
    /// `copyUIDGID` (`docker cp -a`): when the container has a user
    /// (`--user` or the image's `USER`), every extracted entry belongs to
    /// that user and its primary group; without one, the archive's owners
    /// are kept, as they are without the option.
    pub copy_uid_gid: bool,
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
        // Every error is answered only once the body has been read to its
        // end: an answer sent while the client is still writing the archive
        // closes the connection under it, and `docker cp` would report a
        // broken pipe instead of the error.
        let (c, dir) = match self
            .get(name_or_id)
            .and_then(|c| Ok((c, destination(path)?)))
        {
            Ok(found) => found,
            Err(e) => return Err(drained(body, e).await),
        };
        let _op = c.op.lock().await;
        let view = match self.view(&c, name_or_id) {
            Ok(view) => view,
            Err(e) => return Err(drained(body, e).await),
        };
        let user = if options.copy_uid_gid {
            self.user_of(&c)
        } else {
            String::new()
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("put-archive".into())
            .spawn(move || {
                let mut body = body;
                let name = view.name.clone();
                let result = view.enter(true, || {
                    let owner = owner_of_user(&user, &name)?;
                    extract(&dir, &mut body, options, owner, &name)
                });
                // After an error, what the client still sends (see above).
                let _ = std::io::copy(&mut body, &mut std::io::sink());
                let _ = tx.send(result);
            })
            .map_err(|e| Error::internal("cannot start a thread for the extraction", e))?;
        rx.await.map_err(|_| {
            Error::Internal(format!(
                "the extraction into container {} ended without an answer",
                c.id
            ))
        })?
    }

    /// `HEAD /containers/{id}/archive?path=PATH`: what is at `PATH` in the
    /// container, as `docker cp` asks before it copies (see [`PathStat`]).
    pub async fn stat_path(self: &Arc<Self>, name_or_id: &str, path: &str) -> Result<PathStat> {
        let (stat, _) = self.read_path(name_or_id, path, false).await?;
        Ok(stat)
    }

    /// `GET /containers/{id}/archive?path=PATH`: what is at `PATH` and a
    /// tar archive of it, streamed: a directory's entries are under the
    /// directory's name (`etc/`, `etc/hostname`, ...), a file or a symlink
    /// (not followed) is one entry named as the file. The archive is made
    /// while it is read; an error on the way ends the stream with that
    /// error, never with a shorter archive that looks complete.
    pub async fn get_archive(
        self: &Arc<Self>,
        name_or_id: &str,
        path: &str,
    ) -> Result<(PathStat, ArchiveStream)> {
        self.read_path(name_or_id, path, true).await
    }

    /// Stats `path` in the container's view and, with `archive`, streams it.
    /// One thread does both in the view; it holds the container's `op`
    /// lock until the archive is written (a start would otherwise mount the
    /// overlay of a stopped container a second time).
    async fn read_path(
        self: &Arc<Self>,
        name_or_id: &str,
        path: &str,
        archive: bool,
    ) -> Result<(PathStat, ArchiveStream)> {
        let c = self.get(name_or_id)?;
        let abs = clean(&destination(path)?);
        let engine = Arc::clone(self);
        let wanted = name_or_id.to_string();
        let (stat_tx, stat_rx) = tokio::sync::oneshot::channel();
        let (data_tx, data_rx) = tokio::sync::mpsc::channel(8);
        std::thread::Builder::new()
            .name("get-archive".into())
            .spawn(move || {
                let _op = c.op.blocking_lock();
                let view = match engine.view(&c, &wanted) {
                    Ok(view) => view,
                    Err(e) => {
                        let _ = stat_tx.send(Err(e));
                        return;
                    }
                };
                let name = view.name.clone();
                let mut stat_tx = Some(stat_tx);
                let result = view.enter(false, || {
                    let stat = PathStat::of(&abs, &name)?;
                    let is_dir = stat.is_dir();
                    if let Some(tx) = stat_tx.take() {
                        let _ = tx.send(Ok(stat));
                    }
                    if archive {
                        write_archive(&abs, is_dir, &name, data_tx);
                    }
                    Ok(())
                });
                if let (Err(e), Some(tx)) = (result, stat_tx) {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(|e| Error::internal("cannot start a thread to read the container", e))?;
        let stat = match stat_rx.await {
            Ok(stat) => stat?,
            Err(_) => {
                return Err(Error::Internal(format!(
                    "reading {path} in container {name_or_id} ended without an answer"
                )))
            }
        };
        Ok((stat, data_rx))
    }

    /// The user the container's processes run as (`--user`, else the
    /// image's `USER`; empty for root), as a start resolves it.
    fn user_of(&self, c: &Container) -> String {
        let rec = c.snapshot();
        if let Some(user) = rec.config.user.filter(|u| !u.is_empty()) {
            return user;
        }
        self.images
            .get(&rec.image_id)
            .ok()
            .and_then(|image| image.config.config.user)
            .unwrap_or_default()
    }

    /// The container's files as it sees them, to be entered by a thread of
    /// its own (the caller holds the `op` lock). A container removed since
    /// the caller found it is not found, by the name the client `asked`.
    fn view(&self, c: &Container, asked: &str) -> Result<View> {
        if c.is_removed() {
            return Err(Error::NotFound(format!("No such container: {asked}")));
        }
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
        // The files a start writes and binds over the image's (unless the
        // container mounts its own), as the container last saw them.
        let mut mounts: Vec<MountRecord> = runconfig::PER_START_FILES
            .iter()
            .filter_map(|file| {
                let destination = format!("/etc/{file}");
                let source = c.dir.join(file);
                let own = rec.mounts.iter().any(|m| m.destination == destination);
                (!own && source.is_file()).then(|| MountRecord {
                    kind: "bind".into(),
                    source: source.to_string_lossy().into_owned(),
                    destination,
                    ..MountRecord::default()
                })
            })
            .collect();
        mounts.extend(rec.mounts.iter().cloned());
        Ok(View {
            name,
            running,
            rootfs: Rootfs {
                lower,
                upper: c.dir.join("upper"),
                work: c.dir.join("work"),
                target,
            },
            scratch: c.dir.clone(),
            read_only: rec.host_config.readonly_rootfs.unwrap_or(false),
            mounts,
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

/// What `docker cp` learns of a path in a container before it copies: the
/// `X-Docker-Container-Path-Stat` header of `HEAD` and `GET
/// /containers/{id}/archive`, this as JSON in base64. The last component
/// of the path is not followed when it is a symlink (a trailing `/` makes
/// the kernel follow it); the symlink's target is then given fully
/// resolved in the container (`linkTarget`), which `docker cp -L` copies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PathStat {
    /// The path's last component, as Go's `filepath.Base` gives it.
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode` bits (see [`go_file_mode`]), as Docker sends them.
    pub mode: u32,
    /// RFC 3339 with nanoseconds, in UTC.
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// Go's `os.ModeDir`.
const GO_MODE_DIR: u32 = 1 << 31;

impl PathStat {
    /// The stat of `abs`, read in the container's view (the caller has
    /// chrooted into it); `container` names it in messages.
    fn of(abs: &str, container: &str) -> Result<Self> {
        let meta = std::fs::symlink_metadata(abs).map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::NotFound(format!(
                "Could not find the file {abs} in container {container}"
            )),
            ErrorKind::NotADirectory => Error::InvalidArgument(format!(
                "{abs} in container {container}: a path component is not a directory"
            )),
            _ => Error::internal(format!("cannot stat {abs} in container {container}"), e),
        })?;
        let link_target = if meta.file_type().is_symlink() {
            // Resolved inside the chroot, so inside the container; a link
            // that leads nowhere is given as it reads.
            std::fs::canonicalize(abs)
                .or_else(|_| std::fs::read_link(abs))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let mtime = chrono::DateTime::from_timestamp(meta.mtime(), meta.mtime_nsec() as u32)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        Ok(PathStat {
            name: go_base(abs),
            size: meta.size() as i64,
            mode: go_file_mode(meta.mode()),
            mtime,
            link_target,
        })
    }

    pub fn is_dir(&self) -> bool {
        self.mode & GO_MODE_DIR != 0
    }

    /// The value of the `X-Docker-Container-Path-Stat` header.
    pub fn header_value(&self) -> String {
        use base64::Engine as _;
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(json)
    }
}

/// A Unix `st_mode` as Go's `os.FileMode`: the permission bits, and the
/// type and special bits moved to Go's own places, which the docker CLI
/// reads (`IsDir`, `ModeSymlink`).
pub fn go_file_mode(st_mode: u32) -> u32 {
    const SYMLINK: u32 = 1 << 27;
    const DEVICE: u32 = 1 << 26;
    const NAMED_PIPE: u32 = 1 << 25;
    const SOCKET: u32 = 1 << 24;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const CHAR_DEVICE: u32 = 1 << 21;
    const STICKY: u32 = 1 << 20;
    let kind = match st_mode & libc::S_IFMT {
        libc::S_IFDIR => GO_MODE_DIR,
        libc::S_IFLNK => SYMLINK,
        libc::S_IFBLK => DEVICE,
        libc::S_IFCHR => DEVICE | CHAR_DEVICE,
        libc::S_IFIFO => NAMED_PIPE,
        libc::S_IFSOCK => SOCKET,
        _ => 0,
    };
    let special = [
        (libc::S_ISUID, SETUID),
        (libc::S_ISGID, SETGID),
        (libc::S_ISVTX, STICKY),
    ]
    .iter()
    .filter(|(bit, _)| st_mode & bit != 0)
    .fold(0, |acc, (_, go)| acc | go);
    kind | special | (st_mode & 0o777)
}

/// Go's `filepath.Base`: the last component, trailing slashes ignored;
/// `/` for the root, `.` for `DIR/.`.
fn go_base(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

/// The archive of a `GET /containers/{id}/archive`, as it is made: chunks,
/// or the error that ended it.
pub type ArchiveStream = tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>;

/// A writer that hands what it is given to the response, a chunk at a time
/// (the channel is bounded: a slow reader slows the archiving down).
struct ChannelWriter(tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes the tar archive of `abs` (in the container's view; the caller
/// has chrooted into it) to `tx`, as Docker names its entries: under the
/// path's last component, so that `docker cp` can rename them (`etc/...`
/// for `/etc`, `./...` for `/etc/.`; the root's entries under no name).
/// An error ends the stream with it, so the client sees a failed copy, not
/// a short archive.
fn write_archive(
    abs: &str,
    is_dir: bool,
    container: &str,
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
) {
    let base = go_base(abs);
    let name = if base == "/" { String::new() } else { base };
    let result = (|| {
        let writer = std::io::BufWriter::with_capacity(64 * 1024, ChannelWriter(tx.clone()));
        let mut builder = tar::Builder::new(writer);
        append_tree(&mut builder, Path::new(abs), &name, is_dir)?;
        builder.into_inner()?.flush()
    })();
    if let Err(e) = result {
        if e.kind() == ErrorKind::BrokenPipe {
            return;
        }
        tracing::warn!("archive of {abs} in container {container}: {e}");
        let _ = tx.blocking_send(Err(std::io::Error::new(
            e.kind(),
            format!("archive of {abs} in container {container}: {e}"),
        )));
    }
}

/// Appends `path` as `name`, and a directory's contents below it (in name
/// order, symlinks not followed). Sockets are left out: tar has no type
/// for them (Docker leaves them out too). Hard links are archived as
/// separate copies.
fn append_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &str,
    top_is_dir: bool,
) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    let kind = meta.file_type();
    // A trailing `/` on the requested path follows a symlink: the stat
    // said directory, and so must the walk (symlink_metadata of "link/"
    // follows it too).
    let is_dir = kind.is_dir() || (top_is_dir && kind.is_symlink());
    if kind.is_socket() {
        return Ok(());
    }
    if !name.is_empty() {
        append_entry(builder, path, &meta, name, is_dir)?;
    }
    if is_dir {
        let mut children = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<Vec<_>>>()?;
        children.sort();
        for child in children {
            let child_name = child.to_string_lossy();
            let child_name = if name.is_empty() {
                child_name.into_owned()
            } else {
                format!("{name}/{child_name}")
            };
            append_tree(builder, &path.join(&child), &child_name, false)?;
        }
    }
    Ok(())
}

/// One entry: a header from `meta` (type, mode, owner, time, a device's
/// numbers) with `name` written as it is, and a regular file's contents.
///
/// The name is written here, not with the tar crate's path setters: those
/// drop `.` components, and `docker cp CONTAINER:DIR/. NEW` renames
/// entries by replacing their leading `.`. Names and link targets longer
/// than the header's 100 bytes go before it in GNU long-name entries, as
/// the crate itself writes them.
fn append_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    meta: &std::fs::Metadata,
    name: &str,
    is_dir: bool,
) -> std::io::Result<()> {
    use tar::{EntryType, Header, HeaderMode};
    let mut header = Header::new_gnu();
    header.set_metadata_in_mode(meta, HeaderMode::Complete);
    header.set_mode(meta.mode() & 0o7777);
    let mut name = name.as_bytes().to_vec();
    if is_dir {
        header.set_entry_type(EntryType::Directory);
        header.set_size(0);
        name.push(b'/');
    }
    let kind = meta.file_type();
    if kind.is_block_device() || kind.is_char_device() {
        let rdev = meta.rdev();
        header.set_device_major(libc::major(rdev))?;
        header.set_device_minor(libc::minor(rdev))?;
    }
    if kind.is_symlink() && !is_dir {
        let target = std::fs::read_link(path)?;
        let target = target.as_os_str().as_encoded_bytes();
        if target.len() > 100 {
            append_long_name(builder, EntryType::GNULongLink, target)?;
        }
        let field = &mut header.as_old_mut().linkname;
        let n = target.len().min(field.len());
        field[..n].copy_from_slice(&target[..n]);
    }
    if name.len() > 100 {
        append_long_name(builder, EntryType::GNULongName, &name)?;
    }
    let field = &mut header.as_old_mut().name;
    let n = name.len().min(field.len());
    field[..n].copy_from_slice(&name[..n]);
    header.set_cksum();
    if kind.is_file() {
        builder.append(&header, std::fs::File::open(path)?)
    } else {
        builder.append(&header, std::io::empty())
    }
}

/// A GNU long name (`L`) or long link target (`K`) entry, NUL-terminated.
fn append_long_name<W: Write>(
    builder: &mut tar::Builder<W>,
    kind: tar::EntryType,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(bytes.len() as u64 + 1);
    header.set_entry_type(kind);
    header.set_cksum();
    builder.append(&header, bytes.chain(&[0u8][..]))
}

/// `path` (absolute) cleaned as Docker cleans the path of `GET` and
/// `HEAD` (`filepath.Clean`, keeping a trailing `/` or `/.`): `.` and
/// empty components dropped, `..` taken lexically (`/etc/..` is `/`), so
/// that the entries' names never hold `..`.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if path.ends_with("/.") {
        if !out.ends_with('/') {
            out.push('/');
        }
        out.push('.');
    } else if path.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    }
    out
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

/// A container's files as the container sees them (see the module's docs),
/// entered by the thread that reads or writes them.
struct View {
    /// The container's name, for messages.
    name: String,
    /// Running: its shim has the root filesystem mounted already.
    running: bool,
    rootfs: Rootfs,
    /// The container's directory (for the overlay's helper directories).
    scratch: PathBuf,
    read_only: bool,
    mounts: Vec<MountRecord>,
}

impl View {
    /// Runs `work` in the view: this thread's own mount namespace with the
    /// container's root, volumes and bind mounts, chrooted into it. With
    /// `writing`, the umask is 0 (modes are the archive's, missing parents
    /// exactly 0755). The thread should end after it: its mount namespace,
    /// root and working directory stay the view's.
    fn enter<T>(self, writing: bool, work: impl FnOnce() -> Result<T>) -> Result<T> {
        use nix::sched::{unshare, CloneFlags};
        // CLONE_NEWNS implies CLONE_FS: the chroot and chdir below are
        // this thread's alone.
        unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS)
            .map_err(|e| Error::internal("cannot unshare the mount namespace", e))?;
        if writing {
            nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        }
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
                    "container {} stopped meanwhile; try again",
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
        let result = self.work_in(target, work);
        if !self.running {
            // The namespace goes with the thread anyway; unmounting now
            // releases the overlay before the caller may start the
            // container.
            let _ = umount2(target, MntFlags::MNT_DETACH);
        }
        result
    }

    /// Read-only view, volumes, chroot and `work`, on the mounted root.
    fn work_in<T>(&self, target: &Path, work: impl FnOnce() -> Result<T>) -> Result<T> {
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
        let result = work();
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

/// Reads the rest of a request's `body` (on a blocking thread) and gives
/// back `e`, the answer to send once the client has written everything.
async fn drained(body: impl Read + Send + 'static, e: Error) -> Error {
    let _ = tokio::task::spawn_blocking(move || {
        let mut body = body;
        std::io::copy(&mut body, &mut std::io::sink())
    })
    .await;
    e
}

/// The uid and gid that extracted entries get for `copyUIDGID`: `user`
/// resolved in the container's `/etc/passwd` and `/etc/group` (the caller
/// has chrooted into its root); `None` for no user (the archive's owners).
///
/// Docker looks the name up in the host's files instead, which names a
/// different user or none; the container's files are the ones that say who
/// its user is.
fn owner_of_user(user: &str, container: &str) -> Result<Option<(u32, u32)>> {
    if user.is_empty() {
        return Ok(None);
    }
    let who = runtime::user::resolve_in_root(Path::new("/"), user).map_err(|e| {
        Error::InvalidArgument(format!(
            "cannot give the copied files to user {user:?} of container {container}: {e}"
        ))
    })?;
    Ok(Some((who.uid, who.gid)))
}

/// Extracts `body` into `dir`, in the container's root (the caller has
/// chrooted into it); with `owner`, every entry gets that uid and gid.
fn extract(
    dir: &str,
    body: impl Read,
    options: PutOptions,
    owner: Option<(u32, u32)>,
    name: &str,
) -> Result<()> {
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
        unpack_entry(&mut entry, &rel, options, owner).map_err(|e| match e {
            Unpack::Refused(msg) => Error::InvalidArgument(msg),
            Unpack::Io(e) if e.kind() == ErrorKind::ReadOnlyFilesystem => {
                Error::Forbidden(format!(
                "cannot extract {} into {dir} of container {name}: the file system is read-only",
                path.display()
            ))
            }
            Unpack::Io(e) if e.raw_os_error() == Some(libc::EBUSY) => Error::Conflict(format!(
                "cannot extract {} into {dir} of container {name}: it would replace a mount \
                     point (a volume, a bind mount, or a file the engine writes at each start: \
                     /etc/hostname, /etc/hosts, /etc/resolv.conf; mount your own with -v to \
                     choose its contents)",
                path.display()
            )),
            Unpack::Io(e) => Error::Internal(format!(
                "cannot extract {} into {dir} of container {name}: {e}",
                path.display()
            )),
        })?;
    }
    // The reader stops at the archive's end-of-archive blocks; a client
    // may send more (padding to a record) and is still writing it. Read to
    // the end, or the response would close the connection under the
    // client's write (a "broken pipe" at `docker cp`, the copy done).
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(bad_archive)?;
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
/// extraction directory): missing parents made, what is in the way removed;
/// with `owner`, given that uid and gid instead of the header's.
fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<R>,
    rel: &Path,
    options: PutOptions,
    owner: Option<(u32, u32)>,
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
    // A hard link shares the inode of its target, which has its owner.
    if let (Some((uid, gid)), false) = (owner, kind == T::Link) {
        std::os::unix::fs::lchown(rel, Some(uid), Some(gid))?;
        // A chown clears the set-id bits: the header's mode again, as it
        // was set after the header's owner.
        if kind != T::Symlink {
            let mode = entry.header().mode()? & 0o7777;
            std::fs::set_permissions(rel, std::fs::Permissions::from_mode(mode))?;
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
    fn unix_modes_become_gos_file_modes() {
        // The bits the docker CLI tests: ModeDir (1 << 31), ModeSymlink
        // (1 << 27); permissions stay in the low bits.
        assert_eq!(go_file_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(libc::S_IFREG | 0o640), 0o640);
        assert_eq!(go_file_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
        assert_eq!(
            go_file_mode(libc::S_IFCHR | 0o666),
            (1 << 26) | (1 << 21) | 0o666
        );
        assert_eq!(
            go_file_mode(libc::S_IFREG | libc::S_ISUID | 0o755),
            (1 << 23) | 0o755
        );
        assert_eq!(
            go_file_mode(libc::S_IFDIR | libc::S_ISVTX | 0o777),
            (1 << 31) | (1 << 20) | 0o777
        );
    }

    #[test]
    fn paths_are_cleaned_keeping_a_trailing_slash_or_dot() {
        assert_eq!(clean("/etc/hostname"), "/etc/hostname");
        assert_eq!(clean("/etc//./hostname"), "/etc/hostname");
        assert_eq!(clean("/etc/.."), "/");
        assert_eq!(clean("/../../etc"), "/etc");
        assert_eq!(clean("/etc/"), "/etc/");
        assert_eq!(clean("/etc/."), "/etc/.");
        assert_eq!(clean("/."), "/.");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("/etc/sub/.."), "/etc");
    }

    #[test]
    fn names_are_gos_base_of_the_path() {
        assert_eq!(go_base("/etc/hostname"), "hostname");
        assert_eq!(go_base("/etc/"), "etc");
        assert_eq!(go_base("/etc/."), ".");
        assert_eq!(go_base("/"), "/");
        assert_eq!(go_base("//"), "/");
    }

    #[test]
    fn the_stat_header_is_base64_json_with_dockers_keys() {
        use base64::Engine as _;
        let stat = PathStat {
            name: "link".into(),
            size: 15,
            mode: (1 << 27) | 0o777,
            mtime: "2026-11-24T11:11:08.5Z".into(),
            link_target: "/data/dir/a.txt".into(),
        };
        let json = base64::engine::general_purpose::STANDARD
            .decode(stat.header_value())
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&json).unwrap(),
            serde_json::json!({
                "name": "link", "size": 15, "mode": 134218239u32,
                "mtime": "2026-11-24T11:11:08.5Z", "linkTarget": "/data/dir/a.txt"
            })
        );
        assert!(!stat.is_dir());
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
