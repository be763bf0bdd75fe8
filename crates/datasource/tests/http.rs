//! The HTTP sources against servers on 127.0.0.1: EC2 (IMDSv2 token flow
//! enforced), GCE (Metadata-Flavor enforced), DigitalOcean, url and
//! cmdline; and the polling rules (first answer wins, hanging servers, the
//! timeout, 404 as "no user-data").

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::{black_hole, gzip, header, ok, options, serve, status};
use datasource::{fetch, Error, Source, UserData};

const TOKEN: &str = "AQAEAJ-token";

/// An IMDSv2 server: GETs without the session token get 401.
async fn ec2_server(user_data: Vec<u8>, token_puts: Arc<AtomicUsize>) -> String {
    serve(move |method, path, headers| {
        if path == "/latest/api/token" {
            if method != Method::PUT
                || header(headers, "X-aws-ec2-metadata-token-ttl-seconds").is_none()
            {
                return status(StatusCode::BAD_REQUEST);
            }
            token_puts.fetch_add(1, Ordering::SeqCst);
            return ok(TOKEN);
        }
        if header(headers, "X-aws-ec2-metadata-token") != Some(TOKEN) {
            return status(StatusCode::UNAUTHORIZED);
        }
        match path {
            "/latest/meta-data/" => ok("hostname\nlocal-hostname\npublic-keys/"),
            "/latest/user-data" => ok(user_data.clone()),
            "/latest/meta-data/hostname" => ok("ip-10-0-0-7.ec2.internal"),
            "/latest/meta-data/public-keys/" => ok("0=my-key\n1=other"),
            "/latest/meta-data/public-keys/0/openssh-key" => ok("ssh-ed25519 AAAAkey0 me@ec2\n"),
            "/latest/meta-data/public-keys/1/openssh-key" => ok("ssh-rsa AAAAkey1 other@ec2"),
            _ => status(StatusCode::NOT_FOUND),
        }
    })
    .await
}

#[tokio::test]
async fn ec2_imdsv2_gives_user_data_hostname_and_keys() {
    let puts = Arc::new(AtomicUsize::new(0));
    let base = ec2_server(
        b"#cloud-config\nrancher:\n  debug: true\n".to_vec(),
        puts.clone(),
    )
    .await;
    let fetched = fetch(
        &[Source::Ec2 { base_url: base }],
        &options(Duration::from_secs(10)),
    )
    .await
    .unwrap()
    .expect("ec2 answers");
    assert_eq!(
        fetched.user_data,
        Some(UserData::CloudConfig(
            "#cloud-config\nrancher:\n  debug: true\n".into()
        ))
    );
    assert_eq!(
        fetched.metadata.hostname.as_deref(),
        Some("ip-10-0-0-7.ec2.internal")
    );
    assert_eq!(
        fetched.metadata.public_keys,
        ["ssh-ed25519 AAAAkey0 me@ec2", "ssh-rsa AAAAkey1 other@ec2"]
    );
    assert_eq!(fetched.metadata.source, "ec2");
    assert_eq!(
        puts.load(Ordering::SeqCst),
        1,
        "one token for the whole read"
    );
}

#[tokio::test]
async fn ec2_refusing_the_token_is_reported_not_retried_forever() {
    // The token endpoint hands out a token the other endpoints do not accept.
    let base = serve(|_, path, _| match path {
        "/latest/api/token" => ok("stale"),
        _ => status(StatusCode::UNAUTHORIZED),
    })
    .await;
    let started = Instant::now();
    let err = fetch(
        &[Source::Ec2 { base_url: base }],
        &options(Duration::from_secs(20)),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = err.to_string();
    assert!(text.starts_with("no datasource answered: ec2: "), "{text}");
    assert!(text.contains("/latest/meta-data/ answered 401"), "{text}");
}

#[tokio::test]
async fn ec2_user_data_404_is_an_answer_without_user_data() {
    let base = serve(|method, path, _| match (method.as_str(), path) {
        ("PUT", "/latest/api/token") => ok(TOKEN),
        (_, "/latest/meta-data/") => ok("hostname"),
        (_, "/latest/meta-data/hostname") => ok("bare"),
        _ => status(StatusCode::NOT_FOUND),
    })
    .await;
    let fetched = fetch(
        &[Source::Ec2 { base_url: base }],
        &options(Duration::from_secs(10)),
    )
    .await
    .unwrap()
    .expect("ec2 answers");
    assert_eq!(fetched.user_data, None);
    assert_eq!(fetched.metadata.hostname.as_deref(), Some("bare"));
    assert!(fetched.metadata.public_keys.is_empty());
}

/// A GCE server: requests without `Metadata-Flavor: Google` get 403.
async fn gce_server(block_project_keys: bool) -> String {
    let script = gzip(b"#!/bin/sh\necho from gce\n");
    serve(move |_, path, headers| {
        if !path.starts_with("/computeMetadata/") {
            return status(StatusCode::NOT_FOUND);
        }
        if header(headers, "Metadata-Flavor") != Some("Google") {
            return status(StatusCode::FORBIDDEN);
        }
        match path
            .strip_prefix("/computeMetadata/v1/")
            .unwrap_or_default()
        {
            "instance/attributes/user-data" => ok(script.clone()),
            "instance/hostname" => ok("vm-1.c.project.internal"),
            "instance/attributes/ssh-keys" => ok("rancher:ssh-rsa AAAAinst rancher@host\n"),
            "instance/attributes/block-project-ssh-keys" if block_project_keys => ok("TRUE"),
            "project/attributes/ssh-keys" => {
                ok("alice:ssh-ed25519 AAAAproj alice\nbob:ssh-rsa AAAAbob bob\n")
            }
            _ => status(StatusCode::NOT_FOUND),
        }
    })
    .await
}

#[tokio::test]
async fn gce_gives_a_gzipped_script_hostname_and_instance_and_project_keys() {
    let base = gce_server(false).await;
    let fetched = fetch(
        &[Source::Gce { base_url: base }],
        &options(Duration::from_secs(10)),
    )
    .await
    .unwrap()
    .expect("gce answers");
    assert_eq!(
        fetched.user_data,
        Some(UserData::Script(b"#!/bin/sh\necho from gce\n".to_vec()))
    );
    assert_eq!(
        fetched.metadata.hostname.as_deref(),
        Some("vm-1.c.project.internal")
    );
    assert_eq!(
        fetched.metadata.public_keys,
        [
            "ssh-rsa AAAAinst rancher@host",
            "ssh-ed25519 AAAAproj alice",
            "ssh-rsa AAAAbob bob"
        ]
    );
}

#[tokio::test]
async fn metadata_services_of_other_clouds_are_absent_not_answers() {
    // A GCE-like service: 404 for everything EC2 and DigitalOcean ask.
    let gce = gce_server(false).await;
    let started = Instant::now();
    let got = fetch(
        &[
            Source::Ec2 {
                base_url: gce.clone(),
            },
            Source::DigitalOcean {
                base_url: gce.clone(),
            },
        ],
        &options(Duration::from_secs(20)),
    )
    .await
    .unwrap();
    assert!(got.is_none());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "absent sources stop polling"
    );
    let fetched = fetch(
        &[
            Source::Ec2 {
                base_url: gce.clone(),
            },
            Source::Gce { base_url: gce },
        ],
        &options(Duration::from_secs(20)),
    )
    .await
    .unwrap()
    .expect("gce answers");
    assert!(matches!(fetched.source, Source::Gce { .. }));
}

#[tokio::test]
async fn gce_blocked_project_keys_are_left_out() {
    let base = gce_server(true).await;
    let fetched = fetch(
        &[Source::Gce { base_url: base }],
        &options(Duration::from_secs(10)),
    )
    .await
    .unwrap()
    .expect("gce answers");
    assert_eq!(
        fetched.metadata.public_keys,
        ["ssh-rsa AAAAinst rancher@host"]
    );
}

const DO_METADATA: &str = r##"{
  "droplet_id": 2756294,
  "hostname": "sample-droplet",
  "user_data": "#compose\nweb:\n  image: nginx\n  restart: always\n",
  "public_keys": ["ssh-rsa AAAAdo me@do"],
  "region": "nyc3",
  "interfaces": {
    "public": [{
      "ipv4": {"ip_address": "104.131.20.105", "netmask": "255.255.192.0", "gateway": "104.131.0.1"},
      "ipv6": {"ip_address": "2604:A880:0800:0010:0000:0000:017D:2001", "cidr": 64, "gateway": "2604:A880:0800:0010:0000:0000:0000:0001"},
      "mac": "04:01:2a:0f:2a:01", "type": "public"}],
    "private": [{
      "ipv4": {"ip_address": "10.132.255.113", "netmask": "255.255.0.0", "gateway": "10.132.0.1"},
      "mac": "04:01:2a:0f:2a:02", "type": "private"}]
  },
  "dns": {"nameservers": ["2001:4860:4860::8844", "8.8.8.8"]}
}"##;

#[tokio::test]
async fn digitalocean_gives_compose_keys_and_network_and_saves_them() {
    let base = serve(|_, path, _| match path {
        "/metadata/v1.json" => ok(DO_METADATA),
        _ => status(StatusCode::NOT_FOUND),
    })
    .await;
    let fetched = fetch(
        &[Source::DigitalOcean { base_url: base }],
        &options(Duration::from_secs(10)),
    )
    .await
    .unwrap()
    .expect("digitalocean answers");
    let Some(UserData::CloudConfig(cc)) = &fetched.user_data else {
        panic!(
            "compose user-data should become a cloud-config: {:?}",
            fetched.user_data
        );
    };
    let doc: serde_json::Value = serde_norway::from_str(cc).unwrap();
    assert_eq!(doc["rancher"]["services"]["web"]["image"], "nginx");
    assert_eq!(fetched.metadata.hostname.as_deref(), Some("sample-droplet"));
    assert_eq!(fetched.metadata.public_keys, ["ssh-rsa AAAAdo me@do"]);

    let root = tempfile::tempdir().unwrap();
    datasource::save(root.path(), &fetched).unwrap();
    let conf = root.path().join("var/lib/rancher/conf");
    let boot: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(conf.join("cloud-config.d/boot.yml")).unwrap(),
    )
    .unwrap();
    assert_eq!(boot["rancher"]["services"]["web"]["restart"], "always");
    let network: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(conf.join("cloud-config.d/network.yml")).unwrap(),
    )
    .unwrap();
    let net = &network["rancher"]["network"];
    let public = &net["interfaces"]["mac=04:01:2a:0f:2a:01"];
    assert_eq!(public["addresses"][0], "104.131.20.105/18");
    assert_eq!(
        public["addresses"][1],
        "2604:A880:0800:0010:0000:0000:017D:2001/64"
    );
    assert_eq!(public["gateway"], "104.131.0.1");
    let private = &net["interfaces"]["mac=04:01:2a:0f:2a:02"];
    assert_eq!(private["addresses"][0], "10.132.255.113/16");
    assert!(
        private.get("gateway").is_none(),
        "only the public interface routes by default"
    );
    assert_eq!(net["dns"]["nameservers"][1], "8.8.8.8");
    let saved = datasource::load_metadata(root.path()).unwrap().unwrap();
    assert_eq!(saved.hostname.as_deref(), Some("sample-droplet"));
    assert_eq!(saved.source, "digitalocean");
    assert_eq!(
        saved.network, None,
        "the network config lives in network.yml"
    );
}

#[tokio::test]
async fn url_and_cmdline_fetch_their_url() {
    let base = serve(|_, path, _| match path {
        "/user-data" => ok("#cloud-config\nhostname: from-url\n"),
        _ => status(StatusCode::NOT_FOUND),
    })
    .await;
    let url = format!("{base}/user-data");
    let fetched = fetch(
        &[Source::Url(url.clone())],
        &options(Duration::from_secs(10)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        fetched.user_data,
        Some(UserData::CloudConfig(
            "#cloud-config\nhostname: from-url\n".into()
        ))
    );
    let opts = options(Duration::from_secs(10))
        .with_cmdline(format!("console=ttyS0 cloud-config-url={url} quiet"));
    let fetched = fetch(&[Source::Cmdline], &opts).await.unwrap().unwrap();
    assert_eq!(fetched.source, Source::Cmdline);
    assert!(fetched.user_data.is_some());

    let missing = fetch(
        &[Source::Url(format!("{base}/nothing"))],
        &options(Duration::from_secs(10)),
    )
    .await
    .unwrap()
    .expect("a 404 is an answer");
    assert_eq!(missing.user_data, None);
}

#[tokio::test]
async fn a_server_that_is_down_at_first_is_retried() {
    // Reserve a port, close it (connection refused), and serve on it later.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let app = axum::Router::new().fallback(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { "#cloud-config\nhostname: late\n" }
        });
        axum::serve(listener, app).await
    });
    let fetched = fetch(
        &[Source::Url(format!("http://{addr}/ud"))],
        &options(Duration::from_secs(10)),
    )
    .await
    .unwrap()
    .expect("answers once the server is up");
    assert!(fetched.user_data.is_some());
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_hanging_source_does_not_keep_the_others_from_winning() {
    let hole = black_hole().await;
    let good = serve(|_, _, _| ok("#cloud-config\nhostname: good\n")).await;
    let started = Instant::now();
    let fetched = fetch(
        &[
            Source::Ec2 {
                base_url: hole.clone(),
            },
            Source::Url(format!("{hole}/user-data")),
            Source::Url(format!("{good}/user-data")),
        ],
        &options(Duration::from_secs(30)),
    )
    .await
    .unwrap()
    .expect("the good server answers");
    assert_eq!(fetched.source, Source::Url(format!("{good}/user-data")));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn when_every_source_hangs_fetch_returns_after_the_timeout() {
    let hole = black_hole().await;
    let started = Instant::now();
    let got = fetch(
        &[
            Source::Ec2 {
                base_url: hole.clone(),
            },
            Source::Gce {
                base_url: hole.clone(),
            },
            Source::DigitalOcean {
                base_url: hole.clone(),
            },
        ],
        &options(Duration::from_secs(2)),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(got.is_none());
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "took {took:?}"
    );
}

#[tokio::test]
async fn bad_user_data_is_reported_by_source_and_another_source_may_still_win() {
    let bad = serve(|_, _, _| ok("just some text\n")).await;
    let bad_url = format!("{bad}/user-data");
    let err = fetch(
        &[Source::Url(bad_url.clone())],
        &options(Duration::from_secs(10)),
    )
    .await
    .unwrap_err();
    assert!(matches!(&err, Error::NoAnswer(list) if list.len() == 1));
    assert_eq!(
        err.to_string(),
        format!(
            "no datasource answered: user-data from url:{bad_url} is not #cloud-config, \
             a #! script or #compose (it starts with \"just some text\")"
        )
    );

    let late = serve(|_, _, _| {
        std::thread::sleep(Duration::from_millis(300));
        ok("#cloud-config\n")
    })
    .await;
    let fetched = fetch(
        &[Source::Url(bad_url), Source::Url(format!("{late}/ud"))],
        &options(Duration::from_secs(10)),
    )
    .await
    .unwrap()
    .expect("the good source wins");
    assert_eq!(fetched.source, Source::Url(format!("{late}/ud")));
}
