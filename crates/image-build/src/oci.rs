//! Writing an image as a tarball that is both an OCI image layout and a
//! `docker save` archive (as Docker 25 and later write them): `oci-layout`,
//! `index.json` and `blobs/sha256/*`, plus a `manifest.json` that names the
//! same blobs. Docker 20.10's `docker load` reads the `manifest.json`,
//! newer engines and the system engine either.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use oci_spec::image::{
    ConfigBuilder, DescriptorBuilder, Digest, HistoryBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, RootFsBuilder, SCHEMA_VERSION,
};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::pack::{sha256_digest, LayerInfo};
use crate::recipe::RuntimeConfig;

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// The image id: `sha256:<hex>` of the config blob.
    pub id: String,
    /// `sha256:<hex>` of the OCI manifest.
    pub manifest_digest: String,
    /// The layer.
    pub layer: LayerInfo,
    /// The archive's size in bytes.
    pub size: u64,
}

fn oci_err(what: &'static str) -> impl Fn(String) -> Error {
    move |reason| Error::Oci { what, reason }
}

fn digest(s: &str) -> Result<Digest> {
    s.parse::<Digest>()
        .map_err(|e| oci_err("descriptor")(format!("bad digest {s}: {e}")))
}

/// JSON with every object's keys sorted, whatever map type produced it:
/// oci-spec keeps labels and annotations in `HashMap`s, whose order would
/// otherwise change the digests from run to run.
pub(crate) fn canonical_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    fn sort(v: Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<String, Value> =
                    m.into_iter().map(|(k, v)| (k, sort(v))).collect();
                Value::Object(sorted.into_iter().collect())
            }
            Value::Array(a) => Value::Array(a.into_iter().map(sort).collect()),
            other => other,
        }
    }
    let value = serde_json::to_value(v).map_err(|e| oci_err("json")(e.to_string()))?;
    serde_json::to_vec(&sort(value)).map_err(|e| oci_err("json")(e.to_string()))
}

/// The image config blob for one layer.
pub fn image_config(
    rc: &RuntimeConfig,
    diff_id: &str,
    created: &str,
    created_by: &str,
) -> Result<Vec<u8>> {
    let mut cb = ConfigBuilder::default();
    if let Some(e) = &rc.entrypoint {
        cb = cb.entrypoint(e.clone());
    }
    if let Some(c) = &rc.cmd {
        cb = cb.cmd(c.clone());
    }
    if !rc.env.is_empty() {
        cb = cb.env(
            rc.env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        );
    }
    if !rc.labels.is_empty() {
        cb = cb.labels(
            rc.labels
                .clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    if let Some(w) = &rc.working_dir {
        cb = cb.working_dir(w.clone());
    }
    if let Some(u) = &rc.user {
        cb = cb.user(u.clone());
    }
    if let Some(s) = &rc.stop_signal {
        cb = cb.stop_signal(s.clone());
    }
    if !rc.volumes.is_empty() {
        cb = cb.volumes(rc.volumes.clone());
    }
    let config = cb.build().map_err(|e| oci_err("config")(e.to_string()))?;
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(vec![diff_id.to_string()])
        .build()
        .map_err(|e| oci_err("config")(e.to_string()))?;
    let history = HistoryBuilder::default()
        .created(created.to_string())
        .created_by(created_by.to_string())
        .build()
        .map_err(|e| oci_err("config")(e.to_string()))?;
    let image = ImageConfigurationBuilder::default()
        .architecture(oci_spec::image::Arch::Amd64)
        .os(oci_spec::image::Os::Linux)
        .created(created.to_string())
        .config(config)
        .rootfs(rootfs)
        .history(vec![history])
        .build()
        .map_err(|e| oci_err("config")(e.to_string()))?;
    canonical_json(&image)
}

/// Writes the image archive to `dest`: the layer blob is read from
/// `layer_file`, `config` is the config blob, `tag` the `name:tag` written
/// into `manifest.json` and the index annotations. Entries have `mtime`.
pub fn write_archive(
    dest: &Path,
    layer_file: &Path,
    layer: &LayerInfo,
    config: &[u8],
    tag: &str,
    mtime: u64,
) -> Result<ArchiveInfo> {
    let config_digest = sha256_digest(config);
    let config_desc = DescriptorBuilder::default()
        .media_type(MediaType::ImageConfig)
        .digest(digest(&config_digest)?)
        .size(config.len() as u64)
        .build()
        .map_err(|e| oci_err("descriptor")(e.to_string()))?;
    let layer_desc = DescriptorBuilder::default()
        .media_type(MediaType::ImageLayerGzip)
        .digest(digest(&layer.digest)?)
        .size(layer.size)
        .build()
        .map_err(|e| oci_err("descriptor")(e.to_string()))?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(vec![layer_desc])
        .build()
        .map_err(|e| oci_err("manifest")(e.to_string()))?;
    let manifest = canonical_json(&manifest)?;
    let manifest_digest = sha256_digest(&manifest);
    let (repo, version) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
    let annotations: std::collections::HashMap<String, String> = [
        (
            "io.containerd.image.name".to_string(),
            format!("docker.io/{repo}:{version}"),
        ),
        (
            "org.opencontainers.image.ref.name".to_string(),
            version.to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let manifest_desc = DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .digest(digest(&manifest_digest)?)
        .size(manifest.len() as u64)
        .annotations(annotations)
        .build()
        .map_err(|e| oci_err("descriptor")(e.to_string()))?;
    let index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_desc])
        .build()
        .map_err(|e| oci_err("index")(e.to_string()))?;
    let index = canonical_json(&index)?;
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let docker_manifest = serde_json::json!([{
        "Config": blob(&config_digest),
        "RepoTags": [tag],
        "Layers": [blob(&layer.digest)],
    }]);
    let docker_manifest = canonical_json(&docker_manifest)?;

    let file = File::create(dest).map_err(|e| Error::io("create", dest, e))?;
    let mut counted = crate::pack::HashWriter::new(io::BufWriter::new(file));
    {
        let mut tar = tar::Builder::new(&mut counted);
        let werr = |e: io::Error| Error::io("write image archive", dest, e);
        let add = |tar: &mut tar::Builder<_>, path: &str, size: u64, data: &mut dyn io::Read| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(mtime);
            h.set_size(size);
            tar.append_data(&mut h, path, data).map_err(werr)
        };
        let dir = |tar: &mut tar::Builder<_>, path: &str| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_mtime(mtime);
            h.set_size(0);
            tar.append_data(&mut h, path, io::empty()).map_err(werr)
        };
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        add(
            &mut tar,
            "oci-layout",
            layout.len() as u64,
            &mut &layout[..],
        )?;
        dir(&mut tar, "blobs")?;
        dir(&mut tar, "blobs/sha256")?;
        let lf = File::open(layer_file).map_err(|e| Error::io("open", layer_file, e))?;
        add(
            &mut tar,
            &blob(&layer.digest),
            layer.size,
            &mut lf.take(layer.size),
        )?;
        add(
            &mut tar,
            &blob(&config_digest),
            config.len() as u64,
            &mut &config[..],
        )?;
        add(
            &mut tar,
            &blob(&manifest_digest),
            manifest.len() as u64,
            &mut &manifest[..],
        )?;
        add(&mut tar, "index.json", index.len() as u64, &mut &index[..])?;
        add(
            &mut tar,
            "manifest.json",
            docker_manifest.len() as u64,
            &mut &docker_manifest[..],
        )?;
        tar.finish().map_err(werr)?;
    }
    let (_, size, mut w) = counted.finish();
    w.flush()
        .map_err(|e| Error::io("write image archive", dest, e))?;
    Ok(ArchiveInfo {
        id: config_digest,
        manifest_digest,
        layer: layer.clone(),
        size,
    })
}
