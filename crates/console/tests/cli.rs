//! `ros console-init` as the service runs it: exit codes, and no change to
//! the system when the config is broken or the arguments are wrong.

use std::ffi::OsString;
use std::path::Path;

fn run(args: &[&str]) -> i32 {
    let mut argv: Vec<OsString> = vec!["console-init".into()];
    argv.extend(args.iter().map(OsString::from));
    console::cli::main(argv)
}

fn write(dir: &Path, path: &str, text: &str) {
    let p = dir.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn help_and_bad_usage() {
    assert_eq!(run(&["--help"]), 0);
    assert_eq!(run(&["--no-such-flag"]), 2);
}

/// A value of the wrong type cannot be used: nothing changes. (A file that
/// is not YAML at all is left out of the config, with the others still
/// used: see the config crate's layers.)
#[test]
fn a_broken_config_fails_before_any_change() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_str().unwrap();
    write(tmp.path(), "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    for broken in [
        "rancher: {ssh: {port: lots}}\n",
        "rancher: {ssh: {port: 0}}\n",
    ] {
        write(tmp.path(), "/var/lib/rancher/conf/cloud-config.yml", broken);
        assert_eq!(run(&["--root", root, "--setup-only"]), 1, "{broken}");
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("etc/passwd")).unwrap(),
            "root:x:0:0:root:/root:/bin/sh\n"
        );
        assert!(!tmp.path().join("home/rancher").exists());
    }
}

#[test]
fn running_under_another_root_is_refused_before_any_change() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_str().unwrap();
    assert_eq!(run(&["--root", root]), 1);
    assert!(!tmp.path().join("etc/passwd").exists());
}

#[test]
fn setup_only_sets_up_and_exits() {
    if std::process::Command::new("ssh-keygen")
        .arg("-?")
        .output()
        .is_err()
    {
        eprintln!("skipped: ssh-keygen is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_str().unwrap();
    write(tmp.path(), "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    assert_eq!(run(&["--root", root, "--setup-only"]), 0);
    let passwd = std::fs::read_to_string(tmp.path().join("etc/passwd")).unwrap();
    assert!(
        passwd.ends_with("rancher:x:1100:1100:rancher:/home/rancher:/bin/sh\n"),
        "{passwd}"
    );
    assert!(tmp
        .path()
        .join("var/lib/rancher/conf/ssh/ssh_host_ed25519_key")
        .exists());
}
