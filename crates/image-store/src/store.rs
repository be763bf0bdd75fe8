//! The store: on-disk layout, metadata index, and the public operations.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::{ContainerConfig, HistoryEntry, Image, ImageConfig};
use crate::reference;
use crate::unpack::{self, Unpacked};

/// An image loaded by [`ImageStore::load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// `sha256:<hex>` image id.
    pub id: String,
    /// Tags applied, in familiar form (`busybox:latest`).
    pub tags: Vec<String>,
}

/// One effect of [`ImageStore::remove`], as Docker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A tag (familiar form) or digest reference was removed.
    Untagged(String),
    /// An image (`sha256:<hex>`) was deleted.
    Deleted(String),
}

/// The image store. `Send + Sync`, cheap to clone (clones share state);
/// every method may be called from several threads at once.
#[derive(Debug, Clone)]
pub struct ImageStore {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    root: PathBuf,
    /// Serialises every change of `repositories.json`, `configs/` and
    /// `layers/`.
    lock: Mutex<()>,
    /// Read-only stores whose images are seen too, in the order given.
    read_only: Vec<ReadOnlyStore>,
}

/// A store directory that is only ever read (the one carried by the system
/// image). Its metadata is read once, at open: nothing changes it.
#[derive(Debug)]
struct ReadOnlyStore {
    root: PathBuf,
    repos: Repositories,
    /// `sha256:<hex>` of every config in `configs/`.
    ids: BTreeSet<String>,
}

impl ReadOnlyStore {
    /// Reads the metadata of the store at `root`; `Ok(None)` when there is
    /// no store there.
    fn open(root: &Path) -> Result<Option<Self>> {
        let configs = root.join("configs");
        match fs::metadata(&configs) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::io(
                    "open read-only image store",
                    &configs,
                    io::Error::new(io::ErrorKind::InvalidData, "not a directory"),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open read-only image store", &configs, e)),
        }
        let repos = read_repositories_at(&root.join("repositories.json"))?;
        let ids = image_ids_in(&configs)?.into_iter().collect();
        Ok(Some(ReadOnlyStore {
            root: root.to_path_buf(),
            repos,
            ids,
        }))
    }
}

/// `repositories.json`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Repositories {
    /// Familiar `name:tag` -> `sha256:<id>`.
    #[serde(default)]
    tags: BTreeMap<String, String>,
    /// `sha256:<id>` -> familiar `name@sha256:<manifest digest>` references.
    #[serde(default)]
    digests: BTreeMap<String, BTreeSet<String>>,
}

/// Validates `sha256:<64 hex>` (or bare 64 hex) and returns the hex part.
pub(crate) fn digest_hex(d: &str) -> Result<&str> {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(hex)
    } else {
        Err(Error::InvalidConfig(format!("invalid sha256 digest {d:?}")))
    }
}

pub(crate) fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Writes `data` to `path` atomically and durably (`atomic_file`).
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    atomic_file::write(path, data).map_err(|e| Error::io("write", path, e))
}

/// Reads a `repositories.json`; a missing file is an empty one.
fn read_repositories_at(p: &Path) -> Result<Repositories> {
    match fs::read(p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            Error::io(
                "parse",
                p,
                io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Repositories::default()),
        Err(e) => Err(Error::io("read", p, e)),
    }
}

/// The `sha256:<hex>` ids of the configs in a `configs/` directory.
fn image_ids_in(dir: &Path) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))? {
        let e = e.map_err(|e| Error::io("read directory", dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(hex) = name.strip_suffix(".json") {
            if digest_hex(hex).is_ok() {
                ids.push(format!("sha256:{hex}"));
            }
        }
    }
    Ok(ids)
}

/// A per-operation work directory under `staging/`, removed on drop.
pub(crate) struct Staging {
    pub(crate) dir: PathBuf,
    pub(crate) layers: Vec<StagedLayer>,
    counter: usize,
}

/// A layer unpacked into staging.
#[derive(Debug, Clone)]
pub(crate) struct StagedLayer {
    pub(crate) dir: PathBuf,
    pub(crate) info: Unpacked,
}

impl Staging {
    /// A fresh path inside the work directory.
    pub(crate) fn path(&mut self, what: &str) -> PathBuf {
        self.counter += 1;
        self.dir.join(format!("{what}-{}", self.counter))
    }

    /// Unpacks a (possibly compressed) layer stream; returns its index in
    /// `self.layers`.
    pub(crate) fn layer(&mut self, src: impl io::Read) -> Result<usize> {
        let dir = self.path("layer");
        let info = unpack::unpack_layer(src, &dir)?;
        self.layers.push(StagedLayer { dir, info });
        Ok(self.layers.len() - 1)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove staging directory");
            }
        }
    }
}

/// Where a pending image's layer comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LayerRef {
    /// Index into `Staging::layers`.
    Staged(usize),
    /// Already unpacked in the store or a read-only one, with this diff id
    /// (checked against the config, and again for presence at commit).
    Present(String),
}

/// An image ready to be committed: config bytes, its layers (lowest
/// first), tags and digests.
#[derive(Debug, Clone)]
pub(crate) struct PendingImage {
    pub(crate) config: Vec<u8>,
    pub(crate) layers: Vec<LayerRef>,
    pub(crate) tags: Vec<String>,
    pub(crate) repo_digests: Vec<String>,
}

impl Inner {
    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    fn configs_dir(&self) -> PathBuf {
        self.root.join("configs")
    }

    fn repositories_path(&self) -> PathBuf {
        self.root.join("repositories.json")
    }

    pub(crate) fn staging(&self) -> Result<Staging> {
        let dir = self
            .root
            .join("staging")
            .join(format!("{:016x}", rand::random::<u64>()));
        fs::create_dir_all(&dir).map_err(|e| Error::io("create staging directory", &dir, e))?;
        Ok(Staging {
            dir,
            layers: Vec::new(),
            counter: 0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // A panic while holding the lock leaves no partial metadata behind
        // (every write is atomic), so a poisoned lock is still usable.
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writable store's `repositories.json`.
    fn read_repositories(&self) -> Result<Repositories> {
        read_repositories_at(&self.repositories_path())
    }

    /// What users see: the tags and digests of the read-only stores (an
    /// earlier store's tag wins over a later one's), overridden by the
    /// writable store's tags (`own`).
    fn view(&self, own: &Repositories) -> Repositories {
        if self.read_only.is_empty() {
            return own.clone();
        }
        let mut out = Repositories::default();
        for ro in self.read_only.iter().rev() {
            out.tags
                .extend(ro.repos.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out.tags
            .extend(own.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        for ro in &self.read_only {
            for (id, ds) in &ro.repos.digests {
                out.digests
                    .entry(id.clone())
                    .or_default()
                    .extend(ds.iter().cloned());
            }
        }
        for (id, ds) in &own.digests {
            out.digests
                .entry(id.clone())
                .or_default()
                .extend(ds.iter().cloned());
        }
        out
    }

    /// Whether the image's config lives in a read-only store.
    fn is_system_image(&self, id: &str) -> bool {
        self.read_only.iter().any(|ro| ro.ids.contains(id))
    }

    fn write_repositories(&self, repos: &Repositories) -> Result<()> {
        let data = serde_json::to_vec_pretty(repos)
            .map_err(|e| Error::InvalidConfig(format!("cannot serialise repositories: {e}")))?;
        write_atomic(&self.repositories_path(), &data)
    }

    /// The images of the writable store alone.
    fn own_image_ids(&self) -> Result<Vec<String>> {
        image_ids_in(&self.configs_dir())
    }

    /// Every image, of the writable store and the read-only ones, sorted.
    fn image_ids(&self) -> Result<Vec<String>> {
        let mut ids: BTreeSet<String> = self.own_image_ids()?.into_iter().collect();
        for ro in &self.read_only {
            ids.extend(ro.ids.iter().cloned());
        }
        Ok(ids.into_iter().collect())
    }

    /// The config of an image, from the writable store or else from the
    /// first read-only store that has it.
    fn read_config(&self, id: &str) -> Result<(Vec<u8>, ImageConfig)> {
        let hex = digest_hex(id).map_err(|_| Error::NotFound(id.to_string()))?;
        let own = self.configs_dir().join(format!("{hex}.json"));
        let ro = self
            .read_only
            .iter()
            .filter(|ro| ro.ids.contains(id))
            .map(|ro| ro.root.join("configs").join(format!("{hex}.json")));
        for p in std::iter::once(own).chain(ro) {
            match fs::read(&p) {
                Ok(raw) => {
                    let cfg = ImageConfig::from_json(&raw)?;
                    return Ok((raw, cfg));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read", &p, e)),
            }
        }
        Err(Error::NotFound(id.to_string()))
    }

    /// The directory holding the unpacked layer with this diff id: the
    /// writable store's if it has it, else the first read-only store's.
    fn layer_dir(&self, diff_id: &str) -> Option<PathBuf> {
        let hex = digest_hex(diff_id).ok()?;
        std::iter::once(self.layers_dir())
            .chain(self.read_only.iter().map(|ro| ro.root.join("layers")))
            .map(|d| d.join(hex))
            .find(|p| p.is_dir())
    }

    /// Whether the layer with this diff id is unpacked in the writable store
    /// or in a read-only one.
    pub(crate) fn has_layer(&self, diff_id: &str) -> bool {
        self.layer_dir(diff_id).is_some()
    }

    fn layer_size(&self, diff_id: &str) -> u64 {
        let Some(dir) = self.layer_dir(diff_id) else {
            return 0;
        };
        let mut size = dir.into_os_string();
        size.push(".size");
        fs::read_to_string(size)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn image(&self, id: &str, repos: &Repositories) -> Result<Image> {
        let (raw, config) = self.read_config(id)?;
        let repo_tags: Vec<String> = repos
            .tags
            .iter()
            .filter(|(_, v)| v.as_str() == id)
            .map(|(k, _)| k.clone())
            .collect();
        let repo_digests = repos
            .digests
            .get(id)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        let size = config
            .rootfs_diff_ids
            .iter()
            .map(|d| self.layer_size(d))
            .sum();
        Ok(Image {
            id: id.to_string(),
            repo_tags,
            repo_digests,
            created: config.created.clone(),
            size,
            config,
            raw_config: raw,
        })
    }

    /// Resolves a user-given name to an image id, as Docker does: a
    /// `sha256:` prefix is an id (prefix); otherwise a tag or digest
    /// reference; otherwise, if hex, an id prefix.
    fn resolve(&self, name: &str, repos: &Repositories) -> Result<Resolved> {
        if let Some(hex) = name.strip_prefix("sha256:") {
            return Ok(Resolved::Id(self.resolve_prefix(name, hex)?));
        }
        let as_ref = reference::parse(name);
        if let Ok(r) = &as_ref {
            if let Some(d) = r.digest() {
                let wanted = format!("{}@{}", reference::familiar_repository(r), d);
                for (id, ds) in &repos.digests {
                    if ds.contains(&wanted) {
                        return Ok(Resolved::Digest(id.clone(), wanted));
                    }
                }
            } else if let Some(tag) = reference::familiar_tagged(r) {
                if let Some(id) = repos.tags.get(&tag) {
                    return Ok(Resolved::Tag(id.clone(), tag));
                }
            }
        }
        let is_hex = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if is_hex {
            return Ok(Resolved::Id(self.resolve_prefix(name, name)?));
        }
        match as_ref {
            Err(e) => Err(e),
            Ok(_) => Err(Error::NotFound(name.to_string())),
        }
    }

    fn resolve_prefix(&self, name: &str, hex: &str) -> Result<String> {
        if hex.is_empty() || hex.len() > 64 {
            return Err(Error::NotFound(name.to_string()));
        }
        let mut matches = self
            .image_ids()?
            .into_iter()
            .filter(|id| id["sha256:".len()..].starts_with(hex));
        match (matches.next(), matches.next()) {
            (Some(id), None) => Ok(id),
            (None, _) => Err(Error::NotFound(name.to_string())),
            (Some(_), Some(_)) => Err(Error::Conflict(format!(
                "image id prefix {name} is ambiguous"
            ))),
        }
    }

    /// Validates `images` against `staging` and then commits layers,
    /// configs and tags. Nothing is changed if validation fails.
    pub(crate) fn commit(
        &self,
        staging: &Staging,
        images: &[PendingImage],
    ) -> Result<Vec<LoadedImage>> {
        // Validate everything first.
        let mut checked = Vec::new();
        for img in images {
            let cfg = ImageConfig::from_json(&img.config)?;
            let id = sha256_digest(&img.config);
            if cfg.rootfs_diff_ids.len() != img.layers.len() {
                return Err(Error::archive(format!(
                    "image {id}: config lists {} layers, manifest {}",
                    cfg.rootfs_diff_ids.len(),
                    img.layers.len()
                )));
            }
            for (want, lref) in cfg.rootfs_diff_ids.iter().zip(&img.layers) {
                let idx = match lref {
                    LayerRef::Staged(idx) => *idx,
                    LayerRef::Present(have) if have == want => continue,
                    LayerRef::Present(have) => {
                        return Err(Error::DigestMismatch {
                            what: format!("layer of image {id}"),
                            expected: want.clone(),
                            actual: have.clone(),
                        })
                    }
                };
                let staged = staging
                    .layers
                    .get(idx)
                    .ok_or_else(|| Error::archive("internal: unknown staged layer"))?;
                if &staged.info.diff_id != want {
                    return Err(Error::DigestMismatch {
                        what: format!("layer of image {id}"),
                        expected: want.clone(),
                        actual: staged.info.diff_id.clone(),
                    });
                }
            }
            let mut tags = Vec::new();
            for t in &img.tags {
                let r = reference::parse(t)?;
                let tag =
                    reference::familiar_tagged(&r).ok_or_else(|| Error::InvalidReference {
                        reference: t.clone(),
                        reason: "a tag is needed, not a digest".into(),
                    })?;
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            checked.push((id, cfg, tags));
        }

        let _guard = self.lock();
        let layers_dir = self.layers_dir();
        for (img, (_, cfg, _)) in images.iter().zip(&checked) {
            for (diff_id, lref) in cfg.rootfs_diff_ids.iter().zip(&img.layers) {
                let hex = digest_hex(diff_id)?;
                let dest = layers_dir.join(hex);
                // Present here or in a read-only store: shared, not added.
                if dest.exists() || self.has_layer(diff_id) {
                    continue;
                }
                let LayerRef::Staged(idx) = lref else {
                    return Err(Error::NotFound(format!(
                        "layer {diff_id} (removed while the image was being added)"
                    )));
                };
                let staged = &staging.layers[*idx];
                write_atomic(
                    &layers_dir.join(format!("{hex}.size")),
                    staged.info.size.to_string().as_bytes(),
                )?;
                fs::rename(&staged.dir, &dest).map_err(|e| Error::io("commit layer", &dest, e))?;
            }
        }
        let mut repos = self.read_repositories()?;
        let mut out = Vec::new();
        for (img, (id, _, tags)) in images.iter().zip(checked) {
            let hex = digest_hex(&id)?;
            let cfg_path = self.configs_dir().join(format!("{hex}.json"));
            if !cfg_path.exists() {
                write_atomic(&cfg_path, &img.config)?;
            }
            for t in &tags {
                repos.tags.insert(t.clone(), id.clone());
            }
            for d in &img.repo_digests {
                repos
                    .digests
                    .entry(id.clone())
                    .or_default()
                    .insert(d.clone());
            }
            out.push(LoadedImage { id, tags });
        }
        self.write_repositories(&repos)?;
        Ok(out)
    }

    /// Deletes the writable store's layers that no image references any
    /// more. Images of the read-only stores count as references (a
    /// container may use the writable copy of their layer); the read-only
    /// stores themselves are never touched. Called with the lock held.
    fn collect_layers(&self) -> Result<()> {
        let mut used = BTreeSet::new();
        for id in self.image_ids()? {
            let (_, cfg) = self.read_config(&id)?;
            for d in cfg.rootfs_diff_ids {
                used.insert(digest_hex(&d)?.to_string());
            }
        }
        let dir = self.layers_dir();
        let trash = self
            .root
            .join("staging")
            .join(format!("gc-{:016x}", rand::random::<u64>()));
        for e in fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, e))? {
            let e = e.map_err(|e| Error::io("read directory", &dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let hex = name.strip_suffix(".size").unwrap_or(&name);
            if digest_hex(hex).is_err() || used.contains(hex) {
                continue;
            }
            if name.ends_with(".size") {
                let _ = fs::remove_file(e.path());
            } else {
                // Move out of layers/ first so that a crash never leaves a
                // half-deleted layer that looks complete.
                fs::create_dir_all(&trash).map_err(|e| Error::io("create", &trash, e))?;
                let t = trash.join(hex);
                fs::rename(e.path(), &t).map_err(|err| Error::io("remove layer", e.path(), err))?;
            }
        }
        if trash.exists() {
            fs::remove_dir_all(&trash).map_err(|e| Error::io("remove", &trash, e))?;
        }
        Ok(())
    }
}

enum Resolved {
    /// By id or id prefix.
    Id(String),
    /// By tag: (id, familiar tag).
    Tag(String, String),
    /// By digest reference: (id, familiar name@digest).
    Digest(String, String),
}

impl Resolved {
    fn id(&self) -> &str {
        match self {
            Resolved::Id(id) | Resolved::Tag(id, _) | Resolved::Digest(id, _) => id,
        }
    }
}

fn repository_of(tag_or_digest: &str) -> &str {
    if let Some((name, _)) = tag_or_digest.split_once('@') {
        return name;
    }
    match tag_or_digest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => tag_or_digest,
    }
}

impl ImageStore {
    /// Opens (creating if needed) the store rooted at `root` and clears
    /// leftovers of interrupted work from its staging directory.
    pub fn open(root: &Path) -> Result<Self> {
        Self::open_with_read_only(root, &[])
    }

    /// Opens the writable store rooted at `root` as [`ImageStore::open`]
    /// does, and shows the images of the stores at `read_only` too (store
    /// directories in the same layout, such as the one the system image
    /// carries; see the crate documentation). Those are only ever read:
    /// never written, never locked, their `staging/` never wiped. A
    /// read-only root that does not exist (or holds no `configs/`) is
    /// skipped with a warning; one whose metadata cannot be read is an
    /// error.
    pub fn open_with_read_only(root: &Path, read_only: &[PathBuf]) -> Result<Self> {
        let mut stores = Vec::new();
        for ro in read_only {
            match ReadOnlyStore::open(ro)? {
                Some(s) => {
                    tracing::debug!(root = %ro.display(), images = s.ids.len(), "read-only image store");
                    stores.push(s);
                }
                None => {
                    tracing::warn!(root = %ro.display(), "read-only image store not found, skipped");
                }
            }
        }
        for d in ["layers", "configs", "staging"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(|e| Error::io("create directory", &p, e))?;
        }
        let staging = root.join("staging");
        for e in fs::read_dir(&staging).map_err(|e| Error::io("read directory", &staging, e))? {
            let e = e.map_err(|e| Error::io("read directory", &staging, e))?;
            let p = e.path();
            let r = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            if let Err(err) = r {
                tracing::warn!(path = %p.display(), error = %err, "cannot remove staging leftover");
            }
        }
        Ok(ImageStore {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                lock: Mutex::new(()),
                read_only: stores,
            }),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The roots of the read-only stores in use (those found at open).
    pub fn read_only_roots(&self) -> Vec<&Path> {
        self.inner
            .read_only
            .iter()
            .map(|r| r.root.as_path())
            .collect()
    }

    /// Makes the store's directory ready to be packed into a read-only
    /// file system (the system image's store): checks that every image's
    /// layers are unpacked in this directory itself (not in a read-only
    /// store), deletes layers no image uses, and removes `staging/` and the
    /// temporary files an interrupted write may have left. The directory
    /// then holds only `layers/`, `configs/` and `repositories.json`. The
    /// store stays usable (a later operation recreates `staging/`), but the
    /// directory should not be changed once packed.
    pub fn seal(&self) -> Result<()> {
        let _guard = self.inner.lock();
        for id in self.inner.own_image_ids()? {
            let (_, cfg) = self.inner.read_config(&id)?;
            for d in &cfg.rootfs_diff_ids {
                if !self.inner.layers_dir().join(digest_hex(d)?).is_dir() {
                    return Err(Error::NotFound(format!(
                        "layer {d} of image {id} in {}",
                        self.inner.root.display()
                    )));
                }
            }
        }
        self.inner.collect_layers()?;
        let staging = self.inner.root.join("staging");
        match fs::remove_dir_all(&staging) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &staging, e)),
        }
        for dir in [
            self.inner.root.clone(),
            self.inner.configs_dir(),
            self.inner.layers_dir(),
        ] {
            for e in fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, e))? {
                let e = e.map_err(|e| Error::io("read directory", &dir, e))?;
                if atomic_file::is_temporary(&e.file_name().to_string_lossy()) {
                    fs::remove_file(e.path()).map_err(|err| Error::io("remove", e.path(), err))?;
                }
            }
        }
        Ok(())
    }

    /// Loads every image of a `docker save` archive (legacy or OCI-layout
    /// flavoured) or OCI image-layout tarball (the tarball itself may be
    /// compressed), tagging each with its `RepoTags` / name annotations.
    /// `progress` receives Docker's lines (`Loaded image: busybox:latest`,
    /// `Loaded image ID: sha256:..`). On error nothing is changed.
    pub fn load(
        &self,
        tar: impl std::io::Read,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Vec<LoadedImage>> {
        let mut staging = self.inner.staging()?;
        let present = |diff_id: &str| self.inner.has_layer(diff_id);
        let images = crate::archive::read_archive(&mut staging, tar, &present, progress)?;
        let loaded = self.inner.commit(&staging, &images)?;
        for l in &loaded {
            if l.tags.is_empty() {
                progress(&format!("Loaded image ID: {}", l.id));
            }
            for t in &l.tags {
                progress(&format!("Loaded image: {t}"));
            }
        }
        Ok(loaded)
    }

    /// Imports a root-filesystem tarball (plain or compressed) as a
    /// one-layer linux/amd64 image with the given runtime config, tagging it
    /// with `reference` if given. Returns the `sha256:<hex>` id.
    pub fn import(
        &self,
        tar: impl std::io::Read,
        reference: Option<&str>,
        config: ContainerConfig,
    ) -> Result<String> {
        let tag = reference.map(reference::normalize).transpose()?;
        let mut staging = self.inner.staging()?;
        let idx = staging.layer(tar)?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let cfg = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            created: Some(now.clone()),
            config,
            rootfs_diff_ids: vec![staging.layers[idx].info.diff_id.clone()],
            history: vec![HistoryEntry {
                created: Some(now),
                created_by: None,
                comment: Some("Imported from tarball".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let raw = serde_json::to_vec(&cfg)
            .map_err(|e| Error::InvalidConfig(format!("cannot serialise config: {e}")))?;
        let pending = PendingImage {
            config: raw,
            layers: vec![LayerRef::Staged(idx)],
            tags: tag.into_iter().collect(),
            repo_digests: Vec::new(),
        };
        let mut loaded = self.inner.commit(&staging, &[pending])?;
        loaded
            .pop()
            .map(|l| l.id)
            .ok_or_else(|| Error::archive("internal: import committed nothing"))
    }

    /// Tags the image named by `source` (name, id or id prefix) as `target`,
    /// moving the tag if it pointed elsewhere.
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let target = reference::parse(target)?;
        let tag = reference::familiar_tagged(&target).ok_or_else(|| Error::InvalidReference {
            reference: target.whole(),
            reason: "a tag is needed, not a digest".into(),
        })?;
        let _guard = self.inner.lock();
        let mut repos = self.inner.read_repositories()?;
        let view = self.inner.view(&repos);
        let id = self.inner.resolve(source, &view)?.id().to_string();
        repos.tags.insert(tag, id);
        self.inner.write_repositories(&repos)
    }

    /// Every image in the store, newest first.
    pub fn list(&self) -> Result<Vec<Image>> {
        let _guard = self.inner.lock();
        let repos = self.inner.view(&self.inner.read_repositories()?);
        let mut out = Vec::new();
        for id in self.inner.image_ids()? {
            out.push(self.inner.image(&id, &repos)?);
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Looks an image up by `name[:tag]`, `name@digest`, full id
    /// (`sha256:<hex>` or hex) or unique id prefix.
    pub fn get(&self, name: &str) -> Result<Image> {
        let _guard = self.inner.lock();
        let repos = self.inner.view(&self.inner.read_repositories()?);
        let id = self.inner.resolve(name, &repos)?.id().to_string();
        self.inner.image(&id, &repos)
    }

    /// Removes an image as `docker rmi` does. A tag reference untags; the
    /// image is deleted when no tag is left. Refused with [`Error::InUse`]
    /// when `in_use(id)` and not `force` (with `force` an in-use image is only
    /// untagged); refused with [`Error::Conflict`] when named by id while it
    /// has several tags, unless `force`. Layers no longer referenced by any
    /// image are deleted.
    ///
    /// An image of a read-only store (a system image) is never deleted:
    /// naming it by id, or by a tag or digest that only a read-only store
    /// holds, is refused with [`Error::Conflict`] (`image NAME is part of
    /// the system image and cannot be removed`), even with `force`, and
    /// changes nothing. A tag the writable store holds is untagged as
    /// usual, and the image stays.
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Removed>> {
        let _guard = self.inner.lock();
        let mut repos = self.inner.read_repositories()?;
        let view = self.inner.view(&repos);
        let resolved = self.inner.resolve(name, &view)?;
        let id = resolved.id().to_string();
        let system = self.inner.is_system_image(&id);
        let own_ref = |r: &str| {
            if r.contains('@') {
                repos.digests.get(&id).is_some_and(|s| s.contains(r))
            } else {
                repos.tags.get(r) == Some(&id)
            }
        };
        let refused = match &resolved {
            Resolved::Id(_) => system,
            Resolved::Tag(_, r) | Resolved::Digest(_, r) => !own_ref(r),
        };
        if refused {
            return Err(Error::Conflict(format!(
                "image {name} is part of the system image and cannot be removed"
            )));
        }
        let tags: Vec<String> = view
            .tags
            .iter()
            .filter(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
            .collect();
        let digests: Vec<String> = view
            .digests
            .get(&id)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        let mut out = Vec::new();

        // Which references go, and whether the image itself goes.
        let mut drop_refs: Vec<String> = Vec::new();
        let delete;
        match &resolved {
            Resolved::Tag(_, r) | Resolved::Digest(_, r) => {
                drop_refs.push(r.clone());
                let repo = repository_of(r).to_string();
                let others: Vec<&String> =
                    tags.iter().chain(&digests).filter(|t| *t != r).collect();
                // The digest references of this repository go with its
                // last tag, as in Docker.
                if !others
                    .iter()
                    .any(|t| repository_of(t) == repo && !t.contains('@'))
                {
                    drop_refs.extend(
                        digests
                            .iter()
                            .filter(|d| repository_of(d) == repo && *d != r && own_ref(d))
                            .cloned(),
                    );
                }
                let remaining = others.iter().filter(|t| !drop_refs.contains(t)).count();
                if remaining > 0 || system {
                    // A system image stays, tagged or not.
                    delete = false;
                } else if in_use(&id) {
                    if !force {
                        return Err(Error::InUse { image: name.into() });
                    }
                    delete = false;
                } else {
                    delete = true;
                }
            }
            Resolved::Id(_) => {
                if tags.len() > 1 && !force {
                    return Err(Error::Conflict(format!(
                        "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                        short_id(&id)
                    )));
                }
                if in_use(&id) {
                    if !force {
                        return Err(Error::InUse { image: name.into() });
                    }
                    delete = false;
                } else {
                    delete = true;
                }
                drop_refs.extend(tags.iter().cloned());
                drop_refs.extend(digests.iter().cloned());
            }
        }

        for r in &drop_refs {
            if r.contains('@') {
                if let Some(set) = repos.digests.get_mut(&id) {
                    set.remove(r);
                }
            } else {
                repos.tags.remove(r);
            }
            out.push(Removed::Untagged(r.clone()));
        }
        if repos.digests.get(&id).is_some_and(|s| s.is_empty()) {
            repos.digests.remove(&id);
        }
        if delete {
            repos.digests.remove(&id);
        }
        self.inner.write_repositories(&repos)?;
        if delete {
            let hex = digest_hex(&id)?;
            let p = self.inner.configs_dir().join(format!("{hex}.json"));
            match fs::remove_file(&p) {
                Ok(()) => {}
                // A tag left pointing at an image of a read-only store that
                // is no longer given.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &p, e)),
            }
            out.push(Removed::Deleted(id.clone()));
            self.inner.collect_layers()?;
        }
        Ok(out)
    }

    /// The unpacked layer directories of an image (named by id or any name
    /// [`ImageStore::get`] accepts), lowest first, ready to be used as
    /// overlayfs lowerdirs (reverse the order for `lowerdir=`). Each is the
    /// writable store's directory when it has the layer, else a read-only
    /// store's.
    pub fn layer_paths(&self, image_id: &str) -> Result<Vec<PathBuf>> {
        let _guard = self.inner.lock();
        let repos = self.inner.view(&self.inner.read_repositories()?);
        let id = self.inner.resolve(image_id, &repos)?.id().to_string();
        let (_, cfg) = self.inner.read_config(&id)?;
        let mut out = Vec::new();
        for d in &cfg.rootfs_diff_ids {
            digest_hex(d)?;
            let p = self
                .inner
                .layer_dir(d)
                .ok_or_else(|| Error::NotFound(format!("layer {d} of image {id}")))?;
            out.push(p);
        }
        Ok(out)
    }

    /// Normalises a reference to the familiar `name:tag` form Docker shows:
    /// `busybox` -> `busybox:latest`, `127.0.0.1:5000/foo` ->
    /// `127.0.0.1:5000/foo:latest`.
    pub fn normalize_reference(name: &str) -> Result<String> {
        reference::normalize(name)
    }
}

/// The 12-hex short form of an id.
pub(crate) fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}
