//! Programs from Debian that PID 1 runs before the system image is there:
//! `mke2fs`, to format an empty disk listed in `rancher.state.autoformat`,
//! and a static busybox for the recovery shell when boot cannot go on.
//!
//! The initrd holds no C library, so the program comes with the libraries
//! it links and the dynamic loader, all in one directory ([`DIR`]); PID 1
//! runs it through the loader with `--library-path`, so nothing is
//! installed at the usual paths and the rest of the initrd stays as it is.
//! The packages come from the same trixie index as the kernel.

use super::kernel::Apt;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the tools are in the initrd (relative to its root).
pub const DIR: &str = "usr/lib/oxos-tools";

/// The packages, and the files taken from them (programs, then libraries
/// by soname; a soname is looked for under the package's lib directories).
const PACKAGES: &[(&str, &[&str])] = &[
    ("e2fsprogs", &["mke2fs"]),
    ("libext2fs2t64", &["libext2fs.so.2", "libe2p.so.2"]),
    ("libcom-err2", &["libcom_err.so.2"]),
    ("libblkid1", &["libblkid.so.1"]),
    ("libuuid1", &["libuuid.so.1"]),
    ("libc6", &["libc.so.6", "ld-linux-x86-64.so.2"]),
    // The recovery shell of PID 1 when boot cannot go on (static).
    ("busybox-static", &["busybox"]),
];

/// The package names, for the build's cache key.
pub fn package_names() -> String {
    PACKAGES
        .iter()
        .map(|(p, files)| format!("{p}:{}", files.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Fetches the packages and returns their files (for the cache key).
pub fn fetch(apt: &Apt, debs: &Path) -> Result<Vec<PathBuf>> {
    PACKAGES
        .iter()
        .map(|(package, _)| apt.fetch_package(package, debs))
        .collect()
}

/// Unpacks the packages and copies the wanted files into `dir/DIR`, then
/// checks that `mke2fs -V` runs from there.
pub fn stage(debs: &[PathBuf], dir: &Path) -> Result<()> {
    let out = dir.join(DIR);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let unpacked = dir.join("unpacked");
    for (deb, (package, files)) in debs.iter().zip(PACKAGES) {
        let tree = unpacked.join(package);
        std::fs::create_dir_all(&tree)
            .with_context(|| format!("cannot create {}", tree.display()))?;
        crate::cmd::run_step(
            &format!("unpack {package}"),
            Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tree),
        )?;
        for name in *files {
            let found =
                find(&tree, name)?.with_context(|| format!("{package} has no file {name}"))?;
            // Copy the content: the soname link points at the versioned
            // file, inside the package (relative) or at its path on an
            // installed system (absolute, taken inside the tree).
            let found = resolve(&tree, found)?;
            std::fs::copy(&found, out.join(name))
                .with_context(|| format!("cannot copy {}", found.display()))?;
        }
    }
    std::fs::remove_dir_all(&unpacked).ok();
    // The recovery shell's commands: busybox applets as links.
    let bin = out.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    let list = Command::new(out.join("busybox"))
        .arg("--list")
        .output()
        .context("cannot run the staged busybox")?;
    if !list.status.success() {
        bail!("the staged busybox does not run");
    }
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet.contains('/') || applet == "busybox" {
            continue;
        }
        std::os::unix::fs::symlink("../busybox", bin.join(applet))
            .with_context(|| format!("cannot link busybox applet {applet}"))?;
    }
    let check = Command::new(out.join("ld-linux-x86-64.so.2"))
        .arg("--library-path")
        .arg(&out)
        .arg(out.join("mke2fs"))
        .arg("-V")
        .output()
        .context("cannot run the staged mke2fs")?;
    if !check.status.success() {
        bail!(
            "the staged mke2fs does not run: {}",
            String::from_utf8_lossy(&check.stderr).trim()
        );
    }
    Ok(())
}

/// Follows symlinks inside `tree` (absolute targets are taken relative to
/// the tree, as on the installed system).
fn resolve(tree: &Path, mut path: PathBuf) -> Result<PathBuf> {
    for _ in 0..16 {
        let Ok(target) = std::fs::read_link(&path) else {
            return Ok(path);
        };
        path = if target.is_absolute() {
            tree.join(target.strip_prefix("/").unwrap_or(&target))
        } else {
            path.parent().unwrap_or(tree).join(target)
        };
        // /lib is /usr/lib on a merged-/usr system.
        if !path.exists() && !path.is_symlink() {
            if let Ok(rest) = path.strip_prefix(tree) {
                let merged = tree.join("usr").join(rest);
                if merged.exists() {
                    path = merged;
                }
            }
        }
    }
    bail!("too many symlinks at {}", path.display())
}

/// `name` in the package's program or library directories (not, say, its
/// shell completion of the same name).
fn find(tree: &Path, name: &str) -> Result<Option<PathBuf>> {
    for dir in [
        "usr/sbin",
        "usr/bin",
        "sbin",
        "bin",
        "usr/lib",
        "lib",
        "usr/lib64",
        "lib64",
    ] {
        let dir = tree.join(dir);
        if dir.is_dir() {
            if let Some(found) = find_below(&dir, name)? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

/// The first file or symlink named `name` below `dir`.
fn find_below(dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if entry.file_name() == name && (kind.is_file() || kind.is_symlink()) {
            return Ok(Some(path));
        }
        if kind.is_dir() {
            if let Some(found) = find_below(&path, name)? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}
