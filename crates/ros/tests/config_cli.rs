//! `ros --root DIR config ...` as a user runs it: the binary, a root
//! directory standing for `/`, and the files it leaves there.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn ros(root: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ros"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("ROS_ROOT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ros");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("ros output")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn set_then_get_round_trips_scalars_and_lists_under_the_root() {
    let root = tempfile::tempdir().unwrap();
    assert!(ros(root.path(), &["config", "set", "hostname", "a"], None)
        .status
        .success());
    assert_eq!(
        stdout(&ros(root.path(), &["config", "get", "hostname"], None)),
        "a"
    );
    let file = root.path().join("var/lib/rancher/conf/cloud-config.yml");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("hostname: a"),
        "the value lands in cloud-config.yml under the root"
    );

    let set = ros(
        root.path(),
        &[
            "c",
            "set",
            "rancher.network.dns.nameservers",
            "[1.1.1.1,8.8.8.8]",
        ],
        None,
    );
    assert!(set.status.success());
    let got = stdout(&ros(
        root.path(),
        &["config", "get", "rancher.network.dns.nameservers"],
        None,
    ));
    assert_eq!(got, "- 1.1.1.1\n- 8.8.8.8", "a list stays a list");
}

#[test]
fn merge_from_stdin_and_export_hides_private_values() {
    let root = tempfile::tempdir().unwrap();
    let doc =
        "rancher:\n  ssh:\n    keys:\n      ssh_host_rsa_key: SECRET-KEY\n  console: debian\n";
    assert!(ros(root.path(), &["config", "merge"], Some(doc))
        .status
        .success());
    assert_eq!(
        stdout(&ros(
            root.path(),
            &["config", "get", "rancher.console"],
            None
        )),
        "debian"
    );
    let public = stdout(&ros(root.path(), &["config", "export"], None));
    assert!(
        public.contains("console: debian") && !public.contains("SECRET-KEY"),
        "export: {public}"
    );
    let private = stdout(&ros(root.path(), &["config", "export", "--private"], None));
    assert!(
        private.contains("SECRET-KEY"),
        "export --private: {private}"
    );
}

#[test]
fn validate_names_the_file_line_and_column_or_the_unknown_key() {
    let root = tempfile::tempdir().unwrap();
    let bad = root.path().join("bad.yml");
    std::fs::write(&bad, "hostname: a\nrancher:\n  network: {}\n bad: [\n").unwrap();
    let out = ros(
        root.path(),
        &["config", "validate", "-i", bad.to_str().unwrap()],
        None,
    );
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a syntax error fails");
    assert!(err.contains("bad.yml:4:"), "file and line named: {err}");

    let unknown = root.path().join("unknown.yml");
    std::fs::write(&unknown, "rancher:\n  netwrk:\n    dns: {}\n").unwrap();
    let out = ros(
        root.path(),
        &["config", "validate", "-i", unknown.to_str().unwrap()],
        None,
    );
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        err.contains("rancher.netwrk") && err.contains("rancher.network"),
        "key named, with a suggestion: {err}"
    );
}

#[test]
fn a_missing_root_argument_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_ros"))
        .arg("--root")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--root needs a directory"));
}

#[test]
fn images_lists_each_service_image_of_every_layer_once() {
    let root = tempfile::tempdir().unwrap();
    let os = root.path().join("usr/share/ros");
    std::fs::create_dir_all(&os).unwrap();
    std::fs::write(
        os.join("os-config.yml"),
        "rancher:\n  services:\n    ntp: {image: oxos/ntp:1}\n    console: {image: oxos/console:1}\n  bootstrap:\n    udev: {image: oxos/udev:1}\n",
    )
    .unwrap();
    let add = "rancher:\n  services:\n    web: {image: nginx:1}\n    other: {image: oxos/ntp:1}\n";
    assert!(ros(root.path(), &["config", "merge"], Some(add))
        .status
        .success());
    let out = ros(root.path(), &["config", "images"], None);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        "nginx:1\noxos/console:1\noxos/ntp:1\noxos/udev:1"
    );
}
