//! A writable store over read-only stores (the system image's store):
//! images are seen, layers are shared, nothing is ever written to the
//! read-only side. Runs as root.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use image_store::{ContainerConfig, Error, ImageStore, Removed};
use testkit::{Compression, DockerArchive, LayerBuilder, OciLayout, TestImage};

fn load(s: &ImageStore, tar: &[u8]) -> Result<Vec<image_store::LoadedImage>, Error> {
    s.load(tar, &mut |_| {})
}

fn never(_: &str) -> bool {
    false
}

/// Every path under `root` with its type or content.
fn snapshot(root: &Path) -> BTreeSet<(PathBuf, String)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            let content = if ft.is_file() {
                format!("{:?}", std::fs::read(e.path()).unwrap())
            } else {
                format!("{ft:?}")
            };
            out.insert((e.path().strip_prefix(root).unwrap().to_path_buf(), content));
            if ft.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

/// Unpacked layer directories under `root/layers`.
fn layer_dirs(root: &Path) -> usize {
    std::fs::read_dir(root.join("layers"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir())
        .count()
}

/// An image with one layer of its own on top of busybox.
fn app() -> TestImage {
    TestImage::busybox()
        .layer(
            LayerBuilder::new()
                .file("app/run", b"#!/bin/sh\n", 0o755)
                .finish(),
        )
        .cmd(&["/app/run"])
}

/// Builds a sealed system store at `dir` holding busybox:latest and
/// sys/app:1, as the image build does.
fn system_store(dir: &Path) {
    let s = ImageStore::open(dir).unwrap();
    load(
        &s,
        &DockerArchive::new()
            .image(&TestImage::busybox(), &["busybox:latest"])
            .build(),
    )
    .unwrap();
    load(
        &s,
        &OciLayout::new().image(&app(), Some("sys/app:1")).build(),
    )
    .unwrap();
    s.seal().unwrap();
}

struct Setup {
    _dir: tempfile::TempDir,
    ro: PathBuf,
    rw: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("system-store");
        let rw = dir.path().join("image");
        system_store(&ro);
        Setup { _dir: dir, ro, rw }
    }

    fn open(&self) -> ImageStore {
        ImageStore::open_with_read_only(&self.rw, std::slice::from_ref(&self.ro)).unwrap()
    }
}

#[test]
fn seal_leaves_only_the_store_layout() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("store");
    let s = ImageStore::open(&root).unwrap();
    load(
        &s,
        &DockerArchive::new()
            .image(&TestImage::busybox(), &["busybox:latest"])
            .build(),
    )
    .unwrap();
    // Leftovers of interrupted work (temporary files of atomic_file, as a
    // crash before their rename leaves them) and an orphan layer.
    std::fs::create_dir_all(root.join("staging/abc/layer-1")).unwrap();
    std::fs::write(root.join(".repositories.json.a1B2c3.tmp"), b"{").unwrap();
    std::fs::write(root.join("configs/.x.json.Z9y8x7.tmp"), b"{").unwrap();
    let orphan = format!("layers/{}", "ab".repeat(32));
    std::fs::create_dir_all(root.join(&orphan)).unwrap();
    s.seal().unwrap();
    let top: BTreeSet<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        top,
        ["configs", "layers", "repositories.json"]
            .map(String::from)
            .into()
    );
    assert_eq!(std::fs::read_dir(root.join("configs")).unwrap().count(), 1);
    assert!(!root.join(orphan).exists());
    assert_eq!(layer_dirs(&root), 1);

    // A store missing a layer cannot be sealed.
    let id = s.get("busybox").unwrap().id;
    let layer = s.layer_paths(&id).unwrap().remove(0);
    std::fs::remove_dir_all(layer).unwrap();
    let err = s.seal().unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

#[test]
fn system_images_are_listed_and_their_layers_resolve_into_the_read_only_store() {
    let t = Setup::new();
    let s = t.open();
    assert_eq!(s.read_only_roots(), vec![t.ro.as_path()]);
    let list = s.list().unwrap();
    let mut tags: Vec<String> = list.iter().flat_map(|i| i.repo_tags.clone()).collect();
    tags.sort();
    assert_eq!(tags, vec!["busybox:latest", "sys/app:1"]);

    let bb = s.get("busybox").unwrap();
    assert_eq!(bb.id, TestImage::busybox().id());
    assert!(
        bb.size > 1_000_000,
        "size of the layer in the read-only store"
    );
    let app_img = s.get("sys/app:1").unwrap();
    assert_eq!(app_img.id, app().id());
    assert_eq!(
        app_img.config.config.cmd,
        Some(vec!["/app/run".to_string()])
    );
    // Lookup by id prefix sees system images too.
    assert_eq!(s.get(&bb.id[7..19]).unwrap().id, bb.id);

    let paths = s.layer_paths("sys/app:1").unwrap();
    assert_eq!(paths.len(), 2);
    for p in &paths {
        assert!(p.starts_with(t.ro.join("layers")), "{}", p.display());
    }
    assert!(paths[0].join("bin/busybox").is_file());
    assert!(paths[1].join("app/run").is_file());
    assert_eq!(layer_dirs(&t.rw), 0);
}

#[test]
fn loading_or_importing_a_system_image_again_adds_no_layer() {
    let t = Setup::new();
    let ro_before = snapshot(&t.ro);
    let s = t.open();
    let loaded = load(
        &s,
        &DockerArchive::new()
            .image(&TestImage::busybox(), &["mine:1"])
            .build(),
    )
    .unwrap();
    assert_eq!(loaded[0].id, TestImage::busybox().id());
    assert_eq!(layer_dirs(&t.rw), 0, "the busybox layer is shared");
    assert_eq!(s.get("mine:1").unwrap().id, TestImage::busybox().id());
    // The config is kept by the writable store too.
    assert_eq!(std::fs::read_dir(t.rw.join("configs")).unwrap().count(), 1);

    // Archives naming layers by diff id (Docker 25+ `docker save`, OCI
    // layouts with uncompressed layers) do not even unpack them again.
    for tar in [
        DockerArchive::new()
            .image(&TestImage::busybox(), &["oci-save:1"])
            .oci_flavoured(true)
            .build(),
        OciLayout::new()
            .image(&app(), Some("oci:1"))
            .compression(Compression::None)
            .build(),
    ] {
        let mut lines = Vec::new();
        s.load(&tar[..], &mut |l| lines.push(l.to_string()))
            .unwrap();
        assert!(
            !lines.iter().any(|l| l.starts_with("Loading layer")),
            "{lines:?}"
        );
    }
    assert_eq!(s.get("oci:1").unwrap().id, app().id());
    assert_eq!(layer_dirs(&t.rw), 0);

    // Importing the very same root file system shares it as well.
    s.import(
        &testkit::busybox_rootfs_tar()[..],
        Some("imported:1"),
        ContainerConfig::default(),
    )
    .unwrap();
    assert_eq!(layer_dirs(&t.rw), 0);
    assert!(s.layer_paths("imported:1").unwrap()[0].starts_with(&t.ro));

    // An image on top of a system layer adds only its own layer.
    let mine = TestImage::busybox().layer(LayerBuilder::new().file("m", b"m", 0o644).finish());
    load(&s, &DockerArchive::new().image(&mine, &["mine:2"]).build()).unwrap();
    assert_eq!(layer_dirs(&t.rw), 1);
    let paths = s.layer_paths("mine:2").unwrap();
    assert!(paths[0].starts_with(&t.ro));
    assert!(paths[1].starts_with(&t.rw));

    // Deleting it collects its own layer and leaves the system store alone.
    assert_eq!(
        s.remove("mine:2", false, &never).unwrap(),
        vec![
            Removed::Untagged("mine:2".into()),
            Removed::Deleted(mine.id())
        ]
    );
    assert_eq!(layer_dirs(&t.rw), 0);
    s.remove("imported:1", false, &never).unwrap();
    assert_eq!(snapshot(&t.ro), ro_before);
    assert!(s.layer_paths("busybox:latest").unwrap()[0].is_dir());
}

#[test]
fn system_images_cannot_be_removed() {
    let t = Setup::new();
    let s = t.open();
    let id = s.get("busybox:latest").unwrap().id;
    let ro_before = snapshot(&t.ro);
    let rw_before = snapshot(&t.rw);
    for (name, force) in [
        ("busybox:latest", false),
        ("busybox", true),
        (id.as_str(), false),
        (id.as_str(), true),
        (&id[7..19], true),
    ] {
        let err = s.remove(name, force, &never).unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{name}: {err}");
        assert!(
            err.to_string().contains(&format!(
                "image {name} is part of the system image and cannot be removed"
            )),
            "{err}"
        );
    }
    assert_eq!(snapshot(&t.ro), ro_before);
    assert_eq!(snapshot(&t.rw), rw_before);
    assert_eq!(s.list().unwrap().len(), 2);

    // Loaded into the writable store as well, it is still a system image.
    load(
        &s,
        &DockerArchive::new()
            .image(&TestImage::busybox(), &[])
            .build(),
    )
    .unwrap();
    assert!(matches!(
        s.remove(&id, true, &never),
        Err(Error::Conflict(_))
    ));
    assert_eq!(s.get("busybox:latest").unwrap().id, id);
}

#[test]
fn a_tag_on_a_system_image_works_and_survives_reopening() {
    let t = Setup::new();
    let s = t.open();
    let id = s.get("busybox").unwrap().id;
    s.tag("busybox", "mybox:1").unwrap();
    assert_eq!(s.get("mybox:1").unwrap().id, id);
    assert!(s.layer_paths("mybox:1").unwrap()[0].starts_with(&t.ro));
    drop(s);

    let s = t.open();
    let img = s.get("mybox:1").unwrap();
    assert_eq!(img.id, id);
    assert_eq!(img.repo_tags, vec!["busybox:latest", "mybox:1"]);
    assert_eq!(s.list().unwrap().len(), 2);

    // Untagging the writable tag keeps the system image.
    assert_eq!(
        s.remove("mybox:1", false, &never).unwrap(),
        vec![Removed::Untagged("mybox:1".into())]
    );
    assert!(matches!(s.get("mybox:1"), Err(Error::NotFound(_))));
    assert_eq!(s.get("busybox:latest").unwrap().id, id);

    // A writable tag wins over a system one of the same name, and
    // removing it uncovers the system tag again.
    s.tag("sys/app:1", "busybox:latest").unwrap();
    assert_eq!(s.get("busybox:latest").unwrap().id, app().id());
    assert_eq!(
        s.remove("busybox:latest", false, &never).unwrap(),
        vec![Removed::Untagged("busybox:latest".into())]
    );
    assert_eq!(s.get("busybox:latest").unwrap().id, id);
}

#[test]
fn a_missing_read_only_store_is_skipped() {
    let d = tempfile::tempdir().unwrap();
    let s =
        ImageStore::open_with_read_only(&d.path().join("image"), &[d.path().join("no-such-store")])
            .unwrap();
    assert!(s.read_only_roots().is_empty());
    assert!(s.list().unwrap().is_empty());
    load(
        &s,
        &DockerArchive::new()
            .image(&TestImage::busybox(), &["busybox:latest"])
            .build(),
    )
    .unwrap();
    assert_eq!(layer_dirs(&d.path().join("image")), 1);
}

/// A read-only bind mount of a directory onto itself, undone on drop.
struct ReadOnlyMount(PathBuf);

impl ReadOnlyMount {
    fn new(dir: &Path) -> Result<Self, String> {
        let run = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("mount")
                .args(args)
                .output()
                .map_err(|e| format!("cannot run mount: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
            }
        };
        let d = dir.to_str().ok_or("non-UTF-8 path")?;
        run(&["--bind", d, d])?;
        let guard = ReadOnlyMount(dir.to_path_buf());
        run(&["-o", "remount,bind,ro", d])?;
        Ok(guard)
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(&self.0).status();
        if !status.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn a_read_only_mounted_store_is_never_written() {
    let t = Setup::new();
    let _mount = match ReadOnlyMount::new(&t.ro) {
        Ok(m) => m,
        Err(e) => {
            println!("skipped: cannot make a read-only bind mount: {e}");
            return;
        }
    };
    // The mount really is read-only.
    let probe = std::fs::write(t.ro.join("probe"), b"x").unwrap_err();
    assert_eq!(probe.raw_os_error(), Some(libc::EROFS));
    let ro_before = snapshot(&t.ro);

    let s = t.open();
    assert_eq!(s.list().unwrap().len(), 2);
    let id = s.get("busybox").unwrap().id;
    s.layer_paths("sys/app:1").unwrap();
    s.tag("busybox", "mybox:1").unwrap();
    load(
        &s,
        &DockerArchive::new()
            .image(&TestImage::busybox(), &["again:1"])
            .build(),
    )
    .unwrap();
    let mine = TestImage::busybox().layer(LayerBuilder::new().file("m", b"m", 0o644).finish());
    load(&s, &DockerArchive::new().image(&mine, &["mine:1"]).build()).unwrap();
    assert!(matches!(
        s.remove(&id, true, &never),
        Err(Error::Conflict(_))
    ));
    s.remove("mybox:1", false, &never).unwrap();
    s.remove("again:1", false, &never).unwrap();
    s.remove("mine:1", false, &never).unwrap();
    drop(s);
    // Reopening does not try to clean the read-only store either.
    let s = t.open();
    assert_eq!(s.list().unwrap().len(), 2);
    assert_eq!(snapshot(&t.ro), ro_before);
}
