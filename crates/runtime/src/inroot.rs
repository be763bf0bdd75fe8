//! Reading and creating files inside a container's root filesystem from
//! the host, resolving symlinks as if that root were `/` (with `pathrs`), so
//! that an image cannot make the runtime touch files of the host through a
//! symlink such as `/etc/passwd -> /host/file`.

use crate::error::{Error, Result};
use std::path::Path;

fn open_root(root: &Path) -> Result<pathrs::Root> {
    // Opened here rather than with `Root::open`, which refuses a symlink as
    // the root itself; `/proc/PID/root` (used for `exec`) is one.
    let dir = std::fs::File::open(root).map_err(|e| {
        Error::io(
            format!("failed to open the root filesystem {}", root.display()),
            e,
        )
    })?;
    Ok(pathrs::Root::from_fd(std::os::fd::OwnedFd::from(dir)))
}

fn pathrs_err(what: String) -> impl Fn(pathrs::error::Error) -> Error {
    move |e| {
        Error::io(
            what.clone(),
            std::io::Error::other(crate::error::error_chain(&e)),
        )
    }
}

/// Reads a file of the container's root filesystem. None when it does not
/// exist.
pub fn read_in_root(root: &Path, path: &str) -> Result<Option<String>> {
    use std::io::Read;
    let what = format!("failed to open {path} in {}", root.display());
    let root_handle = open_root(root)?;
    let mut file = match root_handle.open_subpath(path, pathrs::flags::OpenFlags::O_RDONLY) {
        Ok(f) => f,
        Err(e) if e.kind() == pathrs::error::ErrorKind::OsError(Some(libc::ENOENT)) => {
            return Ok(None)
        }
        Err(e) => return Err(pathrs_err(what)(e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("failed to read {path} in {}", root.display()), e))?;
    // Not UTF-8: read lossily rather than failing the container.
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Creates a directory and its parents (mode 0755) in the container's root
/// filesystem; an existing directory is fine.
pub fn mkdir_all_in_root(root: &Path, path: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let root_handle = open_root(root)?;
    root_handle
        .mkdir_all(path, &std::fs::Permissions::from_mode(0o755))
        .map(|_| ())
        .map_err(pathrs_err(format!(
            "failed to create {path} in {}",
            root.display()
        )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "host\n").unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("passwd"),
            root.path().join("etc/passwd"),
        )
        .unwrap();
        assert_eq!(read_in_root(root.path(), "etc/passwd").unwrap(), None);

        // A directory symlink pointing out of the root never leads to the host.
        std::os::unix::fs::symlink(outside.path(), root.path().join("app")).unwrap();
        let _ = mkdir_all_in_root(root.path(), "/app/work");
        assert!(!outside.path().join("work").exists());

        mkdir_all_in_root(root.path(), "/srv/a/b").unwrap();
        assert!(root.path().join("srv/a/b").is_dir());
        // Existing directories are fine.
        mkdir_all_in_root(root.path(), "/srv/a/b").unwrap();
    }
}
