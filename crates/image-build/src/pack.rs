//! Packing a root filesystem directory into a reproducible OCI layer.
//!
//! The same tree always gives the same bytes: entries are sorted by path
//! (a depth-first walk with each directory's entries sorted by name), every
//! mtime is the one given (`SOURCE_DATE_EPOCH`), no atime or ctime is
//! written, user and group names are left empty (numeric ids are kept),
//! and the gzip header carries no time or name.
//!
//! What is kept and how:
//! - directories, regular files, symlinks, FIFOs: as they are (mode with
//!   setuid/setgid/sticky bits, uid, gid);
//! - hard links: the first path (in walk order) is a file, the others are
//!   hard-link entries naming it;
//! - character and block devices: kept with their major and minor numbers,
//!   as `docker save` does (the runtime mounts its own `/dev`, so they are
//!   harmless there);
//! - overlayfs whiteouts (a 0:0 character device) become `.wh.NAME` files,
//!   and a directory marked opaque (`trusted.overlay.opaque=y`) gets a
//!   `.wh..wh..opq` entry, so an overlay upper directory packs as a diff
//!   layer;
//! - sockets are skipped (they cannot be archived); extended attributes
//!   other than the opaque marker are not kept.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// How a layer is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackOptions {
    /// The mtime of every entry, in seconds since the epoch
    /// (`SOURCE_DATE_EPOCH`).
    pub mtime: u64,
    /// gzip level 0-9.
    pub gzip_level: u32,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            mtime: 0,
            gzip_level: 6,
        }
    }
}

/// What a packed layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// `sha256:<hex>` of the uncompressed tar (the image config's diff id).
    pub diff_id: String,
    /// `sha256:<hex>` of the gzip-compressed blob (the manifest digest).
    pub digest: String,
    /// Bytes of the compressed blob.
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
    /// Number of tar entries written.
    pub entries: u64,
}

/// A writer that hashes and counts what passes through it.
pub(crate) struct HashWriter<W> {
    pub(crate) inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// `(sha256:<hex>, bytes, inner)`.
    pub(crate) fn finish(self) -> (String, u64, W) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Packs the tree under `root` (not `root` itself) into a gzip-compressed
/// layer written to `out`.
pub fn pack_layer<W: Write>(root: &Path, opts: &PackOptions, out: W) -> Result<LayerInfo> {
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(
            HashWriter::new(out),
            flate2::Compression::new(opts.gzip_level),
        );
    let mut tar = tar::Builder::new(HashWriter::new(gz));
    let entries = append_tree(&mut tar, root, opts.mtime)?;
    let werr = |e: io::Error| Error::pack(root, format!("cannot write the layer: {e}"));
    tar.finish().map_err(werr)?;
    let (diff_id, tar_size, gz) = tar.into_inner().map_err(werr)?.finish();
    let compressed = gz.finish().map_err(werr)?;
    let (digest, size, mut out) = compressed.finish();
    out.flush().map_err(werr)?;
    Ok(LayerInfo {
        diff_id,
        digest,
        size,
        tar_size,
        entries,
    })
}

/// Packs `root` into the file `dest`.
pub fn pack_layer_to_file(root: &Path, opts: &PackOptions, dest: &Path) -> Result<LayerInfo> {
    let f = File::create(dest).map_err(|e| Error::io("create", dest, e))?;
    let info = pack_layer(root, opts, io::BufWriter::new(f))?;
    Ok(info)
}

fn header(meta: &fs::Metadata, mtime: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(mtime);
    h.set_size(0);
    h
}

fn append_tree<W: Write>(tar: &mut tar::Builder<W>, root: &Path, mtime: u64) -> Result<u64> {
    let mut first_link: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut count = 0u64;
    let walk = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry.map_err(|e| {
            let p = e.path().unwrap_or(root).to_path_buf();
            Error::pack(&p, format!("cannot read: {e}"))
        })?;
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .map_err(|_| Error::pack(path, "outside the root"))?;
        let meta = entry
            .metadata()
            .map_err(|e| Error::pack(path, format!("cannot stat: {e}")))?;
        let ft = meta.file_type();
        let werr = |e: io::Error| Error::pack(path, format!("cannot add to the layer: {e}"));
        if ft.is_dir() {
            let mut h = header(&meta, mtime, tar::EntryType::Directory);
            tar.append_data(&mut h, rel, io::empty()).map_err(werr)?;
            count += 1;
            if is_opaque(path) {
                let mut h = header(&meta, mtime, tar::EntryType::Regular);
                h.set_mode(0o644);
                tar.append_data(&mut h, rel.join(".wh..wh..opq"), io::empty())
                    .map_err(werr)?;
                count += 1;
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(werr)?;
            let mut h = header(&meta, mtime, tar::EntryType::Symlink);
            h.set_mode(0o777);
            tar.append_link(&mut h, rel, &target).map_err(werr)?;
            count += 1;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = first_link.get(&key) {
                    let mut h = header(&meta, mtime, tar::EntryType::Link);
                    tar.append_link(&mut h, rel, first).map_err(werr)?;
                    count += 1;
                    continue;
                }
                first_link.insert(key, rel.to_path_buf());
            }
            let mut h = header(&meta, mtime, tar::EntryType::Regular);
            h.set_size(meta.len());
            let f = File::open(path).map_err(werr)?;
            // A file that changes while it is packed would give a layer
            // whose header lies about its size: refuse it.
            let mut limited = f.take(meta.len());
            let mut reader = ExactReader {
                inner: &mut limited,
                left: meta.len(),
            };
            tar.append_data(&mut h, rel, &mut reader).map_err(werr)?;
            count += 1;
        } else if ft.is_char_device() && meta.rdev() == 0 {
            let name = rel
                .file_name()
                .ok_or_else(|| Error::pack(path, "whiteout without a name"))?;
            let mut wh = std::ffi::OsString::from(".wh.");
            wh.push(name);
            let mut h = header(&meta, mtime, tar::EntryType::Regular);
            h.set_mode(0o644);
            tar.append_data(&mut h, rel.with_file_name(wh), io::empty())
                .map_err(werr)?;
            count += 1;
        } else if ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            };
            let mut h = header(&meta, mtime, kind);
            let rdev = meta.rdev();
            h.set_device_major(libc::major(rdev)).map_err(werr)?;
            h.set_device_minor(libc::minor(rdev)).map_err(werr)?;
            tar.append_data(&mut h, rel, io::empty()).map_err(werr)?;
            count += 1;
        } else if ft.is_fifo() {
            let mut h = header(&meta, mtime, tar::EntryType::Fifo);
            tar.append_data(&mut h, rel, io::empty()).map_err(werr)?;
            count += 1;
        } else {
            tracing::debug!(path = %path.display(), "skipping a socket");
        }
    }
    Ok(count)
}

/// Reads exactly `left` bytes or fails.
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was packed",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Whether overlayfs marks `dir` opaque. Read with `lgetxattr` directly:
/// nix has no xattr call and this one attribute does not justify a crate.
fn is_opaque(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 4];
    // SAFETY: both strings are NUL terminated and `buf` is valid for its
    // length; the call only writes into `buf`.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
