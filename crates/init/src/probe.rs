//! Finding block devices by file system label, without blkid.
//!
//! The initrd has no udev (so no /dev/disk/by-label) and no blkid: `ros`
//! reads the few superblocks it needs itself. OxOS's media use three file
//! systems: ISO 9660 (the ISO, config drives), ext4 (state and boot
//! partitions) and FAT (config drives, cidata, the EFI partition). Their
//! labels sit at fixed offsets. The `blkid` crate would link libblkid, which
//! is not worth a static C dependency for three fixed offsets.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A file system found on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The file system type, as mount(2) names it.
    pub fstype: &'static str,
    /// Its label (volume id), trimmed.
    pub label: String,
}

fn read_at(file: &mut std::fs::File, offset: u64, buf: &mut [u8]) -> bool {
    file.seek(SeekFrom::Start(offset)).is_ok() && file.read_exact(buf).is_ok()
}

fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
        .trim_end()
        .to_string()
}

/// Whether an ext2/3/4 file system was cleanly unmounted: the superblock's
/// state has "valid" (bit 0 of `s_state`, +0x3A) and no journal recovery
/// is pending (`needs_recovery`, bit 2 of `s_feature_incompat`, +0x60).
/// None when `path` holds no ext file system.
pub fn ext4_clean(path: &Path) -> Option<bool> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut sb = [0u8; 0x64];
    if !read_at(&mut file, 1024, &mut sb) || sb[56..58] != [0x53, 0xEF] {
        return None;
    }
    let state = u16::from_le_bytes([sb[0x3A], sb[0x3B]]);
    let incompat = u32::from_le_bytes([sb[0x60], sb[0x61], sb[0x62], sb[0x63]]);
    Some(state & 1 != 0 && incompat & 0x4 == 0)
}

/// Reads the file system type and label of a device or image file.
pub fn probe(path: &Path) -> Option<Found> {
    let mut file = std::fs::File::open(path).ok()?;
    // ext2/3/4: superblock at 1024, magic 0xEF53 at +56, label at +120.
    let mut sb = [0u8; 136];
    if read_at(&mut file, 1024, &mut sb) && sb[56..58] == [0x53, 0xEF] {
        return Some(Found {
            fstype: "ext4",
            label: text(&sb[120..136]),
        });
    }
    // ISO 9660: primary volume descriptor at 32768: type 1, "CD001",
    // volume identifier at +40 (32 bytes, space padded).
    let mut pvd = [0u8; 72];
    if read_at(&mut file, 32768, &mut pvd) && pvd[0] == 1 && &pvd[1..6] == b"CD001" {
        return Some(Found {
            fstype: "iso9660",
            label: text(&pvd[40..72]),
        });
    }
    // FAT: boot sector signature 0x55AA; FAT32 has "FAT32" at 82 and the
    // label at 71, FAT12/16 "FAT1" at 54 and the label at 43.
    let mut boot = [0u8; 512];
    if read_at(&mut file, 0, &mut boot) && boot[510..512] == [0x55, 0xAA] {
        let label = if &boot[82..87] == b"FAT32" {
            Some(&boot[71..82])
        } else if &boot[54..58] == b"FAT1" {
            Some(&boot[43..54])
        } else {
            None
        };
        if let Some(label) = label {
            let label = text(label);
            return Some(Found {
                fstype: "vfat",
                label: if label == "NO NAME" {
                    String::new()
                } else {
                    label
                },
            });
        }
    }
    None
}

/// Every block device the kernel knows (disks and partitions), as /dev paths.
pub fn block_devices(sys: &Path, dev: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(sys.join("class/block"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| dev.join(e.file_name()))
                // Loop and RAM disks without backing are empty and only noise.
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    !name.starts_with("ram") && !name.starts_with("loop")
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The first device whose label is `label` (FAT labels compare without case,
/// as FAT stores them in upper case).
pub fn find_label(devices: &[PathBuf], label: &str) -> Option<(PathBuf, Found)> {
    devices.iter().find_map(|d| {
        let found = probe(d)?;
        let same = if found.fstype == "vfat" {
            found.label.eq_ignore_ascii_case(label)
        } else {
            found.label == label
        };
        same.then(|| (d.clone(), found))
    })
}

/// What a `rancher.state.dev`-style device spec names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// `LABEL=NAME`.
    Label(String),
    /// `/dev/...`.
    Path(PathBuf),
}

impl DeviceSpec {
    /// Parses `LABEL=X` or an absolute path; other forms (`UUID=`) are not
    /// supported yet and give an error naming them.
    pub fn parse(spec: &str) -> Result<Self, String> {
        if let Some(label) = spec.strip_prefix("LABEL=") {
            Ok(Self::Label(label.to_string()))
        } else if spec.starts_with('/') {
            Ok(Self::Path(PathBuf::from(spec)))
        } else {
            Err(format!(
                "device {spec:?}: expected LABEL=NAME or /dev/PATH (UUID= is not supported yet)"
            ))
        }
    }

    /// Looks the device up now.
    pub fn find(&self, sys: &Path, dev: &Path) -> Option<(PathBuf, Option<Found>)> {
        match self {
            Self::Label(label) => {
                find_label(&block_devices(sys, dev), label).map(|(p, f)| (p, Some(f)))
            }
            Self::Path(path) => path.exists().then(|| (path.clone(), probe(path))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn have(tool: &str) -> bool {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn sized(path: &Path, mb: u64) {
        let f = std::fs::File::create(path).unwrap();
        f.set_len(mb << 20).unwrap();
    }

    /// An 8 MiB ext4 image labelled RANCHER_STATE in `dir`.
    fn ext4_image(dir: &Path) -> PathBuf {
        let img = dir.join("state.img");
        sized(&img, 8);
        let ok = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "RANCHER_STATE"])
            .arg(&img)
            .status()
            .unwrap();
        assert!(ok.success());
        img
    }

    #[test]
    fn ext4_cleanliness_follows_the_superblock_state_and_recovery_flag() {
        if !have("mkfs.ext4") {
            eprintln!("skipped: mkfs.ext4 is missing");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = ext4_image(dir.path());
        assert_eq!(ext4_clean(&img), Some(true), "a fresh file system is clean");
        let patch = |offset: u64, bytes: &[u8]| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
            f.seek(SeekFrom::Start(1024 + offset)).unwrap();
            f.write_all(bytes).unwrap();
        };
        let mut sb = [0u8; 0x64];
        read_at(&mut std::fs::File::open(&img).unwrap(), 1024, &mut sb);
        // A pending journal recovery (as after a power cut while mounted).
        let incompat = u32::from_le_bytes([sb[0x60], sb[0x61], sb[0x62], sb[0x63]]) | 0x4;
        patch(0x60, &incompat.to_le_bytes());
        assert_eq!(ext4_clean(&img), Some(false));
        patch(0x60, &(incompat & !0x4).to_le_bytes());
        assert_eq!(ext4_clean(&img), Some(true));
        // "Not valid": mounted read-write and never unmounted.
        patch(0x3A, &0u16.to_le_bytes());
        assert_eq!(ext4_clean(&img), Some(false));
        let other = dir.path().join("zero.img");
        sized(&other, 1);
        assert_eq!(ext4_clean(&other), None);
    }

    #[test]
    fn labels_of_ext4_fat_and_iso_images() {
        let dir = tempfile::tempdir().unwrap();
        let mut checked = 0;
        if have("mkfs.ext4") {
            let img = ext4_image(dir.path());
            let found = probe(&img).unwrap();
            assert_eq!(
                (found.fstype, found.label.as_str()),
                ("ext4", "RANCHER_STATE")
            );
            checked += 1;
        }
        if have("mkfs.vfat") {
            let img = dir.path().join("cidata.img");
            sized(&img, 4);
            let ok = Command::new("mkfs.vfat")
                .args(["-n", "CIDATA"])
                .arg(&img)
                .output()
                .unwrap();
            assert!(ok.status.success());
            let found = probe(&img).unwrap();
            assert_eq!((found.fstype, found.label.as_str()), ("vfat", "CIDATA"));
            let (path, _) = find_label(std::slice::from_ref(&img), "cidata").unwrap();
            assert_eq!(path, img, "FAT labels compare without case");
            checked += 1;
        }
        if have("xorriso") {
            let src = dir.path().join("src");
            std::fs::create_dir(&src).unwrap();
            std::fs::write(src.join("x"), "x").unwrap();
            let img = dir.path().join("cfg.iso");
            let ok = Command::new("xorriso")
                .args(["-as", "mkisofs", "-quiet", "-V", "config-2", "-o"])
                .arg(&img)
                .arg(&src)
                .output()
                .unwrap();
            assert!(
                ok.status.success(),
                "{}",
                String::from_utf8_lossy(&ok.stderr)
            );
            let found = probe(&img).unwrap();
            assert_eq!(
                (found.fstype, found.label.as_str()),
                ("iso9660", "config-2")
            );
            checked += 1;
        }
        if checked < 3 {
            eprintln!("note: only {checked} of 3 file systems checked (mkfs.ext4, mkfs.vfat, xorriso missing)");
        }
        let empty = dir.path().join("empty.img");
        sized(&empty, 1);
        assert_eq!(probe(&empty), None, "an empty disk has no file system");
    }

    #[test]
    fn device_specs() {
        assert_eq!(
            DeviceSpec::parse("LABEL=RANCHER_STATE").unwrap(),
            DeviceSpec::Label("RANCHER_STATE".into())
        );
        assert_eq!(
            DeviceSpec::parse("/dev/vda1").unwrap(),
            DeviceSpec::Path("/dev/vda1".into())
        );
        assert!(DeviceSpec::parse("UUID=1234")
            .unwrap_err()
            .contains("not supported yet"));
    }
}
