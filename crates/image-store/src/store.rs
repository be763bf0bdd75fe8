//! The store: on-disk layout, metadata index, and the public operations.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::model::{ContainerConfig, Image};

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
    /// A tag (familiar form) was removed.
    Untagged(String),
    /// An image (`sha256:<hex>`) was deleted.
    Deleted(String),
}

/// The image store. `Send + Sync`; every method may be called from several
/// threads at once.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    index: Mutex<()>,
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

impl ImageStore {
    /// Opens (creating if needed) the store rooted at `root` and clears
    /// leftovers of interrupted work from its staging directory.
    pub fn open(root: &Path) -> Result<Self> {
        Ok(ImageStore {
            root: root.to_path_buf(),
            index: Mutex::new(()),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Loads every image of a `docker save` archive (legacy or OCI-layout
    /// flavoured) or OCI image-layout tarball, tagging each with its
    /// `RepoTags` / ref-name annotations. `progress` receives human-readable
    /// lines (`Loaded image: busybox:latest`, `Loaded image ID: sha256:..`).
    /// On error nothing is changed.
    pub fn load(
        &self,
        tar: impl std::io::Read,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Vec<LoadedImage>> {
        let _ = (tar, progress);
        Err(Error::Unsupported("load".into()))
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
        let _ = (tar, reference, config);
        Err(Error::Unsupported("import".into()))
    }

    /// Tags the image named by `source` (name, id or id prefix) as `target`,
    /// moving the tag if it pointed elsewhere.
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let _ = (source, target);
        Err(Error::Unsupported("tag".into()))
    }

    /// Every image in the store, newest first.
    pub fn list(&self) -> Result<Vec<Image>> {
        Err(Error::Unsupported("list".into()))
    }

    /// Looks an image up by `name[:tag]`, `name@digest`, full id
    /// (`sha256:<hex>` or hex) or unique id prefix.
    pub fn get(&self, name: &str) -> Result<Image> {
        Err(Error::NotFound(name.to_string()))
    }

    /// Removes an image as `docker rmi` does. A tag reference untags; the
    /// image is deleted when no tag is left. Refused with [`Error::InUse`]
    /// when `in_use(id)` and not `force` (with `force` an in-use image is only
    /// untagged); refused with [`Error::Conflict`] when named by id while it
    /// has several tags, unless `force`. Layers no longer referenced by any
    /// image are deleted.
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Removed>> {
        let _ = (force, in_use);
        Err(Error::NotFound(name.to_string()))
    }

    /// The unpacked layer directories of an image, lowest first, ready to be
    /// used as overlayfs lowerdirs (reverse the order for `lowerdir=`).
    pub fn layer_paths(&self, image_id: &str) -> Result<Vec<PathBuf>> {
        Err(Error::NotFound(image_id.to_string()))
    }

    /// Normalises a reference to the familiar `name:tag` form Docker shows:
    /// `busybox` -> `busybox:latest`, `127.0.0.1:5000/foo` ->
    /// `127.0.0.1:5000/foo:latest`.
    pub fn normalize_reference(name: &str) -> Result<String> {
        crate::reference::normalize(name)
    }
}
