//! # atomic-file: replace a file, never leave half of one
//!
//! ## Background
//!
//! Much of what OxOS writes is read by someone else or at the next boot:
//! the user's cloud-config (`ros config set`), the datasources' saved
//! user-data, the engines' container records and image index, the files a
//! container is given (hostname, hosts, resolv.conf), files of write_files.
//! A power cut or a full disk halfway through a plain `write` leaves a torn
//! file, and a reader racing the writer sees half of one. So every such
//! write goes the same way:
//!
//! 1. a temporary file beside the target (same directory, so the rename
//!    stays on one file system), with a unique name (`tempfile`), created
//!    with mode 0666 less the umask, as `File::create` would;
//! 2. the contents, then the owner and mode asked for, set on the open file
//!    so that the target never has another owner or mode, not even for an
//!    instant;
//! 3. `fsync` of the file, the rename over the target, `fsync` of the
//!    directory (the rename is durable only then). A failed directory sync
//!    is not reported: the new file is in place and whole either way.
//!
//! On any error before the rename the temporary file is removed and the
//! target is untouched. [`Options::durable`]`(false)` leaves out both syncs,
//! for files made anew at every start, where losing one to a crash is fine
//! but a reader must still never see half of one.
//!
//! ## Why not a crate
//!
//! `tempfile` does the unique name, the cleanup and the rename
//! (`persist`); the rest is the few calls above. `atomic-write-file` does
//! the same steps but cannot set an owner before the rename, which
//! write_files and the console's files need.
//!
//! ## Example
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("cloud-config.yml");
//! atomic_file::Options::new().mode(0o600).write(&path, b"#cloud-config\n").unwrap();
//! assert_eq!(std::fs::read(&path).unwrap(), b"#cloud-config\n");
//! ```

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// How a file is replaced; [`Options::new`] gives the defaults (durable,
/// mode 0666 less the umask, the writer's owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    mode: Option<u32>,
    owner: Option<(u32, u32)>,
    durable: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    pub fn new() -> Self {
        Options {
            mode: None,
            owner: None,
            durable: true,
        }
    }

    /// The file's mode (permission and set-id bits), exactly, whatever the
    /// umask.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// The file's owner (numeric uid and gid); needs the privilege to give
    /// files away.
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.owner = Some((uid, gid));
        self
    }

    /// Whether the file and the rename are synced to the disk before
    /// [`Options::write`] returns (the default).
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Replaces (or creates) `path` with `bytes` (see the crate's docs). The
    /// directory must exist.
    pub fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path.file_name().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} names no file", path.display()),
            )
        })?;
        let mut tmp = temporary_for(dir, name)?;
        tmp.write_all(bytes)?;
        let file = tmp.as_file();
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::fchown(file, Some(uid), Some(gid))?;
        }
        // After the chown, which clears the set-id bits.
        if let Some(mode) = self.mode {
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        if self.durable {
            file.sync_all()?;
        }
        tmp.persist(path).map_err(|e| e.error)?;
        if self.durable {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// The temporary file for `name` in `dir`: `.NAME.RANDOM.tmp`, mode 0666
/// less the umask.
fn temporary_for(dir: &Path, name: &std::ffi::OsStr) -> std::io::Result<tempfile::NamedTempFile> {
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
}

/// Whether a directory entry is one of the temporary files of
/// [`Options::write`] (`.NAME.RANDOM.tmp`), which only a crash between
/// its creation and the rename leaves behind: for cleanups at start.
pub fn is_temporary(file_name: &str) -> bool {
    file_name.starts_with('.') && file_name.ends_with(".tmp")
}

/// Replaces (or creates) `path` with `bytes` with the default [`Options`].
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    Options::new().write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        write(&path, b"old").unwrap();
        let old_inode = std::fs::metadata(&path).unwrap().ino();
        write(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        // A new file renamed over the old one, not the old one rewritten.
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), old_inode);
        assert_eq!(entries(dir.path()), ["record.json"]);
        assert!(!is_temporary("record.json"));
        Options::new().durable(false).write(&path, b"fast").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"fast");
        assert_eq!(entries(dir.path()), ["record.json"]);
    }

    #[test]
    fn temporaries_are_recognised_by_their_names() {
        let dir = tempfile::tempdir().unwrap();
        // What a crash before the rename leaves.
        let tmp = temporary_for(dir.path(), "index.json".as_ref()).unwrap();
        let name = tmp
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(is_temporary(&name), "{name}");
        assert!(!is_temporary("index.json"));
        assert!(!is_temporary(".hidden"));
    }

    #[test]
    fn the_mode_is_the_umasks_by_default_and_exact_when_given() {
        let dir = tempfile::tempdir().unwrap();
        let umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        let plain = dir.path().join("hosts");
        write(&plain, b"127.0.0.1 localhost\n").unwrap();
        nix::sys::stat::umask(umask);
        assert_eq!(std::fs::metadata(&plain).unwrap().mode() & 0o7777, 0o644);
        let secret = dir.path().join("cloud-config.yml");
        Options::new().mode(0o600).write(&secret, b"x").unwrap();
        assert_eq!(std::fs::metadata(&secret).unwrap().mode() & 0o7777, 0o600);
        let program = dir.path().join("tool");
        Options::new().mode(0o4755).write(&program, b"x").unwrap();
        assert_eq!(std::fs::metadata(&program).unwrap().mode() & 0o7777, 0o4755);
    }

    #[test]
    fn the_owner_is_set_before_the_rename_and_keeps_set_id_bits() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("\n!!! SKIPPED: giving a file away needs root !!!\n");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authorized_keys");
        Options::new()
            .owner(1100, 1100)
            .mode(0o2640)
            .write(&path, b"ssh-ed25519 AAAA")
            .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1100, 1100));
        assert_eq!(meta.mode() & 0o7777, 0o2640);
    }

    #[test]
    fn a_failed_write_leaves_what_was_there_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should go: the rename fails (as root
        // too), after the contents were written to the temporary file.
        let path = dir.path().join("config.yml");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"kept").unwrap();
        assert!(write(&path, b"new").is_err());
        assert_eq!(std::fs::read(path.join("inside")).unwrap(), b"kept");
        assert_eq!(entries(dir.path()), ["config.yml"]);
        // No directory: an error, nothing made.
        let missing = dir.path().join("no/such/file");
        assert!(write(&missing, b"x").is_err());
        assert_eq!(entries(dir.path()), ["config.yml"]);
    }
}
