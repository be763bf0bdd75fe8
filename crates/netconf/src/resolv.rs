//! Writing resolv.conf.
//!
//! In the network container /etc/resolv.conf is a file bind-mounted from
//! the host, so that every container that shares it sees the change. A
//! rename over a mount point fails with EBUSY, so there the file is written
//! in place (truncate, write, fsync): a reader may briefly see it short,
//! which the resolver tolerates (it rereads on the next lookup). Anywhere
//! else it is replaced atomically (temporary file, fsync, rename), so a
//! reader sees the old file or the new one, never a mix.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `text` to `path` unless it already holds exactly that; returns
/// whether it wrote.
pub fn write(path: &Path, text: &str) -> Result<bool> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    if is_mount_point(path) {
        write_in_place(path, text)?;
        return Ok(true);
    }
    match write_atomic(path, text) {
        // A mount point that /proc/self/mountinfo did not show (another
        // mount namespace's view, an escaped name): write in place.
        Err(Error::File { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
            write_in_place(path, text)?
        }
        other => other?,
    }
    Ok(true)
}

fn file_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::File {
        what,
        path: path.to_owned(),
        source,
    }
}

fn write_in_place(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(true)
        .open(path)
        .map_err(file_error("open", path))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(file_error("write", path))
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    atomic_file::write(path, text.as_bytes()).map_err(file_error("replace", path))
}

/// Whether `path` is a mount point of this mount namespace, from
/// /proc/self/mountinfo. Hand-written: the mount point is field 5 of each
/// line with spaces and a few other bytes escaped as `\ooo`, which is all
/// this needs; a procfs crate would bring far more than that.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(target) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mp| Path::new(&unescape(mp)) == target)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(value) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_fields() {
        assert_eq!(unescape("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/x\\"), "/x\\");
    }

    #[test]
    fn root_is_a_mount_point_and_a_plain_file_is_not() {
        assert!(is_mount_point(Path::new("/")));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("resolv.conf");
        std::fs::write(&f, "x").unwrap();
        assert!(!is_mount_point(&f));
    }

    #[test]
    fn writes_atomically_and_only_when_the_text_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("resolv.conf");
        assert!(write(&f, "nameserver 10.0.0.1\n").unwrap());
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "nameserver 10.0.0.1\n"
        );
        assert!(!write(&f, "nameserver 10.0.0.1\n").unwrap());
        assert!(write(&f, "nameserver 10.0.0.2\n").unwrap());
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "nameserver 10.0.0.2\n"
        );
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
