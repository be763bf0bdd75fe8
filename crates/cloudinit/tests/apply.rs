//! The phases over a temporary root and a temporary /proc/sys.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use base64::Engine as _;

fn root_with(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("var/lib/rancher/conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("cloud-config.yml"), config).unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nrancher:x:1100:1200::/home/rancher:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("etc/group"),
        "root:x:0:\nrancher:x:1200:\ndocker:x:999:\n",
    )
    .unwrap();
    dir
}

fn load(root: &Path) -> config::Config {
    config::load(&config::Root::new(root)).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn writes_files_and_a_bad_entry_does_not_stop_the_others() {
    let packed = {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"from gzip\n").unwrap();
        base64::engine::general_purpose::STANDARD.encode(enc.finish().unwrap())
    };
    let config = format!(
        r#"
write_files:
  - path: /etc/motd
    content: "hello\n"
  - path: /opt/bin/run.sh
    permissions: "0755"
    owner: rancher:docker
    content: |
      #!/bin/sh
      echo hi
  - path: /etc/bad-b64
    encoding: b64
    content: "!!! not base64"
  - path: /etc/b64
    encoding: base64
    permissions: "0600"
    content: aGVsbG8=
  - path: /etc/gz
    encoding: gz+b64
    content: {packed}
  - path: /etc/unknown-owner
    owner: nobody
    content: x
  - path: /etc/for-docker
    container: docker
    content: x
  - path: /etc/console-explicit
    container: console
    content: c
"#
    );
    let root = root_with(&config);
    let r = root.path();
    let failures = cloudinit::console(&load(r), r, false);

    assert_eq!(
        std::fs::read_to_string(r.join("etc/motd")).unwrap(),
        "hello\n"
    );
    assert_eq!(mode(&r.join("etc/motd")), 0o644);
    let script = r.join("opt/bin/run.sh");
    assert_eq!(
        std::fs::read_to_string(&script).unwrap(),
        "#!/bin/sh\necho hi\n"
    );
    assert_eq!(mode(&script), 0o755);
    if nix::unistd::geteuid().is_root() {
        let meta = std::fs::metadata(&script).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1100, 999));
    }
    assert_eq!(std::fs::read(r.join("etc/b64")).unwrap(), b"hello");
    assert_eq!(mode(&r.join("etc/b64")), 0o600);
    assert_eq!(std::fs::read(r.join("etc/gz")).unwrap(), b"from gzip\n");
    assert_eq!(std::fs::read(r.join("etc/console-explicit")).unwrap(), b"c");
    assert!(!r.join("etc/bad-b64").exists());
    assert!(!r.join("etc/unknown-owner").exists());
    assert!(!r.join("etc/for-docker").exists());
    // No temporary file left behind.
    let leftovers: Vec<_> = std::fs::read_dir(r.join("etc"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".cloudinit-"))
        .collect();
    assert!(leftovers.is_empty());

    assert_eq!(failures.len(), 2, "{failures:#?}");
    assert!(
        failures[0].starts_with("write_files[2] /etc/bad-b64: content is not valid base64"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1].starts_with("write_files[5] /etc/unknown-owner: owner \"nobody\""),
        "{}",
        failures[1]
    );
}

#[test]
fn an_existing_file_is_replaced() {
    let root = root_with("write_files:\n  - {path: /etc/hostname-note, content: new}\n");
    let r = root.path();
    std::fs::write(r.join("etc/hostname-note"), "old content, longer").unwrap();
    assert!(cloudinit::console(&load(r), r, false).is_empty());
    assert_eq!(
        std::fs::read_to_string(r.join("etc/hostname-note")).unwrap(),
        "new"
    );
}

#[test]
fn runcmd_runs_in_order_past_a_failing_command() {
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("log");
    let log = log.display();
    let config = format!(
        "runcmd:\n  - echo one >> {log}\n  - exit 7\n  - [/bin/sh, -c, 'echo three >> {log}']\n  - {{not: a command}}\n  - [/nonexistent/program]\n  - echo six >> {log}\n"
    );
    let root = root_with(&config);
    let r = root.path();
    let failures = cloudinit::console(&load(r), r, true);
    assert_eq!(
        std::fs::read_to_string(out.path().join("log")).unwrap(),
        "one\nthree\nsix\n"
    );
    assert_eq!(failures.len(), 3, "{failures:#?}");
    assert_eq!(failures[0], "runcmd[1]: exit status 7");
    assert!(
        failures[1].starts_with("runcmd[3]: not a string"),
        "{}",
        failures[1]
    );
    assert!(
        failures[2].starts_with("runcmd[4]: failed to run /nonexistent/program"),
        "{}",
        failures[2]
    );

    // --no-runcmd: nothing runs.
    std::fs::remove_file(out.path().join("log")).unwrap();
    assert!(cloudinit::console(&load(r), r, false).is_empty());
    assert!(!out.path().join("log").exists());
}

#[test]
fn sysctl_values_are_written_and_a_bad_key_does_not_stop_the_others() {
    let root = root_with(
        "rancher:\n  sysctl:\n    net.ipv4.ip_forward: 1\n    vm.swappiness: '10'\n    net.ipv4.ip_local_port_range: [1024, 65000]\n    no.such.key: 1\n    kernel.panic: {a: 1}\n",
    );
    let r = root.path();
    let proc_sys = tempfile::tempdir().unwrap();
    let p = proc_sys.path();
    for f in [
        "net/ipv4/ip_forward",
        "vm/swappiness",
        "net/ipv4/ip_local_port_range",
        "kernel/panic",
    ] {
        std::fs::create_dir_all(p.join(f).parent().unwrap()).unwrap();
        std::fs::write(p.join(f), "0\n").unwrap();
    }
    let host = cloudinit::Host {
        proc_sys: p.to_owned(),
        mount_ns: None,
        ..Default::default()
    };
    let failures = cloudinit::pre_console(&load(r), &host);
    assert_eq!(
        std::fs::read_to_string(p.join("net/ipv4/ip_forward")).unwrap(),
        "1\n"
    );
    assert_eq!(
        std::fs::read_to_string(p.join("vm/swappiness")).unwrap(),
        "10\n"
    );
    assert_eq!(
        std::fs::read_to_string(p.join("net/ipv4/ip_local_port_range")).unwrap(),
        "1024 65000\n"
    );
    assert_eq!(
        std::fs::read_to_string(p.join("kernel/panic")).unwrap(),
        "0\n"
    );
    assert!(!p.join("no").exists());
    assert_eq!(failures.len(), 2, "{failures:#?}");
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("sysctl no.such.key: failed to open")),
        "{failures:#?}"
    );
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("sysctl kernel.panic: value of kernel.panic must be")),
        "{failures:#?}"
    );
}

#[test]
fn the_command_exits_1_when_anything_failed() {
    let args = |root: &Path, extra: &[&str]| {
        let mut a: Vec<std::ffi::OsString> = vec!["cloud-init-execute".into()];
        a.extend(extra.iter().map(Into::into));
        a.push("--root".into());
        a.push(root.into());
        a
    };
    let good = root_with("write_files:\n  - {path: /etc/a, content: a}\n");
    assert_eq!(cloudinit::cli::main(args(good.path(), &["--console"])), 0);
    assert_eq!(std::fs::read(good.path().join("etc/a")).unwrap(), b"a");

    let bad = root_with(
        "write_files:\n  - {path: relative, content: a}\n  - {path: /etc/b, content: b}\n",
    );
    assert_eq!(cloudinit::cli::main(args(bad.path(), &["--console"])), 1);
    assert_eq!(std::fs::read(bad.path().join("etc/b")).unwrap(), b"b");

    let proc_sys = tempfile::tempdir().unwrap();
    let sys = root_with("rancher:\n  sysctl: {vm.nope: 1}\n");
    let ps = proc_sys.path().to_str().unwrap();
    assert_eq!(
        cloudinit::cli::main(args(sys.path(), &["--pre-console", "--proc-sys", ps])),
        1
    );

    // Neither phase: a usage error.
    assert_eq!(cloudinit::cli::main(args(good.path(), &[])), 2);
}

#[test]
fn bootcmd_runs_in_order_before_sysctl_and_past_failures() {
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("log");
    let log = log.display();
    let proc_sys = tempfile::tempdir().unwrap();
    let p = proc_sys.path();
    std::fs::create_dir_all(p.join("vm")).unwrap();
    std::fs::write(p.join("vm/swappiness"), "60\n").unwrap();
    // Entry 1 sees the sysctl file still unwritten: bootcmd comes first.
    let config = format!(
        "bootcmd:\n  - echo one >> {log}\n  - [/bin/sh, -c, 'cat {sw} >> {log}']\n  - exit 1\n  - [/nonexistent/program]\n  - 42\n  - [/bin/sh, -c, 'kill -9 $$']\n  - echo seven >> {log}\nrancher:\n  sysctl: {{vm.swappiness: 10}}\n",
        sw = p.join("vm/swappiness").display()
    );
    let root = root_with(&config);
    let r = root.path();
    let host = cloudinit::Host {
        proc_sys: p.to_owned(),
        mount_ns: None,
        ..Default::default()
    };
    let failures = cloudinit::pre_console(&load(r), &host);
    assert_eq!(
        std::fs::read_to_string(out.path().join("log")).unwrap(),
        "one\n60\nseven\n"
    );
    assert_eq!(
        std::fs::read_to_string(p.join("vm/swappiness")).unwrap(),
        "10\n"
    );
    assert_eq!(failures.len(), 4, "{failures:#?}");
    assert_eq!(failures[0], "bootcmd[2]: exit status 1");
    assert!(
        failures[1].starts_with("bootcmd[3]: failed to run /nonexistent/program"),
        "{}",
        failures[1]
    );
    assert!(
        failures[2].starts_with("bootcmd[4]: not a string"),
        "{}",
        failures[2]
    );
    assert_eq!(failures[3], "bootcmd[5]: killed by signal 9");
    // The console phase does not run bootcmd.
    std::fs::remove_file(out.path().join("log")).unwrap();
    assert!(cloudinit::console(&load(r), r, true).is_empty());
    assert!(!out.path().join("log").exists());
}

#[test]
fn a_bad_mounts_entry_is_reported_with_its_index_and_the_others_still_apply() {
    let root = root_with(
        "mounts:\n  - [/dev/no-such-disk-here, /mnt/data, ext4, defaults]\n  - [only-one-field]\n  - [server:/export, /mnt/nfs, nfs, '']\n  - [LABEL=NO_SUCH_LABEL, /mnt/l]\n",
    );
    let r = root.path();
    let dev_disk = tempfile::tempdir().unwrap();
    let host = cloudinit::Host {
        proc_sys: "/nonexistent".into(),
        mount_ns: None,
        dev_disk: dev_disk.path().to_owned(),
    };
    let failures = cloudinit::pre_console(&load(r), &host);
    assert_eq!(failures.len(), 4, "{failures:#?}");
    assert_eq!(
        failures[0],
        "mounts[0]: /dev/no-such-disk-here on /mnt/data: no such device"
    );
    assert!(
        failures[1].starts_with("mounts[1]: must have 2 to 6 fields"),
        "{}",
        failures[1]
    );
    assert_eq!(
        failures[2],
        "mounts[2]: server:/export on /mnt/nfs: not supported yet: nfs mounts"
    );
    assert!(
        failures[3].starts_with("mounts[3]: LABEL=NO_SUCH_LABEL on /mnt/l: no such device ("),
        "{}",
        failures[3]
    );
}
