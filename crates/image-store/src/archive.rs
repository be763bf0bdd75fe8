//! Reading docker-archive and OCI image-layout tarballs.
//!
//! The outer tarball is read once, as a stream, in whatever order its
//! entries come (`docker save` writes `manifest.json` last). Each entry is
//! classified by its content: compressed data or a tar stream is a layer
//! and is unpacked into staging right away (its diff id and blob digest are
//! computed on the way); anything else (JSON: manifests, configs, indexes)
//! is kept in memory, up to [`MAX_METADATA`] bytes. Once the tarball has
//! been read, `manifest.json` (docker-archive, both flavours) or
//! `index.json` (OCI layout) says which config and layers make each image;
//! the store then checks every diff id before committing anything.
//!
//! Blobs under `blobs/sha256/` are content addressed: an entry whose bytes
//! do not hash to its name is refused. An uncompressed layer blob there is
//! named by its diff id; when the store (or a read-only store under it)
//! already has that layer, the entry is only hashed, not unpacked again.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::{sha256_digest, LayerRef, PendingImage, Staging};
use crate::unpack;

/// Largest non-layer entry kept in memory.
pub(crate) const MAX_METADATA: u64 = 16 << 20;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What the outer tarball held.
#[derive(Default)]
struct Contents {
    /// Normalised path -> bytes of small non-layer entries.
    blobs: BTreeMap<String, Vec<u8>>,
    /// Normalised path -> staged layer index.
    layers: BTreeMap<String, usize>,
    /// Normalised path -> diff id of a layer blob the store already has.
    present: BTreeMap<String, String>,
    /// Normalised path -> normalised target (symlinks, hard links).
    links: BTreeMap<String, String>,
}

impl Contents {
    fn resolve<'a>(&'a self, path: &'a str) -> &'a str {
        let mut p = path;
        for _ in 0..16 {
            match self.links.get(p) {
                Some(t) => p = t,
                None => break,
            }
        }
        p
    }

    fn blob(&self, path: &str) -> Result<&[u8]> {
        let p = normalise(path)?;
        self.blobs
            .get(self.resolve(&p))
            .map(Vec::as_slice)
            .ok_or_else(|| Error::archive(format!("{path} is missing from the archive")))
    }

    /// The staged layer at `path`. An entry that did not look like a layer
    /// when it was read (an old tar without the ustar magic) is unpacked
    /// from memory now.
    fn layer(&mut self, staging: &mut Staging, path: &str) -> Result<LayerRef> {
        let p = normalise(path)?;
        let p = self.resolve(&p).to_string();
        if let Some(&i) = self.layers.get(&p) {
            return Ok(LayerRef::Staged(i));
        }
        if let Some(diff_id) = self.present.get(&p) {
            return Ok(LayerRef::Present(diff_id.clone()));
        }
        let Some(data) = self.blobs.get(&p) else {
            return Err(Error::archive(format!(
                "layer {path} is missing from the archive"
            )));
        };
        let idx = staging.layer(&data[..]).map_err(|e| in_entry(path, e))?;
        self.layers.insert(p, idx);
        Ok(LayerRef::Staged(idx))
    }
}

/// Archive path -> canonical relative form (`./a/../b` -> `b`).
fn normalise(path: &str) -> Result<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            // The guard pops the parent; only `..` above the top is refused.
            Component::ParentDir if parts.pop().is_none() => {
                return Err(Error::archive(format!(
                    "path {path} points outside the archive"
                )));
            }
            _ => {}
        }
    }
    Ok(parts.join("/"))
}

fn looks_like_tar(head: &[u8]) -> bool {
    (head.len() >= 262 && &head[257..262] == b"ustar")
        || (head.len() == 512 && head.iter().all(|&b| b == 0))
}

fn read_head(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Names the archive entry in an archive error.
fn in_entry(path: &str, e: Error) -> Error {
    match e {
        Error::InvalidArchive(m) => Error::archive(format!("{path}: {m}")),
        other => other,
    }
}

fn read_err(e: impl std::fmt::Display) -> Error {
    Error::archive(format!("cannot read image archive: {e}"))
}

/// Reads the whole tarball into `staging` and returns the images it
/// describes.
/// `present(diff_id)` tells whether the store already has a layer.
pub(crate) fn read_archive(
    staging: &mut Staging,
    src: impl Read,
    present: &dyn Fn(&str) -> bool,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<PendingImage>> {
    let outer = unpack::decompressed(src)?;
    let mut archive = tar::Archive::new(outer);
    let mut contents = Contents::default();
    let mut saw_entry = false;
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        saw_entry = true;
        let raw = entry
            .path()
            .map_err(read_err)?
            .to_string_lossy()
            .into_owned();
        let path = normalise(&raw)?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Some(target) = entry.link_name().map_err(read_err)? {
                let target = target.to_string_lossy().into_owned();
                let resolved = if kind.is_symlink() {
                    let base = Path::new(&path).parent().unwrap_or(Path::new(""));
                    normalise(&base.join(&target).to_string_lossy())?
                } else {
                    normalise(&target)?
                };
                contents.links.insert(path, resolved);
            }
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            continue;
        }
        let size = entry.size();
        let mut head = vec![0u8; 512];
        let n = read_head(&mut entry, &mut head).map_err(read_err)?;
        head.truncate(n);
        let compressed = matches!(
            unpack::detect(&head[..]).map_err(read_err)?.0,
            unpack::Compression::Gzip | unpack::Compression::Zstd | unpack::Compression::Xz
        );
        let known = path
            .strip_prefix("blobs/sha256/")
            .map(|hex| format!("sha256:{hex}"))
            .filter(|diff_id| !compressed && looks_like_tar(&head) && present(diff_id));
        if let Some(diff_id) = known {
            // An uncompressed blob's digest is its diff id: the layer is
            // already unpacked, so the bytes are only checked.
            let actual = hash_rest(head, &mut entry)?;
            check_content_address(&path, &actual)?;
            contents.present.insert(path, diff_id);
        } else if compressed || looks_like_tar(&head) {
            progress(&format!("Loading layer {path}"));
            let idx = staging
                .layer(io::Cursor::new(head).chain(&mut entry))
                .map_err(|e| in_entry(&path, e))?;
            check_content_address(&path, &staging.layers[idx].info.blob_digest)?;
            contents.layers.insert(path, idx);
        } else if size <= MAX_METADATA {
            let mut data = head;
            entry.read_to_end(&mut data).map_err(read_err)?;
            if data.len() as u64 != size {
                return Err(Error::archive(format!(
                    "{path} is truncated: {} of {size} bytes",
                    data.len()
                )));
            }
            check_content_address(&path, &sha256_digest(&data))?;
            contents.blobs.insert(path, data);
        } else {
            tracing::debug!(path, size, "skipping large non-layer archive entry");
        }
    }
    if !saw_entry {
        return Err(Error::archive("empty or truncated archive"));
    }
    let images = if let Ok(manifest) = contents.blob("manifest.json") {
        let manifest = manifest.to_vec();
        docker_images(&mut contents, staging, &manifest)?
    } else if let Ok(index) = contents.blob("index.json") {
        let index = index.to_vec();
        oci_images(&mut contents, staging, &index)?
    } else {
        return Err(Error::archive(
            "neither manifest.json nor index.json found (not a docker save or OCI layout tarball)",
        ));
    };
    if images.is_empty() {
        return Err(Error::archive("the archive holds no image"));
    }
    Ok(images)
}

/// The `sha256:` digest of `head` followed by the rest of `r`.
fn hash_rest(head: Vec<u8>, r: &mut impl Read) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(&head);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_err(e)),
        }
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

fn check_content_address(path: &str, actual: &str) -> Result<()> {
    if let Some(hex) = path.strip_prefix("blobs/sha256/") {
        let expected = format!("sha256:{hex}");
        if actual != expected {
            return Err(Error::DigestMismatch {
                what: format!("blob {path}"),
                expected,
                actual: actual.to_string(),
            });
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn docker_images(
    contents: &mut Contents,
    staging: &mut Staging,
    manifest: &[u8],
) -> Result<Vec<PendingImage>> {
    let entries: Vec<ManifestEntry> = serde_json::from_slice(manifest)
        .map_err(|e| Error::archive(format!("invalid manifest.json: {e}")))?;
    entries
        .into_iter()
        .map(|m| {
            Ok(PendingImage {
                config: contents.blob(&m.config)?.to_vec(),
                layers: m
                    .layers
                    .iter()
                    .map(|l| contents.layer(staging, l))
                    .collect::<Result<_>>()?,
                tags: m.repo_tags.unwrap_or_default(),
                repo_digests: Vec::new(),
            })
        })
        .collect()
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub(crate) media_type: Option<String>,
    pub(crate) digest: String,
    #[serde(default)]
    pub(crate) size: Option<i64>,
    #[serde(default)]
    pub(crate) annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(crate) platform: Option<Platform>,
}

#[derive(Deserialize, Clone)]
pub(crate) struct Platform {
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) os: String,
}

/// An image index or a manifest: which one is told by the fields present.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IndexOrManifest {
    #[serde(default)]
    pub(crate) media_type: Option<String>,
    #[serde(default)]
    pub(crate) manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub(crate) config: Option<Descriptor>,
    #[serde(default)]
    pub(crate) layers: Option<Vec<Descriptor>>,
}

impl IndexOrManifest {
    pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::archive(format!("invalid {what}: {e}")))
    }

    pub(crate) fn is_index(&self) -> bool {
        match self.media_type.as_deref() {
            Some(OCI_INDEX) | Some(DOCKER_LIST) => true,
            Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => false,
            _ => self.manifests.is_some() && self.config.is_none(),
        }
    }
}

/// Whether a descriptor is for linux/amd64 (or says nothing of platform).
pub(crate) fn is_amd64(d: &Descriptor) -> bool {
    d.platform
        .as_ref()
        .is_none_or(|p| p.os == "linux" && p.architecture == "amd64")
}

/// The descriptor to follow in an index: the first linux/amd64 one.
pub(crate) fn pick_amd64(manifests: &[Descriptor]) -> Option<&Descriptor> {
    manifests
        .iter()
        .find(|d| d.platform.is_some() && is_amd64(d))
        .or_else(|| manifests.iter().find(|d| d.platform.is_none()))
}

/// The name an index entry gives its image, if any.
fn annotated_name(d: &Descriptor) -> Option<String> {
    let ann = d.annotations.as_ref()?;
    if let Some(n) = ann.get("io.containerd.image.name") {
        return Some(n.clone());
    }
    // The OCI spec allows a bare tag here ("latest"); that names no
    // repository, so only full references are used.
    ann.get("org.opencontainers.image.ref.name")
        .filter(|n| n.contains(':') || n.contains('/'))
        .cloned()
}

fn blob_path(digest: &str) -> Result<String> {
    let hex = crate::store::digest_hex(digest)
        .map_err(|_| Error::archive(format!("unsupported digest {digest}")))?;
    Ok(format!("blobs/sha256/{hex}"))
}

fn oci_images(
    contents: &mut Contents,
    staging: &mut Staging,
    index: &[u8],
) -> Result<Vec<PendingImage>> {
    let index = IndexOrManifest::parse(index, "index.json")?;
    let mut out = Vec::new();
    for d in index.manifests.unwrap_or_default() {
        if !is_amd64(&d) {
            continue;
        }
        let name = annotated_name(&d);
        let mut desc = d;
        let mut depth = 0;
        loop {
            depth += 1;
            if depth > 8 {
                return Err(Error::archive("image indexes nested too deeply"));
            }
            let bytes = contents.blob(&blob_path(&desc.digest)?)?;
            let doc = IndexOrManifest::parse(bytes, &format!("manifest {}", desc.digest))?;
            if doc.is_index() {
                let manifests = doc.manifests.unwrap_or_default();
                desc = pick_amd64(&manifests).cloned().ok_or_else(|| {
                    Error::archive(format!("index {} has no linux/amd64 image", desc.digest))
                })?;
                continue;
            }
            let config = doc
                .config
                .ok_or_else(|| Error::archive(format!("manifest {} has no config", desc.digest)))?;
            let layers = doc
                .layers
                .unwrap_or_default()
                .iter()
                .map(|l| contents.layer(staging, &blob_path(&l.digest)?))
                .collect::<Result<_>>()?;
            out.push(PendingImage {
                config: contents.blob(&blob_path(&config.digest)?)?.to_vec(),
                layers,
                tags: name.into_iter().collect(),
                repo_digests: Vec::new(),
            });
            break;
        }
    }
    Ok(out)
}
