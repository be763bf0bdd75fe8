//! Mounting a container's root filesystem: overlayfs over the image layers.
//!
//! overlayfs takes its layers in one mount option string, top layer first,
//! and mount(2) passes at most one page of options. With many layers and long
//! paths the string does not fit; Docker's overlay2 driver then uses short
//! symlinks ("l/ABC -> ../ID/diff") and mounts from their directory with
//! relative paths. This module does the same on demand: when the absolute
//! form is too long, it makes `DIR/overlay-layers/0`, `1`, ... symlinks to the
//! layers, chdirs there, mounts with `lowerdir=N:...:1:0`, and chdirs back.
//! The kernel resolves the paths at mount time, so the links may go away
//! afterwards (they are kept for inspection).

use crate::error::{Error, Result};
use crate::protocol::Rootfs;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};

/// Directory (inside the container directory) of the short layer links.
pub const LINKS_DIR: &str = "overlay-layers";
/// Empty directory used as the only layer of an image without layers.
pub const EMPTY_LOWER_DIR: &str = "overlay-empty";

/// How the overlay is mounted: the option string, and the directory to mount
/// from when it uses relative layer paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayOptions {
    pub data: String,
    pub chdir: Option<PathBuf>,
}

fn join_lower<'a>(lower: impl DoubleEndedIterator<Item = &'a str>) -> String {
    lower.rev().collect::<Vec<_>>().join(":")
}

/// The mount options for `lower` (lowest first), or the short-link form when
/// the absolute one is longer than `limit` bytes. `links_dir` is where the
/// links are (`N` links to `lower[N]`).
pub fn options(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    extra: &str,
    links_dir: &Path,
    limit: usize,
) -> Result<OverlayOptions> {
    let tail = format!(
        "upperdir={},workdir={}{}",
        upper.display(),
        work.display(),
        extra
    );
    let lower_strs: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    let data = format!(
        "lowerdir={},{tail}",
        join_lower(lower_strs.iter().map(String::as_str))
    );
    if data.len() <= limit {
        return Ok(OverlayOptions { data, chdir: None });
    }
    let short: Vec<String> = (0..lower.len()).map(|i| i.to_string()).collect();
    let data = format!(
        "lowerdir={},{tail}",
        join_lower(short.iter().map(String::as_str))
    );
    if data.len() > limit {
        return Err(Error::TooManyLayers {
            target: PathBuf::new(),
            layers: lower.len(),
        });
    }
    Ok(OverlayOptions {
        data,
        chdir: Some(links_dir.to_path_buf()),
    })
}

/// Creates `links_dir/N -> lower[N]`.
fn make_links(lower: &[PathBuf], links_dir: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(links_dir);
    std::fs::create_dir_all(links_dir)
        .map_err(|e| Error::io(format!("failed to create {}", links_dir.display()), e))?;
    for (i, layer) in lower.iter().enumerate() {
        let link = links_dir.join(i.to_string());
        std::os::unix::fs::symlink(layer, &link)
            .map_err(|e| Error::io(format!("failed to create {}", link.display()), e))?;
    }
    Ok(())
}

/// overlay's `index` feature, when the kernel enables it by default, breaks
/// mounting the same layers in several containers; Docker turns it off.
fn index_option() -> &'static str {
    match std::fs::read_to_string("/sys/module/overlay/parameters/index") {
        Ok(v) if v.trim() == "Y" => ",index=off",
        _ => "",
    }
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|v| v as usize)
        .unwrap_or(4096)
}

/// Mounts the overlay described by `rootfs`; `scratch` is a directory of the
/// container where helper directories may be created.
pub fn mount_rootfs(rootfs: &Rootfs, scratch: &Path) -> Result<()> {
    for (what, dir) in [
        ("upper", &rootfs.upper),
        ("work", &rootfs.work),
        ("target", &rootfs.target),
    ] {
        if dir.as_os_str().is_empty() {
            return Err(Error::InvalidConfig(format!(
                "no rootfs {what} directory given"
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("failed to create {}", dir.display()), e))?;
    }
    let lower = if rootfs.lower.is_empty() {
        let empty = scratch.join(EMPTY_LOWER_DIR);
        std::fs::create_dir_all(&empty)
            .map_err(|e| Error::io(format!("failed to create {}", empty.display()), e))?;
        vec![empty]
    } else {
        rootfs.lower.clone()
    };
    let links_dir = scratch.join(LINKS_DIR);
    // mount(2) copies at most a page of options, including the final NUL.
    let opts = options(
        &lower,
        &rootfs.upper,
        &rootfs.work,
        index_option(),
        &links_dir,
        page_size() - 1,
    )
    .map_err(|e| match e {
        Error::TooManyLayers { layers, .. } => Error::TooManyLayers {
            target: rootfs.target.clone(),
            layers,
        },
        e => e,
    })?;
    let do_mount = || {
        mount(
            Some("overlay"),
            &rootfs.target,
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.data.as_str()),
        )
        .map_err(|source| Error::MountOverlay {
            target: rootfs.target.clone(),
            source,
        })
    };
    match &opts.chdir {
        None => do_mount(),
        Some(dir) => {
            make_links(&lower, dir)?;
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
            nix::unistd::chdir(dir.as_path())
                .map_err(|e| Error::sys(format!("failed to enter {}", dir.display()), e))?;
            let result = do_mount();
            let _ = nix::unistd::chdir(cwd.as_path());
            result
        }
    }
}

/// True when something is mounted exactly at `path`.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    // Field 5 is the mount point, with spaces and such escaped as octal.
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == want)
}

fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts the root filesystem (lazily, so that a process still holding it
/// cannot keep the container from being cleaned up). Not mounted is fine.
pub fn unmount_rootfs(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(source) => Err(Error::Unmount {
            target: target.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_top_layer_first_when_short() {
        let lower = vec![
            PathBuf::from("/l/base"),
            PathBuf::from("/l/mid"),
            PathBuf::from("/l/top"),
        ];
        let o = options(
            &lower,
            Path::new("/c/up"),
            Path::new("/c/work"),
            "",
            Path::new("/c/links"),
            4095,
        )
        .unwrap();
        assert_eq!(
            o.data,
            "lowerdir=/l/top:/l/mid:/l/base,upperdir=/c/up,workdir=/c/work"
        );
        assert_eq!(o.chdir, None);
    }

    #[test]
    fn short_links_when_too_long() {
        let lower: Vec<PathBuf> = (0..120)
            .map(|i| PathBuf::from(format!("/var/lib/system-docker/image/layers/{i:064}/diff")))
            .collect();
        let o = options(
            &lower,
            Path::new("/c/up"),
            Path::new("/c/work"),
            ",index=off",
            Path::new("/c/links"),
            4095,
        )
        .unwrap();
        assert!(o.data.starts_with("lowerdir=119:118:"), "{}", o.data);
        assert!(o
            .data
            .contains(":1:0,upperdir=/c/up,workdir=/c/work,index=off"));
        assert!(o.data.len() <= 4095);
        assert_eq!(o.chdir.as_deref(), Some(Path::new("/c/links")));

        let e = options(
            &lower,
            Path::new("/c/up"),
            Path::new("/c/work"),
            "",
            Path::new("/c/links"),
            100,
        )
        .unwrap_err();
        assert!(matches!(e, Error::TooManyLayers { layers: 120, .. }));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
    }
}
