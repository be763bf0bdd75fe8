//! The OxOS machine: a copy of `dist/oxos.qcow2` whose state partition
//! holds the preloaded image, and a config drive with the SSH key.
//!
//! QEMU loads `dist/vmlinuz` and `dist/initrd.img` itself, with the command
//! line the disk's GRUB gives ([`crate::os::medium_cmdline`]), as it loads
//! Debian's kernel: both machines are measured from the kernel on, and
//! neither pays for a boot loader reading the kernel through the BIOS (about
//! 12 s under TCG for OxOS's GRUB). The disk is the same; only who loads the
//! kernel differs from an ordinary boot.
//!
//! The copy is a raw (sparse) disk under the run directory, booted through
//! a qcow2 overlay exactly as the Debian root is, so `dist/oxos.qcow2` stays
//! pristine and both machines read their disks the same way. The image goes
//! to `/var/lib/rancher/preload/docker/` on the state partition
//! (`RANCHER_STATE`, the root of the running system) with `debugfs`, which
//! writes into an ext4 file system inside a disk image at an offset without
//! mounting it: the same place an installed OxOS keeps images to load at
//! boot, so the image is loaded by the system's own preload step, as
//! Debian's is by a oneshot after docker.service.

use super::vm::Boot;
use crate::cmd::run_step;
use crate::os::qemu;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The login on OxOS.
pub const USER: &str = "rancher";
/// The state partition's label.
const STATE_LABEL: &str = "RANCHER_STATE";
/// Where OxOS loads User Docker's preloaded images from.
const PRELOAD_DIR: &str = "/var/lib/rancher/preload/docker";

/// The per-boot machine from `pristine` (dist/oxos.qcow2) in `run_dir`.
pub fn boot(pristine: &Path, image: &Path, public_key: &Path, run_dir: &Path) -> Result<Boot> {
    let raw = run_dir.join("oxos.raw");
    run_step(
        "qemu-img convert (OxOS disk copy)",
        Command::new("qemu-img")
            .args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(pristine)
            .arg(&raw),
    )?;
    let offset = state_offset(&raw)?;
    preload(&raw, offset, image)?;
    let overlay = run_dir.join("oxos.qcow2");
    run_step(
        "qemu-img create (OxOS overlay)",
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&raw)
            .arg(&overlay),
    )?;
    let key = std::fs::read_to_string(public_key)
        .with_context(|| format!("cannot read {}", public_key.display()))?;
    let cloud_config = run_dir.join("cloud-config.yml");
    std::fs::write(&cloud_config, cloud_config_text(&key))
        .with_context(|| format!("cannot write {}", cloud_config.display()))?;
    let drive = run_dir.join("config-drive.iso");
    qemu::make_config_drive(
        qemu::Datasource::ConfigDrive,
        &cloud_config,
        None,
        &run_dir.join("config-drive"),
        &drive,
    )?;
    let kernel = crate::os::dist_direct_kernel(crate::os::medium_cmdline(qemu::Medium::Disk))?;
    Ok(Boot {
        disk: overlay,
        config_drive: Some(drive),
        kernel: Some(kernel),
        user: USER,
        stop_docker: "sudo system-docker stop docker",
    })
}

/// The cloud-config that lets the benchmark in.
pub fn cloud_config_text(public_key: &str) -> String {
    format!(
        "#cloud-config\nssh_authorized_keys:\n  - {}\n",
        public_key.trim()
    )
}

/// Byte offset of the partition labelled [`STATE_LABEL`] in the raw disk.
fn state_offset(raw: &Path) -> Result<u64> {
    let out = Command::new("sfdisk")
        .arg("-J")
        .arg(raw)
        .output()
        .context("cannot start sfdisk")?;
    if !out.status.success() {
        bail!(
            "sfdisk -J {} failed ({}): {}",
            raw.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    for offset in partition_offsets(&out.stdout)? {
        let label = Command::new("e2label")
            .arg(format!("{}?offset={offset}", raw.display()))
            .output()
            .context("cannot start e2label")?;
        if label.status.success() && String::from_utf8_lossy(&label.stdout).trim() == STATE_LABEL {
            return Ok(offset);
        }
    }
    bail!(
        "no ext4 partition labelled {STATE_LABEL} in {}",
        raw.display()
    )
}

/// The byte offsets of the partitions in `sfdisk -J` output.
pub fn partition_offsets(json: &[u8]) -> Result<Vec<u64>> {
    let v: serde_json::Value = serde_json::from_slice(json).context("sfdisk -J printed no JSON")?;
    let table = &v["partitiontable"];
    let sector = table["sectorsize"].as_u64().unwrap_or(512);
    let Some(parts) = table["partitions"].as_array() else {
        bail!("sfdisk -J: no partitions");
    };
    parts
        .iter()
        .map(|p| {
            p["start"]
                .as_u64()
                .map(|s| s * sector)
                .context("sfdisk -J: a partition without a start")
        })
        .collect()
}

/// Writes `image` to [`PRELOAD_DIR`] on the ext4 file system at `offset`.
fn preload(raw: &Path, offset: u64, image: &Path) -> Result<()> {
    let fs = format!("{}?offset={offset}", raw.display());
    let target = format!("{PRELOAD_DIR}/bench-image.tar");
    let script = raw.with_extension("debugfs");
    std::fs::write(&script, debugfs_script(PRELOAD_DIR, image, &target))
        .with_context(|| format!("cannot write {}", script.display()))?;
    // debugfs echoes every request on stdout; that would mix into the
    // report, so its output is kept for an error only.
    eprintln!("xtask: == debugfs: {target} on the OxOS state partition");
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script)
        .arg(&fs)
        .output()
        .context("cannot start debugfs")?;
    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !out.status.success() {
        bail!("debugfs -w {fs} failed ({}): {said}", out.status);
    }
    // debugfs exits 0 even when a request fails: check the result.
    let want = std::fs::metadata(image)
        .with_context(|| format!("cannot stat {}", image.display()))?
        .len();
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat {target}"))
        .arg(&fs)
        .output()
        .context("cannot start debugfs")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.contains(&format!("Size: {want}")) {
        bail!(
            "the preloaded image {target} is not on the OxOS state partition after debugfs \
             (debugfs said: {said}; stat said: {})",
            text.lines().next().unwrap_or("nothing")
        );
    }
    Ok(())
}

/// debugfs requests that create `dir` (each level) and write `image` to
/// `target`. An existing directory only makes debugfs print a message.
pub fn debugfs_script(dir: &str, image: &Path, target: &str) -> String {
    let mut s = String::new();
    let mut path = PathBuf::from("/");
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        path.push(part);
        s.push_str(&format!("mkdir {}\n", path.display()));
    }
    s.push_str(&format!("write {} {target}\n", image.display()));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_offsets_come_from_sfdisk_sectors() {
        let json = br#"{"partitiontable": {"label": "dos", "sectorsize": 512,
            "partitions": [{"node": "d1", "start": 2048, "size": 10, "type": "83"},
                           {"node": "d3", "start": 591872, "size": 10, "type": "83"}]}}"#;
        assert_eq!(partition_offsets(json).unwrap(), [2048 * 512, 591872 * 512]);
        assert!(partition_offsets(b"{}").is_err());
        assert!(partition_offsets(b"not json").is_err());
    }

    #[test]
    fn debugfs_script_makes_every_level_then_writes() {
        let s = debugfs_script("/var/lib/x", Path::new("/w/i.tar"), "/var/lib/x/i.tar");
        assert_eq!(
            s,
            "mkdir /var\nmkdir /var/lib\nmkdir /var/lib/x\nwrite /w/i.tar /var/lib/x/i.tar\n"
        );
    }

    #[test]
    fn cloud_config_lists_the_key() {
        let c = cloud_config_text("ssh-ed25519 AAAA oxos-bench\n");
        assert_eq!(
            c,
            "#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAA oxos-bench\n"
        );
    }
}
