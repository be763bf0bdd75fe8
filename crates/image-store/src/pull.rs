//! Pulling from a registry with `oci-client`.
//!
//! The manifest (and, for a multi-platform index, the linux/amd64 manifest
//! it points to) and the config are fetched into memory and checked against
//! their digests. Each layer blob is streamed into a staging file while it
//! is hashed, checked against its descriptor digest, and then unpacked and
//! committed through the same code as [`ImageStore::load`]: a failure at
//! any point leaves the store unchanged. Layers the store already has (by
//! diff id) are not downloaded.

use std::net::IpAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::archive::{pick_amd64, IndexOrManifest};
use crate::error::{Error, Result};
use crate::model::{Image, ImageConfig};
use crate::reference;
use crate::store::{
    digest_hex, sha256_digest, short_id, ImageStore, Inner, LayerRef, PendingImage, Staging,
};

/// Options for [`ImageStore::pull`].
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Registries reached over plain http: host names, `host:port`, or
    /// CIDRs. `127.0.0.0/8` (and `localhost`) are always insecure, as in
    /// Docker.
    pub insecure_registries: Vec<String>,
    /// Basic credentials (user, password); anonymous when `None`.
    pub auth: Option<(String, String)>,
}

/// Progress of a pull, in the shape of Docker's JSON progress stream.
#[derive(Debug, Clone, PartialEq)]
pub enum PullProgress {
    /// A status line not tied to a layer (e.g. `latest: Pulling from
    /// library/busybox`, `Digest: sha256:..`, `Status: Downloaded newer
    /// image for busybox:latest`).
    Status(String),
    /// Per-layer progress; `id` is the short (12 hex) digest of the blob;
    /// `status` is one of Docker's: `Pulling fs layer`, `Already exists`,
    /// `Downloading`, `Verifying Checksum`, `Download complete`,
    /// `Extracting`, `Pull complete`.
    Layer {
        id: String,
        status: String,
        current: u64,
        total: Option<u64>,
    },
}

const ACCEPTED: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Whether `registry` (`host[:port]`) is reached over plain http.
pub(crate) fn is_insecure(registry: &str, insecure: &[String]) -> bool {
    let host = host_of(registry);
    if host == "localhost" {
        return true;
    }
    let ip: Option<IpAddr> = host.parse().ok();
    let defaults = ["127.0.0.0/8".to_string()];
    insecure.iter().chain(defaults.iter()).any(|entry| {
        if let Ok(net) = entry.parse::<ipnet::IpNet>() {
            return ip.is_some_and(|ip| net.contains(&ip));
        }
        entry == registry || entry == host
    })
}

fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => registry,
    }
}

fn registry_err(reference: &str, e: impl std::fmt::Display) -> Error {
    Error::Registry {
        reference: reference.to_string(),
        reason: e.to_string(),
    }
}

fn verify(what: &str, expected: &str, data: &[u8]) -> Result<()> {
    let actual = sha256_digest(data);
    if actual != expected {
        return Err(Error::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
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
        let r = reference::parse(reference)?;
        let name = reference::familiar_repository(&r);
        let shown = reference::normalize(reference)?;
        let registry = r.resolve_registry().to_string();
        let insecure = is_insecure(&registry, &opts.insecure_registries)
            || is_insecure(r.registry(), &opts.insecure_registries);
        let client = Client::new(ClientConfig {
            protocol: if insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            // The CAs are the process's: oci-client always builds a default
            // reqwest client too, which needs them; PID 1, which has none
            // of its own, exports Mozilla's as SSL_CERT_FILE (tls-roots).
            ..Default::default()
        });
        let auth = match &opts.auth {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        };
        progress(PullProgress::Status(format!(
            "{}: Pulling from {}",
            r.tag().or(r.digest()).unwrap_or("latest"),
            r.repository()
        )));
        client
            .auth(&r, &auth, RegistryOperation::Pull)
            .await
            .map_err(|e| registry_err(&shown, e))?;

        let (top_bytes, _) = client
            .pull_manifest_raw(&r, &auth, ACCEPTED)
            .await
            .map_err(|e| registry_err(&shown, e))?;
        let top_digest = sha256_digest(&top_bytes);
        if let Some(want) = r.digest() {
            verify(&format!("manifest of {shown}"), want, &top_bytes)?;
        }
        let mut doc = IndexOrManifest::parse(&top_bytes, "manifest")?;
        let mut depth = 0;
        while doc.is_index() {
            depth += 1;
            if depth > 4 {
                return Err(registry_err(&shown, "image indexes nested too deeply"));
            }
            let manifests = doc.manifests.take().unwrap_or_default();
            let d = pick_amd64(&manifests)
                .ok_or_else(|| registry_err(&shown, "no linux/amd64 image in the index"))?
                .clone();
            let by_digest = r.clone_with_digest(d.digest.clone());
            let (bytes, _) = client
                .pull_manifest_raw(&by_digest, &auth, ACCEPTED)
                .await
                .map_err(|e| registry_err(&shown, e))?;
            verify(&format!("manifest of {shown}"), &d.digest, &bytes)?;
            doc = IndexOrManifest::parse(&bytes, "manifest")?;
        }
        let config_desc = doc
            .config
            .clone()
            .ok_or_else(|| registry_err(&shown, "manifest has no config"))?;
        let mut config = Vec::new();
        client
            .pull_blob(&r, config_desc.digest.as_str(), &mut config)
            .await
            .map_err(|e| registry_err(&shown, e))?;
        verify(&format!("config of {shown}"), &config_desc.digest, &config)?;
        let cfg = ImageConfig::from_json(&config)?;
        let layers = doc.layers.clone().unwrap_or_default();
        if layers.len() != cfg.rootfs_diff_ids.len() {
            return Err(registry_err(
                &shown,
                format!(
                    "manifest lists {} layers, config {}",
                    layers.len(),
                    cfg.rootfs_diff_ids.len()
                ),
            ));
        }
        let existed = self.get(&shown).ok().map(|i| i.id);

        let inner: Arc<Inner> = self.inner.clone();
        let mut staging: Staging = inner.staging()?;
        let mut refs = Vec::new();
        for (desc, diff_id) in layers.iter().zip(&cfg.rootfs_diff_ids) {
            let id = short_id(&desc.digest).to_string();
            if inner.has_layer(diff_id) {
                progress(PullProgress::Layer {
                    id,
                    status: "Already exists".into(),
                    current: 0,
                    total: None,
                });
                refs.push(LayerRef::Present(diff_id.clone()));
                continue;
            }
            digest_hex(&desc.digest)
                .map_err(|_| registry_err(&shown, format!("unsupported digest {}", desc.digest)))?;
            let total = desc.size.and_then(|s| u64::try_from(s).ok());
            progress(PullProgress::Layer {
                id: id.clone(),
                status: "Pulling fs layer".into(),
                current: 0,
                total,
            });
            let file = staging.path("blob");
            download(&client, &r, desc, &file, &shown, &id, progress).await?;
            progress(PullProgress::Layer {
                id: id.clone(),
                status: "Extracting".into(),
                current: 0,
                total,
            });
            let (back, idx) = tokio::task::spawn_blocking(move || {
                let res = std::fs::File::open(&file)
                    .map_err(|e| Error::io("open", &file, e))
                    .and_then(|f| staging.layer(std::io::BufReader::new(f)));
                let _ = std::fs::remove_file(&file);
                (staging, res)
            })
            .await
            .map_err(|e| registry_err(&shown, format!("unpack task failed: {e}")))?;
            staging = back;
            let idx = idx?;
            progress(PullProgress::Layer {
                id,
                status: "Pull complete".into(),
                current: 0,
                total,
            });
            refs.push(LayerRef::Staged(idx));
        }

        let tag = reference::familiar_tagged(&r);
        let pending = PendingImage {
            config,
            layers: refs,
            tags: tag.clone().into_iter().collect(),
            repo_digests: vec![format!("{name}@{top_digest}")],
        };
        let commit_inner = inner.clone();
        let loaded = tokio::task::spawn_blocking(move || commit_inner.commit(&staging, &[pending]))
            .await
            .map_err(|e| registry_err(&shown, format!("commit task failed: {e}")))??;
        let id = loaded
            .first()
            .map(|l| l.id.clone())
            .ok_or_else(|| registry_err(&shown, "nothing was committed"))?;
        progress(PullProgress::Status(format!("Digest: {top_digest}")));
        if existed.as_deref() == Some(id.as_str()) {
            progress(PullProgress::Status(format!(
                "Status: Image is up to date for {shown}"
            )));
        } else {
            progress(PullProgress::Status(format!(
                "Status: Downloaded newer image for {shown}"
            )));
        }
        self.get(&id)
    }
}

async fn download(
    client: &Client,
    r: &oci_client::Reference,
    desc: &crate::archive::Descriptor,
    path: &std::path::Path,
    shown: &str,
    id: &str,
    progress: &mut (dyn FnMut(PullProgress) + Send),
) -> Result<()> {
    let oci_desc = OciDescriptor {
        media_type: desc.media_type.clone().unwrap_or_default(),
        digest: desc.digest.clone(),
        size: desc.size.unwrap_or(0),
        ..Default::default()
    };
    let mut stream = client
        .pull_blob_stream(r, &oci_desc)
        .await
        .map_err(|e| registry_err(shown, e))?;
    let total = stream
        .content_length
        .or_else(|| desc.size.and_then(|s| u64::try_from(s).ok()));
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| Error::io("create", path, e))?;
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    let mut last_report = 0u64;
    while let Some(chunk) = stream.stream.next().await {
        let chunk = chunk.map_err(|e| registry_err(shown, format!("downloading {id}: {e}")))?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::io("write", path, e))?;
        done += chunk.len() as u64;
        if done - last_report >= 512 * 1024 {
            last_report = done;
            progress(PullProgress::Layer {
                id: id.to_string(),
                status: "Downloading".into(),
                current: done,
                total,
            });
        }
    }
    file.flush()
        .await
        .map_err(|e| Error::io("write", path, e))?;
    progress(PullProgress::Layer {
        id: id.to_string(),
        status: "Verifying Checksum".into(),
        current: done,
        total,
    });
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != desc.digest {
        return Err(Error::DigestMismatch {
            what: format!("layer {id} of {shown}"),
            expected: desc.digest.clone(),
            actual,
        });
    }
    progress(PullProgress::Layer {
        id: id.to_string(),
        status: "Download complete".into(),
        current: done,
        total,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_registries_like_docker() {
        let list = vec![
            "10.0.0.0/8".to_string(),
            "myreg.local".to_string(),
            "other:5000".to_string(),
        ];
        assert!(is_insecure("127.0.0.1:5000", &[]));
        assert!(is_insecure("127.1.2.3", &[]));
        assert!(is_insecure("localhost:5000", &[]));
        assert!(!is_insecure("docker.io", &[]));
        assert!(!is_insecure("192.168.1.1:5000", &list));
        assert!(is_insecure("10.1.2.3:5000", &list));
        assert!(is_insecure("myreg.local:443", &list));
        assert!(is_insecure("other:5000", &list));
        assert!(!is_insecure("other:5001", &list));
        assert!(!is_insecure("[::1]:5000", &list));
        assert!(is_insecure("[::1]:5000", &["::1/128".to_string()]));
    }
}
