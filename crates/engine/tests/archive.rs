//! `PUT /containers/{id}/archive` against a real engine, on containers that
//! are created and never started: the files must land in the container's
//! writable layer (through the image's symlinks, inside its root) or in its
//! volumes, as the container will see them.
//!
//! The engine mounts the container's overlay for the extraction, so these
//! tests need root; as another user they print a loud SKIPPED and pass.
//! Starting a container needs the `ros` binary as the shim: that half (the
//! container reads what was put there) is in the ros crate's engine tests.

use axum::body::Body;
use axum::http::Request;
use bollard_stubs::models::{ContainerCreateBody, HostConfig};
use engine::{Config, Engine};
use http_body_util::BodyExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use testkit::{Compression, DockerArchive, LayerBuilder, TestImage};
use tower::ServiceExt;

const IMAGE: &str = "archive-test:1";

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("\n!!! SKIPPED: extracting into a container mounts its overlay and needs root !!!\n");
    false
}

/// An engine in `dir` with busybox plus a layer where /var/run is an
/// absolute symlink to /run, as in many images.
fn engine(dir: &Path) -> Arc<Engine> {
    let engine = Engine::open(Config::new(dir.join("data"))).expect("open the engine");
    let layer = LayerBuilder::new()
        .dir("run", 0o755)
        .dir("var", 0o755)
        .symlink("var/run", "/run")
        .dir("srv", 0o700)
        .finish();
    let image = TestImage::busybox().layer(layer).cmd(&["true"]);
    let tar = DockerArchive::new()
        .image(&image, &[IMAGE])
        .compression(Compression::Gzip)
        .build();
    engine
        .images
        .load(&tar[..], &mut |_| {})
        .expect("load the test image");
    engine
}

/// Creates a container named `name` with the binds given; its id.
fn create(engine: &Arc<Engine>, name: &str, binds: Vec<String>) -> String {
    engine
        .create(
            Some(name),
            ContainerCreateBody {
                image: Some(IMAGE.into()),
                host_config: Some(HostConfig {
                    binds: Some(binds),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect("create the container")
}

/// PUT the archive; (status, message of an error body).
async fn put(engine: &Arc<Engine>, uri: &str, body: Vec<u8>) -> (u16, String) {
    let req = Request::put(uri)
        .header("Content-Type", "application/x-tar")
        .body(Body::from(body))
        .unwrap();
    // As the server does before routing.
    let req = engine::api::strip_version(req);
    let res = engine::api::router(engine.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let message = if bytes.is_empty() {
        String::new()
    } else {
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        json["message"].as_str().unwrap_or_default().to_string()
    };
    (status, message)
}

fn upper(dir: &Path, id: &str) -> std::path::PathBuf {
    dir.join("data/containers").join(id).join("upper")
}

#[tokio::test]
async fn files_land_in_the_layer_through_the_images_symlinks_and_in_volumes() {
    if !is_root() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let engine = engine(d.path());
    let volume = d.path().join("volume");
    let id = create(
        &engine,
        "target",
        vec![format!("{}:/data", volume.display())],
    );

    // Into /var/run, a symlink to /run: the files go to the container's
    // /run, with the headers' modes and owners; the parent of sub/x is made.
    let tar = LayerBuilder::new()
        .file_owned("hello.txt", b"hello\n", 0o640, 1000, 1001)
        .file("sub/x", b"x", 0o600)
        .finish();
    assert_eq!(
        put(
            &engine,
            "/v1.41/containers/target/archive?path=/var/run",
            tar
        )
        .await,
        (200, String::new())
    );
    let up = upper(d.path(), &id);
    let hello = up.join("run/hello.txt");
    assert_eq!(std::fs::read(&hello).unwrap(), b"hello\n");
    let meta = std::fs::metadata(&hello).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
    assert_eq!(std::fs::read(up.join("run/sub/x")).unwrap(), b"x");
    assert_eq!(
        std::fs::metadata(up.join("run/sub")).unwrap().mode() & 0o7777,
        0o755
    );
    assert!(
        !up.join("var/run").is_dir(),
        "the image's symlink /var/run was replaced by a directory"
    );

    // gzip, into a volume: the file is in the volume, not in the layer.
    let tar = testkit::compress(
        &LayerBuilder::new().file("in-volume", b"v", 0o644).finish(),
        Compression::Gzip,
    );
    assert_eq!(
        put(&engine, "/containers/target/archive?path=/data", tar).await,
        (200, String::new())
    );
    assert_eq!(std::fs::read(volume.join("in-volume")).unwrap(), b"v");
    assert!(!up.join("data/in-volume").exists());

    // A directory of the image keeps its contents; its mode is the entry's.
    let tar = LayerBuilder::new()
        .dir("srv", 0o750)
        .file("srv/a", b"a", 0o644)
        .finish();
    assert_eq!(
        put(&engine, "/containers/target/archive?path=/", tar).await,
        (200, String::new())
    );
    assert_eq!(
        std::fs::metadata(up.join("srv")).unwrap().mode() & 0o7777,
        0o750
    );

    // Nothing is left mounted: the container starts as before.
    let rootfs = d.path().join("data/containers").join(&id).join("rootfs");
    assert_eq!(
        std::fs::metadata(&rootfs).unwrap().dev(),
        std::fs::metadata(rootfs.parent().unwrap()).unwrap().dev(),
        "the container's rootfs is still mounted after the extraction"
    );
}

#[tokio::test]
async fn symlinks_in_the_archive_cannot_lead_out_of_the_container() {
    if !is_root() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let engine = engine(d.path());
    let id = create(&engine, "jail", Vec::new());
    // A directory of the host, and the same path in the container.
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let outside_rel = outside.strip_prefix("/").unwrap().display().to_string();
    // `up` points far above /tmp, `abs` to the host directory's path: both
    // resolve inside the container, as they would for its processes.
    let tar = LayerBuilder::new()
        .symlink("up", "../../../../../../../../../..")
        .file("up/escaped", b"no", 0o644)
        .symlink("abs", &outside.display().to_string())
        .finish();
    assert_eq!(
        put(&engine, "/containers/jail/archive?path=/tmp", tar).await,
        (200, String::new())
    );
    let up = upper(d.path(), &id);
    assert_eq!(std::fs::read(up.join("escaped")).unwrap(), b"no");
    assert!(!Path::new("/escaped").exists());

    let tar = LayerBuilder::new()
        .file(&format!("{outside_rel}/marker"), b"m", 0o644)
        .file("tmp/abs/inside", b"in", 0o644)
        .finish();
    assert_eq!(
        put(&engine, "/containers/jail/archive?path=/", tar).await,
        (200, String::new())
    );
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "a file was written on the host through a symlink"
    );
    assert_eq!(
        std::fs::read(up.join(&outside_rel).join("inside")).unwrap(),
        b"in"
    );
}

#[tokio::test]
async fn bad_requests_get_dockers_statuses_and_messages() {
    if !is_root() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let engine = engine(d.path());
    create(&engine, "errors", Vec::new());
    let tar = || LayerBuilder::new().file("f", b"f", 0o644).finish();

    let (status, message) = put(&engine, "/containers/nope/archive?path=/", tar()).await;
    assert_eq!(status, 404, "{message}");
    assert!(message.contains("No such container: nope"), "{message}");

    let (status, message) = put(&engine, "/containers/errors/archive", tar()).await;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("path cannot be empty"), "{message}");

    let (status, message) = put(&engine, "/containers/errors/archive?path=/missing", tar()).await;
    assert_eq!(status, 404, "{message}");
    assert!(
        message.contains("Could not find the file /missing"),
        "{message}"
    );

    let (status, message) = put(
        &engine,
        "/containers/errors/archive?path=/etc/passwd",
        tar(),
    )
    .await;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("not a directory"), "{message}");

    let (status, message) = put(
        &engine,
        "/containers/errors/archive?path=/",
        b"not a tar".repeat(200),
    )
    .await;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("invalid archive"), "{message}");

    // Docker's noOverwriteDirNonDir: a file over the directory /etc.
    let over = LayerBuilder::new().file("etc", b"x", 0o644).finish();
    let (status, message) = put(
        &engine,
        "/containers/errors/archive?path=/&noOverwriteDirNonDir=1",
        over,
    )
    .await;
    assert_eq!(status, 400, "{message}");
    assert!(
        message.contains("cannot overwrite directory etc"),
        "{message}"
    );
}

#[tokio::test]
async fn a_read_only_root_filesystem_is_refused_with_403() {
    if !is_root() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let engine = engine(d.path());
    let id = engine
        .create(
            Some("ro"),
            ContainerCreateBody {
                image: Some(IMAGE.into()),
                host_config: Some(HostConfig {
                    readonly_rootfs: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap();
    let tar = LayerBuilder::new().file("f", b"f", 0o644).finish();
    let (status, message) = put(&engine, "/containers/ro/archive?path=/tmp", tar).await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("read-only"), "{message}");
    assert!(!upper(d.path(), &id).join("tmp/f").exists());
}
