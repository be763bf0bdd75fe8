//! `cp`: files between a container and the local file system, as `docker cp`
//! copies them.
//!
//! The engine's side is `/containers/{id}/archive`: `HEAD` says what is at a
//! path, `GET` sends a tar archive of it (entries under the path's last
//! component, `./` for `DIR/.`), `PUT` extracts a tar archive into a
//! directory. What is left here is docker's naming rules:
//!
//! | source | destination | result |
//! | --- | --- | --- |
//! | a file | missing | the file, at the destination's name |
//! | a file | a file | that file overwritten |
//! | a file | a directory | the file inside it, under its own name |
//! | a file | missing, ending in `/` | an error (no such directory) |
//! | a directory | missing | a copy of it at the destination's name |
//! | a directory | a file | an error |
//! | a directory | a directory | a copy of it inside, under its own name |
//! | `DIR/.` | a directory | its contents, inside |
//!
//! `-` as the destination writes the tar archive to standard output; as the
//! source, it reads one from standard input and extracts it into the
//! container's directory. A symlink is copied as a link; `-L` copies what
//! the source symlink points at (under the link's name).
//!
//! Going into a container, the archive is made in a temporary file first,
//! so that a local file that cannot be read stops the copy before the
//! container is touched; its entries belong to root (0:0) unless `-a`
//! keeps the local owners and asks the engine for `copyUIDGID`, which
//! gives them to the container's user when it has one. Coming
//! out, the archive is extracted as it arrives; files get the modes and
//! times of the container's, and the owner running the command.

use std::fs;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use bollard::query_parameters::{
    ContainerArchiveInfoOptions, DownloadFromContainerOptions, UploadToContainerOptions,
};
use futures_util::StreamExt;

use crate::cli::CpArgs;
use crate::client::Engine;
use crate::error::{Error, Result};

/// One side of a copy, as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `CONTAINER:PATH`.
    Container { container: String, path: String },
    /// A local path, or `-` for standard input or output.
    Local(String),
}

impl Location {
    /// Docker's reading: a path that starts with `/` (or `.`) is local even
    /// with a `:` in it; otherwise `NAME:PATH` names a container's path.
    pub fn parse(arg: &str) -> Location {
        if arg.starts_with('/') || arg.starts_with('.') {
            return Location::Local(arg.to_string());
        }
        match arg.split_once(':') {
            Some((container, path)) if !container.is_empty() => Location::Container {
                container: container.to_string(),
                path: path.to_string(),
            },
            _ => Location::Local(arg.to_string()),
        }
    }
}

/// What the engine said is at a path in a container.
struct Stat {
    /// The name the engine gives the path (its last component, after
    /// cleaning: `etc` for `/etc/sub/..`, `.` for `DIR/.`, `/` for the
    /// root), under which it names the archive's entries.
    name: String,
    is_dir: bool,
    is_symlink: bool,
    link_target: String,
}

/// `cp`.
pub async fn cp(engine: &Engine, args: CpArgs) -> Result<i32> {
    match (Location::parse(&args.src), Location::parse(&args.dest)) {
        (Location::Container { .. }, Location::Container { .. }) => Err(Error::Usage(
            "copying between containers is not supported".into(),
        )),
        (Location::Local(_), Location::Local(_)) => Err(Error::Usage(
            "must specify at least one container source (CONTAINER:PATH)".into(),
        )),
        (Location::Container { container, path }, Location::Local(dest)) => {
            from_container(engine, &args, &container, &path, &dest).await
        }
        (Location::Local(src), Location::Container { container, path }) => {
            into_container(engine, &args, &src, &container, &path).await
        }
    }
}

/// `HEAD /containers/{id}/archive`: `None` when nothing is at `path`.
async fn stat(engine: &Engine, container: &str, path: &str) -> Result<Option<Stat>> {
    const MODE_DIR: u32 = 1 << 31;
    const MODE_SYMLINK: u32 = 1 << 27;
    let options = ContainerArchiveInfoOptions {
        path: path.to_string(),
    };
    match engine
        .docker()
        .get_container_archive_info(container, Some(options))
        .await
    {
        Ok(s) => Ok(Some(Stat {
            name: s.name,
            is_dir: s.file_mode & MODE_DIR != 0,
            is_symlink: s.file_mode & MODE_SYMLINK != 0,
            link_target: s.link_target,
        })),
        Err(e) => {
            let e = engine.err(e);
            if e.is_not_found() {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// The container's path with a symlink at its end followed: the target
/// (absolute, as the engine resolved it), keeping a trailing `/` or `/.`.
fn followed(path: &str, link_target: &str) -> String {
    let suffix = if path.ends_with("/.") {
        "/."
    } else if path.ends_with('/') {
        "/"
    } else {
        ""
    };
    format!("{}{suffix}", link_target.trim_end_matches('/'))
}

/// Go's `filepath.Base` of a path as written, for the names of what goes
/// into a container.
fn base(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

/// `cp CONTAINER:PATH DEST`.
async fn from_container(
    engine: &Engine,
    args: &CpArgs,
    container: &str,
    path: &str,
    dest: &str,
) -> Result<i32> {
    let mut path = path.to_string();
    let missing = || Error::Daemon {
        status: 404,
        message: format!("Could not find the file {path} in container {container}"),
    };
    let mut stat = stat(engine, container, &path).await?.ok_or_else(missing)?;
    // Under -L, what the link points at, named as the link.
    let mut name = stat.name.clone();
    if args.follow_link && stat.is_symlink {
        path = followed(&path, &stat.link_target);
        stat = self::stat(engine, container, &path)
            .await?
            .ok_or_else(|| Error::Daemon {
                status: 404,
                message: format!("Could not find the file {path} in container {container}"),
            })?;
    }
    // The engine's entries are under this name.
    let prefix = stat.name.clone();
    if name == "." {
        name = prefix.clone();
    }
    let options = DownloadFromContainerOptions { path: path.clone() };
    let mut body = engine
        .streaming()
        .download_from_container(container, Some(options));
    if dest == "-" {
        let mut stdout = std::io::stdout().lock();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| engine.err(e))?;
            stdout.write_all(&chunk).map_err(Error::Output)?;
        }
        stdout.flush().map_err(Error::Output)?;
        return Ok(0);
    }
    // DIR/. and the root: their contents, each under its own name.
    let contents = path.ends_with("/.") || prefix == "/";
    let target = local_target(dest, &name, stat.is_dir, contents)?;
    // The archive is read on a thread of its own as it arrives.
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<bytes::Bytes>>(8);
    let extract = {
        let target = target.clone();
        let archive = args.archive;
        std::thread::spawn(move || extract_local(ChannelReader::new(rx), &prefix, &target, archive))
    };
    let mut sent = Ok(());
    while let Some(chunk) = body.next().await {
        let item = chunk.map_err(|e| std::io::Error::other(engine.err(e).to_string()));
        let failed = item.is_err();
        if let Err(e) = &item {
            sent = Err(Error::Engine(e.to_string()));
        }
        if tx.send(item).is_err() || failed {
            break;
        }
    }
    drop(tx);
    let extracted = extract
        .join()
        .map_err(|_| Error::Engine("the extraction thread panicked".into()))?;
    sent?;
    let bytes = extracted?;
    if !args.quiet {
        super::err_out(
            format!(
                "Successfully copied {} to {}\n",
                crate::format::human_size(bytes as i64),
                target.display()
            )
            .as_bytes(),
        )?;
    }
    Ok(0)
}

/// Where the copy of a container's `name` goes locally (see the module's
/// table): the path the archive's top entry becomes.
fn local_target(dest: &str, name: &str, src_is_dir: bool, contents: bool) -> Result<PathBuf> {
    let dest_path = PathBuf::from(dest);
    match fs::metadata(&dest_path) {
        Ok(m) if m.is_dir() => Ok(if contents {
            dest_path
        } else {
            dest_path.join(name)
        }),
        Ok(_) if src_is_dir => Err(Error::Usage(format!(
            "cannot copy a directory to a file: {dest}"
        ))),
        Ok(_) => Ok(dest_path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dest.ends_with('/') && !src_is_dir {
                return Err(Error::Usage(format!(
                    "destination directory {dest} does not exist"
                )));
            }
            let parent = dest_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(Error::Usage(format!(
                    "cannot copy to {dest}: no such directory {}",
                    parent.display()
                )));
            }
            Ok(dest_path)
        }
        Err(e) => Err(Error::Read {
            path: dest.to_string(),
            source: e,
        }),
    }
}

/// A blocking reader over the chunks of a response.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl ChannelReader {
    fn new(rx: std::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>) -> Self {
        ChannelReader {
            rx,
            chunk: bytes::Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.recv() {
                Ok(chunk) => self.chunk = chunk?,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Extracts the engine's archive: entries under `prefix` (the requested
/// path's last component; none for the root) go to `target` and below it.
/// Returns the bytes of file contents written.
fn extract_local(body: impl Read, prefix: &str, target: &Path, keep_owners: bool) -> Result<u64> {
    let mut archive = tar::Archive::new(body);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(keep_owners);
    archive.set_overwrite(true);
    let bad = |e: std::io::Error| Error::Engine(format!("bad archive from the engine: {e}"));
    let mut bytes = 0;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = entry.path().map_err(bad)?.into_owned();
        let out = under(target, &below(&name, prefix)?);
        let write_err = |e: std::io::Error| Error::Write {
            path: out.display().to_string(),
            source: e,
        };
        let kind = entry.header().entry_type();
        if let Ok(existing) = fs::symlink_metadata(&out) {
            if existing.is_dir() != kind.is_dir() {
                let (what, with) = if existing.is_dir() {
                    ("directory", "a non-directory")
                } else {
                    ("non-directory", "a directory")
                };
                return Err(Error::Usage(format!(
                    "cannot overwrite {what} {} with {with}",
                    out.display()
                )));
            }
        }
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent).map_err(write_err)?;
        }
        if kind == tar::EntryType::Link {
            // A hard link names another entry of the archive.
            let other = entry.link_name().map_err(bad)?.unwrap_or_default();
            let other = under(target, &below(&other, prefix)?);
            let _ = fs::remove_file(&out);
            fs::hard_link(&other, &out).map_err(write_err)?;
            continue;
        }
        if kind.is_file() {
            bytes += entry.header().size().unwrap_or(0);
        }
        entry.unpack(&out).map_err(write_err)?;
    }
    Ok(bytes)
}

/// `rel` below `target`; `target` itself when `rel` is empty (a join would
/// add a `/`, which names a directory).
fn under(target: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        target.to_path_buf()
    } else {
        target.join(rel)
    }
}

/// An archive entry's name made relative to the copy's top: `prefix` (or a
/// `.`) dropped from its front. `..` and absolute names are refused.
fn below(name: &Path, prefix: &str) -> Result<PathBuf> {
    let mut parts = name.components().peekable();
    while parts.peek() == Some(&Component::CurDir) {
        parts.next();
    }
    if prefix != "/" && prefix != "." {
        if let Some(Component::Normal(first)) = parts.peek() {
            if *first == prefix {
                parts.next();
            }
        }
    }
    let mut out = PathBuf::new();
    for part in parts {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => {
                return Err(Error::Engine(format!(
                    "bad archive from the engine: entry {} leads out of the copy",
                    name.display()
                )))
            }
        }
    }
    Ok(out)
}

/// `cp SRC CONTAINER:PATH`.
async fn into_container(
    engine: &Engine,
    args: &CpArgs,
    src: &str,
    container: &str,
    path: &str,
) -> Result<i32> {
    if src == "-" {
        // A tar archive on stdin, extracted into the directory `path`.
        let stdin: Box<dyn Read + Send> = Box::new(std::io::stdin());
        upload(engine, container, path, stdin, args.archive).await?;
        return Ok(0);
    }
    let src_meta = if args.follow_link {
        fs::metadata(src)
    } else {
        fs::symlink_metadata(src)
    }
    .map_err(|e| Error::Read {
        path: src.to_string(),
        source: e,
    })?;
    let src_is_dir = src_meta.is_dir();
    let mut dest = path.to_string();
    let mut dest_stat = stat(engine, container, &dest).await?;
    if let Some(s) = dest_stat.as_ref().filter(|s| s.is_symlink) {
        dest = followed(&dest, &s.link_target);
        dest_stat = stat(engine, container, &dest).await?;
    }
    let contents = src_is_dir && (src.ends_with("/.") || src == ".");
    // Where the engine extracts, and the name of the archive's top entry
    // there (None: the directory's contents, each under its own name).
    let (dir, top) = match dest_stat {
        Some(s) if s.is_dir => (
            dest.clone(),
            (!contents).then(|| base(src.trim_end_matches("/."))),
        ),
        Some(_) if src_is_dir => {
            return Err(Error::Usage(format!(
                "cannot copy a directory to a file: {container}:{path}"
            )))
        }
        Some(_) => (parent_of(&dest), Some(base(&dest))),
        None if dest.ends_with('/') && !src_is_dir => {
            return Err(Error::Usage(format!(
                "destination directory {container}:{path} does not exist"
            )))
        }
        None => (parent_of(&dest), Some(base(&dest))),
    };
    if matches!(top.as_deref(), Some("." | ".." | "/")) {
        return Err(Error::Usage(format!(
            "destination {container}:{path} names no file to create"
        )));
    }
    let mut file = tempfile_for_archive()?;
    let bytes = {
        let mut builder = tar::Builder::new(std::io::BufWriter::new(&mut file));
        let mut counted = 0;
        let owners = if args.archive { None } else { Some((0, 0)) };
        let src_path = Path::new(src);
        match &top {
            Some(name) => append_local(
                &mut builder,
                src_path,
                Path::new(name),
                owners,
                args.follow_link,
                &mut counted,
            )?,
            None => {
                for child in sorted_children(src_path)? {
                    append_local(
                        &mut builder,
                        &src_path.join(&child),
                        Path::new(&child),
                        owners,
                        false,
                        &mut counted,
                    )?;
                }
            }
        }
        builder
            .into_inner()
            .and_then(|mut w| w.flush())
            .map_err(|e| Error::Write {
                path: "the temporary archive".into(),
                source: e,
            })?;
        counted
    };
    file.rewind().map_err(|e| Error::Read {
        path: "the temporary archive".into(),
        source: e,
    })?;
    upload(engine, container, &dir, Box::new(file), args.archive).await?;
    if !args.quiet {
        super::err_out(
            format!(
                "Successfully copied {} to {container}:{path}\n",
                crate::format::human_size(bytes as i64)
            )
            .as_bytes(),
        )?;
    }
    Ok(0)
}

/// `PUT /containers/{id}/archive?path=DIR`, refusing to replace a
/// directory by a file or the other way round, as docker cp does.
async fn upload(
    engine: &Engine,
    container: &str,
    dir: &str,
    archive: Box<dyn Read + Send>,
    keep_owners: bool,
) -> Result<()> {
    let options = UploadToContainerOptions {
        path: dir.to_string(),
        no_overwrite_dir_non_dir: Some("true".into()),
        copy_uidgid: keep_owners.then(|| "true".into()),
    };
    engine
        .streaming()
        .upload_to_container(
            container,
            Some(options),
            bollard::body_try_stream(super::reader_stream(archive)),
        )
        .await
        .map_err(|e| engine.err(e))
}

fn parent_of(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((parent, _)) => parent.to_string(),
    }
}

fn tempfile_for_archive() -> Result<fs::File> {
    tempfile::tempfile().map_err(|e| Error::Write {
        path: "a temporary archive".into(),
        source: e,
    })
}

fn sorted_children(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let read_err = |e: std::io::Error| Error::Read {
        path: dir.display().to_string(),
        source: e,
    };
    let mut children = fs::read_dir(dir)
        .map_err(read_err)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(read_err)?;
    children.sort();
    Ok(children)
}

/// Appends the local `path` as `name`, a directory with what is below it.
/// `owners` replaces the files' owners (root's, unless -a); `follow`
/// follows `path` itself when it is a symlink (-L), never the links below.
fn append_local<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
    owners: Option<(u64, u64)>,
    follow: bool,
    bytes: &mut u64,
) -> Result<()> {
    let read_err = |e: std::io::Error| Error::Read {
        path: path.display().to_string(),
        source: e,
    };
    let meta = if follow {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    }
    .map_err(read_err)?;
    let kind = meta.file_type();
    if kind.is_socket() {
        // tar has no type for sockets; docker leaves them out too.
        return Ok(());
    }
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    header.set_mode(meta.mode() & 0o7777);
    if let Some((uid, gid)) = owners {
        header.set_uid(uid);
        header.set_gid(gid);
    }
    if kind.is_block_device() || kind.is_char_device() {
        header
            .set_device_major(libc::major(meta.rdev()))
            .and_then(|()| header.set_device_minor(libc::minor(meta.rdev())))
            .map_err(read_err)?;
    }
    let appended = if kind.is_symlink() {
        let target = fs::read_link(path).map_err(read_err)?;
        builder.append_link(&mut header, name, target)
    } else if kind.is_file() {
        *bytes += meta.len();
        let file = fs::File::open(path).map_err(read_err)?;
        builder.append_data(&mut header, name, file)
    } else {
        builder.append_data(&mut header, name, std::io::empty())
    };
    appended.map_err(|e| Error::Write {
        path: "the temporary archive".into(),
        source: e,
    })?;
    if kind.is_dir() {
        for child in sorted_children(path)? {
            append_local(
                builder,
                &path.join(&child),
                &name.join(&child),
                owners,
                false,
                bytes,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_are_told_from_local_ones_as_docker_does() {
        let c = |container: &str, path: &str| Location::Container {
            container: container.into(),
            path: path.into(),
        };
        assert_eq!(
            Location::parse("ntp:/etc/ntp.conf"),
            c("ntp", "/etc/ntp.conf")
        );
        assert_eq!(Location::parse("ntp:etc"), c("ntp", "etc"));
        assert_eq!(
            Location::parse("/tmp/a:b"),
            Location::Local("/tmp/a:b".into())
        );
        assert_eq!(Location::parse("./a:b"), Location::Local("./a:b".into()));
        assert_eq!(Location::parse("file"), Location::Local("file".into()));
        assert_eq!(Location::parse("-"), Location::Local("-".into()));
        assert_eq!(Location::parse(":x"), Location::Local(":x".into()));
    }

    #[test]
    fn entries_lose_the_copys_top_name() {
        let b = |name: &str, prefix: &str| below(Path::new(name), prefix).unwrap();
        assert_eq!(b("etc", "etc"), PathBuf::new());
        assert_eq!(b("etc/", "etc"), PathBuf::new());
        assert_eq!(b("etc/ntp.conf", "etc"), PathBuf::from("ntp.conf"));
        assert_eq!(b("./", "."), PathBuf::new());
        assert_eq!(b("./a/b", "."), PathBuf::from("a/b"));
        // The root's entries have no top name.
        assert_eq!(b("bin/sh", "/"), PathBuf::from("bin/sh"));
        assert!(below(Path::new("etc/../../x"), "etc").is_err());
    }

    #[test]
    fn local_targets_follow_dockers_table() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("file"), "x").unwrap();
        let s = |p: &Path| p.to_string_lossy().into_owned();
        // Into an existing directory: under the source's name, or its
        // contents for DIR/.
        assert_eq!(local_target(&s(d), "a", false, false).unwrap(), d.join("a"));
        assert_eq!(
            local_target(&s(d), "a", true, true).unwrap(),
            d.to_path_buf()
        );
        // A missing destination takes the copy's place.
        assert_eq!(
            local_target(&s(&d.join("new")), "a", true, false).unwrap(),
            d.join("new")
        );
        // Onto a file: a file replaces it, a directory cannot.
        assert_eq!(
            local_target(&s(&d.join("file")), "a", false, false).unwrap(),
            d.join("file")
        );
        assert!(local_target(&s(&d.join("file")), "a", true, false).is_err());
        // A missing directory (trailing /) for a file, a missing parent.
        assert!(local_target(&format!("{}/", s(&d.join("new"))), "a", false, false).is_err());
        assert!(local_target(&s(&d.join("no/such")), "a", false, false).is_err());
    }

    #[test]
    fn followed_links_keep_a_trailing_slash_or_dot() {
        assert_eq!(followed("/data/link", "/data/dir/a"), "/data/dir/a");
        assert_eq!(followed("/data/link/", "/data/dir"), "/data/dir/");
        assert_eq!(followed("/data/link/.", "/data/dir"), "/data/dir/.");
        assert_eq!(parent_of("/etc/ntp.conf"), "/etc");
        assert_eq!(parent_of("/etc/"), "/");
        assert_eq!(parent_of("/x"), "/");
    }
}
