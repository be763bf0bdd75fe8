//! The installed disk image, made from ordinary files without loop devices
//! or mounts: each partition is a file system image (`mkfs.ext4 -d` fills it
//! from a directory), `sfdisk` writes an MBR partition table into the raw
//! disk file, the partition images are copied in at their offsets, and
//! GRUB's BIOS boot code goes into the MBR and the gap before the first
//! partition. For UEFI, an EFI system partition (FAT, made by `mkfs.vfat`
//! and filled by `mcopy`) holds GRUB's `EFI/BOOT/BOOTX64.EFI`; both GRUBs
//! find the boot partition by its label and read the same `grub.cfg`.
//!
//! Installing GRUB for BIOS is what `grub-bios-setup` does, but that tool
//! insists on probing the host's root device and fails on an image file, so
//! the two patches it makes are done here (they are the whole contract of
//! GRUB's `boot.img`): the first 440 bytes of `boot.img` go into sector 0
//! (the partition table after them stays), the 64-bit sector number of
//! `core.img` goes to offset 0x5c of it, and `core.img` (made by
//! `grub-mkimage`, which fills in its own block list for a core that starts
//! at sector 1) goes to sector 1. The same is done by e.g. osbuild's
//! `grub2.inst` stage.

use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

pub const SECTOR: u64 = 512;
/// The first partition starts at 1 MiB; core.img lives in the gap before.
pub const FIRST_LBA: u64 = 2048;
/// Where boot.img keeps the sector of core.img (GRUB_BOOT_MACHINE_KERNEL_SECTOR).
const KERNEL_SECTOR_OFFSET: usize = 0x5c;
/// Where boot.img's jump over the boot-drive check is
/// (GRUB_BOOT_MACHINE_DRIVE_CHECK); replaced with two NOPs for hard disks,
/// as grub-bios-setup does, for BIOSes that pass a wrong drive number.
const DRIVE_CHECK_OFFSET: usize = 0x66;
/// Boot code ends where the disk signature and partition table begin.
const BOOT_CODE_LEN: usize = 440;

/// Partition layout in sectors.
#[derive(Debug, PartialEq, Eq)]
pub struct Layout {
    pub boot_start: u64,
    pub boot_sectors: u64,
    pub esp_start: u64,
    pub esp_sectors: u64,
    pub state_start: u64,
    pub state_sectors: u64,
    pub total_sectors: u64,
}

/// Size of the EFI system partition (GRUB's EFI binary only).
pub const ESP_MIB: u64 = 32;

/// Partition 1: the boot partition of `boot_mib` at 1 MiB; partition 2: the
/// EFI system partition; partition 3: the state partition filling the rest
/// of a `total_mib` disk.
pub fn layout(boot_mib: u64, total_mib: u64) -> Result<Layout> {
    let mib = 1024 * 1024 / SECTOR;
    let boot_start = FIRST_LBA;
    let boot_sectors = boot_mib * mib;
    let esp_start = boot_start + boot_sectors;
    let esp_sectors = ESP_MIB * mib;
    let state_start = esp_start + esp_sectors;
    let total_sectors = total_mib * mib;
    if state_start + 64 * mib > total_sectors {
        bail!(
            "disk of {total_mib} MiB too small for a {boot_mib} MiB boot partition, the \
             {ESP_MIB} MiB EFI system partition and a state partition of at least 64 MiB"
        );
    }
    Ok(Layout {
        boot_start,
        boot_sectors,
        esp_start,
        esp_sectors,
        state_start,
        state_sectors: total_sectors - state_start,
        total_sectors,
    })
}

/// The `sfdisk` script of `l`: DOS label, boot partition active (Linux),
/// EFI system partition (type ef), state partition (Linux).
pub fn sfdisk_script(l: &Layout) -> String {
    format!(
        "label: dos\n\
         start={}, size={}, type=83, bootable\n\
         start={}, size={}, type=ef\n\
         start={}, size={}, type=83\n",
        l.boot_start, l.boot_sectors, l.esp_start, l.esp_sectors, l.state_start, l.state_sectors
    )
}

/// Copies `src` into `dst` at byte `offset`, leaving holes of `src` and
/// all-zero blocks as holes so that the raw disk stays sparse. The data
/// regions of `src` are found with `SEEK_DATA`/`SEEK_HOLE`, so a mostly empty
/// file system image is copied without reading its gigabytes of holes.
pub fn copy_sparse_at(src: &Path, dst: &Path, offset: u64) -> Result<()> {
    use nix::unistd::{lseek, Whence};
    use std::os::fd::AsRawFd;
    let mut input = File::open(src).with_context(|| format!("cannot open {}", src.display()))?;
    let mut output = OpenOptions::new()
        .write(true)
        .open(dst)
        .with_context(|| format!("cannot open {}", dst.display()))?;
    let len = input.metadata()?.len();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos: u64 = 0;
    while pos < len {
        // The next data region; ENXIO means only a hole is left.
        let data = match lseek(input.as_raw_fd(), pos as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(e).with_context(|| format!("cannot seek in {}", src.display())),
        };
        let hole = lseek(input.as_raw_fd(), data as i64, Whence::SeekHole)
            .map(|h| h as u64)
            .unwrap_or(len);
        input.seek(SeekFrom::Start(data))?;
        let mut at = data;
        while at < hole {
            let want = buf.len().min((hole - at) as usize);
            let n = read_full(&mut input, &mut buf[..want])
                .with_context(|| format!("cannot read {}", src.display()))?;
            if n == 0 {
                break;
            }
            if buf[..n].iter().any(|&b| b != 0) {
                output.seek(SeekFrom::Start(offset + at))?;
                output
                    .write_all(&buf[..n])
                    .with_context(|| format!("cannot write {}", dst.display()))?;
            }
            at += n as u64;
        }
        pos = hole.max(at);
    }
    Ok(())
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Sector 0 after installing `boot_img` into `mbr` (which holds the
/// partition table) with core.img at sector `core_lba`.
pub fn patch_mbr(mbr: &[u8; 512], boot_img: &[u8], core_lba: u64) -> Result<[u8; 512]> {
    if boot_img.len() != 512 {
        bail!("boot.img is {} bytes, expected 512", boot_img.len());
    }
    let mut out = *mbr;
    out[..BOOT_CODE_LEN].copy_from_slice(&boot_img[..BOOT_CODE_LEN]);
    out[KERNEL_SECTOR_OFFSET..KERNEL_SECTOR_OFFSET + 8].copy_from_slice(&core_lba.to_le_bytes());
    out[DRIVE_CHECK_OFFSET] = 0x90;
    out[DRIVE_CHECK_OFFSET + 1] = 0x90;
    out[510] = 0x55;
    out[511] = 0xaa;
    Ok(out)
}

/// Installs GRUB's BIOS boot code into the raw disk `disk`.
pub fn install_bios_boot(disk: &Path, boot_img: &Path, core_img: &Path) -> Result<()> {
    let boot =
        std::fs::read(boot_img).with_context(|| format!("cannot read {}", boot_img.display()))?;
    let core =
        std::fs::read(core_img).with_context(|| format!("cannot read {}", core_img.display()))?;
    let gap = (FIRST_LBA - 1) * SECTOR;
    if core.len() as u64 > gap {
        bail!(
            "grub core.img is {} bytes, more than the {gap} bytes before the first partition",
            core.len()
        );
    }
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .with_context(|| format!("cannot open {}", disk.display()))?;
    let mut mbr = [0u8; 512];
    f.read_exact(&mut mbr)
        .with_context(|| format!("cannot read the MBR of {}", disk.display()))?;
    let mbr = patch_mbr(&mbr, &boot, 1)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&mbr)?;
    f.seek(SeekFrom::Start(SECTOR))?;
    f.write_all(&core)
        .with_context(|| format!("cannot write core.img into {}", disk.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_puts_state_after_boot_and_fills_the_disk() {
        let l = layout(256, 4096).unwrap();
        assert_eq!(l.boot_start, 2048);
        assert_eq!(l.boot_sectors, 256 * 2048);
        assert_eq!(l.esp_start, 2048 + 256 * 2048);
        assert_eq!(l.state_start, l.esp_start + 32 * 2048);
        assert_eq!(l.state_start + l.state_sectors, 4096 * 2048);
        let script = sfdisk_script(&l);
        assert!(script.contains("start=2048, size=524288, type=83, bootable\n"));
        assert!(script.contains(&format!("start={}, size=65536, type=ef\n", l.esp_start)));
        assert!(script.ends_with(&format!(
            "start={}, size={}, type=83\n",
            l.state_start, l.state_sectors
        )));
        assert!(layout(256, 300).is_err());
    }

    #[test]
    fn mbr_patch_keeps_the_partition_table_and_points_at_core() {
        let mut mbr = [0u8; 512];
        mbr[446..462].copy_from_slice(&[0x80; 16]);
        mbr[440..444].copy_from_slice(&[1, 2, 3, 4]);
        let boot = vec![0xabu8; 512];
        let out = patch_mbr(&mbr, &boot, 1).unwrap();
        assert_eq!(&out[446..462], &[0x80; 16]);
        assert_eq!(&out[440..444], &[1, 2, 3, 4]);
        assert_eq!(&out[0x5c..0x64], &1u64.to_le_bytes());
        assert_eq!(&out[0x66..0x68], &[0x90, 0x90]);
        assert_eq!(out[0], 0xab);
        assert_eq!(&out[510..], &[0x55, 0xaa]);
        assert!(patch_mbr(&mbr, &[0; 100], 1).is_err());
    }

    #[test]
    fn sparse_copy_writes_data_at_the_offset_and_keeps_holes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let dst = dir.path().join("dst");
        let mut data = vec![0u8; 3 << 20];
        data[5] = 7;
        data[(2 << 20) + 9] = 8;
        std::fs::write(&src, &data).unwrap();
        File::create(&dst).unwrap().set_len(8 << 20).unwrap();
        copy_sparse_at(&src, &dst, 4096).unwrap();
        let out = std::fs::read(&dst).unwrap();
        assert_eq!(out.len(), 8 << 20);
        assert_eq!(out[4096 + 5], 7);
        assert_eq!(out[4096 + (2 << 20) + 9], 8);
        assert_eq!(out.iter().filter(|&&b| b != 0).count(), 2);
    }

    #[test]
    fn sparse_copy_finds_data_after_a_hole_and_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let dst = dir.path().join("dst");
        let f = File::create(&src).unwrap();
        f.set_len(16 << 20).unwrap();
        let mut f = OpenOptions::new().write(true).open(&src).unwrap();
        f.seek(SeekFrom::Start(6 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        f.seek(SeekFrom::Start((16 << 20) - 3)).unwrap();
        f.write_all(b"end").unwrap();
        drop(f);
        File::create(&dst).unwrap().set_len(20 << 20).unwrap();
        copy_sparse_at(&src, &dst, 1 << 20).unwrap();
        let out = std::fs::read(&dst).unwrap();
        assert_eq!(&out[(7 << 20)..(7 << 20) + 6], b"middle");
        assert_eq!(&out[(17 << 20) - 3..17 << 20], b"end");
        assert_eq!(out.iter().filter(|&&b| b != 0).count(), 9);
    }
}
