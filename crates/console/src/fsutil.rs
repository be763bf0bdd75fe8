//! Small file helpers: writes that are atomic and skip unchanged files, and
//! symlinks that replace what was there.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.to_owned(),
        source,
    }
}

/// Reads a file; `None` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Who owns a file and its permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Attrs {
    /// Owned by root.
    pub const fn root(mode: u32) -> Self {
        Self {
            mode,
            uid: 0,
            gid: 0,
        }
    }

    /// What an existing file has, or `default` for a new one: edits of
    /// /etc/shadow keep its group and mode, whatever the image gave them.
    pub fn existing_or(path: &Path, default: Attrs) -> Attrs {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => Attrs {
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            },
            _ => default,
        }
    }
}

/// Writes `content` to `path` with `attrs`, atomically (a temporary file in
/// the same directory renamed over the old one), creating parent
/// directories. A file that already has this content and these attributes
/// is left alone. Returns whether anything changed.
pub fn write_file(path: &Path, content: &[u8], attrs: Attrs) -> Result<bool> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.is_file()
            && meta.mode() & 0o7777 == attrs.mode
            && meta.uid() == attrs.uid
            && meta.gid() == attrs.gid
            && std::fs::read(path).is_ok_and(|old| old == content)
        {
            return Ok(false);
        }
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(write_err(path))?;
    atomic_file::Options::new()
        .owner(attrs.uid, attrs.gid)
        .mode(attrs.mode)
        .write(path, content)
        .map_err(write_err(path))?;
    Ok(true)
}

/// Creates a directory (and its parents) and gives it `attrs`. An existing
/// directory keeps its contents; only its mode and owner are set.
pub fn ensure_dir(path: &Path, attrs: Attrs) -> Result<()> {
    std::fs::create_dir_all(path).map_err(write_err(path))?;
    let meta = std::fs::metadata(path).map_err(write_err(path))?;
    if meta.uid() != attrs.uid || meta.gid() != attrs.gid {
        std::os::unix::fs::chown(path, Some(attrs.uid), Some(attrs.gid))
            .map_err(write_err(path))?;
    }
    if meta.mode() & 0o7777 != attrs.mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(attrs.mode))
            .map_err(write_err(path))?;
    }
    Ok(())
}

/// Makes `link` a symlink to `target`, replacing whatever was at `link`
/// (atomically, through a temporary link renamed over it). A link that
/// already points there is left alone. Returns whether anything changed.
pub fn symlink(target: &Path, link: &Path) -> Result<bool> {
    if std::fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(false);
    }
    let dir = link.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(write_err(link))?;
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.console-init.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(write_err(link))?;
    if let Err(e) = std::fs::rename(&tmp, link) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Write {
            path: link.to_owned(),
            source: e,
        });
    }
    Ok(true)
}
