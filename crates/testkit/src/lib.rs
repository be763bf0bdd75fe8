//! # testkit: container images for tests, built offline
//!
//! ## Background
//!
//! Tests of the image store, the engine and the `ros` binary need real
//! images: a working shell, `/etc/passwd`, a few layers with whiteouts, in
//! every archive format the engine accepts. The test machines reach no image
//! registry, so the images are built here, in memory, from the host's
//! statically linked busybox (`/bin/busybox`, Debian's `busybox-static`).
//!
//! ## Design
//!
//! * [`busybox_rootfs_tar`] is the base layer: `/bin/busybox`, a symlink for
//!   every applet (`busybox --list-full`), `/etc/passwd` (root, nobody and
//!   `user` with uid 1000), `/etc/group`, `/tmp` (mode 1777), `/root`,
//!   `/home/user`. All entries have a fixed mtime, so the layer (and thus
//!   its diff id and every image id built on it) is the same on every run
//!   on a given host.
//! * [`LayerBuilder`] writes further layers: files, directories, symlinks,
//!   hard links, device nodes, and the two whiteout forms of the image spec.
//! * [`TestImage`] is an image description: uncompressed layers plus the
//!   runtime config (Cmd, Entrypoint, Env, WorkingDir, User, Labels). It
//!   computes its config JSON, image id and diff ids.
//! * [`DockerArchive`] writes `docker save` tarballs (the classic layout, or
//!   the OCI-flavoured layout of Docker 25+); [`OciLayout`] writes OCI
//!   image-layout tarballs (optionally with a nested index). Both compress
//!   layers with a [`Compression`].
//! * [`docker_archive_with_bad_layer`] and [`truncated`] make broken input.
//!
//! Everything returns bytes; [`write_file`] puts them on disk for tools such
//! as `skopeo` or `docker load`.
//!
//! ## Example
//!
//! ```no_run
//! use testkit::{Compression, DockerArchive, LayerBuilder, TestImage};
//!
//! let extra = LayerBuilder::new()
//!     .file("hello.txt", b"hi\n", 0o644)
//!     .whiteout("etc/group")
//!     .finish();
//! let image = TestImage::busybox().layer(extra).cmd(&["sh", "-c", "cat /hello.txt"]);
//! let tar = DockerArchive::new()
//!     .image(&image, &["hello:latest"])
//!     .compression(Compression::Gzip)
//!     .build();
//! testkit::write_file("/tmp/hello.tar", &tar).unwrap();
//! ```
//!
//! ## Limitations
//!
//! * Linux/amd64 images only; the busybox layer is whatever the host has.
//! * Panics on failure: this is a test crate, and a failure to build a
//!   fixture is a broken test machine.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// Fixed mtime of every entry the kit writes (2024-01-01T00:00:00Z).
pub const MTIME: u64 = 1_704_067_200;
/// The `created` time of every image the kit writes.
pub const CREATED: &str = "2024-01-01T00:00:00Z";
/// Where the static busybox comes from.
pub const BUSYBOX: &str = "/bin/busybox";

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
}

impl Compression {
    /// Every variant, for table-driven tests.
    pub const ALL: [Compression; 4] = [
        Compression::None,
        Compression::Gzip,
        Compression::Zstd,
        Compression::Xz,
    ];

    /// The OCI media type of a layer with this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            // Not in the spec, but what tools that write xz layers use.
            Compression::Xz => "application/vnd.oci.image.layer.v1.tar+xz",
        }
    }
}

/// Compresses `data`.
pub fn compress(data: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).expect("gzip into memory");
            e.finish().expect("gzip into memory")
        }
        Compression::Zstd => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
        Compression::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(data).expect("xz into memory");
            e.finish().expect("xz into memory")
        }
    }
}

/// Compresses a layer, reusing the result for the busybox layer (the
/// common case; compressing 2 MB in an unoptimised test build is slow).
fn compress_layer(layer: &[u8], c: Compression) -> Vec<u8> {
    static CACHE: [OnceLock<Vec<u8>>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    if c != Compression::None && layer == busybox_layer().as_slice() {
        return CACHE[c as usize].get_or_init(|| compress(layer, c)).clone();
    }
    compress(layer, c)
}

/// `sha256:` of a layer, cached for the busybox layer.
fn layer_digest(layer: &[u8]) -> String {
    static DIGEST: OnceLock<String> = OnceLock::new();
    if layer == busybox_layer().as_slice() {
        return DIGEST.get_or_init(|| sha256(layer)).clone();
    }
    sha256(layer)
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Writes `bytes` to `path`.
pub fn write_file(path: impl AsRef<Path>, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// The first `len` bytes of `bytes`: a tarball cut short.
pub fn truncated(bytes: &[u8], len: usize) -> Vec<u8> {
    bytes[..len.min(bytes.len())].to_vec()
}

/// Builds one layer tarball (uncompressed). Paths are relative to the
/// container root, without a leading `/`. Parent directories are not added
/// implicitly (like real layers, an unpacker must create them).
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    pub fn new() -> Self {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Deterministic);
        LayerBuilder { tar }
    }

    fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(MTIME);
        h.set_size(0);
        h
    }

    fn append(mut self, mut h: tar::Header, path: &str, data: &[u8]) -> Self {
        h.set_size(data.len() as u64);
        self.tar
            .append_data(&mut h, path, data)
            .expect("tar into memory");
        self
    }

    /// A regular file owned by root.
    pub fn file(self, path: &str, data: &[u8], mode: u32) -> Self {
        self.file_owned(path, data, mode, 0, 0)
    }

    /// A regular file with the given owner.
    pub fn file_owned(self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let h = Self::header(tar::EntryType::Regular, mode, uid, gid);
        self.append(h, path, data)
    }

    /// A regular file carrying extended attributes (PAX `SCHILY.xattr.*`).
    pub fn file_with_xattrs(mut self, path: &str, data: &[u8], xattrs: &[(&str, &[u8])]) -> Self {
        let pax: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        self.tar
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
            .expect("tar into memory");
        self.file(path, data, 0o644)
    }

    /// A directory owned by root.
    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.dir_owned(path, mode, 0, 0)
    }

    /// A directory with the given owner.
    pub fn dir_owned(self, path: &str, mode: u32, uid: u64, gid: u64) -> Self {
        let h = Self::header(tar::EntryType::Directory, mode, uid, gid);
        self.append(h, path, &[])
    }

    /// A symbolic link `path` -> `target`.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0, 0);
        self.tar
            .append_link(&mut h, path, target)
            .expect("tar into memory");
        self
    }

    /// A hard link `path` to the earlier entry `target` (a layer path).
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0, 0);
        self.tar
            .append_link(&mut h, path, target)
            .expect("tar into memory");
        self
    }

    /// A character device node.
    pub fn char_device(self, path: &str, major: u32, minor: u32, mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Char, mode, 0, 0);
        h.set_device_major(major).expect("gnu header");
        h.set_device_minor(minor).expect("gnu header");
        self.append(h, path, &[])
    }

    /// A named pipe.
    pub fn fifo(self, path: &str, mode: u32) -> Self {
        let h = Self::header(tar::EntryType::Fifo, mode, 0, 0);
        self.append(h, path, &[])
    }

    /// A whiteout: deletes `path` of the layers below (`dir/.wh.name`).
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        self.file(&format!("{dir}.wh.{name}"), b"", 0o644)
    }

    /// An opaque-directory marker: hides everything below `dir` in the
    /// layers below (`dir/.wh..wh..opq`).
    pub fn opaque(self, dir: &str) -> Self {
        self.file(
            &format!("{}/.wh..wh..opq", dir.trim_end_matches('/')),
            b"",
            0o644,
        )
    }

    /// An entry with a raw, unchecked name (e.g. `../escape`, at most 100
    /// bytes), written straight into the header to get past the tar crate's
    /// checks.
    pub fn raw_file(mut self, name: &str, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, 0, 0);
        {
            let gnu = h.as_gnu_mut().expect("gnu header");
            let bytes = name.as_bytes();
            gnu.name[..bytes.len()].copy_from_slice(bytes);
        }
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.tar.append(&h, data).expect("tar into memory");
        self
    }

    /// A symlink with a raw, unchecked target (at most 100 bytes).
    pub fn raw_symlink(mut self, name: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0, 0);
        h.set_path(name).expect("valid name");
        {
            let gnu = h.as_gnu_mut().expect("gnu header");
            let bytes = target.as_bytes();
            gnu.linkname[..bytes.len()].copy_from_slice(bytes);
        }
        h.set_cksum();
        self.tar.append(&h, &[][..]).expect("tar into memory");
        self
    }

    /// The finished (uncompressed) layer tarball.
    pub fn finish(self) -> Vec<u8> {
        self.tar.into_inner().expect("tar into memory")
    }
}

/// `/etc/passwd` of the busybox image.
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
user:x:1000:1000:user:/home/user:/bin/sh\n";
/// `/etc/group` of the busybox image.
pub const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nuser:x:1000:\n";

/// The busybox base layer (uncompressed tar), built once per process.
pub fn busybox_rootfs_tar() -> Vec<u8> {
    busybox_layer().clone()
}

fn busybox_layer() -> &'static Vec<u8> {
    static LAYER: OnceLock<Vec<u8>> = OnceLock::new();
    LAYER.get_or_init(build_busybox_layer)
}

fn build_busybox_layer() -> Vec<u8> {
    let busybox = std::fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("cannot read {BUSYBOX} (install busybox-static): {e}"));
    let out = std::process::Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BUSYBOX} --list-full: {e}"));
    let list = String::from_utf8_lossy(&out.stdout);
    let mut applets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "bin/busybox")
        .collect();
    applets.sort_unstable();
    applets.dedup();

    let mut l = LayerBuilder::new();
    for d in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "home", "dev", "proc", "sys",
    ] {
        l = l.dir(d, 0o755);
    }
    l = l
        .dir_owned("home/user", 0o755, 1000, 1000)
        .dir("tmp", 0o1777)
        .dir("var", 0o755)
        .file("bin/busybox", &busybox, 0o755)
        .file("etc/passwd", PASSWD.as_bytes(), 0o644)
        .file("etc/group", GROUP.as_bytes(), 0o644);
    for a in applets {
        l = l.symlink(a, "/bin/busybox");
    }
    l.finish()
}

/// An image description: layers (uncompressed tars, lowest first) and the
/// runtime config.
#[derive(Debug, Clone)]
pub struct TestImage {
    pub layers: Vec<Vec<u8>>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Lets tests make otherwise identical images distinct.
    pub comment: Option<String>,
}

impl TestImage {
    /// The busybox image: one layer, `Cmd ["sh"]`, a default `PATH`.
    pub fn busybox() -> Self {
        TestImage {
            layers: vec![busybox_rootfs_tar()],
            cmd: Some(vec!["sh".into()]),
            entrypoint: None,
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            working_dir: None,
            user: None,
            labels: BTreeMap::new(),
            comment: None,
        }
    }

    /// An image of the given layers with no config defaults.
    pub fn from_layers(layers: Vec<Vec<u8>>) -> Self {
        TestImage {
            layers,
            cmd: None,
            env: Vec::new(),
            ..TestImage::busybox()
        }
    }

    /// Adds a layer on top.
    pub fn layer(mut self, tar: Vec<u8>) -> Self {
        self.layers.push(tar);
        self
    }

    pub fn cmd(mut self, cmd: &[&str]) -> Self {
        self.cmd = Some(cmd.iter().map(|s| s.to_string()).collect());
        self
    }

    pub fn entrypoint(mut self, ep: &[&str]) -> Self {
        self.entrypoint = Some(ep.iter().map(|s| s.to_string()).collect());
        self
    }

    pub fn env(mut self, kv: &str) -> Self {
        self.env.push(kv.to_string());
        self
    }

    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = Some(dir.to_string());
        self
    }

    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.to_string(), v.to_string());
        self
    }

    pub fn comment(mut self, c: &str) -> Self {
        self.comment = Some(c.to_string());
        self
    }

    /// `sha256:<hex>` of each (uncompressed) layer, lowest first.
    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| layer_digest(l)).collect()
    }

    /// The image config JSON (Docker/OCI form).
    pub fn config_json(&self) -> Vec<u8> {
        self.config_json_with_diff_ids(&self.diff_ids())
    }

    fn config_json_with_diff_ids(&self, diff_ids: &[String]) -> Vec<u8> {
        let mut config = serde_json::Map::new();
        if let Some(c) = &self.cmd {
            config.insert("Cmd".into(), serde_json::json!(c));
        }
        if let Some(e) = &self.entrypoint {
            config.insert("Entrypoint".into(), serde_json::json!(e));
        }
        if !self.env.is_empty() {
            config.insert("Env".into(), serde_json::json!(self.env));
        }
        if let Some(w) = &self.working_dir {
            config.insert("WorkingDir".into(), serde_json::json!(w));
        }
        if let Some(u) = &self.user {
            config.insert("User".into(), serde_json::json!(u));
        }
        if !self.labels.is_empty() {
            config.insert("Labels".into(), serde_json::json!(self.labels));
        }
        let history: Vec<_> = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, _)| {
                serde_json::json!({
                    "created": CREATED,
                    "created_by": format!("testkit layer {i}"),
                    "comment": self.comment.clone().unwrap_or_default(),
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "created": CREATED,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }))
        .expect("json into memory")
    }

    /// The image id (`sha256:` of the config JSON), as the store computes it.
    pub fn id(&self) -> String {
        sha256(&self.config_json())
    }
}

struct TarOut(tar::Builder<Vec<u8>>);

impl TarOut {
    fn new() -> Self {
        TarOut(tar::Builder::new(Vec::new()))
    }

    fn dir(&mut self, path: &str) {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(MTIME);
        h.set_size(0);
        self.0
            .append_data(&mut h, path, &[][..])
            .expect("tar into memory");
    }

    fn file(&mut self, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_mtime(MTIME);
        h.set_size(data.len() as u64);
        self.0
            .append_data(&mut h, path, data)
            .expect("tar into memory");
    }

    fn finish(self) -> Vec<u8> {
        self.0.into_inner().expect("tar into memory")
    }
}

/// Builds a `docker save` tarball.
pub struct DockerArchive {
    images: Vec<(TestImage, Vec<String>)>,
    compression: Compression,
    oci_flavoured: bool,
    bad_layer: bool,
}

impl Default for DockerArchive {
    fn default() -> Self {
        Self::new()
    }
}

impl DockerArchive {
    pub fn new() -> Self {
        DockerArchive {
            images: Vec::new(),
            compression: Compression::None,
            oci_flavoured: false,
            bad_layer: false,
        }
    }

    /// Adds an image with its `RepoTags` (may be empty).
    pub fn image(mut self, image: &TestImage, tags: &[&str]) -> Self {
        self.images
            .push((image.clone(), tags.iter().map(|s| s.to_string()).collect()));
        self
    }

    /// Layer compression (`docker save` itself writes uncompressed layers).
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Writes the layout of Docker 25+: `blobs/sha256/..`, `index.json`,
    /// `oci-layout` and a `manifest.json` pointing into `blobs/`.
    pub fn oci_flavoured(mut self, yes: bool) -> Self {
        self.oci_flavoured = yes;
        self
    }

    /// The tarball.
    pub fn build(self) -> Vec<u8> {
        let mut out = TarOut::new();
        let mut manifest = Vec::new();
        let mut written = std::collections::BTreeSet::new();
        let mut index_manifests = Vec::new();
        if self.oci_flavoured {
            out.dir("blobs");
            out.dir("blobs/sha256");
        }
        for (image, tags) in &self.images {
            let mut diff_ids = image.diff_ids();
            if self.bad_layer {
                // The config promises a layer whose content differs.
                diff_ids[0] = sha256(b"not the layer");
            }
            let config = image.config_json_with_diff_ids(&diff_ids);
            let config_hex = hex_of(&config);
            let mut layer_paths = Vec::new();
            let mut layer_descs = Vec::new();
            for layer in &image.layers {
                let blob = compress_layer(layer, self.compression);
                let blob_hex = hex_of(&blob);
                let path = if self.oci_flavoured {
                    format!("blobs/sha256/{blob_hex}")
                } else {
                    format!("{blob_hex}/layer.tar")
                };
                if written.insert(path.clone()) {
                    if !self.oci_flavoured {
                        out.dir(&format!("{blob_hex}/"));
                        out.file(&format!("{blob_hex}/VERSION"), b"1.0");
                    }
                    out.file(&path, &blob);
                }
                layer_descs.push(serde_json::json!({
                    "mediaType": self.compression.oci_media_type(),
                    "digest": format!("sha256:{blob_hex}"),
                    "size": blob.len(),
                }));
                layer_paths.push(path);
            }
            let config_path = if self.oci_flavoured {
                format!("blobs/sha256/{config_hex}")
            } else {
                format!("{config_hex}.json")
            };
            if written.insert(config_path.clone()) {
                out.file(&config_path, &config);
            }
            if self.oci_flavoured {
                let m = serde_json::to_vec(&serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": format!("sha256:{config_hex}"), "size": config.len()},
                    "layers": layer_descs,
                }))
                .expect("json");
                let m_hex = hex_of(&m);
                if written.insert(m_hex.clone()) {
                    out.file(&format!("blobs/sha256/{m_hex}"), &m);
                }
                let mut ann = serde_json::Map::new();
                if let Some(t) = tags.first() {
                    ann.insert("io.containerd.image.name".into(), serde_json::json!(t));
                }
                index_manifests.push(serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{m_hex}"), "size": m.len(), "annotations": ann,
                }));
            }
            manifest.push(serde_json::json!({
                "Config": config_path,
                "RepoTags": tags,
                "Layers": layer_paths,
            }));
        }
        if self.oci_flavoured {
            out.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
            out.file(
                "index.json",
                &serde_json::to_vec(&serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": index_manifests,
                }))
                .expect("json"),
            );
        }
        out.file(
            "manifest.json",
            &serde_json::to_vec(&manifest).expect("json"),
        );
        out.finish()
    }
}

/// The busybox image as a `docker save` tarball with the given tags: the
/// one-liner for tests that just need an image to run.
pub fn busybox_archive(tags: &[&str]) -> Vec<u8> {
    DockerArchive::new()
        .image(&TestImage::busybox(), tags)
        .build()
}

/// A `docker save` tarball of `image` whose config names a diff id that its
/// (first) layer does not hash to: loading it must fail.
pub fn docker_archive_with_bad_layer(image: &TestImage, tags: &[&str]) -> Vec<u8> {
    let mut a = DockerArchive::new().image(image, tags);
    a.bad_layer = true;
    a.build()
}

/// Builds an OCI image-layout tarball.
pub struct OciLayout {
    images: Vec<(TestImage, Option<String>)>,
    compression: Compression,
    nested: bool,
    containerd_names: bool,
}

impl Default for OciLayout {
    fn default() -> Self {
        Self::new()
    }
}

impl OciLayout {
    pub fn new() -> Self {
        OciLayout {
            images: Vec::new(),
            compression: Compression::Gzip,
            nested: false,
            containerd_names: false,
        }
    }

    /// Adds an image, named by the `org.opencontainers.image.ref.name`
    /// annotation if `ref_name` is given (e.g. `busybox:latest`).
    pub fn image(mut self, image: &TestImage, ref_name: Option<&str>) -> Self {
        self.images
            .push((image.clone(), ref_name.map(str::to_string)));
        self
    }

    /// Layer compression (gzip by default).
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Puts each image behind a nested image index (a multi-platform
    /// index with a linux/amd64 entry), as `docker buildx` writes them.
    pub fn nested_index(mut self, yes: bool) -> Self {
        self.nested = yes;
        self
    }

    /// Names images with `io.containerd.image.name` (full name) and puts
    /// only the tag into `org.opencontainers.image.ref.name`, as containerd
    /// does.
    pub fn containerd_names(mut self, yes: bool) -> Self {
        self.containerd_names = yes;
        self
    }

    /// The tarball.
    pub fn build(self) -> Vec<u8> {
        let mut out = TarOut::new();
        let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut top = Vec::new();
        for (image, name) in &self.images {
            let config = image.config_json();
            let mut layers = Vec::new();
            for l in &image.layers {
                let blob = compress_layer(l, self.compression);
                layers.push(serde_json::json!({
                    "mediaType": self.compression.oci_media_type(),
                    "digest": sha256(&blob), "size": blob.len(),
                }));
                blobs.insert(hex_of(&blob), blob);
            }
            let manifest = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha256(&config), "size": config.len()},
                "layers": layers,
            }))
            .expect("json");
            let mut desc = serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha256(&manifest), "size": manifest.len(),
                "platform": {"architecture": "amd64", "os": "linux"},
            });
            blobs.insert(hex_of(&config), config);
            blobs.insert(hex_of(&manifest), manifest);
            if self.nested {
                // An arm64 entry first, to check that linux/amd64 is picked;
                // its blob is not in the layout.
                let other = serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": sha256(b"arm64 manifest that is not here"), "size": 31,
                    "platform": {"architecture": "arm64", "os": "linux"},
                });
                let index = serde_json::to_vec(&serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": [other, desc],
                }))
                .expect("json");
                desc = serde_json::json!({
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "digest": sha256(&index), "size": index.len(),
                });
                blobs.insert(hex_of(&index), index);
            }
            if let Some(n) = name {
                let ann = if self.containerd_names {
                    let tag = n.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
                    serde_json::json!({"io.containerd.image.name": n,
                        "org.opencontainers.image.ref.name": tag})
                } else {
                    serde_json::json!({"org.opencontainers.image.ref.name": n})
                };
                desc["annotations"] = ann;
            }
            top.push(desc);
        }
        out.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        out.file(
            "index.json",
            &serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": top}))
                .expect("json"),
        );
        out.dir("blobs");
        out.dir("blobs/sha256");
        for (hex, blob) in &blobs {
            out.file(&format!("blobs/sha256/{hex}"), blob);
        }
        out.finish()
    }
}

fn hex_of(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(tar_bytes: &[u8]) -> BTreeMap<String, (tar::EntryType, Vec<u8>)> {
        let mut a = tar::Archive::new(tar_bytes);
        let mut m = BTreeMap::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            m.insert(p, (e.header().entry_type(), data));
        }
        m
    }

    #[test]
    fn busybox_layer_has_shell_users_and_tmp() {
        let tar_bytes = busybox_rootfs_tar();
        let e = entries(&tar_bytes);
        assert_eq!(e["bin/busybox"].0, tar::EntryType::Regular);
        assert_eq!(e["bin/sh"].0, tar::EntryType::Symlink);
        for applet in [
            "bin/echo",
            "bin/cat",
            "bin/sleep",
            "bin/ls",
            "usr/bin/wc",
            "usr/bin/id",
        ] {
            assert!(e.contains_key(applet), "{applet} missing");
        }
        let passwd = String::from_utf8(e["etc/passwd"].1.clone()).unwrap();
        assert!(passwd.contains("user:x:1000:1000"));
        let mut a = tar::Archive::new(&tar_bytes[..]);
        let tmp = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().to_str() == Some("tmp"))
            .unwrap();
        assert_eq!(tmp.header().mode().unwrap(), 0o1777);
        // Deterministic: the same bytes every time.
        assert_eq!(sha256(&build_busybox_layer()), sha256(&tar_bytes));
    }

    #[test]
    fn compression_round_trips() {
        let data = busybox_rootfs_tar();
        let gz = compress(&data, Compression::Gzip);
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let zst = compress(&data, Compression::Zstd);
        assert_eq!(&zst[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        let mut out = Vec::new();
        ruzstd::decoding::StreamingDecoder::new(&zst[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let xz = compress(&data, Compression::Xz);
        assert_eq!(&xz[..6], &[0xfd, b'7', b'z', b'X', b'Z', 0]);
    }

    #[test]
    fn docker_archive_layout() {
        let img = TestImage::busybox().layer(LayerBuilder::new().whiteout("etc/group").finish());
        let e = entries(&DockerArchive::new().image(&img, &["bb:1"]).build());
        let manifest: serde_json::Value = serde_json::from_slice(&e["manifest.json"].1).unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], "bb:1");
        let cfg_name = manifest[0]["Config"].as_str().unwrap();
        assert_eq!(sha256(&e[cfg_name].1), img.id());
        let l1 = manifest[0]["Layers"][1].as_str().unwrap();
        assert_eq!(sha256(&e[l1].1), img.diff_ids()[1]);
        let layer = entries(&e[l1].1);
        assert!(layer.contains_key("etc/.wh.group"));
    }

    #[test]
    fn bad_layer_archive_does_not_match() {
        let img = TestImage::busybox();
        let e = entries(&docker_archive_with_bad_layer(&img, &["x:y"]));
        let manifest: serde_json::Value = serde_json::from_slice(&e["manifest.json"].1).unwrap();
        let cfg: serde_json::Value =
            serde_json::from_slice(&e[manifest[0]["Config"].as_str().unwrap()].1).unwrap();
        let layer = &e[manifest[0]["Layers"][0].as_str().unwrap()].1;
        assert_ne!(cfg["rootfs"]["diff_ids"][0], sha256(layer));
    }

    /// A real tool reads what the kit writes.
    #[test]
    fn skopeo_reads_the_archives() {
        let dir = std::env::temp_dir().join(format!("testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = TestImage::busybox().label("org.example", "yes");
        let docker = dir.join("docker.tar");
        write_file(&docker, &busybox_archive(&["bb:1"])).unwrap();
        let oci = dir.join("oci.tar");
        write_file(
            &oci,
            &OciLayout::new()
                .image(&img, Some("bb:2"))
                .compression(Compression::Zstd)
                .build(),
        )
        .unwrap();
        for (src, want_label) in [
            (format!("docker-archive:{}", docker.display()), false),
            (format!("oci-archive:{}:bb:2", oci.display()), true),
        ] {
            let out = std::process::Command::new("skopeo")
                .args(["inspect", "--config", &src])
                .output()
                .expect("skopeo must be installed");
            assert!(
                out.status.success(),
                "{src}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(cfg["architecture"], "amd64");
            assert_eq!(cfg["config"]["Labels"]["org.example"] == "yes", want_label);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn oci_layout_is_content_addressed() {
        let img = TestImage::busybox().label("a", "b");
        let e = entries(
            &OciLayout::new()
                .image(&img, Some("bb:latest"))
                .nested_index(true)
                .build(),
        );
        for (path, (_, data)) in &e {
            if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                if !hex.is_empty() {
                    assert_eq!(sha256(data), format!("sha256:{hex}"));
                }
            }
        }
        let index: serde_json::Value = serde_json::from_slice(&e["index.json"].1).unwrap();
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "bb:latest"
        );
    }
}
