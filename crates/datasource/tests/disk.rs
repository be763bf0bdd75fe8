//! The local sources: config drive and NoCloud as directories, and as real
//! ISO and FAT images on loop devices found by their label; `file:`.
//!
//! The device tests need root, losetup, blkid, xorriso, mkfs.vfat and mtools
//! (`cargo xtask test` installs them); without them they print why and skip.
//! They run one at a time: several devices with the label config-2 at once
//! would make "the device labelled config-2" ambiguous.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::sync::Mutex;

use common::{gzip, options};
use datasource::{fetch, FetchOptions, Source, UserData};
use serde_json::json;

static DEVICES: Mutex<()> = Mutex::const_new(());

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

/// A config drive tree: openstack/latest/{user_data, meta_data.json,
/// network_data.json}.
fn configdrive_tree(dir: &Path) {
    let latest = dir.join("openstack/latest");
    std::fs::create_dir_all(&latest).unwrap();
    std::fs::write(latest.join("user_data"), USER_DATA).unwrap();
    std::fs::write(latest.join("meta_data.json"), META_DATA_JSON).unwrap();
    std::fs::write(latest.join("network_data.json"), NETWORK_DATA_JSON).unwrap();
}

/// A NoCloud seed: gzipped compose user-data, meta-data, network-config v1.
fn nocloud_tree(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("user-data"),
        gzip(b"#compose\nhello:\n  image: busybox\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("meta-data"),
        "instance-id: iid-local01\nlocal-hostname: seed-host\npublic-keys:\n  - ssh-ed25519 AAAAseed me@seed\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("network-config"),
        "version: 1\nconfig:\n  - type: physical\n    name: eth0\n    subnets:\n      - type: dhcp\n",
    )
    .unwrap();
}

fn assert_configdrive(fetched: &datasource::Fetched) {
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

fn assert_nocloud(fetched: &datasource::Fetched) {
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

#[tokio::test]
async fn configdrive_directory() {
    let dir = tempfile::tempdir().unwrap();
    configdrive_tree(dir.path());
    let source = Source::ConfigDrive {
        path: Some(dir.path().to_owned()),
    };
    let fetched = fetch(&[source], &options(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("the directory answers");
    assert_configdrive(&fetched);
}

#[tokio::test]
async fn nocloud_directory() {
    let dir = tempfile::tempdir().unwrap();
    nocloud_tree(dir.path());
    let source = Source::NoCloud {
        path: Some(dir.path().to_owned()),
    };
    let fetched = fetch(&[source], &options(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("the directory answers");
    assert_nocloud(&fetched);
}

#[tokio::test]
async fn file_appearing_later_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user-data");
    let writer = {
        let path = path.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            std::fs::write(path, "#!/bin/sh\necho hi\n").unwrap();
        }
    };
    let sources = [Source::File(path.clone())];
    let opts = options(Duration::from_secs(10));
    let (fetched, ()) = tokio::join!(fetch(&sources, &opts), writer);
    let fetched = fetched.unwrap().expect("the file answers once written");
    assert_eq!(
        fetched.user_data,
        Some(UserData::Script(b"#!/bin/sh\necho hi\n".to_vec()))
    );
}

#[tokio::test]
async fn missing_config_drive_gives_nothing_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let source = Source::ConfigDrive {
        path: Some(dir.path().join("not-there")),
    };
    let got = fetch(&[source], &options(Duration::from_millis(500)))
        .await
        .unwrap();
    assert!(got.is_none());
}

/// Why the device tests cannot run here, if they cannot.
fn device_tests_unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    for tool in [
        "losetup",
        "blkid",
        "xorriso",
        "mkfs.vfat",
        "mcopy",
        "mkfs.ext4",
    ] {
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

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A read-only loop device over an image, detached on drop.
struct Loop(PathBuf);

impl Loop {
    fn attach(image: &Path) -> Loop {
        let out = Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .arg(image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn iso(tree: &Path, label: &str, image: &Path) {
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-J", "-R", "-V", label, "-o"])
        .arg(image)
        .arg(tree));
}

fn fat(tree: &Path, label: &str, image: &Path) {
    run(Command::new("mkfs.vfat")
        .args(["-n", label, "-C"])
        .arg(image)
        .arg("4096"));
    for entry in std::fs::read_dir(tree).unwrap() {
        run(Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-s", "-i"])
            .arg(image)
            .arg(entry.unwrap().path())
            .arg("::/"));
    }
}

fn ext4(tree: &Path, label: &str, image: &Path) {
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", label, "-d"])
        .arg(tree)
        .arg(image)
        .arg("8M"));
}

/// Options that find devices with blkid only (no udev links here).
fn scanning(timeout: Duration) -> FetchOptions {
    let mut options = options(timeout);
    options.scan_labels = true;
    options
}

/// Whether a temporary datasource mount is still there.
fn leftover_mount() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains("oxos-datasource-")
}

/// Whether the running kernel can mount `fstype` (no module loading here).
fn kernel_supports(fstype: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some(fstype))
}

/// Checks a fetch from a device holding `fstype`: the full read, by a
/// mount when the kernel has the filesystem, else in user space (ISO 9660
/// and FAT); and that no temporary mount is left behind.
fn check_device_fetch(
    fstype: &str,
    device: &Path,
    got: datasource::Result<Option<datasource::Fetched>>,
    check: fn(&datasource::Fetched),
) {
    let fetched = got
        .unwrap_or_else(|e| panic!("{} ({fstype}) should answer: {e}", device.display()))
        .expect("the device answers");
    check(&fetched);
    if !kernel_supports(fstype) {
        eprintln!("the kernel has no {fstype}: the device was read in user space");
    }
    assert!(
        !leftover_mount(),
        "the device must be unmounted after the read"
    );
}

#[tokio::test]
async fn configdrive_iso_is_found_by_label_and_read() {
    if let Some(why) = device_tests_unavailable() {
        eprintln!("skipping configdrive_iso_is_found_by_label_and_read: {why}");
        return;
    }
    let _serial = DEVICES.lock().await;
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    configdrive_tree(&tree);
    let image = work.path().join("config-2.iso");
    iso(&tree, "config-2", &image);
    let device = Loop::attach(&image);
    // The configured path does not exist, so the device is used.
    let source = Source::ConfigDrive {
        path: Some(work.path().join("media/config-2")),
    };
    let got = fetch(&[source], &scanning(Duration::from_secs(20))).await;
    check_device_fetch("iso9660", &device.0, got, assert_configdrive);
}

#[tokio::test]
async fn configdrive_fat_is_found_through_a_by_label_link() {
    if let Some(why) = device_tests_unavailable() {
        eprintln!("skipping configdrive_fat_is_found_through_a_by_label_link: {why}");
        return;
    }
    let _serial = DEVICES.lock().await;
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    configdrive_tree(&tree);
    let image = work.path().join("config-2.img");
    fat(&tree, "CONFIG-2", &image);
    let device = Loop::attach(&image);
    let by_label = work.path().join("by-label");
    std::fs::create_dir(&by_label).unwrap();
    let link = by_label.join("CONFIG-2");
    std::os::unix::fs::symlink(&device.0, &link).unwrap();
    let mut opts = options(Duration::from_secs(20));
    opts.by_label_dir = by_label;
    let got = fetch(&[Source::ConfigDrive { path: None }], &opts).await;
    check_device_fetch("vfat", &link, got, assert_configdrive);
}

#[tokio::test]
async fn configdrive_on_ext4_is_mounted_with_the_type_blkid_reports() {
    if let Some(why) = device_tests_unavailable() {
        eprintln!("skipping configdrive_on_ext4_is_mounted_with_the_type_blkid_reports: {why}");
        return;
    }
    let _serial = DEVICES.lock().await;
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    configdrive_tree(&tree);
    let image = work.path().join("config-2.ext4");
    ext4(&tree, "config-2", &image);
    let device = Loop::attach(&image);
    let sources = [Source::ConfigDrive { path: None }];
    let got = fetch(&sources, &scanning(Duration::from_secs(20))).await;
    check_device_fetch("ext4", &device.0, got, assert_configdrive);
}

#[tokio::test]
async fn nocloud_attached_later_is_found_by_label() {
    if let Some(why) = device_tests_unavailable() {
        eprintln!("skipping nocloud_attached_later_is_found_by_label: {why}");
        return;
    }
    let _serial = DEVICES.lock().await;
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    nocloud_tree(&tree);
    // ext4, so that the read itself is exercised also on kernels without
    // iso9660 and vfat.
    let image = work.path().join("cidata.img");
    ext4(&tree, "cidata", &image);
    let attach = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Loop::attach(&image)
    };
    let sources = [Source::NoCloud { path: None }];
    let opts = scanning(Duration::from_secs(20));
    let (got, device) = tokio::join!(fetch(&sources, &opts), attach);
    check_device_fetch("ext4", &device.0, got, assert_nocloud);
}

#[tokio::test]
async fn nocloud_fat_cidata_is_found_by_label() {
    if let Some(why) = device_tests_unavailable() {
        eprintln!("skipping nocloud_fat_cidata_is_found_by_label: {why}");
        return;
    }
    let _serial = DEVICES.lock().await;
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    nocloud_tree(&tree);
    let image = work.path().join("cidata.img");
    fat(&tree, "CIDATA", &image);
    let device = Loop::attach(&image);
    let sources = [Source::NoCloud { path: None }];
    let got = fetch(&sources, &scanning(Duration::from_secs(20))).await;
    check_device_fetch("vfat", &device.0, got, assert_nocloud);
}
