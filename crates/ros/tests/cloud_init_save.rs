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

/// One HTTP answer with `body` on a free port of 127.0.0.1; returns the URL.
fn serve_once(body: &'static str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim() != "" {
                line.clear();
            }
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/user-data")
}

/// As the cloud-init-execute service runs it once the network is up:
/// only the network sources are asked, and none when PID 1 noted that a
/// local source answered at this boot (the first answer wins).
#[test]
fn network_only_asks_the_network_sources_unless_a_local_one_answered_at_boot() {
    let root = tempfile::tempdir().unwrap();
    let drive = root.path().join("media/config-2/openstack/latest");
    std::fs::create_dir_all(&drive).unwrap();
    std::fs::write(drive.join("user_data"), "#cloud-config\nhostname: local\n").unwrap();
    let boot = root
        .path()
        .join("var/lib/rancher/conf/cloud-config.d/boot.yml");
    let drive_entry = format!(
        "configdrive:{}",
        root.path().join("media/config-2").display()
    );

    // A local source alone: nothing to ask.
    let save = ros(
        root.path(),
        &["cloud-init-save", "--network-only", "-d", &drive_entry],
    );
    let err = String::from_utf8_lossy(&save.stderr);
    assert!(save.status.success(), "{err}");
    assert!(err.contains("no datasource to ask"), "{err}");
    assert!(!boot.exists());

    // The url is asked, the config drive is not.
    let url = serve_once("#cloud-config\nhostname: from-url\n");
    let save = ros(
        root.path(),
        &[
            "cloud-init-save",
            "--network-only",
            "-d",
            &drive_entry,
            "-d",
            &format!("url:{url}"),
        ],
    );
    let err = String::from_utf8_lossy(&save.stderr);
    assert!(save.status.success(), "{err}");
    assert_eq!(
        text(&ros(root.path(), &["config", "get", "hostname"])),
        "from-url"
    );

    // PID 1 noted a local answer: the url is left alone.
    std::fs::remove_file(&boot).unwrap();
    datasource::mark_saved_at_boot(root.path(), &drive_entry).unwrap();
    let url = serve_once("#cloud-config\nhostname: from-url\n");
    let save = ros(
        root.path(),
        &[
            "cloud-init-save",
            "--network-only",
            "-d",
            &format!("url:{url}"),
        ],
    );
    let err = String::from_utf8_lossy(&save.stderr);
    assert!(save.status.success(), "{err}");
    assert!(err.contains("answered at this boot"), "{err}");
    assert!(!boot.exists(), "nothing saved over the boot's answer");
}
