//! `ros config` against a temporary root, as a user would run it.

use std::path::Path;

use config::cli::{run, Io};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn ros_config(root: &Path, args: &[&str], stdin: &str) -> Out {
    let mut argv: Vec<std::ffi::OsString> = vec!["config".into(), "--root".into(), root.into()];
    argv.extend(args.iter().map(Into::into));
    let mut input = stdin.as_bytes();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let code = run(
        argv,
        &mut Io {
            stdin: &mut input,
            stdout: &mut stdout,
            stderr: &mut stderr,
        },
    );
    Out {
        code,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn user_file(root: &Path) -> String {
    std::fs::read_to_string(root.join("var/lib/rancher/conf/cloud-config.yml")).unwrap()
}

#[test]
fn set_then_get() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let out = ros_config(
        root,
        &[
            "set",
            "rancher.network.dns.nameservers",
            "[8.8.8.8,1.1.1.1]",
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        ros_config(root, &["set", "rancher.docker.tls", "true"], "").code,
        0
    );
    assert_eq!(ros_config(root, &["set", "hostname", "'3'"], "").code, 0);

    let get = |key: &str| ros_config(root, &["get", key], "").stdout;
    assert_eq!(get("rancher.docker.tls"), "true\n");
    assert_eq!(get("hostname"), "3\n");
    assert_eq!(
        get("rancher.network.dns.nameservers"),
        "- 8.8.8.8\n- 1.1.1.1\n"
    );
    assert_eq!(get("rancher.console"), "");
    // A typo prints nothing on stdout (as an unset key) but says why.
    let typo = ros_config(root, &["get", "rancher.netwrok.dns"], "");
    assert_eq!((typo.code, typo.stdout.as_str()), (0, ""));
    assert_eq!(
        typo.stderr,
        "ros config: error: rancher.netwrok: unknown key, did you mean rancher.network?\n"
    );
    // The file is YAML a person can read, with the types kept.
    assert_eq!(
        user_file(root),
        "rancher:\n  network:\n    dns:\n      nameservers:\n      - 8.8.8.8\n      - 1.1.1.1\n  docker:\n    tls: true\nhostname: '3'\n"
    );
}

#[test]
fn get_sees_every_layer_and_set_writes_only_the_user_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        root,
        "/usr/share/ros/os-config.yml",
        "rancher:\n  console: default\n  docker: {engine: docker-26.1}\n",
    );
    write(root, "/proc/cmdline", "quiet rancher.console=debian\n");
    assert_eq!(
        ros_config(root, &["get", "rancher.console"], "").stdout,
        "debian\n"
    );
    assert_eq!(
        ros_config(root, &["get", "rancher.docker.engine"], "").stdout,
        "docker-26.1\n"
    );
    assert_eq!(
        ros_config(root, &["set", "rancher.docker.engine", "docker-20.10"], "").code,
        0
    );
    assert_eq!(
        ros_config(root, &["get", "rancher.docker.engine"], "").stdout,
        "docker-20.10\n"
    );
    assert_eq!(
        user_file(root),
        "rancher:\n  docker:\n    engine: docker-20.10\n"
    );
}

#[test]
fn set_warns_about_a_typo_but_keeps_unknown_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        root,
        "/var/lib/rancher/conf/cloud-config.yml",
        "future_key: {a: 1}\n",
    );
    let out = ros_config(root, &["set", "rancher.netwrok.dns.search", "[lan]"], "");
    assert_eq!(out.code, 0);
    assert!(
        out.stderr
            .contains("rancher.netwrok: unknown key, did you mean rancher.network?"),
        "{}",
        out.stderr
    );
    // The key already there is not reported again, and it is kept.
    assert!(!out.stderr.contains("future_key"), "{}", out.stderr);
    assert!(user_file(root).starts_with("future_key:\n  a: 1\n"));
}

#[test]
fn merge_from_stdin_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    ros_config(
        root,
        &["set", "rancher.network.dns.nameservers", "[1.1.1.1]"],
        "",
    );
    let out = ros_config(
        root,
        &["merge"],
        "rancher:\n  network:\n    dns:\n      search: [lan]\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let file = root.join("more.yml");
    std::fs::write(&file, "hostname: box\n").unwrap();
    assert_eq!(
        ros_config(root, &["merge", "-i", file.to_str().unwrap()], "").code,
        0
    );
    assert_eq!(
        user_file(root),
        "rancher:\n  network:\n    dns:\n      nameservers:\n      - 1.1.1.1\n      search:\n      - lan\nhostname: box\n"
    );

    // A broken document changes nothing and says where it broke.
    let out = ros_config(root, &["merge"], "rancher:\n  console: [debian\n");
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with("ros config: <stdin>:3:"),
        "{}",
        out.stderr
    );
    assert!(user_file(root).ends_with("hostname: box\n"));
}

#[test]
fn export_hides_private_keys_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        root,
        "/usr/share/ros/os-config.yml",
        "rancher: {console: default}\n",
    );
    write(
        root,
        "/var/lib/rancher/conf/cloud-config.d/boot.yml",
        "rancher:\n  ssh:\n    port: 22\n    keys: {ssh_host_rsa_key: SECRET1}\n  docker: {tls: true, server_key: SECRET2, server_cert: CERT}\n  registry_auths:\n    r.example.com: {username: u, password: SECRET3}\n",
    );
    write(root, "/proc/cmdline", "rancher.password=SECRET4\n");

    let out = ros_config(root, &["export"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("SECRET"), "{}", out.stdout);
    assert!(out.stdout.contains("server_cert: CERT"), "{}", out.stdout);
    assert!(out.stdout.contains("username: u"), "{}", out.stdout);
    assert!(!out.stdout.contains("console"), "defaults only with --full");

    let full = ros_config(root, &["export", "--full"], "").stdout;
    assert!(full.contains("console: default"), "{full}");
    assert!(!full.contains("SECRET"), "{full}");

    let private = ros_config(root, &["export", "--full", "--private"], "").stdout;
    for secret in ["SECRET1", "SECRET2", "SECRET3", "SECRET4"] {
        assert!(private.contains(secret), "{secret} missing: {private}");
    }

    let file = root.join("out.yml");
    let out = ros_config(root, &["export", "-o", file.to_str().unwrap()], "");
    assert_eq!(out.code, 0);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        ros_config(root, &["export"], "").stdout
    );
}

#[test]
fn validate_reports_and_fails_on_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let good = ros_config(
        root,
        &["validate"],
        "#cloud-config\nrancher:\n  console: debian\n",
    );
    assert_eq!(good.code, 0, "{}", good.stderr);
    assert_eq!(
        good.stdout,
        "note: rancher.console: accepted, but not implemented yet: it has no effect\n"
    );

    let bad = ros_config(root, &["validate"], "rancher:\n  consle: debian\n");
    assert_eq!(bad.code, 1);
    assert_eq!(
        bad.stdout,
        "error: rancher.consle: unknown key, did you mean rancher.console?\n"
    );
    assert_eq!(bad.stderr, "ros config: <stdin> has 1 error(s)\n");

    let file = root.join("user-data.yml");
    std::fs::write(&file, "a: 1\nb: [\n").unwrap();
    let out = ros_config(root, &["validate", "-i", file.to_str().unwrap()], "");
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .starts_with(&format!("error: {}:3:", file.display())),
        "{}",
        out.stdout
    );
}

#[test]
fn usage_and_unsupported_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let help = ros_config(root, &["--help"], "");
    assert_eq!(help.code, 0);
    assert!(
        help.stdout.contains("Merge a YAML document"),
        "{}",
        help.stdout
    );
    assert!(help.stdout.contains("later wins"), "{}", help.stdout);
    assert_eq!(ros_config(root, &["frobnicate"], "").code, 2);
    assert_eq!(ros_config(root, &["set", "only-key"], "").code, 2);
    let out = ros_config(root, &["generate"], "");
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "ros config: ros config generate is not supported yet\n"
    );
    let out = ros_config(root, &["get", "rancher..x"], "");
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("invalid key"), "{}", out.stderr);
}
