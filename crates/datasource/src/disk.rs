//! The local sources: `file:`, and the config drive and NoCloud as a
//! directory or as a labelled block device mounted read-only for the read.
//!
//! When the device cannot be mounted because the kernel lacks its file
//! system (ENODEV), mounting is not permitted (EPERM), or the "device" is a
//! plain image file (which would need a loop device), its files are read in
//! user space instead ([`imagefs`]: ISO 9660 and FAT).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use serde_json::Value;

use crate::error::Error;
use crate::fetch::{Answer, Attempt, Fail, FetchOptions};
use crate::metadata::{self, Metadata};

// Declared here rather than in lib.rs: only the device reads use it.
use crate::imagefs;

/// Labels of an OpenStack config drive (FAT keeps labels upper case).
const CONFIGDRIVE_LABELS: &[&str] = &["config-2", "CONFIG-2"];
/// Labels of a NoCloud seed.
const NOCLOUD_LABELS: &[&str] = &["cidata", "CIDATA"];
/// Filesystems tried when blkid cannot say which one a device holds.
const FSTYPES: &[&str] = &["iso9660", "vfat"];

/// `file:PATH`: the file's content is the user-data. A missing file is not
/// available yet (it may be on a disk that has not appeared).
pub(crate) async fn file(name: &str, path: &Path) -> Attempt<Answer> {
    match tokio::fs::read(path).await {
        Ok(data) => Ok(Answer {
            user_data: Some(data),
            metadata: Metadata::default(),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Err(Fail::NotYet(format!("{} does not exist", path.display())))
        }
        Err(source) => Err(Fail::Fatal(Error::Read {
            source_name: name.to_owned(),
            path: path.to_owned(),
            source,
        })),
    }
}

/// The config drive: the directory `path` when it holds `openstack/`,
/// otherwise a device labelled config-2.
pub(crate) async fn configdrive(
    name: &str,
    path: Option<&Path>,
    options: &FetchOptions,
) -> Attempt<Answer> {
    if let Some(dir) = path.filter(|p| p.join("openstack").is_dir()) {
        let (name, dir) = (name.to_owned(), dir.to_owned());
        return blocking(move || read_configdrive(&name, &mut Tree::Dir(&dir))).await;
    }
    from_device(name, CONFIGDRIVE_LABELS, options, read_configdrive).await
}

/// NoCloud: the directory `path` when it holds `user-data` or `meta-data`,
/// otherwise a device labelled cidata.
pub(crate) async fn nocloud(
    name: &str,
    path: Option<&Path>,
    options: &FetchOptions,
) -> Attempt<Answer> {
    if let Some(dir) =
        path.filter(|p| p.join("user-data").is_file() || p.join("meta-data").is_file())
    {
        let (name, dir) = (name.to_owned(), dir.to_owned());
        return blocking(move || read_nocloud(&name, &mut Tree::Dir(&dir))).await;
    }
    from_device(name, NOCLOUD_LABELS, options, read_nocloud).await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Attempt<T> + Send + 'static,
) -> Attempt<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Fail::NotYet(format!("reader task ended abnormally: {e}"))))
}

async fn from_device(
    name: &str,
    labels: &[&str],
    options: &FetchOptions,
    read: fn(&str, &mut Tree) -> Attempt<Answer>,
) -> Attempt<Answer> {
    let device = find_by_label(name, labels, options).await?;
    let fstype = fstype(&device).await;
    let name = name.to_owned();
    blocking(move || {
        // An image file cannot be mounted without a loop device.
        if device.metadata().is_ok_and(|m| m.is_file()) {
            return in_user_space(&name, &device, fstype.as_deref(), None, read);
        }
        match with_mounted(&name, &device, fstype.as_deref(), |dir| {
            read(&name, &mut Tree::Dir(dir))
        }) {
            Mounted::Read(result) => result,
            Mounted::Unsupported(why) => {
                tracing::debug!(source = name, device = %device.display(), "{why}; reading the device in user space");
                in_user_space(&name, &device, fstype.as_deref(), Some(&why), read)
            }
        }
    })
    .await
}

/// Reads the files of `device` without mounting it; `mount_failure` says
/// why it was not mounted, for the error when it cannot be read either.
fn in_user_space(
    name: &str,
    device: &Path,
    fstype: Option<&str>,
    mount_failure: Option<&str>,
    read: fn(&str, &mut Tree) -> Attempt<Answer>,
) -> Attempt<Answer> {
    let mut image = imagefs::Image::open(device, fstype).map_err(|e| {
        let source = match mount_failure {
            Some(why) => std::io::Error::new(e.kind(), format!("{e} ({why})")),
            None => e,
        };
        Fail::Fatal(Error::Read {
            source_name: name.to_owned(),
            path: device.to_owned(),
            source,
        })
    })?;
    tracing::debug!(source = name, device = %device.display(), "reading in user space");
    read(
        name,
        &mut Tree::Image {
            device,
            image: &mut image,
        },
    )
}

/// Where a source's files are read from.
enum Tree<'a> {
    /// A directory: the drive's own, or where the device is mounted.
    Dir(&'a Path),
    /// A device read in user space.
    Image {
        device: &'a Path,
        image: &'a mut imagefs::Image,
    },
}

impl Tree<'_> {
    /// How the file at `rel` is named in messages: its path, or the
    /// device and the path on it (`/dev/sr0:/openstack/latest/user_data`).
    fn shown(&self, rel: &str) -> PathBuf {
        match self {
            Tree::Dir(dir) => dir.join(rel),
            Tree::Image { device, .. } => PathBuf::from(format!("{}:/{rel}", device.display())),
        }
    }

    /// The file at `rel`, which may be missing.
    fn optional(&mut self, name: &str, rel: &str) -> Attempt<Option<Vec<u8>>> {
        let read = match self {
            Tree::Dir(dir) => match std::fs::read(dir.join(rel)) {
                Ok(data) => Ok(Some(data)),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
            Tree::Image { image, .. } => image.read(rel),
        };
        read.map_err(|source| {
            Fail::Fatal(Error::Read {
                source_name: name.to_owned(),
                path: self.shown(rel),
                source,
            })
        })
    }
}

/// The first device with one of `labels`: the udev link under
/// `by_label_dir`, else what `blkid` finds (without its cache, which may be
/// stale or absent this early).
async fn find_by_label(name: &str, labels: &[&str], options: &FetchOptions) -> Attempt<PathBuf> {
    for label in labels {
        let link = options.by_label_dir.join(label);
        if link.exists() {
            return Ok(link);
        }
    }
    let wanted = labels.join(" or ");
    if !options.scan_labels {
        return Err(Fail::NotYet(format!("no device labelled {wanted}")));
    }
    for label in labels {
        let output = tokio::process::Command::new("blkid")
            .args(["-c", "/dev/null", "-o", "device", "-t"])
            .arg(format!("LABEL={label}"))
            .kill_on_drop(true)
            .output()
            .await;
        let output = match output {
            Ok(o) => o,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Fail::NotYet(format!(
                    "no device labelled {wanted} (blkid is not installed to look for one)"
                )))
            }
            Err(source) => {
                return Err(Fail::Fatal(Error::Command {
                    source_name: name.to_owned(),
                    command: "blkid".into(),
                    source,
                }))
            }
        };
        // blkid exits 2 when nothing matches.
        let stdout = String::from_utf8_lossy(&output.stdout);
        if let Some(device) = stdout.lines().map(str::trim).find(|l| !l.is_empty()) {
            return Ok(PathBuf::from(device));
        }
    }
    Err(Fail::NotYet(format!("no device labelled {wanted}")))
}

/// The filesystem type blkid reports for a device, if it can.
async fn fstype(device: &Path) -> Option<String> {
    let output = tokio::process::Command::new("blkid")
        .args(["-c", "/dev/null", "-o", "value", "-s", "TYPE"])
        .arg(device)
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    let t = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (!t.is_empty()).then_some(t)
}

/// What came of trying to mount a device for a read.
enum Mounted<T> {
    /// It was mounted (or failed for a reason reading it in user space
    /// would not help with): the result of the read.
    Read(Attempt<T>),
    /// The kernel lacks or refused the file system, or mounting is not
    /// permitted.
    Unsupported(String),
}

/// Mounts `device` read-only on a fresh temporary directory, runs `read`
/// on it and unmounts. When the filesystem type is unknown, the usual
/// config drive types are tried in turn.
fn with_mounted<T>(
    name: &str,
    device: &Path,
    fstype: Option<&str>,
    read: impl FnOnce(&Path) -> Attempt<T>,
) -> Mounted<T> {
    let mount_error = |target: &Path, source: std::io::Error| {
        Fail::Fatal(Error::Mount {
            source_name: name.to_owned(),
            device: device.to_owned(),
            target: target.to_owned(),
            source,
        })
    };
    let dir = match tempfile::Builder::new()
        .prefix("oxos-datasource-")
        .tempdir()
    {
        Ok(dir) => dir,
        Err(e) => return Mounted::Read(Err(mount_error(Path::new("a temporary directory"), e))),
    };
    let types: Vec<&str> = match fstype {
        Some(t) => vec![t],
        None => FSTYPES.to_vec(),
    };
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mut last = None;
    for t in &types {
        match nix::mount::mount(Some(device), dir.path(), Some(*t), flags, None::<&str>) {
            Ok(()) => {
                last = None;
                break;
            }
            Err(nix::errno::Errno::ENODEV) => {
                last = Some(format!("the kernel does not support the {t} filesystem"))
            }
            Err(nix::errno::Errno::EPERM) => last = Some("mounting is not permitted".into()),
            Err(e) => last = Some(format!("{t}: {e}")),
        }
    }
    // Whatever stopped the mount (a file system the kernel lacks, no
    // permission, or one it refused: FAT without the NLS module of its
    // default character set gives EINVAL), reading in user space may
    // still succeed; its error then carries this one.
    if let Some(e) = last {
        return Mounted::Unsupported(format!("cannot mount {}: {e}", device.display()));
    }
    tracing::debug!(source = name, device = %device.display(), "mounted read-only");
    let result = read(dir.path());
    if let Err(e) = nix::mount::umount2(dir.path(), MntFlags::MNT_DETACH) {
        // Never let the temporary directory's cleanup walk into a mount.
        tracing::warn!(source = name, dir = %dir.path().display(), "failed to unmount: {e}");
        let _ = dir.keep();
    }
    Mounted::Read(result)
}

/// A JSON or YAML file that may be missing, as a JSON value.
fn document(
    name: &str,
    tree: &mut Tree,
    rel: &str,
    what: &'static str,
    yaml: bool,
) -> Attempt<Option<Value>> {
    let Some(data) = tree.optional(name, rel)? else {
        return Ok(None);
    };
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let parsed = if yaml {
        serde_norway::from_slice::<Value>(&data).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(&data).map_err(|e| e.to_string())
    };
    parsed.map(Some).map_err(|message| {
        Fail::Fatal(Error::Invalid {
            source_name: name.to_owned(),
            what,
            message: format!("{}: {message}", tree.shown(rel).display()),
        })
    })
}

/// openstack/latest/{user_data, meta_data.json, network_data.json}.
fn read_configdrive(name: &str, tree: &mut Tree) -> Attempt<Answer> {
    let latest = "openstack/latest";
    let meta = document(
        name,
        tree,
        &format!("{latest}/meta_data.json"),
        "metadata",
        false,
    )?
    .unwrap_or(Value::Null);
    let network = document(
        name,
        tree,
        &format!("{latest}/network_data.json"),
        "network config",
        false,
    )?;
    Ok(Answer {
        user_data: tree.optional(name, &format!("{latest}/user_data"))?,
        metadata: Metadata {
            hostname: metadata::string(&meta, "hostname")
                .or_else(|| metadata::string(&meta, "name")),
            public_keys: metadata::keys_from(meta.get("public_keys")),
            network: network.as_ref().and_then(metadata::network_from_openstack),
            ..Metadata::default()
        },
    })
}

/// user-data, meta-data (YAML: local-hostname, public-keys) and
/// network-config (cloud-init network config v1 or v2).
fn read_nocloud(name: &str, tree: &mut Tree) -> Attempt<Answer> {
    let meta = document(name, tree, "meta-data", "metadata", true)?.unwrap_or(Value::Null);
    let network = document(name, tree, "network-config", "network config", true)?;
    Ok(Answer {
        user_data: tree.optional(name, "user-data")?,
        metadata: Metadata {
            hostname: metadata::string(&meta, "local-hostname")
                .or_else(|| metadata::string(&meta, "hostname")),
            public_keys: metadata::keys_from(
                meta.get("public-keys").or_else(|| meta.get("public_keys")),
            ),
            network: network.as_ref().and_then(metadata::network_from_cloud_init),
            ..Metadata::default()
        },
    })
}
