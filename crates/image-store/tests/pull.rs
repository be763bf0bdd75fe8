//! `pull` against a real registry: Debian's `docker-registry` on 127.0.0.1,
//! filled with testkit images by `skopeo`.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use image_store::{Error, ImageStore, PullOptions, PullProgress, Removed};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use testkit::{DockerArchive, LayerBuilder, TestImage};

/// A running registry; killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const USER: &str = "tester";
const PASSWORD: &str = "s3cret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    fn start(with_auth: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if with_auth {
            let hash = bcrypt::hash_with_result(PASSWORD, 4)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoA);
            std::fs::write(dir.path().join("htpasswd"), format!("{USER}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let reg = Registry {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes `image` as `repo:tag` with skopeo.
    fn push(&self, image: &TestImage, name: &str, creds: bool) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("image.tar");
        testkit::write_file(&file, &DockerArchive::new().image(image, &[]).build()).unwrap();
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "copy",
            "--insecure-policy",
            "--quiet",
            "--dest-tls-verify=false",
        ]);
        if creds {
            cmd.arg(format!("--dest-creds={USER}:{PASSWORD}"));
        }
        let status = cmd
            .arg(format!("docker-archive:{}", file.display()))
            .arg(format!("docker://{}/{name}", self.host()))
            .status()
            .expect("skopeo must be installed");
        assert!(status.success(), "skopeo copy failed");
    }
}

fn store(dir: &Path) -> ImageStore {
    ImageStore::open(&dir.join("image")).unwrap()
}

async fn pull(
    s: &ImageStore,
    name: &str,
    opts: &PullOptions,
) -> (Result<image_store::Image, Error>, Vec<PullProgress>) {
    let mut events = Vec::new();
    let r = s.pull(name, opts, &mut |p| events.push(p)).await;
    (r, events)
}

fn statuses(events: &[PullProgress]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            PullProgress::Status(s) => s.clone(),
            PullProgress::Layer { status, .. } => status.clone(),
        })
        .collect()
}

#[tokio::test]
async fn pulls_from_a_plain_http_registry_on_localhost() {
    let reg = Registry::start(false);
    let extra = LayerBuilder::new()
        .file("hello.txt", b"hello\n", 0o644)
        .whiteout("etc/group")
        .finish();
    let image = TestImage::busybox()
        .layer(extra)
        .cmd(&["cat", "/hello.txt"]);
    reg.push(&image, "busybox:latest", false);

    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let name = format!("{}/busybox", reg.host());
    let (img, events) = pull(&s, &name, &PullOptions::default()).await;
    let img = img.unwrap();
    assert_eq!(
        img.id,
        image.id(),
        "config bytes are kept, so the id is the same"
    );
    assert_eq!(
        img.repo_tags,
        vec![format!("{}/busybox:latest", reg.host())]
    );
    assert_eq!(img.repo_digests.len(), 1);
    assert!(img.repo_digests[0].starts_with(&format!("{}/busybox@sha256:", reg.host())));
    assert_eq!(
        img.config.config.cmd,
        Some(vec!["cat".into(), "/hello.txt".into()])
    );
    let layers = s.layer_paths(&img.id).unwrap();
    assert_eq!(layers.len(), 2);
    assert!(layers[0].join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read(layers[1].join("hello.txt")).unwrap(),
        b"hello\n"
    );
    let st = statuses(&events);
    assert!(st.contains(&"Download complete".to_string()), "{st:?}");
    assert!(st.contains(&"Pull complete".to_string()), "{st:?}");
    assert!(events.iter().any(|e| matches!(e,
        PullProgress::Layer { status, current, total: Some(t), .. }
            if status == "Download complete" && current == t && *t > 500_000)));
    assert!(st.contains(&format!(
        "Status: Downloaded newer image for {}/busybox:latest",
        reg.host()
    )));
    assert!(st.iter().any(|s| s.starts_with("Digest: sha256:")));

    // Again: nothing to download.
    let (again, events) = pull(&s, &name, &PullOptions::default()).await;
    assert_eq!(again.unwrap().id, image.id());
    let st = statuses(&events);
    assert_eq!(
        st.iter().filter(|s| *s == "Already exists").count(),
        2,
        "{st:?}"
    );
    assert!(!st.contains(&"Download complete".to_string()));
    assert!(st.contains(&format!(
        "Status: Image is up to date for {}/busybox:latest",
        reg.host()
    )));

    // Pull by digest.
    let by_digest = img.repo_digests[0].clone();
    let (d, _) = pull(&s, &by_digest, &PullOptions::default()).await;
    assert_eq!(d.unwrap().id, image.id());

    // An unknown tag fails and changes nothing.
    let before = s.list().unwrap().len();
    let (missing, _) = pull(
        &s,
        &format!("{}/busybox:nope", reg.host()),
        &PullOptions::default(),
    )
    .await;
    assert!(
        matches!(missing, Err(Error::Registry { .. })),
        "{missing:?}"
    );
    assert_eq!(s.list().unwrap().len(), before);
    let staging = dir.path().join("image/staging");
    assert_eq!(std::fs::read_dir(staging).unwrap().count(), 0);

    // Removing the last tag takes the repository's digest reference along.
    let removed = s.remove(&name, false, &|_| false).unwrap();
    assert_eq!(
        removed,
        vec![
            Removed::Untagged(format!("{}/busybox:latest", reg.host())),
            Removed::Untagged(img.repo_digests[0].clone()),
            Removed::Deleted(img.id.clone()),
        ]
    );
    assert!(matches!(s.get(&by_digest), Err(Error::NotFound(_))));
}

#[tokio::test]
async fn picks_linux_amd64_from_a_multi_platform_index() {
    let reg = Registry::start(false);
    let amd64 = TestImage::busybox().comment("amd64");
    let arm64 = TestImage::busybox().comment("arm64");
    reg.push(&amd64, "multi:amd64", false);
    reg.push(&arm64, "multi:arm64", false);

    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let mut descs = Vec::new();
    for (tag, arch) in [("arm64", "arm64"), ("amd64", "amd64")] {
        let r: oci_client::Reference = format!("{}/multi:{tag}", reg.host()).parse().unwrap();
        let (bytes, digest) = client
            .pull_manifest_raw(
                &r,
                &RegistryAuth::Anonymous,
                &["application/vnd.docker.distribution.manifest.v2+json"],
            )
            .await
            .unwrap();
        let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        descs.push(serde_json::json!({
            "mediaType": m["mediaType"], "digest": digest, "size": bytes.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": descs,
    }))
    .unwrap();
    let r: oci_client::Reference = format!("{}/multi:latest", reg.host()).parse().unwrap();
    client
        .auth(
            &r,
            &RegistryAuth::Anonymous,
            oci_client::RegistryOperation::Push,
        )
        .await
        .unwrap();
    client
        .push_manifest_raw(
            &r,
            index,
            "application/vnd.docker.distribution.manifest.list.v2+json"
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let (img, _) = pull(
        &s,
        &format!("{}/multi", reg.host()),
        &PullOptions::default(),
    )
    .await;
    assert_eq!(img.unwrap().id, amd64.id());
}

#[tokio::test]
async fn pulls_with_basic_auth() {
    let reg = Registry::start(true);
    let image = TestImage::busybox().comment("auth");
    reg.push(&image, "private/bb:1", true);

    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let name = format!("{}/private/bb:1", reg.host());
    let (anon, _) = pull(&s, &name, &PullOptions::default()).await;
    assert!(matches!(anon, Err(Error::Registry { .. })), "{anon:?}");
    let wrong = PullOptions {
        auth: Some((USER.into(), "wrong".into())),
        ..Default::default()
    };
    let (bad, _) = pull(&s, &name, &wrong).await;
    assert!(matches!(bad, Err(Error::Registry { .. })), "{bad:?}");
    assert!(s.list().unwrap().is_empty());

    let good = PullOptions {
        auth: Some((USER.into(), PASSWORD.into())),
        ..Default::default()
    };
    let (img, _) = pull(&s, &name, &good).await;
    assert_eq!(img.unwrap().id, image.id());
}
