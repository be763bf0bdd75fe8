//! Layer packing read back by the engine's own loader (`image-store`):
//! digests, content, and reproducibility.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use image_build::{image_config, pack_layer_to_file, write_archive, PackOptions, RuntimeConfig};
use image_store::ImageStore;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tree with the kinds of entries a root filesystem has.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("etc/empty")).unwrap();
    fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(
        root.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::write(root.join("etc/config"), b"key=value\n").unwrap();
    fs::set_permissions(root.join("etc/config"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::os::unix::fs::symlink("/etc/config", root.join("etc/abs-link")).unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-alias")).unwrap();
    // A long path, beyond the 100 bytes of a plain tar header.
    let long = root
        .join("usr/share")
        .join("d".repeat(60))
        .join("f".repeat(60));
    fs::create_dir_all(long.parent().unwrap()).unwrap();
    fs::write(&long, b"long").unwrap();
    if is_root() {
        fs::create_dir(root.join("dev")).unwrap();
        mknod(
            &root.join("dev/null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(1, 3),
        )
        .unwrap();
        // An overlayfs whiteout: a 0:0 character device.
        mknod(
            &root.join("etc/removed"),
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .unwrap();
        std::os::unix::fs::lchown(root.join("etc/config"), Some(1000), Some(1001)).unwrap();
        nix::unistd::mkfifo(&root.join("etc/fifo"), Mode::from_bits_truncate(0o644)).unwrap();
    }
    let sock = root.join("etc/socket");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
}

fn pack(root: &Path, out: &Path, mtime: u64) -> image_build::ArchiveInfo {
    let layer_file = out.with_extension("layer");
    let layer = pack_layer_to_file(
        root,
        &PackOptions {
            mtime,
            gzip_level: 6,
        },
        &layer_file,
    )
    .unwrap();
    let rc = RuntimeConfig {
        cmd: Some(vec!["/bin/sh".into()]),
        env: [("PATH".to_string(), "/usr/bin".to_string())].into(),
        labels: [
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "1".to_string()),
            ("c".to_string(), "3".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let config = image_config(&rc, &layer.diff_id, "2024-01-01T00:00:00Z", "test").unwrap();
    write_archive(out, &layer_file, &layer, &config, "oxos/test:1", mtime).unwrap()
}

#[test]
fn a_packed_tree_loads_into_the_engine_store_with_its_content_and_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    make_tree(&root);
    let archive = tmp.path().join("image.tar");
    let info = pack(&root, &archive, 1_700_000_000);

    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let loaded = store
        .load(fs::File::open(&archive).unwrap(), &mut |_| {})
        .unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, info.id, "the image id is the config digest");
    assert_eq!(loaded[0].tags, ["oxos/test:1"]);
    let image = store.get("oxos/test:1").unwrap();
    assert_eq!(image.diff_ids(), std::slice::from_ref(&info.layer.diff_id));
    assert_eq!(
        image.config.config.cmd.as_deref(),
        Some(&["/bin/sh".to_string()][..])
    );
    assert_eq!(image.config.config.env, ["PATH=/usr/bin"]);
    assert_eq!(image.config.config.labels.len(), 3);
    assert_eq!(
        image.config.created.as_deref(),
        Some("2024-01-01T00:00:00Z")
    );

    let layers = store.layer_paths("oxos/test:1").unwrap();
    assert_eq!(layers.len(), 1);
    let l = &layers[0];
    assert_eq!(
        fs::read(l.join("usr/bin/tool")).unwrap(),
        b"#!/bin/sh\necho tool\n"
    );
    let tool = fs::metadata(l.join("usr/bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid bit kept");
    assert_eq!(tool.mtime(), 1_700_000_000, "mtime is the epoch");
    let alias = fs::metadata(l.join("usr/bin/tool-alias")).unwrap();
    assert_eq!(alias.ino(), tool.ino(), "hard links stay one file");
    assert_eq!(fs::read_link(l.join("bin")).unwrap(), Path::new("usr/bin"));
    assert_eq!(
        fs::read_link(l.join("etc/abs-link")).unwrap(),
        Path::new("/etc/config")
    );
    assert_eq!(
        fs::metadata(l.join("etc/config")).unwrap().mode() & 0o777,
        0o600
    );
    assert!(l.join("etc/empty").is_dir());
    let long = l
        .join("usr/share")
        .join("d".repeat(60))
        .join("f".repeat(60));
    assert_eq!(fs::read(long).unwrap(), b"long");
    assert!(
        fs::symlink_metadata(l.join("etc/socket")).is_err(),
        "sockets are not packed"
    );
    if is_root() {
        let cfg = fs::metadata(l.join("etc/config")).unwrap();
        assert_eq!((cfg.uid(), cfg.gid()), (1000, 1001), "numeric owners kept");
        let null = fs::symlink_metadata(l.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), makedev(1, 3));
        let wh = fs::symlink_metadata(l.join("etc/removed")).unwrap();
        assert!(
            wh.file_type().is_char_device(),
            "whiteout comes back as 0:0"
        );
        assert_eq!(wh.rdev(), 0);
        assert!(fs::symlink_metadata(l.join("etc/fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
    }
}

#[test]
fn the_same_tree_gives_the_same_digests_and_another_epoch_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    make_tree(&a);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    make_tree(&b);
    let ia = pack(&a, &tmp.path().join("a.tar"), 1_700_000_000);
    let ib = pack(&b, &tmp.path().join("b.tar"), 1_700_000_000);
    assert_eq!(ia, ib, "two copies of a tree made at different times");
    assert_eq!(
        fs::read(tmp.path().join("a.tar")).unwrap(),
        fs::read(tmp.path().join("b.tar")).unwrap(),
        "the archives are byte identical"
    );
    let ic = pack(&a, &tmp.path().join("c.tar"), 1_600_000_000);
    assert_ne!(ia.layer.diff_id, ic.layer.diff_id);
    fs::write(a.join("etc/config"), b"key=other\n").unwrap();
    let id = pack(&a, &tmp.path().join("d.tar"), 1_700_000_000);
    assert_ne!(ia.layer.diff_id, id.layer.diff_id, "content counts");
}

#[test]
fn a_layer_is_a_sorted_tar_without_owner_names() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    make_tree(&root);
    let layer_file = tmp.path().join("layer.tar.gz");
    let info = pack_layer_to_file(&root, &PackOptions::default(), &layer_file).unwrap();
    let gz = flate2::read::GzDecoder::new(fs::File::open(&layer_file).unwrap());
    let mut ar = tar::Archive::new(gz);
    let mut paths = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().mtime().unwrap(), 0);
        assert_eq!(e.header().username().unwrap(), Some(""));
        paths.push(e.path().unwrap().to_string_lossy().into_owned());
    }
    assert_eq!(paths.len() as u64, info.entries);
    let pos = |p: &str| paths.iter().position(|x| x == p).unwrap();
    assert!(pos("bin") < pos("etc"));
    assert!(pos("etc") < pos("etc/config"));
    assert!(pos("etc/config") < pos("usr"));
    if is_root() {
        assert!(paths.contains(&"etc/.wh.removed".to_string()), "{paths:?}");
    }
}

#[test]
fn an_opaque_overlay_directory_packs_an_opaque_whiteout() {
    if !is_root() {
        eprintln!("skipped: trusted.* xattrs need root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("opaque")).unwrap();
    fs::write(root.join("opaque/kept"), b"x").unwrap();
    let c = std::ffi::CString::new(root.join("opaque").to_string_lossy().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated strings and a one-byte value.
    let r = unsafe {
        libc::setxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    if r != 0 {
        eprintln!("skipped: this file system has no trusted xattrs");
        return;
    }
    let archive = tmp.path().join("image.tar");
    pack(&root, &archive, 0);
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    store
        .load(fs::File::open(&archive).unwrap(), &mut |_| {})
        .unwrap();
    let l = &store.layer_paths("oxos/test:1").unwrap()[0];
    assert_eq!(fs::read(l.join("opaque/kept")).unwrap(), b"x");
    let mut buf = [0u8; 4];
    let c = std::ffi::CString::new(l.join("opaque").to_string_lossy().as_bytes()).unwrap();
    // SAFETY: as above; the call writes at most buf.len() bytes.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(n, 1, "the loader marks the directory opaque again");
    assert_eq!(buf[0], b'y');
}
