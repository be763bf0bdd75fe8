//! Behaviour of the image store on real tarballs built by testkit. Runs as
//! root (device nodes, ownership and trusted.* xattrs are created).

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use image_store::{ContainerConfig, Error, ImageStore, Removed};
use testkit::{Compression, DockerArchive, LayerBuilder, OciLayout, TestImage};

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = ImageStore::open(&dir.path().join("image")).unwrap();
    (dir, s)
}

fn load(s: &ImageStore, tar: &[u8]) -> Result<Vec<image_store::LoadedImage>, Error> {
    s.load(tar, &mut |_| {})
}

/// Every path under the store root with its type, to check that failures
/// change nothing.
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

fn never(_: &str) -> bool {
    false
}

fn top_layer(s: &ImageStore, name: &str) -> PathBuf {
    s.layer_paths(&s.get(name).unwrap().id)
        .unwrap()
        .pop()
        .unwrap()
}

#[test]
fn loads_docker_archive_in_every_compression() {
    for c in Compression::ALL {
        let (_d, s) = store();
        let img = TestImage::busybox().env("A=1").working_dir("/tmp");
        let tar = DockerArchive::new()
            .image(&img, &["busybox:latest", "example.com/bb:v1"])
            .compression(c)
            .build();
        let mut lines = Vec::new();
        let loaded = s
            .load(&tar[..], &mut |l| lines.push(l.to_string()))
            .unwrap();
        assert_eq!(loaded.len(), 1, "{c:?}");
        assert_eq!(loaded[0].id, img.id());
        assert!(lines.contains(&"Loaded image: busybox:latest".to_string()));

        let got = s.get("busybox").unwrap();
        assert_eq!(got.id, img.id());
        assert_eq!(
            got.repo_tags,
            vec![
                "busybox:latest".to_string(),
                "example.com/bb:v1".to_string()
            ]
        );
        assert_eq!(got.created.as_deref(), Some(testkit::CREATED));
        assert_eq!(got.config.config.cmd, Some(vec!["sh".to_string()]));
        assert!(got.config.config.env.contains(&"A=1".to_string()));
        assert_eq!(got.config.config.working_dir.as_deref(), Some("/tmp"));
        assert_eq!(got.raw_config, img.config_json());
        assert!(
            got.size > 1_000_000,
            "busybox is about 2 MB, got {}",
            got.size
        );

        let layers = s.layer_paths(&got.id).unwrap();
        assert_eq!(layers.len(), 1);
        let root = &layers[0];
        let bb = std::fs::metadata(root.join("bin/busybox")).unwrap();
        assert_eq!(bb.permissions().mode() & 0o7777, 0o755);
        assert_eq!(bb.mtime() as u64, testkit::MTIME);
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        let tmp = std::fs::metadata(root.join("tmp")).unwrap();
        assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
        assert_eq!(tmp.mtime() as u64, testkit::MTIME);
        let home = std::fs::metadata(root.join("home/user")).unwrap();
        assert_eq!((home.uid(), home.gid()), (1000, 1000));
        // The unpacked busybox actually runs.
        let out = std::process::Command::new(root.join("bin/busybox"))
            .args(["echo", "ok"])
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"ok\n");
    }
}

#[test]
fn whiteouts_become_overlay_whiteouts_and_special_files_survive() {
    let (_d, s) = store();
    let layer = LayerBuilder::new()
        .dir("etc", 0o755)
        .whiteout("etc/group")
        .dir("opaque", 0o700)
        .opaque("opaque")
        .file("opaque/kept", b"k", 0o600)
        .file_owned("data.txt", b"hello\n", 0o640, 1000, 100)
        .hardlink("data-link.txt", "data.txt")
        .char_device("dev/null2", 1, 3, 0o666)
        .fifo("pipe", 0o600)
        .file_with_xattrs("x.txt", b"x", &[("user.test", b"v1")])
        .symlink("rel", "data.txt")
        .finish();
    let img = TestImage::busybox().layer(layer);
    load(&s, &DockerArchive::new().image(&img, &["wh:1"]).build()).unwrap();
    let top = top_layer(&s, "wh:1");

    let wh = std::fs::symlink_metadata(top.join("etc/group")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!top.join("etc/.wh.group").exists());
    assert_eq!(
        xattr(&top.join("opaque"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!top.join("opaque/.wh..wh..opq").exists());
    assert_eq!(
        std::fs::metadata(top.join("opaque"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    let data = std::fs::metadata(top.join("data.txt")).unwrap();
    assert_eq!((data.uid(), data.gid()), (1000, 100));
    assert_eq!(data.permissions().mode() & 0o777, 0o640);
    let link = std::fs::metadata(top.join("data-link.txt")).unwrap();
    assert_eq!(link.ino(), data.ino());
    let dev = std::fs::symlink_metadata(top.join("dev/null2")).unwrap();
    assert!(dev.file_type().is_char_device());
    assert_eq!(dev.rdev(), libc::makedev(1, 3));
    assert!(std::fs::symlink_metadata(top.join("pipe"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        xattr(&top.join("x.txt"), "user.test").as_deref(),
        Some(&b"v1"[..])
    );
    assert_eq!(
        std::fs::read_link(top.join("rel")).unwrap(),
        Path::new("data.txt")
    );
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

#[test]
fn loads_oci_layouts() {
    for (nested, containerd, c) in [
        (false, false, Compression::Gzip),
        (true, false, Compression::Zstd),
        (true, true, Compression::Xz),
        (false, true, Compression::None),
    ] {
        let (_d, s) = store();
        let img = TestImage::busybox().label("k", "v");
        let tar = OciLayout::new()
            .image(&img, Some("docker.io/library/oci:1"))
            .compression(c)
            .nested_index(nested)
            .containerd_names(containerd)
            .build();
        let loaded = load(&s, &tar).unwrap();
        assert_eq!(loaded[0].id, img.id());
        assert_eq!(loaded[0].tags, vec!["oci:1".to_string()]);
        let got = s.get("oci:1").unwrap();
        assert_eq!(
            got.config.config.labels.get("k").map(String::as_str),
            Some("v")
        );
        assert!(s.layer_paths("oci:1").unwrap()[0]
            .join("bin/busybox")
            .is_file());
    }
}

#[test]
fn loads_oci_flavoured_docker_save() {
    let (_d, s) = store();
    let img = TestImage::busybox().layer(LayerBuilder::new().file("a", b"a", 0o644).finish());
    let tar = DockerArchive::new()
        .image(&img, &["new:save"])
        .oci_flavoured(true)
        .build();
    let loaded = load(&s, &tar).unwrap();
    assert_eq!(loaded[0].id, img.id());
    assert_eq!(s.layer_paths("new:save").unwrap().len(), 2);
}

#[test]
fn an_untagged_oci_image_is_loaded_by_id() {
    let (_d, s) = store();
    let img = TestImage::busybox().comment("untagged");
    let mut lines = Vec::new();
    let loaded = s
        .load(&OciLayout::new().image(&img, None).build()[..], &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap();
    assert!(loaded[0].tags.is_empty());
    assert!(lines.contains(&format!("Loaded image ID: {}", img.id())));
    assert!(s.get(&img.id()).unwrap().repo_tags.is_empty());
}

#[test]
fn layers_are_shared_and_collected_with_their_last_image() {
    let (d, s) = store();
    let a = TestImage::busybox().layer(LayerBuilder::new().file("a", b"a", 0o644).finish());
    let b = TestImage::busybox().layer(LayerBuilder::new().file("b", b"b", 0o644).finish());
    load(
        &s,
        &DockerArchive::new()
            .image(&a, &["a:1"])
            .image(&b, &["b:1"])
            .build(),
    )
    .unwrap();
    let layers_dir = d.path().join("image/layers");
    let count = || {
        std::fs::read_dir(&layers_dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir())
            .count()
    };
    assert_eq!(count(), 3, "base shared, plus one layer each");
    let pa = s.layer_paths("a:1").unwrap();
    let pb = s.layer_paths("b:1").unwrap();
    assert_eq!(pa[0], pb[0]);

    assert_eq!(
        s.remove("a:1", false, &never).unwrap(),
        vec![Removed::Untagged("a:1".into()), Removed::Deleted(a.id())]
    );
    assert_eq!(count(), 2);
    assert!(pb[0].join("bin/busybox").exists());
    s.remove("b:1", false, &never).unwrap();
    assert_eq!(count(), 0);
    assert!(s.list().unwrap().is_empty());
}

#[test]
fn bad_input_leaves_the_store_unchanged() {
    let (d, s) = store();
    let root = d.path().join("image");
    // Something already in the store, so that "unchanged" means something.
    let good = TestImage::busybox();
    load(&s, &DockerArchive::new().image(&good, &["good:1"]).build()).unwrap();
    let before = snapshot(&root);

    let other = TestImage::busybox().layer(LayerBuilder::new().file("f", b"1", 0o644).finish());
    let archive = DockerArchive::new()
        .image(&other, &["other:1"])
        .compression(Compression::Gzip)
        .build();

    // Layer content does not match the config's diff id.
    let err = load(
        &s,
        &testkit::docker_archive_with_bad_layer(&other, &["bad:1"]),
    )
    .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert_eq!(snapshot(&root), before);

    // Truncated at several points: in a layer, in the middle, at the end.
    for cut in [
        archive.len() / 4,
        archive.len() / 2,
        archive.len() - 1500,
        700,
        0,
    ] {
        let err = load(&s, &testkit::truncated(&archive, cut)).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArchive(_) | Error::DigestMismatch { .. }),
            "cut at {cut}: {err}"
        );
        assert_eq!(snapshot(&root), before, "cut at {cut}");
    }

    // A tarball without manifest.json or index.json.
    let plain = LayerBuilder::new().file("hello", b"hi", 0o644).finish();
    let err = load(&s, &plain).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArchive(ref m) if m.contains("manifest.json")),
        "{err}"
    );
    assert_eq!(snapshot(&root), before);

    // An OCI layout whose blob does not hash to its name.
    let mut oci = OciLayout::new()
        .image(&other, Some("x:1"))
        .compression(Compression::None)
        .build();
    let needle = b"testkit layer";
    let pos = oci.windows(needle.len()).position(|w| w == needle).unwrap();
    oci[pos] = b'T';
    let err = load(&s, &oci).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert_eq!(snapshot(&root), before);

    // Layers whose entries escape the layer directory.
    for evil in [
        LayerBuilder::new().raw_file("../escape", b"x").finish(),
        LayerBuilder::new()
            .raw_symlink("link", "/tmp")
            .raw_file("link/escape-through-symlink", b"x")
            .finish(),
        LayerBuilder::new()
            .raw_symlink("up", "../../../../..")
            .raw_file("up/escape-rel", b"x")
            .finish(),
    ] {
        let img = TestImage::from_layers(vec![evil]);
        let err = load(&s, &DockerArchive::new().image(&img, &["evil:1"]).build()).unwrap_err();
        assert!(matches!(err, Error::InvalidArchive(_)), "{err}");
        assert!(!Path::new("/tmp/escape-through-symlink").exists());
        assert_eq!(snapshot(&root), before);
    }

    // Invalid tag in RepoTags.
    let err = load(
        &s,
        &DockerArchive::new().image(&other, &["Bad:Tag"]).build(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidReference { .. }), "{err}");
    assert_eq!(snapshot(&root), before);

    // Unknown images.
    assert!(matches!(s.get("nope:1"), Err(Error::NotFound(_))));
    assert!(matches!(
        s.remove("nope:1", true, &never),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        s.layer_paths("sha256:0000"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(s.tag("nope", "x:1"), Err(Error::NotFound(_))));
    assert_eq!(snapshot(&root), before);
}

#[test]
fn lookup_by_tag_id_and_prefix() {
    let (_d, s) = store();
    let img = TestImage::busybox();
    load(
        &s,
        &DockerArchive::new()
            .image(&img, &["busybox:latest"])
            .build(),
    )
    .unwrap();
    let id = img.id();
    let hex = id.strip_prefix("sha256:").unwrap();
    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        id.as_str(),
        hex,
        &hex[..12],
        &hex[..3],
        &id[..12],
    ] {
        assert_eq!(s.get(name).unwrap().id, id, "{name}");
    }
    assert!(matches!(s.get("busybox:other"), Err(Error::NotFound(_))));
    assert!(matches!(
        s.get("UPPER"),
        Err(Error::InvalidReference { .. })
    ));
}

#[test]
fn tag_and_remove_follow_docker_rules() {
    let (_d, s) = store();
    let img = TestImage::busybox();
    let id = img.id();
    load(
        &s,
        &DockerArchive::new()
            .image(&img, &["busybox:latest"])
            .build(),
    )
    .unwrap();
    s.tag("busybox", "mine:v1").unwrap();
    s.tag(&id, "127.0.0.1:5000/foo").unwrap();
    assert_eq!(
        s.get(&id).unwrap().repo_tags,
        vec![
            "127.0.0.1:5000/foo:latest".to_string(),
            "busybox:latest".to_string(),
            "mine:v1".to_string()
        ]
    );

    // By id with several tags: refused unless forced.
    assert!(matches!(
        s.remove(&id, false, &never),
        Err(Error::Conflict(_))
    ));
    // By tag with other tags left: untag only.
    assert_eq!(
        s.remove("mine:v1", false, &never).unwrap(),
        vec![Removed::Untagged("mine:v1".into())]
    );
    s.remove("127.0.0.1:5000/foo", false, &never).unwrap();
    // Last tag while a container uses the image: refused, then untag only.
    let used = |i: &str| i == id;
    assert!(matches!(
        s.remove("busybox", false, &used),
        Err(Error::InUse { .. })
    ));
    assert_eq!(
        s.remove("busybox", true, &used).unwrap(),
        vec![Removed::Untagged("busybox:latest".into())]
    );
    let dangling = s.get(&id).unwrap();
    assert!(dangling.repo_tags.is_empty());
    assert!(!s.layer_paths(&id).unwrap().is_empty());
    // By id while in use.
    assert!(matches!(
        s.remove(&id, false, &used),
        Err(Error::InUse { .. })
    ));
    // By id, no longer in use.
    assert_eq!(
        s.remove(&id[..15], false, &never).unwrap(),
        vec![Removed::Deleted(id.clone())]
    );
    assert!(matches!(s.get(&id), Err(Error::NotFound(_))));
}

#[test]
fn forced_remove_by_id_untags_everything_and_deletes() {
    let (_d, s) = store();
    let img = TestImage::busybox();
    load(
        &s,
        &DockerArchive::new().image(&img, &["a:1", "b:1"]).build(),
    )
    .unwrap();
    let r = s.remove(&img.id(), true, &never).unwrap();
    assert_eq!(
        r,
        vec![
            Removed::Untagged("a:1".into()),
            Removed::Untagged("b:1".into()),
            Removed::Deleted(img.id())
        ]
    );
}

#[test]
fn moving_a_tag_leaves_the_old_image_dangling() {
    let (_d, s) = store();
    let one = TestImage::busybox().comment("one");
    let two = TestImage::busybox().comment("two");
    load(
        &s,
        &DockerArchive::new().image(&one, &["app:latest"]).build(),
    )
    .unwrap();
    load(
        &s,
        &DockerArchive::new().image(&two, &["app:latest"]).build(),
    )
    .unwrap();
    assert_eq!(s.get("app").unwrap().id, two.id());
    assert!(s.get(&one.id()).unwrap().repo_tags.is_empty());
    assert_eq!(s.list().unwrap().len(), 2);
}

#[test]
fn import_makes_a_one_layer_image() {
    let (_d, s) = store();
    let rootfs = testkit::compress(&testkit::busybox_rootfs_tar(), Compression::Gzip);
    let cfg = ContainerConfig {
        cmd: Some(vec!["/bin/sh".into()]),
        env: vec!["X=y".into()],
        working_dir: Some("/root".into()),
        ..Default::default()
    };
    let id = s.import(&rootfs[..], Some("imported"), cfg).unwrap();
    let img = s.get("imported:latest").unwrap();
    assert_eq!(img.id, id);
    assert_eq!(img.config.architecture, "amd64");
    assert_eq!(img.config.os, "linux");
    assert_eq!(img.config.config.cmd, Some(vec!["/bin/sh".to_string()]));
    assert_eq!(img.config.config.working_dir.as_deref(), Some("/root"));
    assert_eq!(
        img.config.rootfs_diff_ids,
        vec![testkit::sha256(&testkit::busybox_rootfs_tar())]
    );
    assert!(img.created.is_some());
    assert!(s.layer_paths(&id).unwrap()[0].join("bin/busybox").is_file());

    // An import without a tag, and a broken one.
    let id2 = s
        .import(&rootfs[..], None, ContainerConfig::default())
        .unwrap();
    assert!(s.get(&id2).unwrap().repo_tags.is_empty());
    let err = s
        .import(
            &testkit::truncated(&rootfs, 5000)[..],
            Some("broken"),
            ContainerConfig::default(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArchive(_)), "{err}");
    assert!(matches!(s.get("broken"), Err(Error::NotFound(_))));
}

#[test]
fn survives_reopen_and_concurrent_loads() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("image");
    let s = ImageStore::open(&root).unwrap();
    let tar = DockerArchive::new()
        .image(&TestImage::busybox(), &["busybox:latest"])
        .build();
    std::thread::scope(|sc| {
        for _ in 0..3 {
            sc.spawn(|| load(&s, &tar).unwrap());
        }
    });
    assert_eq!(s.list().unwrap().len(), 1);
    // Leftovers of an interrupted operation are cleared on open.
    std::fs::create_dir_all(root.join("staging/interrupted/layer-1")).unwrap();
    drop(s);
    let s = ImageStore::open(&root).unwrap();
    assert_eq!(s.get("busybox").unwrap().id, TestImage::busybox().id());
    assert_eq!(std::fs::read_dir(root.join("staging")).unwrap().count(), 0);
}

#[test]
fn a_directory_replaced_by_a_symlink_is_not_followed_when_modes_are_set() {
    let (d, s) = store();
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o755)).unwrap();
    let layer = LayerBuilder::new()
        .dir("d", 0o700)
        .raw_symlink("d", outside.to_str().unwrap())
        .finish();
    let img = TestImage::from_layers(vec![layer]);
    load(&s, &DockerArchive::new().image(&img, &["swap:1"]).build()).unwrap();
    let top = top_layer(&s, "swap:1");
    assert_eq!(std::fs::read_link(top.join("d")).unwrap(), outside);
    assert_eq!(
        std::fs::metadata(&outside).unwrap().permissions().mode() & 0o7777,
        0o755
    );
}

/// Archives written by a real tool (skopeo), not by testkit.
#[test]
fn loads_archives_written_by_skopeo() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src.tar");
    let img = TestImage::busybox().layer(
        LayerBuilder::new()
            .file("a", b"a", 0o644)
            .whiteout("etc/group")
            .finish(),
    );
    testkit::write_file(&src, &DockerArchive::new().image(&img, &[]).build()).unwrap();
    let cases = [
        (
            "oci-archive",
            "oci.tar",
            vec!["--dest-compress", "--dest-compress-format=zstd"],
        ),
        ("docker-archive", "docker.tar", vec![]),
    ];
    for (transport, file, extra) in cases {
        let dest = work.path().join(file);
        let status = std::process::Command::new("skopeo")
            .args(["copy", "--insecure-policy", "--quiet"])
            .args(&extra)
            .arg(format!("docker-archive:{}", src.display()))
            .arg(format!(
                "{transport}:{}:interop/{transport}:v1",
                dest.display()
            ))
            .status()
            .expect("skopeo must be installed");
        assert!(status.success(), "skopeo copy to {transport}");
        let bytes = std::fs::read(&dest).unwrap();
        if transport == "oci-archive" {
            let mut a = tar::Archive::new(&bytes[..]);
            let zstd_blobs = a
                .entries()
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| e.header().entry_type().is_file())
                .filter(|e| e.size() >= 4)
                .filter_map(|mut e| {
                    let mut magic = [0u8; 4];
                    std::io::Read::read_exact(&mut e, &mut magic).ok()?;
                    (magic == [0x28, 0xb5, 0x2f, 0xfd]).then_some(())
                })
                .count();
            assert_eq!(zstd_blobs, 2, "skopeo wrote zstd layers");
        }
        let (_d, s) = store();
        let loaded = load(&s, &bytes).unwrap();
        assert_eq!(loaded[0].tags, vec![format!("interop/{transport}:v1")]);
        let got = s.get(&loaded[0].id).unwrap();
        // The conversion to OCI rewrites the config (and so the id); the
        // layers stay the same.
        assert_eq!(got.config.rootfs_diff_ids, img.diff_ids(), "{transport}");
        assert_eq!(got.config.config.cmd, img.cmd);
        if transport == "docker-archive" {
            assert_eq!(got.id, img.id());
        }
        let top = top_layer(&s, &format!("interop/{transport}:v1"));
        assert!(std::fs::symlink_metadata(top.join("etc/group"))
            .unwrap()
            .file_type()
            .is_char_device());
    }
}

#[test]
fn archives_naming_missing_entries_are_refused() {
    let (d, s) = store();
    let root = d.path().join("image");
    let before = snapshot(&root);
    let img = TestImage::busybox();
    let config = img.config_json();
    let cases = [
        // The config is missing.
        (
            serde_json::json!([{"Config": "nope.json", "RepoTags": ["m:1"], "Layers": []}]),
            None,
            "nope.json",
        ),
        // The layer is missing.
        (
            serde_json::json!([{"Config": "c.json", "RepoTags": ["m:1"], "Layers": ["l/layer.tar"]}]),
            Some(&config),
            "l/layer.tar",
        ),
    ];
    for (manifest, cfg, missing) in cases {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, path, data).unwrap();
        };
        if let Some(c) = cfg {
            add("c.json", c);
        }
        add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
        let tar = b.into_inner().unwrap();
        let err = load(&s, &tar).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArchive(m) if m.contains(missing)),
            "{err}"
        );
        assert_eq!(snapshot(&root), before);
    }
}

#[test]
fn loads_layers_in_the_old_v7_tar_format() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_old();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(testkit::MTIME);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "old.txt", &b"old"[..]).unwrap();
    let layer = b.into_inner().unwrap();
    assert_ne!(&layer[257..262], b"ustar");
    let img = TestImage::from_layers(vec![layer]);
    let (_d, s) = store();
    load(&s, &DockerArchive::new().image(&img, &["v7:1"]).build()).unwrap();
    assert_eq!(
        std::fs::read(top_layer(&s, "v7:1").join("old.txt")).unwrap(),
        b"old"
    );
}

/// The layer directories stack as overlayfs lowerdirs: whiteouts hide
/// files, opaque directories hide the layers below. Mounted in a private
/// mount namespace of a dedicated thread, so nothing leaks to the host.
#[test]
fn layers_stack_as_overlay_lowerdirs() {
    let (d, s) = store();
    let middle = LayerBuilder::new()
        .dir("opaque", 0o755)
        .file("opaque/lower.txt", b"lower", 0o644)
        .file("gone.txt", b"gone", 0o644)
        .finish();
    let top = LayerBuilder::new()
        .whiteout("etc/group")
        .whiteout("gone.txt")
        .dir("opaque", 0o755)
        .opaque("opaque")
        .file("opaque/kept.txt", b"kept", 0o644)
        .finish();
    let img = TestImage::busybox().layer(middle).layer(top);
    load(&s, &DockerArchive::new().image(&img, &["ovl:1"]).build()).unwrap();
    let mut lower = s.layer_paths("ovl:1").unwrap();
    lower.reverse();
    let lowerdir = lower
        .iter()
        .map(|p| p.to_str().unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let base = d.path().to_path_buf();
    std::thread::spawn(move || {
        use nix::mount::{mount, MsFlags};
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .unwrap();
        let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("merged"));
        for p in [&upper, &work, &merged] {
            std::fs::create_dir(p).unwrap();
        }
        let opts = format!(
            "lowerdir={lowerdir},upperdir={},workdir={}",
            upper.display(),
            work.display()
        );
        mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.as_str()),
        )
        .unwrap();
        assert!(merged.join("bin/busybox").is_file());
        assert!(merged.join("etc/passwd").is_file());
        assert!(
            !merged.join("etc/group").exists(),
            "whiteout hides etc/group"
        );
        assert!(!merged.join("gone.txt").exists(), "whiteout hides gone.txt");
        let names: Vec<String> = std::fs::read_dir(merged.join("opaque"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["kept.txt".to_string()],
            "opaque dir hides lower.txt"
        );
        nix::mount::umount(&merged).unwrap();
    })
    .join()
    .unwrap();
}
