//! The Debian baseline: trixie with systemd, OpenSSH and docker.io, built
//! with mmdebstrap, packed into an ext4 image without mounting, booted by
//! direct kernel boot with its own kernel and initrd.

use super::vm::{Boot, DirectKernel};
use crate::cmd::run_step;
use anyhow::{bail, Context, Result};
use image_build::DEFAULT_MIRROR;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bumped when the recipe changes in a way its inputs do not show.
const RECIPE: &str = "bench-boot-debian-1";
const SUITE: &str = "trixie";
/// minbase plus what a container host needs. Recommends are not installed
/// (mmdebstrap's default), so `docker-cli` (a Recommends of docker.io) and
/// `iptables` (for docker's bridge network) are named; `dbus` is what a
/// stock systemd install has.
pub const PACKAGES: &[&str] = &[
    "linux-image-amd64",
    "initramfs-tools",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "docker.io",
    "docker-cli",
    "iptables",
    "sudo",
];
/// The login on the Debian machine.
pub const USER: &str = "bench";
/// The customize hook: user, network, preload unit.
const SETUP: &str = include_str!("debian-setup.sh");
/// Free space on the root file system beyond the installed tree.
const FREE_MIB: u64 = 2048;
/// The kernel command line: the console as on OxOS, the root file system.
pub const APPEND: &str = "console=tty0 console=ttyS0,115200n8 root=/dev/vda rw panic=10";

/// A built Debian disk: a raw ext4 root and the kernel and initrd from it.
#[derive(Clone, Debug)]
pub struct Disk {
    pub root: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// The cache key of the disk: everything it is made from.
pub fn cache_key(setup: &str, public_key: &[u8], image: &[u8], mirror: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        RECIPE.as_bytes(),
        SUITE.as_bytes(),
        mirror.as_bytes(),
        PACKAGES.join(",").as_bytes(),
        setup.as_bytes(),
        public_key,
        image,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// The disk for `public_key` and `image`, built unless cached.
pub fn disk(work: &Path, public_key: &Path, image: &Path) -> Result<Disk> {
    let pubkey = std::fs::read(public_key)
        .with_context(|| format!("cannot read {}", public_key.display()))?;
    let image_bytes =
        std::fs::read(image).with_context(|| format!("cannot read {}", image.display()))?;
    let key = cache_key(SETUP, &pubkey, &image_bytes, DEFAULT_MIRROR);
    let dir = work.join(format!("debian-{}", &key[..16]));
    let disk = Disk {
        root: dir.join("root.ext4"),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
    };
    let stamp = dir.join("complete");
    if stamp.is_file() {
        eprintln!("xtask: == Debian disk: cached ({})", dir.display());
        return Ok(disk);
    }
    // Disks of older inputs go.
    if let Ok(entries) = std::fs::read_dir(work) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("debian-") && entry.path() != dir {
                eprintln!("xtask: removing the outdated {}", entry.path().display());
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let started = std::time::Instant::now();
    build(&dir, &disk, public_key, image)?;
    std::fs::write(&stamp, &key).with_context(|| format!("cannot write {}", stamp.display()))?;
    eprintln!(
        "xtask: == Debian disk: built in {:.0} s ({})",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(disk)
}

fn build(dir: &Path, disk: &Disk, public_key: &Path, image: &Path) -> Result<()> {
    let tree = dir.join("tree");
    let setup = dir.join("setup.sh");
    std::fs::write(&setup, SETUP).with_context(|| format!("cannot write {}", setup.display()))?;
    run_step(
        "mmdebstrap (Debian disk)",
        Command::new("mmdebstrap")
            .env("BENCH_PUBKEY", public_key)
            .env("BENCH_IMAGE", image)
            .env("BENCH_USER", USER)
            .args([
                "--mode=root",
                "--variant=minbase",
                "--architectures=amd64",
                "--format=directory",
            ])
            .arg(format!("--include={}", PACKAGES.join(",")))
            .arg(format!(
                "--customize-hook=sh {} \"$1\"",
                shell_quote(&setup.display().to_string())
            ))
            .arg(SUITE)
            .arg(&tree)
            .arg(DEFAULT_MIRROR),
    )?;
    let boot = tree.join("boot");
    let kernel = only_file(&boot, "vmlinuz-")?;
    let initrd = only_file(&boot, "initrd.img-")?;
    copy(&kernel, &disk.kernel)?;
    copy(&initrd, &disk.initrd)?;
    let size_mib = tree_bytes(&tree)? / (1024 * 1024) + FREE_MIB;
    std::fs::File::create(&disk.root)
        .and_then(|f| f.set_len(size_mib * 1024 * 1024))
        .with_context(|| format!("cannot create {}", disk.root.display()))?;
    run_step(
        "mkfs.ext4 -d (Debian root)",
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "debian-root", "-d"])
            .arg(&tree)
            .arg(&disk.root),
    )?;
    std::fs::remove_dir_all(&tree).with_context(|| format!("cannot remove {}", tree.display()))?;
    Ok(())
}

/// The per-boot machine: a qcow2 overlay of the root in `run_dir`.
pub fn boot(disk: &Disk, run_dir: &Path) -> Result<Boot> {
    let overlay = run_dir.join("debian.qcow2");
    run_step(
        "qemu-img create (Debian overlay)",
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&disk.root)
            .arg(&overlay),
    )?;
    Ok(Boot {
        disk: overlay,
        config_drive: None,
        kernel: Some(DirectKernel {
            kernel: disk.kernel.clone(),
            initrd: disk.initrd.clone(),
            cmdline: APPEND.to_string(),
        }),
        user: USER,
        stop_docker: "sudo systemctl stop docker.socket docker.service containerd.service",
    })
}

/// The one file in `dir` whose name starts with `prefix`.
fn only_file(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("no {prefix}* in {}", dir.display()),
        n => bail!("{n} files {prefix}* in {}, expected one", dir.display()),
    }
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(|_| ())
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
}

/// Bytes of the regular files below `dir` (symlinks not followed).
fn tree_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += tree_bytes(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// `s` in single quotes for sh.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_changes_with_every_input() {
        let base = cache_key("s", b"k", b"i", "m");
        assert_eq!(base, cache_key("s", b"k", b"i", "m"));
        for other in [
            cache_key("s2", b"k", b"i", "m"),
            cache_key("s", b"k2", b"i", "m"),
            cache_key("s", b"k", b"i2", "m"),
            cache_key("s", b"k", b"i", "m2"),
            cache_key("", b"sk", b"i", "m"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn only_file_finds_the_kernel_and_refuses_two() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vmlinuz-6.12"), "").unwrap();
        std::fs::write(dir.path().join("config-6.12"), "").unwrap();
        assert_eq!(
            only_file(dir.path(), "vmlinuz-").unwrap(),
            dir.path().join("vmlinuz-6.12")
        );
        assert!(only_file(dir.path(), "initrd.img-").is_err());
        std::fs::write(dir.path().join("vmlinuz-6.13"), "").unwrap();
        assert!(only_file(dir.path(), "vmlinuz-").is_err());
    }

    #[test]
    fn shell_quote_survives_quotes() {
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
