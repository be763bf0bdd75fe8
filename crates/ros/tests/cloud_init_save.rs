//! `ros cloud-init-save` as boot runs it: user-data from a datasource lands
//! in the config layers, and `ros config` sees it.

use std::path::Path;
use std::process::{Command, Output};

fn ros(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ros"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("ROS_ROOT")
        .output()
        .expect("cannot run ros")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn a_config_drive_directory_fills_the_boot_layer_and_metadata() {
    let root = tempfile::tempdir().unwrap();
    let drive = root.path().join("media/config-2");
    let latest = drive.join("openstack/latest");
    std::fs::create_dir_all(&latest).unwrap();
    std::fs::write(
        latest.join("user_data"),
        "#cloud-config\nhostname: from-drive\nrancher:\n  network:\n    dns:\n      nameservers: [192.0.2.53]\n",
    )
    .unwrap();
    std::fs::write(
        latest.join("meta_data.json"),
        r#"{"hostname": "meta-host", "public_keys": {"k": "ssh-ed25519 AAAA user@host"}}"#,
    )
    .unwrap();
    // The config names the drive as the only datasource.
    let set = ros(
        root.path(),
        &[
            "config",
            "set",
            "rancher.cloud_init.datasources",
            &format!("[configdrive:{}]", drive.display()),
        ],
    );
    assert!(set.status.success(), "{set:?}");

    let save = ros(root.path(), &["cloud-init-save", "--timeout", "5"]);
    let err = String::from_utf8_lossy(&save.stderr);
    assert!(save.status.success(), "{err}");
    assert!(err.contains("gave a cloud-config"), "{err}");
    let boot = root
        .path()
        .join("var/lib/rancher/conf/cloud-config.d/boot.yml");
    assert!(boot.exists(), "boot.yml saved");
    assert_eq!(
        text(&ros(root.path(), &["config", "get", "hostname"])),
        "from-drive"
    );
    assert_eq!(
        text(&ros(
            root.path(),
            &["config", "get", "rancher.network.dns.nameservers"]
        )),
        "- 192.0.2.53"
    );
    let metadata =
        std::fs::read_to_string(root.path().join("var/lib/rancher/conf/metadata")).unwrap();
    assert!(metadata.contains("meta-host"), "{metadata}");
    assert!(metadata.contains("ssh-ed25519 AAAA"), "{metadata}");
}

#[test]
fn a_script_is_saved_executable_and_nothing_answering_is_not_an_error() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("user-data");
    std::fs::write(&data, "#!/bin/sh\necho hello\n").unwrap();
    let source = format!("file:{}", data.display());
    let save = ros(root.path(), &["cloud-init-save", "-d", &source]);
    assert!(save.status.success(), "{save:?}");
    let script = root.path().join("var/lib/rancher/conf/cloud-config-script");
    assert_eq!(
        std::fs::read_to_string(&script).unwrap(),
        "#!/bin/sh\necho hello\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&script).unwrap().permissions().mode() & 0o777,
        0o755
    );

    let missing = format!("file:{}", root.path().join("nothing-here").display());
    let none = ros(
        root.path(),
        &["cloud-init-save", "--timeout", "1", "-d", &missing],
    );
    assert!(none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no datasource answered in 1 s"));

    let bad = ros(root.path(), &["cloud-init-save", "-d", "packet"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("packet is not supported yet"));
}
