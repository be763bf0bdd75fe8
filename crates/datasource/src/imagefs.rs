//! Reading the files of a config drive or NoCloud seed straight from its
//! ISO 9660 or FAT block device (or image file), without a kernel mount.
//!
//! # Background
//!
//! Config drives are ISO 9660 images (with Rock Ridge and Joliet names, as
//! `xorriso -as mkisofs -J -R` or `genisoimage -J -R` write them) or FAT
//! images. Early in boot the kernel may lack iso9660 or vfat, a container
//! may not be allowed to mount, and an image file needs a loop device the
//! kernel may not have either. The few small files a datasource wants can
//! be read from the device in user space instead.
//!
//! # Design
//!
//! - [`Image::open`] recognises the file system (the type blkid reported,
//!   else the ISO 9660 signature `CD001` in sector 16, else a FAT boot
//!   sector) and opens the device read-only.
//! - FAT12/16/32 (with long names) is read by the `fatfs` crate. It wants
//!   a device that can also be written, so the device is wrapped in
//!   [`ReadOnly`], whose writes fail: nothing is ever written.
//! - ISO 9660 is read by the small reader below. The crates that read ISO
//!   9660 were not a fit: `cdfs` makes FUSE, a command line parser and a
//!   logger unconditional dependencies of the library, and `iso9660` reads
//!   neither Rock Ridge nor Joliet names, which `user_data` and
//!   `meta_data.json` need. The subset needed is small: the volume
//!   descriptors, directory records, Rock Ridge `NM` names (with `CE`
//!   continuation areas) and Joliet UTF-16 names, and a path lookup.
//!   A path is looked up in the primary tree (Rock Ridge names when the
//!   records have them, else the plain names without `;1`, compared
//!   without regard to case), then in the Joliet tree.
//! - Every size and offset read from the device is checked against limits
//!   before it is used, so a corrupt image gives an error naming what is
//!   wrong, never a panic or a huge allocation.
//!
//! # Limitations
//!
//! - ISO 9660: files recorded in several extents (over 4 GiB), interleaved
//!   files and Rock Ridge `SP` skip bytes other than 0 are not supported;
//!   neither is UDF.
//! - Files larger than [`MAX_FILE`] are refused.

use std::fs::File;
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The largest file read from an image (the user-data limit).
pub(crate) const MAX_FILE: u64 = 64 << 20;
/// The largest ISO 9660 directory read.
const MAX_DIR: u64 = 16 << 20;
/// ISO 9660 logical sector size.
const SECTOR: u64 = 2048;
/// How many volume descriptors are looked at before giving up on a
/// terminator.
const MAX_DESCRIPTORS: u64 = 64;
/// How many Rock Ridge continuation areas one record may chain.
const MAX_CONTINUATIONS: usize = 16;
/// How deep a path may go.
const MAX_DEPTH: usize = 32;

fn corrupt(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what.to_string())
}

/// A device or image file opened read-only: reads and seeks go through,
/// writes fail. `fatfs` needs `Read + Write + Seek` even to read.
pub(crate) struct ReadOnly<T>(pub T);

impl<T: Read> Read for ReadOnly<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<T: Seek> Seek for ReadOnly<T> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

impl<T> Write for ReadOnly<T> {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            ErrorKind::PermissionDenied,
            "the device is opened read-only",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A config drive file system opened in user space.
pub(crate) enum Image {
    Iso(Iso),
    Fat(Box<fatfs::FileSystem<ReadOnly<File>>>),
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Image::Iso(_) => "Image::Iso",
            Image::Fat(_) => "Image::Fat",
        })
    }
}

impl Image {
    /// Opens `device` read-only. `fstype` is what blkid reported, if
    /// anything; without it the file system is recognised by its content.
    pub(crate) fn open(device: &Path, fstype: Option<&str>) -> io::Result<Image> {
        let file = File::open(device)?;
        match fstype {
            Some("iso9660") => Ok(Image::Iso(Iso::open(file)?)),
            Some("vfat" | "msdos" | "fat") => open_fat(file),
            Some(other) => Err(io::Error::new(
                ErrorKind::Unsupported,
                format!("reading a {other} file system without mounting it is not supported yet"),
            )),
            None if is_iso(&file)? => Ok(Image::Iso(Iso::open(file)?)),
            None => open_fat(file).map_err(|e| {
                corrupt(format!(
                    "neither an ISO 9660 nor a FAT file system (as FAT: {e})"
                ))
            }),
        }
    }

    /// The content of the file at `path` (relative, `/`-separated), or
    /// `None` when it does not exist.
    pub(crate) fn read(&mut self, path: &str) -> io::Result<Option<Vec<u8>>> {
        match self {
            Image::Iso(iso) => iso.read(path),
            Image::Fat(fs) => {
                // fatfs is trusted with sizes it checks itself, but it is
                // not built to never panic on a corrupt image: a panic
                // becomes an error here instead of ending the reader.
                let fs = std::panic::AssertUnwindSafe(fs);
                std::panic::catch_unwind(move || read_fat(&fs, path))
                    .unwrap_or_else(|_| Err(corrupt("the FAT file system is corrupt")))
            }
        }
    }
}

fn open_fat(file: File) -> io::Result<Image> {
    let fs = std::panic::catch_unwind(move || {
        fatfs::FileSystem::new(ReadOnly(file), fatfs::FsOptions::new())
    })
    .unwrap_or_else(|_| Err(corrupt("the FAT boot sector is corrupt")))?;
    Ok(Image::Fat(Box::new(fs)))
}

fn read_fat(fs: &fatfs::FileSystem<ReadOnly<File>>, path: &str) -> io::Result<Option<Vec<u8>>> {
    let mut dir = fs.root_dir();
    let mut parts = path.split('/').filter(|p| !p.is_empty()).peekable();
    while let Some(part) = parts.next() {
        // A damaged directory may chain its clusters in a loop: FAT
        // directories hold at most 65536 entries.
        let Some(entry) = dir.iter().take(65536).find_map(|e| match e {
            Ok(e) if e.file_name().eq_ignore_ascii_case(part) => Some(Ok(e)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }) else {
            return Ok(None);
        };
        let entry = entry?;
        if parts.peek().is_none() {
            if entry.is_dir() {
                return Err(io::Error::new(ErrorKind::IsADirectory, "is a directory"));
            }
            if entry.len() > MAX_FILE {
                return Err(too_big(entry.len()));
            }
            let mut data = Vec::with_capacity(entry.len() as usize);
            entry.to_file().read_to_end(&mut data)?;
            return Ok(Some(data));
        }
        if !entry.is_dir() {
            return Ok(None);
        }
        dir = entry.to_dir();
    }
    Err(io::Error::new(ErrorKind::IsADirectory, "is a directory"))
}

fn too_big(len: u64) -> io::Error {
    io::Error::new(
        ErrorKind::FileTooLarge,
        format!("the file is {len} bytes, more than the limit of {MAX_FILE}"),
    )
}

/// Whether `file` has the ISO 9660 signature in its first volume
/// descriptor.
fn is_iso(file: &File) -> io::Result<bool> {
    let mut id = [0u8; 5];
    match file.read_exact_at(&mut id, 16 * SECTOR + 1) {
        Ok(()) => Ok(&id == b"CD001"),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// An ISO 9660 file system: the roots of its primary and Joliet trees.
pub(crate) struct Iso {
    file: File,
    primary: Extent,
    joliet: Option<Extent>,
}

/// Where a file or directory is recorded.
#[derive(Debug, Clone, Copy)]
struct Extent {
    lba: u32,
    len: u32,
    dir: bool,
}

/// Which names a tree's records carry.
#[derive(Clone, Copy, PartialEq)]
enum Names {
    /// Plain ISO 9660 names, or Rock Ridge names where present.
    Primary,
    /// UCS-2/UTF-16 big-endian names of a Joliet supplementary descriptor.
    Joliet,
}

impl Iso {
    fn open(file: File) -> io::Result<Iso> {
        let mut primary = None;
        let mut joliet = None;
        let mut sector = [0u8; SECTOR as usize];
        for index in 16..16 + MAX_DESCRIPTORS {
            file.read_exact_at(&mut sector, index * SECTOR)
                .map_err(|e| eof_is_corrupt(e, "the volume descriptors end early"))?;
            if &sector[1..6] != b"CD001" {
                return Err(corrupt(format!(
                    "volume descriptor {index} has no CD001 signature"
                )));
            }
            match sector[0] {
                1 if primary.is_none() => primary = Some(root_record(&sector)?),
                // Joliet: a supplementary descriptor with a UCS-2 escape
                // sequence (levels 1 to 3).
                2 if joliet.is_none()
                    && sector[88] == b'%'
                    && sector[89] == b'/'
                    && matches!(sector[90], b'@' | b'C' | b'E') =>
                {
                    joliet = Some(root_record(&sector)?)
                }
                255 => break,
                _ => {}
            }
        }
        let primary = primary.ok_or_else(|| corrupt("there is no primary volume descriptor"))?;
        Ok(Iso {
            file,
            primary,
            joliet,
        })
    }

    fn read(&mut self, path: &str) -> io::Result<Option<Vec<u8>>> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() > MAX_DEPTH {
            return Ok(None);
        }
        let mut found = self.lookup(self.primary, &parts, Names::Primary)?;
        if found.is_none() {
            if let Some(root) = self.joliet {
                found = self.lookup(root, &parts, Names::Joliet)?;
            }
        }
        let Some(extent) = found else {
            return Ok(None);
        };
        if extent.dir {
            return Err(io::Error::new(ErrorKind::IsADirectory, "is a directory"));
        }
        self.extent(extent, MAX_FILE).map(Some)
    }

    fn lookup(&self, root: Extent, parts: &[&str], names: Names) -> io::Result<Option<Extent>> {
        let mut current = root;
        for part in parts {
            if !current.dir {
                return Ok(None);
            }
            let data = self.extent(current, MAX_DIR)?;
            match self.find(&data, part, names)? {
                Some(next) => current = next,
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }

    /// The entry called `wanted` among the directory records in `data`.
    fn find(&self, data: &[u8], wanted: &str, names: Names) -> io::Result<Option<Extent>> {
        let mut pos = 0usize;
        while pos < data.len() {
            let len = data[pos] as usize;
            if len == 0 {
                // Records never cross a sector: the rest of it is padding.
                pos = (pos / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            let record = data
                .get(pos..pos + len)
                .filter(|r| r.len() >= 34)
                .ok_or_else(|| corrupt("a directory record is cut short"))?;
            pos += len;
            let id_len = record[32] as usize;
            let id = record
                .get(33..33 + id_len)
                .ok_or_else(|| corrupt("a directory record's name is cut short"))?;
            if id == [0] || id == [1] {
                continue; // "." and ".."
            }
            let flags = record[25];
            let matches = match names {
                Names::Joliet => joliet_name(id) == wanted,
                Names::Primary => {
                    // The system use area follows the name (padded to an
                    // even offset).
                    let sua = record.get(33 + id_len + (1 - id_len % 2)..).unwrap_or(&[]);
                    match self.rock_ridge_name(sua)? {
                        Some(name) => name == wanted,
                        None => plain_name(id).eq_ignore_ascii_case(wanted),
                    }
                }
            };
            if !matches {
                continue;
            }
            if flags & 0x80 != 0 {
                return Err(io::Error::new(
                    ErrorKind::Unsupported,
                    format!("{wanted} is recorded in several extents, which is not supported yet"),
                ));
            }
            return Ok(Some(Extent {
                lba: le32(record, 2),
                len: le32(record, 10),
                dir: flags & 0x02 != 0,
            }));
        }
        Ok(None)
    }

    /// The Rock Ridge name in a system use area, following `CE`
    /// continuation areas, if the area has an `NM` entry.
    fn rock_ridge_name(&self, sua: &[u8]) -> io::Result<Option<String>> {
        let mut name: Option<Vec<u8>> = None;
        let mut area = sua.to_vec();
        for _ in 0..=MAX_CONTINUATIONS {
            let mut next = None;
            let mut pos = 0usize;
            while pos + 4 <= area.len() {
                let (sig, len) = (&area[pos..pos + 2], area[pos + 2] as usize);
                if len < 4 || pos + len > area.len() {
                    break; // padding or a damaged entry: no more entries
                }
                let entry = &area[pos..pos + len];
                match sig {
                    b"NM" if len >= 5 => {
                        let flags = entry[4];
                        // CURRENT (.) and PARENT (..) never name a file.
                        if flags & 0x06 == 0 {
                            name.get_or_insert_with(Vec::new)
                                .extend_from_slice(&entry[5..]);
                        }
                    }
                    b"CE" if len >= 28 => {
                        next = Some((le32(entry, 4), le32(entry, 12), le32(entry, 20)))
                    }
                    b"ST" => break,
                    _ => {}
                }
                pos += len;
            }
            let Some((lba, offset, len)) = next else {
                break;
            };
            if u64::from(offset) + u64::from(len) > SECTOR * 4 {
                return Err(corrupt("a Rock Ridge continuation area is out of bounds"));
            }
            area = vec![0; len as usize];
            self.file
                .read_exact_at(&mut area, u64::from(lba) * SECTOR + u64::from(offset))
                .map_err(|e| eof_is_corrupt(e, "a Rock Ridge continuation area is past the end"))?;
        }
        Ok(name.map(|n| String::from_utf8_lossy(&n).into_owned()))
    }

    /// The data of an extent, refused when larger than `limit`.
    fn extent(&self, extent: Extent, limit: u64) -> io::Result<Vec<u8>> {
        let len = u64::from(extent.len);
        if len > limit {
            return Err(if extent.dir {
                corrupt(format!("a directory is {len} bytes, more than {limit}"))
            } else {
                too_big(len)
            });
        }
        let mut data = vec![0; len as usize];
        self.file
            .read_exact_at(&mut data, u64::from(extent.lba) * SECTOR)
            .map_err(|e| eof_is_corrupt(e, "a file or directory is past the end of the image"))?;
        Ok(data)
    }
}

fn eof_is_corrupt(e: io::Error, what: &str) -> io::Error {
    if e.kind() == ErrorKind::UnexpectedEof {
        corrupt(what)
    } else {
        e
    }
}

/// The root directory record of a volume descriptor.
fn root_record(sector: &[u8]) -> io::Result<Extent> {
    let record = &sector[156..190];
    if record[0] < 34 || record[25] & 0x02 == 0 {
        return Err(corrupt("the root directory record is invalid"));
    }
    Ok(Extent {
        lba: le32(record, 2),
        len: le32(record, 10),
        dir: true,
    })
}

/// The little-endian half of a both-endian 32-bit field.
fn le32(data: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = data.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    u32::from_le_bytes(b)
}

/// A plain ISO 9660 name without its `;1` version and the dot of an
/// empty extension.
fn plain_name(id: &[u8]) -> String {
    let name = String::from_utf8_lossy(id);
    let name = name.split(';').next().unwrap_or_default();
    name.strip_suffix('.').unwrap_or(name).to_owned()
}

/// A Joliet name (UCS-2 big-endian, read as UTF-16) without its version.
fn joliet_name(id: &[u8]) -> String {
    let units = id.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
    let name: String = char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    match name.rsplit_once(';') {
        Some((base, version)) if version.bytes().all(|b| b.is_ascii_digit()) => base.to_owned(),
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_version() {
        assert_eq!(plain_name(b"META_DAT.JSO;1"), "META_DAT.JSO");
        assert_eq!(plain_name(b"USER_DAT.;1"), "USER_DAT");
        let utf16: Vec<u8> = "meta_data.json;1"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        assert_eq!(joliet_name(&utf16), "meta_data.json");
    }

    fn xorriso(dir: &Path, image: &Path, extra: &[&str]) -> bool {
        std::process::Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet"])
            .args(extra)
            .arg("-o")
            .arg(image)
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success())
    }

    #[test]
    fn long_rock_ridge_names_in_continuation_areas_are_found() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("tree");
        // 250 characters: the NM entry no longer fits in the record and
        // goes to a continuation area.
        let long = format!("{}.json", "x".repeat(245));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub").join(&long), "long").unwrap();
        let image = work.path().join("rr.iso");
        if !xorriso(&dir, &image, &["-R"]) {
            eprintln!("skipping: xorriso is not installed");
            return;
        }
        let mut iso = Image::open(&image, None).unwrap();
        assert!(matches!(iso, Image::Iso(_)));
        let got = iso.read(&format!("sub/{long}")).unwrap();
        assert_eq!(got.as_deref(), Some(&b"long"[..]));
        assert_eq!(iso.read("sub/missing").unwrap(), None);
        assert_eq!(iso.read(&format!("{long}/sub")).unwrap(), None);
        assert_eq!(iso.read("sub").unwrap_err().kind(), ErrorKind::IsADirectory);
    }

    #[test]
    fn damaged_isos_give_errors_not_panics() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("tree");
        let latest = dir.join("openstack/latest");
        std::fs::create_dir_all(&latest).unwrap();
        for name in ["user_data", "meta_data.json", "network_data.json"] {
            std::fs::write(latest.join(name), name).unwrap();
        }
        let image = work.path().join("cd.iso");
        if !xorriso(&dir, &image, &["-J", "-R"]) {
            eprintln!("skipping: xorriso is not installed");
            return;
        }
        let good = std::fs::read(&image).unwrap();
        // A fixed pseudo-random sequence (xorshift), so that a failure
        // can be reproduced.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let damaged = work.path().join("damaged.iso");
        for _ in 0..300 {
            let mut data = good.clone();
            for _ in 0..(next() % 16 + 1) {
                // Mostly the descriptors and directories (sectors 16..40).
                let at = (16 * 2048 + next() % (24 * 2048)) as usize % data.len();
                data[at] = next() as u8;
            }
            std::fs::write(&damaged, &data).unwrap();
            if let Ok(mut iso) = Image::open(&damaged, Some("iso9660")) {
                for path in [
                    "openstack/latest/user_data",
                    "openstack/latest/meta_data.json",
                ] {
                    let _ = iso.read(path);
                }
            }
        }
        // And the undamaged image still reads.
        let mut iso = Image::open(&image, Some("iso9660")).unwrap();
        assert_eq!(
            iso.read("openstack/latest/user_data").unwrap().as_deref(),
            Some(&b"user_data"[..])
        );
    }

    #[test]
    fn damaged_fat_gives_errors_not_panics() {
        let work = tempfile::tempdir().unwrap();
        let image = work.path().join("fat.img");
        let src = work.path().join("user-data");
        std::fs::write(&src, "#cloud-config\n").unwrap();
        let made = std::process::Command::new("mkfs.vfat")
            .args(["-n", "CIDATA", "-C"])
            .arg(&image)
            .arg("1024")
            .output()
            .is_ok_and(|o| o.status.success())
            && std::process::Command::new("mcopy")
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-i")
                .arg(&image)
                .arg(&src)
                .arg("::/")
                .output()
                .is_ok_and(|o| o.status.success());
        if !made {
            eprintln!("skipping: mkfs.vfat or mcopy is not installed");
            return;
        }
        let good = std::fs::read(&image).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let damaged = work.path().join("damaged.img");
        for _ in 0..300 {
            let mut data = good.clone();
            for _ in 0..(next() % 8 + 1) {
                // The boot sector, the FATs and the root directory.
                let at = (next() % 16384) as usize;
                data[at] = next() as u8;
            }
            std::fs::write(&damaged, &data).unwrap();
            if let Ok(mut fat) = Image::open(&damaged, Some("vfat")) {
                let _ = fat.read("user-data");
                let _ = fat.read("openstack/latest/user_data");
            }
        }
        let mut fat = Image::open(&image, None).unwrap();
        assert!(matches!(fat, Image::Fat(_)));
        assert_eq!(
            fat.read("USER-DATA").unwrap().as_deref(),
            Some(&b"#cloud-config\n"[..])
        );
        assert_eq!(fat.read("meta-data").unwrap(), None);
    }

    #[test]
    fn writes_to_the_device_fail() {
        let mut dev = ReadOnly(io::Cursor::new(vec![0u8; 4]));
        assert!(dev.write(b"x").is_err());
        assert_eq!(dev.0.get_ref(), &[0u8; 4]);
    }
}
