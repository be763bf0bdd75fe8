//! Building images from recipes: cache check, bootstrap, files, hooks,
//! cleanup, packing, and refreshing the lock.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::debian::{installed_packages, remove_downloaded_debs, remove_package_files, Bootstrap};
use crate::error::{Error, Result};
use crate::lock::{Lock, PackageSet};
use crate::oci::{image_config, write_archive};
use crate::pack::{pack_layer_to_file, PackOptions};
use crate::recipe::{PackageRequest, Recipe, SetSpec};

/// Changes whenever the way images are made changes, so that a new
/// builder never reuses an image an older one made.
pub const BUILDER_VERSION: &str = concat!("oxos-image-build/", env!("CARGO_PKG_VERSION"), "/1");

/// Where and how images are built.
pub struct Builder<'a> {
    /// Receives `<name>.tar` and its `<name>.inputs` stamp per image.
    pub out_dir: PathBuf,
    /// The package lock every build is pinned to.
    pub lock: Lock,
    /// `SOURCE_DATE_EPOCH`: every mtime in the layers and the `created`
    /// time of the configs.
    pub epoch: u64,
    /// Tag version of recipes that name none (the OxOS version).
    pub default_version: String,
    /// Makes the root filesystems.
    pub bootstrap: &'a dyn Bootstrap,
    /// gzip level of the layers.
    pub gzip_level: u32,
}

/// One built (or reused) image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltImage {
    pub name: String,
    /// `oxos/<name>:<version>`.
    pub tag: String,
    /// The archive (OCI layout and docker-archive in one tarball).
    pub path: PathBuf,
    /// sha256 of the inputs (the cache key).
    pub inputs: String,
    /// Image id (config digest).
    pub id: String,
    pub manifest_digest: String,
    pub diff_id: String,
    pub layer_digest: String,
    /// Compressed layer bytes.
    pub layer_size: u64,
    /// Uncompressed layer bytes.
    pub unpacked_size: u64,
    /// Archive bytes.
    pub size: u64,
    /// Whether the image was reused from an earlier build.
    #[serde(skip)]
    pub cached: bool,
    /// Time the build took (zero when cached).
    #[serde(skip)]
    pub duration: Duration,
}

impl Builder<'_> {
    /// The archive path of an image.
    pub fn archive_path(&self, name: &str) -> PathBuf {
        self.out_dir.join(format!("{name}.tar"))
    }

    fn stamp_path(&self, name: &str) -> PathBuf {
        self.out_dir.join(format!("{name}.inputs"))
    }

    /// The cache key of `recipe`: sha256 over the builder version, the
    /// bootstrap tool and mirror, the epoch, the tag, the recipe file, the
    /// files tree, and the recipe's lock entry.
    pub fn inputs_hash(&self, recipe: &Recipe) -> Result<String> {
        let set = self.lock.set_for(&recipe.name, &recipe.request)?;
        let mut h = Sha256::new();
        let mut field = |k: &str, v: &[u8]| {
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_le_bytes());
            h.update(v);
        };
        field("builder", BUILDER_VERSION.as_bytes());
        field("bootstrap", self.bootstrap.id().as_bytes());
        field("epoch", self.epoch.to_string().as_bytes());
        field("gzip", self.gzip_level.to_string().as_bytes());
        field("tag", recipe.tag(&self.default_version).as_bytes());
        field("recipe", recipe.source.as_bytes());
        field("lock", set.pins().join("\n").as_bytes());
        for (name, shared) in recipe.shared_files.iter().zip(recipe.shared_files()) {
            field("shared", name.as_bytes());
            for (rel, desc) in tree_listing(&shared)? {
                field("file", rel.as_bytes());
                field("desc", desc.as_bytes());
            }
        }
        let files = recipe.files_dir();
        if files.exists() {
            for (rel, desc) in tree_listing(&files)? {
                field("file", rel.as_bytes());
                field("desc", desc.as_bytes());
            }
        }
        Ok(hex::encode(h.finalize()))
    }

    /// The earlier build of `recipe`, if its inputs are unchanged and its
    /// archive is still there.
    pub fn cached(&self, recipe: &Recipe) -> Result<Option<BuiltImage>> {
        let inputs = self.inputs_hash(recipe)?;
        let Ok(text) = fs::read(self.stamp_path(&recipe.name)) else {
            return Ok(None);
        };
        let Ok(mut built) = serde_json::from_slice::<BuiltImage>(&text) else {
            return Ok(None);
        };
        let path = self.archive_path(&recipe.name);
        let size_ok = fs::metadata(&path).is_ok_and(|m| m.len() == built.size);
        if built.inputs != inputs || !size_ok {
            return Ok(None);
        }
        built.path = path;
        built.cached = true;
        Ok(Some(built))
    }

    /// Builds `recipe` into `<out_dir>/<name>.tar` unless an earlier build
    /// of the same inputs is there.
    pub fn build(&self, recipe: &Recipe, progress: &mut dyn FnMut(&str)) -> Result<BuiltImage> {
        if let Some(hit) = self.cached(recipe)? {
            progress(&format!(
                "{}: unchanged, reusing {}",
                recipe.name,
                hit.path.display()
            ));
            return Ok(hit);
        }
        let start = Instant::now();
        let inputs = self.inputs_hash(recipe)?;
        let set = self.lock.set_for(&recipe.name, &recipe.request)?;
        fs::create_dir_all(&self.out_dir).map_err(|e| Error::io("create", &self.out_dir, e))?;
        let work = tempfile::Builder::new()
            .prefix(&format!(".work-{}-", recipe.name))
            .tempdir_in(&self.out_dir)
            .map_err(|e| Error::io("create work directory in", &self.out_dir, e))?;
        let root = work.path().join("root");
        progress(&format!(
            "{}: bootstrapping {} packages from {} ({})",
            recipe.name,
            set.locked.len(),
            recipe.request.suite,
            recipe.request.variant
        ));
        self.bootstrap.bootstrap(
            &recipe.name,
            &recipe.request,
            Some(&set.pins()),
            &root,
            self.epoch,
            progress,
        )?;
        check_installed(&recipe.name, set, &installed_packages(&root)?)?;
        if !recipe.exclude.is_empty() {
            progress(&format!(
                "{}: dropping {}",
                recipe.name,
                recipe.exclude.join(", ")
            ));
            remove_package_files(&recipe.name, &root, &recipe.exclude)?;
        }
        remove_downloaded_debs(&root)?;
        for shared in recipe.shared_files() {
            progress(&format!("{}: copying {}", recipe.name, shared.display()));
            copy_tree(&shared, &root)?;
        }
        let files = recipe.files_dir();
        if files.exists() {
            progress(&format!("{}: copying {}", recipe.name, files.display()));
            copy_tree(&files, &root)?;
        }
        for hook in &recipe.hooks {
            progress(&format!("{}: hook: {hook}", recipe.name));
            run_hook(&recipe.name, hook, &root, self.epoch)?;
        }
        cleanup(&root, &recipe.cleanup)?;
        progress(&format!("{}: packing the layer", recipe.name));
        let layer_file = work.path().join("layer.tar.gz");
        let layer = pack_layer_to_file(
            &root,
            &PackOptions {
                mtime: self.epoch,
                gzip_level: self.gzip_level,
            },
            &layer_file,
        )?;
        let tag = recipe.tag(&self.default_version);
        let created = chrono::DateTime::from_timestamp(self.epoch as i64, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let created_by = format!(
            "image-build {}: mmdebstrap --variant={} {} {}",
            recipe.name,
            recipe.request.variant,
            recipe.request.suite,
            recipe.request.packages.join(",")
        );
        let config = image_config(&recipe.config, &layer.diff_id, &created, &created_by)?;
        let tmp_archive = work.path().join("image.tar");
        let info = write_archive(&tmp_archive, &layer_file, &layer, &config, &tag, self.epoch)?;
        let path = self.archive_path(&recipe.name);
        fs::rename(&tmp_archive, &path).map_err(|e| Error::io("move archive to", &path, e))?;
        let built = BuiltImage {
            name: recipe.name.clone(),
            tag,
            path,
            inputs,
            id: info.id,
            manifest_digest: info.manifest_digest,
            diff_id: layer.diff_id.clone(),
            layer_digest: layer.digest.clone(),
            layer_size: layer.size,
            unpacked_size: layer.tar_size,
            size: info.size,
            cached: false,
            duration: start.elapsed(),
        };
        let stamp = serde_json::to_vec_pretty(&built).map_err(|e| Error::Oci {
            what: "build stamp",
            reason: e.to_string(),
        })?;
        let stamp_path = self.stamp_path(&recipe.name);
        fs::write(&stamp_path, stamp).map_err(|e| Error::io("write", &stamp_path, e))?;
        // The root may hold files only root can remove; the TempDir drop
        // removes it, a failure there is logged, not fatal.
        if let Err(e) = work.close() {
            tracing::warn!(error = %e, "cannot remove the work directory");
        }
        Ok(built)
    }
}

/// Compares what a root holds with the lock.
fn check_installed(
    name: &str,
    set: &PackageSet,
    installed: &BTreeMap<String, String>,
) -> Result<()> {
    let mut diffs = Vec::new();
    for (p, v) in &set.locked {
        match installed.get(p) {
            None => diffs.push(format!("{p} {v} is missing")),
            Some(iv) if iv != v => diffs.push(format!("{p} is {iv}, locked {v}")),
            Some(_) => {}
        }
    }
    for (p, v) in installed {
        if !set.locked.contains_key(p) {
            diffs.push(format!("{p} {v} is not locked"));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(Error::LockMismatch {
            name: name.into(),
            differences: diffs.join(", "),
        })
    }
}

/// `(relative path, description)` of every entry under `dir`, sorted: type,
/// mode, and the content's sha256 or the link target.
fn tree_listing(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let e = e.map_err(|e| Error::pack(dir, e.to_string()))?;
        let rel = e
            .path()
            .strip_prefix(dir)
            .map_err(|_| Error::pack(e.path(), "outside the files directory"))?
            .to_string_lossy()
            .into_owned();
        let meta = e
            .metadata()
            .map_err(|err| Error::pack(e.path(), err.to_string()))?;
        let mode = meta.mode() & 0o7777;
        let desc = if meta.is_dir() {
            format!("dir {mode:o}")
        } else if meta.file_type().is_symlink() {
            let t = fs::read_link(e.path()).map_err(|err| Error::io("read link", e.path(), err))?;
            format!("link {}", t.display())
        } else {
            let mut f = fs::File::open(e.path()).map_err(|err| Error::io("open", e.path(), err))?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(|err| Error::io("read", e.path(), err))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            format!("file {mode:o} {}", hex::encode(h.finalize()))
        };
        out.push((rel, desc));
    }
    Ok(out)
}

/// Copies the tree under `src` into `root`, root-owned (when run as root),
/// modes kept, symlinks copied as links. A symlink in `root` on the way
/// to a destination is refused, so nothing lands outside the root.
fn copy_tree(src: &Path, root: &Path) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    for e in walkdir::WalkDir::new(src).min_depth(1).sort_by_file_name() {
        let e = e.map_err(|e| Error::pack(src, e.to_string()))?;
        let rel = e
            .path()
            .strip_prefix(src)
            .map_err(|_| Error::pack(e.path(), "outside the files directory"))?;
        let dest = root.join(rel);
        if let Some(parent) = rel.parent() {
            let mut p = root.to_path_buf();
            for c in parent.components() {
                p.push(c);
                if fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(Error::pack(
                        e.path(),
                        format!("{} is a symlink in the image root", p.display()),
                    ));
                }
            }
        }
        let meta = e
            .metadata()
            .map_err(|err| Error::pack(e.path(), err.to_string()))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            match fs::symlink_metadata(&dest) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Error::pack(
                        e.path(),
                        format!(
                            "{} exists in the image root and is not a directory",
                            dest.display()
                        ),
                    ))
                }
                Err(_) => {
                    fs::create_dir(&dest).map_err(|err| Error::io("create", &dest, err))?;
                    fs::set_permissions(&dest, fs::Permissions::from_mode(meta.mode() & 0o7777))
                        .map_err(|err| Error::io("chmod", &dest, err))?;
                }
            }
        } else {
            if fs::symlink_metadata(&dest).is_ok() {
                fs::remove_file(&dest).map_err(|err| Error::io("replace", &dest, err))?;
            }
            if ft.is_symlink() {
                let t =
                    fs::read_link(e.path()).map_err(|err| Error::io("read link", e.path(), err))?;
                std::os::unix::fs::symlink(&t, &dest)
                    .map_err(|err| Error::io("create symlink", &dest, err))?;
            } else {
                fs::copy(e.path(), &dest).map_err(|err| Error::io("copy to", &dest, err))?;
            }
        }
        if as_root {
            std::os::unix::fs::lchown(&dest, Some(0), Some(0))
                .map_err(|err| Error::io("chown", &dest, err))?;
        }
    }
    Ok(())
}

fn run_hook(name: &str, hook: &str, root: &Path, epoch: u64) -> Result<()> {
    let status = Command::new("sh")
        .arg("-ec")
        .arg(hook)
        .arg("sh")
        .arg(root)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .status()
        .map_err(|e| Error::Tool {
            step: format!("hook of {name}"),
            reason: format!("cannot start sh: {e}"),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Tool {
            step: format!("hook of {name} ({hook})"),
            reason: format!("exited with {status}"),
        })
    }
}

/// Removes what the cleanup patterns match. A match whose parent resolves
/// outside the root (through an absolute symlink) is skipped, so a pattern
/// never touches the build host.
pub(crate) fn cleanup(root: &Path, patterns: &[String]) -> Result<()> {
    let real_root = root
        .canonicalize()
        .map_err(|e| Error::io("resolve", root, e))?;
    let prefix = glob::Pattern::escape(&real_root.to_string_lossy());
    for pattern in patterns {
        let full = format!("{prefix}{pattern}");
        let matches = glob::glob(&full).map_err(|e| Error::Pack {
            path: PathBuf::from(pattern),
            reason: format!("bad cleanup pattern: {e}"),
        })?;
        for m in matches.flatten() {
            let inside = m
                .parent()
                .and_then(|p| p.canonicalize().ok())
                .is_some_and(|p| p.starts_with(&real_root));
            if !inside || m == real_root {
                tracing::warn!(path = %m.display(), "cleanup match outside the root, skipped");
                continue;
            }
            let meta = match fs::symlink_metadata(&m) {
                Ok(meta) => meta,
                Err(_) => continue,
            };
            let r = if meta.is_dir() {
                fs::remove_dir_all(&m)
            } else {
                fs::remove_file(&m)
            };
            r.map_err(|e| Error::io("remove", &m, e))?;
        }
    }
    Ok(())
}

/// Resolves the package sets of `recipes` and `sets` (all, or only the one
/// named `only`) and writes them into `lock`. Images are bootstrapped
/// unpinned and their set is what ends up installed; sets of `sets.yml`
/// are resolved by an apt simulation. Returns the names refreshed.
pub fn refresh_lock(
    bootstrap: &dyn Bootstrap,
    recipes: &[Recipe],
    sets: &[SetSpec],
    lock: &mut Lock,
    only: Option<&str>,
    work_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for r in recipes.iter().filter(|r| only.is_none_or(|o| o == r.name)) {
        progress(&format!(
            "{}: resolving {}",
            r.name,
            r.request.packages.join(", ")
        ));
        fs::create_dir_all(work_dir).map_err(|e| Error::io("create", work_dir, e))?;
        let work = tempfile::Builder::new()
            .prefix(&format!(".lock-{}-", r.name))
            .tempdir_in(work_dir)
            .map_err(|e| Error::io("create work directory in", work_dir, e))?;
        let root = work.path().join("root");
        bootstrap.bootstrap(&r.name, &r.request, None, &root, 0, progress)?;
        let locked = installed_packages(&root)?;
        if locked.is_empty() {
            return Err(Error::Tool {
                step: format!("locking {}", r.name),
                reason: "the built root holds no packages".into(),
            });
        }
        progress(&format!("{}: {} packages", r.name, locked.len()));
        lock.insert(&r.name, locked_set(&r.request, locked));
        done.push(r.name.clone());
    }
    for s in sets.iter().filter(|s| only.is_none_or(|o| o == s.name)) {
        progress(&format!(
            "{}: resolving {}",
            s.name,
            s.request.packages.join(", ")
        ));
        let locked = bootstrap.resolve(&s.name, &s.request, progress)?;
        progress(&format!("{}: {} packages", s.name, locked.len()));
        lock.insert(&s.name, locked_set(&s.request, locked));
        done.push(s.name.clone());
    }
    Ok(done)
}

fn locked_set(request: &PackageRequest, locked: BTreeMap<String, String>) -> PackageSet {
    PackageSet {
        request: request.clone(),
        locked,
    }
}
