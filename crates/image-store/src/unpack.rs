//! Unpacking layer tarballs into overlayfs-ready directories.
//!
//! The `tar` crate parses the stream, but entries are written by hand here
//! rather than with `Entry::unpack_in`: that function silently skips `..`
//! entries (we must refuse them), does not create device nodes, does not
//! set directory mtimes or xattrs, and knows nothing of whiteouts.
//!
//! Containment: every entry path is made of normal components only, and
//! every directory on the way to it must be a real directory inside the
//! layer (a symlink on the path is refused), so no entry can be written
//! through a symlink to outside the layer directory. Hard links must name
//! an existing non-directory inside the layer; `link(2)` does not follow a
//! symlink source.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Layer compression, detected from magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
}

/// Reads the first bytes of `r` and returns the compression they announce
/// together with a reader that yields the whole stream again.
pub(crate) fn detect<R: Read>(mut r: R) -> io::Result<(Compression, impl Read)> {
    let mut magic = [0u8; 6];
    let mut n = 0;
    while n < magic.len() {
        match r.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = &magic[..n];
    let c = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else {
        Compression::None
    };
    Ok((c, io::Cursor::new(magic).take(n as u64).chain(r)))
}

/// A reader that decompresses `r` according to its magic bytes.
pub(crate) fn decompressed<'a, R: Read + 'a>(r: R) -> Result<Box<dyn Read + 'a>> {
    decompressing_reader(r).map_err(|e| Error::archive(format!("cannot read layer: {e}")))
}

/// A reader of `r` decompressed as its first bytes tell: gzip, zstd, xz,
/// or none. The layers' decoding, for other archives (the engine's
/// `PUT /containers/{id}/archive`).
pub fn decompressing_reader<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let (c, r) = detect(r)?;
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(ZstdFrames::new(r)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
    })
}

/// A zstd decoder over every frame of a stream.
///
/// `ruzstd::decoding::StreamingDecoder` stops after the first frame, but
/// parallel compressors write several frames and may add skippable ones
/// (see the caveat in its docs); this drives `FrameDecoder` frame by frame.
struct ZstdFrames<R> {
    src: io::BufReader<R>,
    dec: ruzstd::decoding::FrameDecoder,
    in_frame: bool,
}

impl<R: Read> ZstdFrames<R> {
    fn new(r: R) -> Self {
        ZstdFrames {
            src: io::BufReader::new(r),
            dec: ruzstd::decoding::FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: Read> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        use ruzstd::decoding::BlockDecodingStrategy;
        use std::io::BufRead;
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                while self.dec.can_collect() < buf.len() && !self.dec.is_finished() {
                    let want = buf.len() - self.dec.can_collect();
                    self.dec
                        .decode_blocks(&mut self.src, BlockDecodingStrategy::UptoBytes(want))
                        .map_err(io::Error::other)?;
                }
                let n = self.dec.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                // Nothing left to collect and the frame is finished.
                self.in_frame = false;
            }
            if self.src.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.dec.init(&mut self.src) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(
                        &mut (&mut self.src).take(u64::from(length)),
                        &mut io::sink(),
                    )?;
                    if skipped < u64::from(length) {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

/// A reader that hashes (sha256) and counts what passes through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// `sha256:<hex>` of everything read so far, and its length.
    pub(crate) fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// What unpacking a layer found out.
#[derive(Debug, Clone)]
pub(crate) struct Unpacked {
    /// `sha256:` of the uncompressed tar stream.
    pub diff_id: String,
    /// `sha256:` of the stream as read (compressed form).
    pub blob_digest: String,
    /// Bytes of regular file content written.
    pub size: u64,
}

/// Unpacks the (possibly compressed) layer tarball `src` into the new
/// directory `dest`, which must not exist yet. On error `dest` may be left
/// half-written: the caller owns it and removes it.
pub(crate) fn unpack_layer(src: impl Read, dest: &Path) -> Result<Unpacked> {
    fs::create_dir(dest).map_err(|e| Error::io("create layer directory", dest, e))?;
    let mut blob = HashingReader::new(src);
    let (diff_id, size) = {
        let mut tar_stream = HashingReader::new(decompressed(&mut blob)?);
        let size = unpack_entries(&mut tar_stream, dest)?;
        // The diff id covers the whole stream, including the end-of-archive
        // blocks and any padding after them.
        io::copy(&mut tar_stream, &mut io::sink())
            .map_err(|e| Error::archive(format!("cannot read layer: {e}")))?;
        (tar_stream.finish().0, size)
    };
    // Consume trailing bytes of the compressed stream too, so the blob
    // digest covers the whole blob.
    io::copy(&mut blob, &mut io::sink())
        .map_err(|e| Error::archive(format!("cannot read layer: {e}")))?;
    let (blob_digest, _) = blob.finish();
    Ok(Unpacked {
        diff_id,
        blob_digest,
        size,
    })
}

struct DirMeta {
    path: PathBuf,
    mode: u32,
    mtime: Option<u64>,
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::archive(format!("layer entry {}: {reason}", path.display()))
}

/// Entry path -> path relative to the layer root, refusing `..`.
fn relative(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err(bad(path, "path escapes the layer directory")),
        }
    }
    Ok(out)
}

/// Makes sure every directory from `root` down to `rel`'s parent exists and
/// is a real directory (no symlinks), creating missing ones.
fn ensure_parents(root: &Path, rel: &Path, create: bool) -> Result<()> {
    let mut cur = root.to_path_buf();
    let parent = rel.parent().unwrap_or(Path::new(""));
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(bad(rel, "path goes through a symlink"));
            }
            Ok(_) => return Err(bad(rel, "a parent is not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&cur).map_err(|e| Error::io("create directory", &cur, e))?;
            }
            Err(e) => return Err(Error::io("stat", &cur, e)),
        }
    }
    Ok(())
}

/// Removes whatever is at `path` unless it is a directory and `keep_dir`.
/// Returns true if a directory was kept.
fn clear(path: &Path, keep_dir: bool) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            if keep_dir {
                return Ok(true);
            }
            fs::remove_dir_all(path).map_err(|e| Error::io("remove", path, e))?;
        }
        Ok(_) => fs::remove_file(path).map_err(|e| Error::io("remove", path, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("stat", path, e)),
    }
    Ok(false)
}

fn cpath(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::archive(format!("path with NUL byte: {}", path.display())))
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<()> {
    let p = cpath(path)?;
    let n = CString::new(name)
        .map_err(|_| Error::archive(format!("xattr name with NUL byte: {name:?}")))?;
    // SAFETY: both strings are NUL-terminated and live across the call;
    // value points to value.len() readable bytes.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(Error::io(
            "set xattr",
            path,
            io::Error::other(format!("{name}: {}", io::Error::last_os_error())),
        ));
    }
    Ok(())
}

fn set_mtime(path: &Path, mtime: Option<u64>) -> Result<()> {
    let Some(t) = mtime else { return Ok(()) };
    let ts = TimeSpec::from_duration(Duration::from_secs(t));
    nix::sys::stat::utimensat(
        None,
        path,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| Error::io("set mtime", path, e.into()))
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| Error::io("chmod", path, e))
}

fn lchown(path: &Path, uid: u64, gid: u64) -> Result<()> {
    let uid = u32::try_from(uid).map_err(|_| bad(path, "uid out of range"))?;
    let gid = u32::try_from(gid).map_err(|_| bad(path, "gid out of range"))?;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| Error::io("chown", path, e))
}

fn unpack_entries(stream: &mut dyn Read, root: &Path) -> Result<u64> {
    let mut archive = tar::Archive::new(stream);
    let mut dirs: Vec<DirMeta> = Vec::new();
    let mut size = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| Error::archive(format!("cannot read layer tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::archive(format!("cannot read layer tar: {e}")))?;
        let raw_path = entry
            .path()
            .map_err(|e| Error::archive(format!("invalid layer entry path: {e}")))?
            .into_owned();
        let rel = relative(&raw_path)?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().map_err(|e| bad(&rel, e))?;
        let uid = header.uid().map_err(|e| bad(&rel, e))?;
        let gid = header.gid().map_err(|e| bad(&rel, e))?;
        let mtime = header.mtime().ok();

        if rel.as_os_str().is_empty() {
            // "./": the layer root itself.
            if kind.is_dir() {
                lchown(root, uid, gid)?;
                dirs.push(DirMeta {
                    path: root.to_path_buf(),
                    mode,
                    mtime,
                });
            }
            continue;
        }

        let mut xattrs: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(pax) = entry
            .pax_extensions()
            .map_err(|e| bad(&rel, format!("bad pax header: {e}")))?
        {
            for ext in pax {
                let ext = ext.map_err(|e| bad(&rel, format!("bad pax header: {e}")))?;
                if let Ok(key) = ext.key() {
                    if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                        xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                    }
                }
            }
        }

        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        ensure_parents(root, &rel, true)?;
        let target = root.join(&rel);

        if let Some(hidden) = name.strip_prefix(".wh.") {
            if hidden == ".wh..opq" {
                let dir = target.parent().unwrap_or(root);
                set_xattr(dir, "trusted.overlay.opaque", b"y")?;
            } else if hidden.starts_with(".wh.") {
                // Other aufs metadata (.wh..wh.plnk, .wh..wh.aufs): not content.
            } else if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(bad(&rel, "invalid whiteout"));
            } else {
                let wpath = target.with_file_name(hidden);
                clear(&wpath, false)?;
                nix::sys::stat::mknod(&wpath, SFlag::S_IFCHR, Mode::empty(), 0)
                    .map_err(|e| Error::io("create whiteout", &wpath, e.into()))?;
                lchown(&wpath, uid, gid)?;
            }
            continue;
        }

        match kind {
            tar::EntryType::Directory => {
                if !clear(&target, true)? {
                    fs::create_dir(&target)
                        .map_err(|e| Error::io("create directory", &target, e))?;
                }
                lchown(&target, uid, gid)?;
                for (k, v) in &xattrs {
                    set_xattr(&target, k, v)?;
                }
                dirs.push(DirMeta {
                    path: target,
                    mode,
                    mtime,
                });
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                clear(&target, false)?;
                let mut f: File = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&target)
                    .map_err(|e| Error::io("create file", &target, e))?;
                let want = entry.size();
                let got = io::copy(&mut entry, &mut f)
                    .map_err(|e| Error::archive(format!("cannot read layer tar: {e}")))?;
                if got != want {
                    return Err(bad(&rel, format!("truncated: {got} of {want} bytes")));
                }
                size += got;
                drop(f);
                lchown(&target, uid, gid)?;
                chmod(&target, mode)?;
                for (k, v) in &xattrs {
                    set_xattr(&target, k, v)?;
                }
                set_mtime(&target, mtime)?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| bad(&rel, e))?
                    .ok_or_else(|| bad(&rel, "symlink without target"))?
                    .into_owned();
                clear(&target, false)?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(|e| Error::io("create symlink", &target, e))?;
                lchown(&target, uid, gid)?;
                for (k, v) in &xattrs {
                    set_xattr(&target, k, v)?;
                }
                set_mtime(&target, mtime)?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(|e| bad(&rel, e))?
                    .ok_or_else(|| bad(&rel, "hard link without target"))?
                    .into_owned();
                let src_rel = relative(&link)?;
                ensure_parents(root, &src_rel, false)?;
                let src = root.join(&src_rel);
                match fs::symlink_metadata(&src) {
                    Ok(m) if !m.is_dir() => {}
                    _ => return Err(bad(&rel, "hard link to a missing entry or a directory")),
                }
                if src != target {
                    clear(&target, false)?;
                    fs::hard_link(&src, &target)
                        .map_err(|e| Error::io("create hard link", &target, e))?;
                }
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    tar::EntryType::Fifo => (SFlag::S_IFIFO, 0),
                    _ => {
                        let major = header
                            .device_major()
                            .map_err(|e| bad(&rel, e))?
                            .unwrap_or(0);
                        let minor = header
                            .device_minor()
                            .map_err(|e| bad(&rel, e))?
                            .unwrap_or(0);
                        let flag = if kind == tar::EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (flag, libc::makedev(major, minor))
                    }
                };
                clear(&target, false)?;
                nix::sys::stat::mknod(&target, sflag, Mode::empty(), dev)
                    .map_err(|e| Error::io("create device node", &target, e.into()))?;
                lchown(&target, uid, gid)?;
                chmod(&target, mode)?;
                for (k, v) in &xattrs {
                    set_xattr(&target, k, v)?;
                }
                set_mtime(&target, mtime)?;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            other => {
                tracing::debug!(entry = %rel.display(), kind = ?other, "skipping unsupported layer entry type");
            }
        }
    }
    // Directory modes and times last, deepest first: creating entries
    // inside a directory changes its mtime.
    dirs.sort_by(|a, b| b.path.cmp(&a.path));
    for d in &dirs {
        // A later entry may have replaced the directory (even with a
        // symlink, which chmod would follow out of the layer).
        if !fs::symlink_metadata(&d.path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        chmod(&d.path, d.mode)?;
        set_mtime(&d.path, d.mtime)?;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_reads_every_frame_and_skips_skippable_ones() {
        use ruzstd::encoding::{compress_to_vec, CompressionLevel};
        let a: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let b = b"second frame".repeat(1000);
        let mut stream = compress_to_vec(&a[..], CompressionLevel::Fastest);
        // A skippable frame: magic 0x184D2A50, little-endian length, payload.
        stream.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        stream.extend_from_slice(&5u32.to_le_bytes());
        stream.extend_from_slice(b"skip!");
        stream.extend_from_slice(&compress_to_vec(&b[..], CompressionLevel::Fastest));
        let mut out = Vec::new();
        decompressed(&stream[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len(), a.len() + b.len());
        assert!(out[..a.len()] == a[..] && out[a.len()..] == b[..]);

        // Cut short: an error, not a short read.
        let mut out = Vec::new();
        let cut = &stream[..stream.len() - 10];
        assert!(decompressed(cut).unwrap().read_to_end(&mut out).is_err());
    }

    #[test]
    fn detects_compression_by_magic() {
        for (bytes, want) in [
            (&[0x1f, 0x8b, 8, 0, 0, 0][..], Compression::Gzip),
            (&[0x28, 0xb5, 0x2f, 0xfd, 0, 0][..], Compression::Zstd),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0][..], Compression::Xz),
            (&b"ustar"[..], Compression::None),
            (&[][..], Compression::None),
        ] {
            let (c, mut r) = detect(bytes).unwrap();
            assert_eq!(c, want);
            let mut back = Vec::new();
            r.read_to_end(&mut back).unwrap();
            assert_eq!(back, bytes, "the peeked bytes are given back");
        }
    }
}
