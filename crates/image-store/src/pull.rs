//! Pulling from a registry.

use crate::error::{Error, Result};
use crate::model::Image;
use crate::store::ImageStore;

/// Options for [`ImageStore::pull`].
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Registries reached over plain http: host names, `host:port`, or
    /// CIDRs. `127.0.0.0/8` is always insecure, as in Docker.
    pub insecure_registries: Vec<String>,
    /// Basic credentials (user, password); anonymous when `None`.
    pub auth: Option<(String, String)>,
}

/// Progress of a pull, in the shape of Docker's JSON progress stream.
#[derive(Debug, Clone, PartialEq)]
pub enum PullProgress {
    /// A status line not tied to a layer (e.g. `Pulling from library/busybox`,
    /// `Digest: sha256:..`, `Status: Downloaded newer image for busybox:latest`).
    Status(String),
    /// Per-layer progress; `id` is the short (12 hex) digest of the blob.
    Layer {
        id: String,
        status: String,
        current: u64,
        total: Option<u64>,
    },
}

impl ImageStore {
    /// Pulls `reference` (normalised as Docker does) for linux/amd64 and
    /// tags it. Layers are streamed to staging files, verified, and then
    /// imported through the same path as [`ImageStore::load`].
    pub async fn pull(
        &self,
        reference: &str,
        opts: &PullOptions,
        progress: &mut (dyn FnMut(PullProgress) + Send),
    ) -> Result<Image> {
        let _ = (opts, progress);
        Err(Error::Unsupported(format!("pull of {reference}")))
    }
}
