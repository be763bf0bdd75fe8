//! Config drives and NoCloud seeds read in user space: real ISO 9660
//! (Rock Ridge and Joliet) and FAT images, as plain image files that the
//! by-label link points at (an image file is never mounted: it would need
//! a loop device). No root needed; xorriso, mkfs.vfat and mtools are.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{gzip, options};
use datasource::{fetch, Fetched, Source, UserData};
use serde_json::json;

const USER_DATA: &str = "#cloud-config\nhostname: from-user-data\n";
const META_DATA_JSON: &str = r#"{"uuid": "83679162-1378-4288-a2d4-70e13ec132aa",
  "hostname": "drive-host", "name": "drive-name",
  "public_keys": {"mykey": "ssh-rsa AAAAdrive me@drive\n"}}"#;
const NETWORK_DATA_JSON: &str = r#"{
  "links": [{"id": "tap0", "type": "phy", "ethernet_mac_address": "fa:16:3e:9c:bf:3d", "mtu": 1500}],
  "networks": [{"id": "network0", "type": "ipv4", "link": "tap0", "ip_address": "10.0.0.5",
                "netmask": "255.255.255.0",
                "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}]}],
  "services": [{"type": "dns", "address": "10.0.0.2"}]}"#;
const META_DATA_YAML: &str = "instance-id: iid-local01\nlocal-hostname: seed-host\npublic-keys:\n  - ssh-ed25519 AAAAseed me@seed\n";
const NETWORK_CONFIG: &str =
    "version: 1\nconfig:\n  - type: physical\n    name: eth0\n    subnets:\n      - type: dhcp\n";

/// Why these tests cannot run here, if they cannot.
fn tools_missing() -> Option<String> {
    for tool in ["xorriso", "mkfs.vfat", "mcopy"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

macro_rules! need_tools {
    () => {
        if let Some(why) = tools_missing() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `files` (relative path, content) under `dir`.
fn tree(dir: &Path, files: &[(&str, &[u8])]) {
    for (rel, data) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
}

fn iso(tree: &Path, label: &str, image: &Path, extra: &[&str]) {
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet"])
        .args(extra)
        .args(["-V", label, "-o"])
        .arg(image)
        .arg(tree));
}

fn fat(tree: &Path, label: &str, image: &Path, size_kib: &str, extra: &[&str]) {
    run(Command::new("mkfs.vfat")
        .args(extra)
        .args(["-n", label, "-C"])
        .arg(image)
        .arg(size_kib));
    for entry in std::fs::read_dir(tree).unwrap() {
        run(Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-s", "-i"])
            .arg(image)
            .arg(entry.unwrap().path())
            .arg("::/"));
    }
}

/// A test's work directory with a by-label directory whose `label` link
/// points at an image file built by `make` from the tree of `files`.
struct Drive {
    work: tempfile::TempDir,
    image: PathBuf,
}

impl Drive {
    fn new(label: &str, files: &[(&str, &[u8])], make: impl FnOnce(&Path, &Path)) -> Drive {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("tree");
        std::fs::create_dir(&dir).unwrap();
        tree(&dir, files);
        let image = work.path().join("drive.img");
        make(&dir, &image);
        let by_label = work.path().join("by-label");
        std::fs::create_dir(&by_label).unwrap();
        std::os::unix::fs::symlink(&image, by_label.join(label)).unwrap();
        Drive { work, image }
    }

    async fn fetch(&self, source: Source) -> datasource::Result<Option<Fetched>> {
        let mut opts = options(Duration::from_secs(10));
        opts.by_label_dir = self.work.path().join("by-label");
        fetch(&[source], &opts).await
    }
}

fn configdrive_files() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("openstack/latest/user_data", USER_DATA.as_bytes()),
        ("openstack/latest/meta_data.json", META_DATA_JSON.as_bytes()),
        (
            "openstack/latest/network_data.json",
            NETWORK_DATA_JSON.as_bytes(),
        ),
    ]
}

fn assert_configdrive(fetched: &Fetched) {
    assert_eq!(
        fetched.user_data,
        Some(UserData::CloudConfig(USER_DATA.into()))
    );
    assert_eq!(fetched.metadata.hostname.as_deref(), Some("drive-host"));
    assert_eq!(fetched.metadata.public_keys, ["ssh-rsa AAAAdrive me@drive"]);
    assert_eq!(
        fetched.metadata.network,
        Some(json!({
            "interfaces": {"mac=fa:16:3e:9c:bf:3d": {
                "mtu": 1500, "addresses": ["10.0.0.5/24"], "gateway": "10.0.0.1"}},
            "dns": {"nameservers": ["10.0.0.2"]}
        }))
    );
}

fn assert_nocloud(fetched: &Fetched) {
    let Some(UserData::CloudConfig(cc)) = &fetched.user_data else {
        panic!(
            "gzipped compose should become a cloud-config: {:?}",
            fetched.user_data
        );
    };
    assert!(
        cc.contains("services:") && cc.contains("image: busybox"),
        "{cc}"
    );
    assert_eq!(fetched.metadata.hostname.as_deref(), Some("seed-host"));
    assert_eq!(
        fetched.metadata.public_keys,
        ["ssh-ed25519 AAAAseed me@seed"]
    );
    assert_eq!(
        fetched.metadata.network,
        Some(json!({"interfaces": {"eth0": {"dhcp": true}}}))
    );
}

fn configdrive() -> Source {
    Source::ConfigDrive { path: None }
}

fn nocloud() -> Source {
    Source::NoCloud { path: None }
}

async fn configdrive_iso_with(extra: &[&str]) {
    let drive = Drive::new("config-2", &configdrive_files(), |t, i| {
        iso(t, "config-2", i, extra)
    });
    let fetched = drive.fetch(configdrive()).await.unwrap().expect("answers");
    assert_configdrive(&fetched);
}

#[tokio::test]
async fn configdrive_iso_with_rock_ridge_and_joliet() {
    need_tools!();
    configdrive_iso_with(&["-J", "-R"]).await;
}

#[tokio::test]
async fn configdrive_iso_with_rock_ridge_only() {
    need_tools!();
    configdrive_iso_with(&["-R"]).await;
}

#[tokio::test]
async fn configdrive_iso_with_joliet_only() {
    need_tools!();
    configdrive_iso_with(&["-J"]).await;
}

#[tokio::test]
async fn configdrive_iso_with_only_meta_data() {
    need_tools!();
    let drive = Drive::new(
        "config-2",
        &[("openstack/latest/meta_data.json", META_DATA_JSON.as_bytes())],
        |t, i| iso(t, "config-2", i, &["-J", "-R"]),
    );
    let fetched = drive.fetch(configdrive()).await.unwrap().expect("answers");
    assert_eq!(fetched.user_data, None);
    assert_eq!(fetched.metadata.hostname.as_deref(), Some("drive-host"));
    assert_eq!(fetched.metadata.public_keys, ["ssh-rsa AAAAdrive me@drive"]);
    assert_eq!(fetched.metadata.network, None);
}

#[tokio::test]
async fn configdrive_iso_files_in_a_deep_big_tree_are_found() {
    need_tools!();
    // Many entries spread the directories over several sectors and long
    // names push Rock Ridge names into continuation areas.
    let long = "n".repeat(200);
    let mut names = Vec::new();
    for i in 0..150 {
        names.push(format!("openstack/latest/{long}-{i}"));
        names.push(format!("openstack/2012-08-10/file-{i}"));
    }
    let mut files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    files.extend(configdrive_files());
    let drive = Drive::new("config-2", &files, |t, i| {
        iso(t, "config-2", i, &["-J", "-R", "-joliet-long"])
    });
    let fetched = drive.fetch(configdrive()).await.unwrap().expect("answers");
    assert_configdrive(&fetched);
}

#[tokio::test]
async fn configdrive_fat_image() {
    need_tools!();
    let drive = Drive::new("CONFIG-2", &configdrive_files(), |t, i| {
        fat(t, "CONFIG-2", i, "4096", &[])
    });
    let fetched = drive.fetch(configdrive()).await.unwrap().expect("answers");
    assert_configdrive(&fetched);
}

#[tokio::test]
async fn configdrive_fat32_image() {
    need_tools!();
    let drive = Drive::new("CONFIG-2", &configdrive_files(), |t, i| {
        fat(t, "CONFIG-2", i, "40000", &["-F", "32"])
    });
    let fetched = drive.fetch(configdrive()).await.unwrap().expect("answers");
    assert_configdrive(&fetched);
}

fn nocloud_files(user_data: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("user-data", user_data.to_vec()),
        ("meta-data", META_DATA_YAML.as_bytes().to_vec()),
        ("network-config", NETWORK_CONFIG.as_bytes().to_vec()),
    ]
}

fn borrowed<'a>(files: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'static str, &'a [u8])> {
    files.iter().map(|(n, d)| (*n, d.as_slice())).collect()
}

#[tokio::test]
async fn nocloud_fat_with_gzip_user_data() {
    need_tools!();
    let files = nocloud_files(&gzip(b"#compose\nhello:\n  image: busybox\n"));
    let drive = Drive::new("CIDATA", &borrowed(&files), |t, i| {
        fat(t, "CIDATA", i, "4096", &[])
    });
    let fetched = drive.fetch(nocloud()).await.unwrap().expect("answers");
    assert_nocloud(&fetched);
}

#[tokio::test]
async fn nocloud_iso_with_gzip_user_data() {
    need_tools!();
    let files = nocloud_files(&gzip(b"#compose\nhello:\n  image: busybox\n"));
    let drive = Drive::new("cidata", &borrowed(&files), |t, i| {
        iso(t, "cidata", i, &["-J", "-R"])
    });
    let fetched = drive.fetch(nocloud()).await.unwrap().expect("answers");
    assert_nocloud(&fetched);
}

#[tokio::test]
async fn nocloud_fat_without_meta_data_answers_with_user_data_only() {
    need_tools!();
    let drive = Drive::new("CIDATA", &[("user-data", USER_DATA.as_bytes())], |t, i| {
        fat(t, "CIDATA", i, "4096", &[])
    });
    let fetched = drive.fetch(nocloud()).await.unwrap().expect("answers");
    assert_eq!(
        fetched.user_data,
        Some(UserData::CloudConfig(USER_DATA.into()))
    );
    assert_eq!(fetched.metadata.hostname, None);
    assert!(fetched.metadata.public_keys.is_empty());
    assert_eq!(fetched.metadata.network, None);
}

#[tokio::test]
async fn invalid_meta_data_on_an_iso_names_the_device_and_the_file() {
    need_tools!();
    let drive = Drive::new(
        "config-2",
        &[("openstack/latest/meta_data.json", b"{not json")],
        |t, i| iso(t, "config-2", i, &["-J", "-R"]),
    );
    let err = drive.fetch(configdrive()).await.unwrap_err().to_string();
    let label = drive.work.path().join("by-label/config-2");
    assert!(
        err.contains(&format!(
            "{}:/openstack/latest/meta_data.json",
            label.display()
        )),
        "{err}"
    );
    assert!(err.contains("metadata from configdrive"), "{err}");
}

/// Fetching from a damaged drive fails at once with an error naming the
/// device, and never hangs until the timeout or panics.
async fn assert_corrupt(drive: &Drive, source: Source, label: &str, expect: &str) {
    let started = std::time::Instant::now();
    let err = drive.fetch(source).await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(5), "took too long");
    let device = drive.work.path().join("by-label").join(label);
    assert!(
        err.contains(&format!("failed to read {}", device.display())),
        "{err}"
    );
    assert!(err.contains(expect), "{err}");
}

#[tokio::test]
async fn truncated_iso_is_a_clear_error() {
    need_tools!();
    let drive = Drive::new("config-2", &configdrive_files(), |t, i| {
        iso(t, "config-2", i, &["-J", "-R"])
    });
    // Keep the volume descriptors, lose the directories and files.
    let data = std::fs::read(&drive.image).unwrap();
    std::fs::write(&drive.image, &data[..20 * 2048]).unwrap();
    assert_corrupt(&drive, configdrive(), "config-2", "past the end").await;
}

#[tokio::test]
async fn iso_with_garbage_directories_is_a_clear_error() {
    need_tools!();
    let drive = Drive::new("config-2", &configdrive_files(), |t, i| {
        iso(t, "config-2", i, &["-J", "-R"])
    });
    // Overwrite everything after the volume descriptors with a pattern
    // that makes every directory record claim more than it has.
    let mut data = std::fs::read(&drive.image).unwrap();
    let start = 20 * 2048;
    for (i, b) in data[start..].iter_mut().enumerate() {
        *b = if i % 7 == 0 { 0xff } else { (i * 31) as u8 };
    }
    std::fs::write(&drive.image, &data).unwrap();
    let started = std::time::Instant::now();
    // Whatever the garbage says, the answer is an error or an answer
    // without the files, quickly, and no panic.
    match drive.fetch(configdrive()).await {
        Ok(Some(fetched)) => assert_eq!(fetched.user_data, None),
        Ok(None) => panic!("a damaged drive must not leave the fetch waiting"),
        Err(e) => assert!(e.to_string().contains("failed to read"), "{e}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn garbage_image_is_neither_iso_nor_fat() {
    let drive = Drive::new("config-2", &[], |_, image| {
        let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7 + i / 13) as u8).collect();
        std::fs::write(image, data).unwrap();
    });
    assert_corrupt(
        &drive,
        configdrive(),
        "config-2",
        "neither an ISO 9660 nor a FAT file system",
    )
    .await;
}

#[tokio::test]
async fn fat_with_a_damaged_boot_sector_is_a_clear_error() {
    need_tools!();
    let drive = Drive::new("CIDATA", &[("user-data", USER_DATA.as_bytes())], |t, i| {
        fat(t, "CIDATA", i, "4096", &[])
    });
    let mut data = std::fs::read(&drive.image).unwrap();
    // Bytes per sector (offset 11) of 0 is no valid FAT.
    data[11] = 0;
    data[12] = 0;
    std::fs::write(&drive.image, &data).unwrap();
    assert_corrupt(&drive, nocloud(), "CIDATA", "FAT").await;
}

#[tokio::test]
async fn empty_image_file_is_a_clear_error() {
    let drive = Drive::new("CIDATA", &[], |_, image| {
        std::fs::write(image, b"").unwrap();
    });
    assert_corrupt(&drive, nocloud(), "CIDATA", "neither an ISO 9660 nor a FAT").await;
}
