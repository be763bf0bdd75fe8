//! The console's setup over a sample root: the files a user of the console
//! relies on, their modes and owners, idempotence, host key persistence,
//! and sshd accepting the generated config.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use config::Root;
use console::ssh::{HostKeyGen, InProcessEd25519, SshKeygen};
use console::{accounts, Settings};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
sshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nsudo:x:27:\nusers:x:100:\n";
const GSHADOW: &str = "root:*::\nsudo:*::\nusers:*::\n";
const SHADOW: &str = "root:*:19675:0:99999:7:::\ndaemon:*:19675:0:99999:7:::\n";
const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA a@example";
const KEY_B: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC b@example";

fn write(root: &Root, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn read(root: &Root, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn mode_owner(root: &Root, path: &str) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(root.join(path)).unwrap();
    (m.mode() & 0o7777, m.uid(), m.gid())
}

/// A Debian-like image: the databases, bash, busybox, sshd_config with its
/// drop-in directory, tty1 and ttyS0; and a config with two keys, a
/// password and autologin on the kernel command line.
fn sample(dir: &Path) -> Root {
    let root = Root::new(dir);
    write(&root, "/etc/passwd", PASSWD);
    write(&root, "/etc/group", GROUP);
    write(&root, "/etc/gshadow", GSHADOW);
    write(&root, "/etc/shadow", SHADOW);
    write(&root, "/etc/skel/.profile", "# profile\n");
    write(&root, "/bin/bash", "");
    write(&root, "/usr/bin/busybox", "");
    write(
        &root,
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\n",
    );
    write(&root, "/dev/tty1", "");
    write(&root, "/dev/ttyS0", "");
    write(
        &root,
        "/usr/share/ros/os-config.yml",
        "rancher:\n  ssh: {port: 22}\n",
    );
    write(
        &root,
        "/var/lib/rancher/conf/cloud-config.yml",
        &format!(
            "hostname: box\nssh_authorized_keys:\n  - {KEY_A}\n  - {KEY_B}\nrancher:\n  ssh: {{port: 2222, listen_address: 127.0.0.1}}\n  password: not-from-here\n"
        ),
    );
    write(
        &root,
        "/proc/cmdline",
        "console=ttyS0,115200n8 rancher.password=s3cret rancher.autologin=ttyS0\n",
    );
    root
}

/// Writes a dummy private and public key, and counts its calls.
#[derive(Default)]
struct FakeKeygen {
    calls: AtomicUsize,
}

impl HostKeyGen for FakeKeygen {
    fn generate(&self, kind: &str, private: &Path) -> console::Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(!private.exists(), "{} exists", private.display());
        std::fs::write(private, format!("private {kind} {n}\n")).unwrap();
        std::fs::write(
            private.with_file_name(format!(
                "{}.pub",
                private.file_name().unwrap().to_string_lossy()
            )),
            format!("public {kind} {n}\n"),
        )
        .unwrap();
        Ok(())
    }
}

fn setup(root: &Root, keygen: &dyn HostKeyGen) -> console::Plan {
    let settings = Settings::load(root).unwrap();
    console::setup(root, &settings, keygen).unwrap()
}

#[test]
fn setup_makes_the_user_sudo_ssh_and_getty_from_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sample(tmp.path());
    let plan = setup(&root, &FakeKeygen::default());

    // The user and its groups; other entries untouched.
    assert_eq!(
        read(&root, "/etc/passwd"),
        format!("{PASSWD}rancher:x:1100:1100:rancher:/home/rancher:/bin/bash\n")
    );
    assert_eq!(
        read(&root, "/etc/group"),
        "root:x:0:\nsudo:x:27:rancher\nusers:x:100:\nrancher:x:1100:\ndocker:x:233:rancher\n"
    );
    assert_eq!(
        read(&root, "/etc/gshadow"),
        "root:*::\nsudo:*::rancher\nusers:*::\nrancher:!::\ndocker:!::rancher\n"
    );
    // The password from the kernel command line, hashed; not the file's.
    let shadow = read(&root, "/etc/shadow");
    assert!(shadow.starts_with(SHADOW), "{shadow}");
    let line = accounts::entry(&shadow, "rancher").unwrap();
    let hash = line.split(':').nth(1).unwrap();
    assert!(hash.starts_with("$6$"), "{line}");
    assert!(accounts::verify("s3cret", hash));
    assert!(!accounts::verify("not-from-here", hash));

    // Home from /etc/skel, owned by rancher.
    assert_eq!(mode_owner(&root, "/home/rancher"), (0o755, 1100, 1100));
    assert_eq!(read(&root, "/home/rancher/.profile"), "# profile\n");
    assert_eq!(
        mode_owner(&root, "/home/rancher/.profile"),
        (0o644, 1100, 1100)
    );

    assert_eq!(
        read(&root, "/etc/sudoers.d/rancher"),
        "rancher ALL=(ALL) NOPASSWD: ALL\n"
    );
    assert_eq!(mode_owner(&root, "/etc/sudoers.d/rancher"), (0o440, 0, 0));

    assert_eq!(
        read(&root, "/home/rancher/.ssh/authorized_keys"),
        format!("{KEY_A}\n{KEY_B}\n")
    );
    assert_eq!(mode_owner(&root, "/home/rancher/.ssh"), (0o700, 1100, 1100));
    assert_eq!(
        mode_owner(&root, "/home/rancher/.ssh/authorized_keys"),
        (0o600, 1100, 1100)
    );

    let drop_in = read(&root, "/etc/ssh/sshd_config.d/oxos.conf");
    for line in [
        "Port 2222",
        "ListenAddress 127.0.0.1",
        "PasswordAuthentication yes",
        "PermitRootLogin no",
        "UseDNS no",
    ] {
        assert!(
            drop_in.lines().any(|l| l == line),
            "{line} missing:\n{drop_in}"
        );
    }
    assert!(root.join("/run/sshd").is_dir());
    // /etc/hostname is the engine's bind mount: a rename over it would fail.
    assert!(!root.join("/etc/hostname").exists());

    for (link, target) in [
        ("/usr/local/bin/system-docker", "/usr/bin/ros"),
        ("/usr/local/bin/ros", "/usr/bin/ros"),
        ("/usr/local/sbin/reboot", "/usr/bin/ros"),
        ("/usr/local/sbin/poweroff", "/usr/bin/ros"),
        ("/usr/local/sbin/halt", "/usr/bin/ros"),
        ("/usr/local/sbin/shutdown", "/usr/bin/ros"),
        ("/usr/local/bin/docker", "/var/lib/rancher/engine/docker"),
    ] {
        assert_eq!(
            std::fs::read_link(root.join(link)).unwrap(),
            Path::new(target),
            "{link}"
        );
    }

    // sshd in the foreground, logging to stderr; a getty on tty1 and one on
    // ttyS0, where rancher is logged in without a password.
    let argvs: Vec<Vec<String>> = plan.programs.iter().map(|p| p.argv.clone()).collect();
    assert_eq!(
        argvs,
        [
            vec!["/usr/sbin/sshd", "-D", "-e"],
            vec![
                "/usr/bin/busybox",
                "getty",
                "-l",
                "/usr/local/sbin/login",
                "38400",
                "tty1",
                "linux"
            ],
            vec![
                "/usr/bin/busybox",
                "getty",
                "-n",
                "-l",
                "/usr/local/sbin/autologin",
                "-L",
                "115200",
                "ttyS0",
                "vt100"
            ],
        ]
    );
    assert_eq!(
        read(&root, "/usr/local/sbin/autologin").lines().last(),
        Some("exec /usr/local/sbin/login -f rancher")
    );
    assert_eq!(mode_owner(&root, "/usr/local/sbin/autologin").0, 0o755);
    assert!(plan.scripts.is_empty());
}

#[test]
fn executable_start_scripts_are_run_in_rancheros_order() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = sample(tmp.path());
    write(&root, "/etc/rc.local", "#!/bin/sh\necho rc\n");
    write(
        &root,
        "/opt/rancher/bin/start.sh",
        "#!/bin/sh\necho start\n",
    );
    // Not executable yet: not run.
    assert!(setup(&root, &FakeKeygen::default()).scripts.is_empty());
    for path in ["/etc/rc.local", "/opt/rancher/bin/start.sh"] {
        std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let plan = setup(&root, &FakeKeygen::default());
    let argvs: Vec<Vec<String>> = plan.scripts.iter().map(|p| p.argv.clone()).collect();
    assert_eq!(argvs, [["/opt/rancher/bin/start.sh"], ["/etc/rc.local"]]);
}

#[test]
fn without_a_command_line_password_the_account_is_locked_and_ssh_is_key_only() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sample(tmp.path());
    write(&root, "/proc/cmdline", "quiet\n");
    let plan = setup(&root, &FakeKeygen::default());
    let shadow = read(&root, "/etc/shadow");
    assert_eq!(
        accounts::entry(&shadow, "rancher"),
        Some("rancher:*::0:99999:7:::")
    );
    let drop_in = read(&root, "/etc/ssh/sshd_config.d/oxos.conf");
    assert!(
        drop_in.contains("\nPasswordAuthentication no\n"),
        "{drop_in}"
    );
    assert!(
        drop_in.contains("\nKbdInteractiveAuthentication no\n"),
        "{drop_in}"
    );
    // No autologin: both gettys ask for a login.
    assert!(plan
        .programs
        .iter()
        .all(|p| !p.argv.contains(&"/usr/local/sbin/autologin".to_string())));
}

/// Content (or link target), mode, uid, gid, mtime seconds and nanoseconds.
type FileState = (Vec<u8>, u32, u32, u32, i64, i64);

/// The state of every file, directory and link under `dir`.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, FileState> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let content = if m.file_type().is_symlink() {
                std::fs::read_link(e.path())
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if m.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (
                e.path().to_owned(),
                (
                    content,
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.mtime(),
                    m.mtime_nsec(),
                ),
            )
        })
        .collect()
}

#[test]
fn a_second_run_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sample(tmp.path());
    let keygen = FakeKeygen::default();
    let first_plan = setup(&root, &keygen);
    let first = snapshot(tmp.path());
    let second_plan = setup(&root, &keygen);
    let second = snapshot(tmp.path());
    assert_eq!(first_plan, second_plan);
    let changed: Vec<_> = first
        .keys()
        .chain(second.keys())
        .filter(|k| first.get(*k) != second.get(*k))
        .collect();
    assert!(changed.is_empty(), "changed by the second run: {changed:?}");
}

#[test]
fn keys_added_by_hand_and_a_changed_home_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sample(tmp.path());
    // The state disk already has a home with the user's files and a key.
    write(&root, "/home/rancher/notes.txt", "mine\n");
    write(
        &root,
        "/home/rancher/.ssh/authorized_keys",
        &format!("ssh-ed25519 HANDMADE me@laptop\n{KEY_B}"),
    );
    setup(&root, &FakeKeygen::default());
    assert_eq!(read(&root, "/home/rancher/notes.txt"), "mine\n");
    assert!(
        !root.join("/home/rancher/.profile").exists(),
        "skel copied into an existing home"
    );
    assert_eq!(
        read(&root, "/home/rancher/.ssh/authorized_keys"),
        format!("ssh-ed25519 HANDMADE me@laptop\n{KEY_B}\n{KEY_A}\n")
    );
    assert_eq!(mode_owner(&root, "/home/rancher").1, 1100);
}

#[test]
fn host_keys_are_kept_on_the_state_disk_and_config_keys_win() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sample(tmp.path());
    let keygen = FakeKeygen::default();
    setup(&root, &keygen);
    let saved = root.join("/var/lib/rancher/conf/ssh");
    assert_eq!(mode_owner(&root, "/var/lib/rancher/conf/ssh").0, 0o700);
    let first = read(&root, "/etc/ssh/ssh_host_ed25519_key");
    assert_eq!(
        std::fs::read_to_string(saved.join("ssh_host_ed25519_key")).unwrap(),
        first
    );
    assert_eq!(mode_owner(&root, "/etc/ssh/ssh_host_ed25519_key").0, 0o600);
    assert_eq!(
        mode_owner(&root, "/etc/ssh/ssh_host_ed25519_key.pub").0,
        0o644
    );

    // A new console container (empty /etc/ssh, same state disk) gets the
    // same keys, and the generator makes none.
    std::fs::remove_dir_all(root.join("/etc/ssh")).unwrap();
    write(
        &root,
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\n",
    );
    setup(&root, &keygen);
    assert_eq!(read(&root, "/etc/ssh/ssh_host_ed25519_key"), first);
    // Made third, after Ed25519 and ECDSA, before sshd: no ros here to
    // make them later.
    assert_eq!(read(&root, "/etc/ssh/ssh_host_rsa_key"), "private rsa 3\n");
    assert_eq!(keygen.calls.load(Ordering::SeqCst), 3);

    // rancher.ssh.keys wins over the kept key, and becomes the kept key.
    write(
        &root,
        "/var/lib/rancher/conf/cloud-config.d/keys.yml",
        "rancher:\n  ssh:\n    keys:\n      ssh_host_ed25519_key: |\n        configured\n",
    );
    setup(&root, &keygen);
    assert_eq!(read(&root, "/etc/ssh/ssh_host_ed25519_key"), "configured\n");
    assert_eq!(
        std::fs::read_to_string(saved.join("ssh_host_ed25519_key")).unwrap(),
        "configured\n"
    );
}

#[test]
fn the_rsa_host_key_is_made_after_sshd_starts_and_kept() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = sample(tmp.path());
    write(&root, "/usr/bin/ros", "#!/bin/sh\n");
    std::fs::set_permissions(
        root.join("/usr/bin/ros"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let keygen = FakeKeygen::default();
    let plan = setup(&root, &keygen);
    // sshd starts with Ed25519; ECDSA and RSA are not there yet.
    assert_eq!(keygen.calls.load(Ordering::SeqCst), 1);
    assert!(root.join("/etc/ssh/ssh_host_ed25519_key").exists());
    assert!(!root.join("/etc/ssh/ssh_host_ecdsa_key").exists());
    assert!(!root.join("/etc/ssh/ssh_host_rsa_key").exists());
    let later: Vec<Vec<String>> = plan.background.iter().map(|p| p.argv.clone()).collect();
    assert_eq!(
        later,
        [["/usr/bin/ros", "console-init", "--finish-host-keys"]]
    );
    assert!(plan.programs.iter().any(|p| p.name == "sshd"));

    // What that command does: the key in /etc/ssh and on the state disk,
    // nothing left behind.
    assert_eq!(console::ssh::finish_host_keys(&root, &keygen).unwrap(), 2);
    assert_eq!(
        read(&root, "/etc/ssh/ssh_host_ecdsa_key"),
        "private ecdsa 2\n"
    );
    assert_eq!(read(&root, "/etc/ssh/ssh_host_rsa_key"), "private rsa 3\n");
    assert_eq!(mode_owner(&root, "/etc/ssh/ssh_host_rsa_key").0, 0o600);
    assert_eq!(
        read(&root, "/var/lib/rancher/conf/ssh/ssh_host_rsa_key.pub"),
        "public rsa 3\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(root.join("/etc/ssh"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(console::ssh::finish_host_keys(&root, &keygen).unwrap(), 0);

    // The next console start has every key and nothing to make.
    std::fs::remove_dir_all(root.join("/etc/ssh")).unwrap();
    let plan = setup(&root, &keygen);
    assert!(plan.background.is_empty());
    assert_eq!(read(&root, "/etc/ssh/ssh_host_rsa_key"), "private rsa 3\n");
    assert_eq!(keygen.calls.load(Ordering::SeqCst), 3);
}

/// Whether ssh-keygen is missing here (the test that needs it then says so
/// and passes).
fn ssh_keygen_missing() -> bool {
    let missing = std::process::Command::new("ssh-keygen")
        .arg("-?")
        .output()
        .is_err();
    if missing {
        eprintln!("skipped: ssh-keygen is not installed");
    }
    missing
}

#[test]
fn ssh_keygen_makes_real_host_keys_once() {
    if ssh_keygen_missing() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = sample(tmp.path());
    setup(&root, &SshKeygen);
    let key = read(&root, "/etc/ssh/ssh_host_ed25519_key");
    assert!(
        key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
        "{key}"
    );
    for t in ["rsa", "ecdsa", "ed25519"] {
        assert!(root
            .join(&format!("/var/lib/rancher/conf/ssh/ssh_host_{t}_key.pub"))
            .exists());
    }
    std::fs::remove_dir_all(root.join("/etc/ssh")).unwrap();
    setup(&root, &SshKeygen);
    assert_eq!(read(&root, "/etc/ssh/ssh_host_ed25519_key"), key);
}

/// The Ed25519 host key made in-process is one OpenSSH reads: `ssh-keygen
/// -y` derives from the private key the public key written beside it, and
/// the private key is readable by root only. It is the key the console
/// sets up before sshd starts.
#[test]
fn in_process_ed25519_host_key_is_one_openssh_reads() {
    if ssh_keygen_missing() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = sample(tmp.path());
    setup(&root, &InProcessEd25519);
    let private = root.join("/etc/ssh/ssh_host_ed25519_key");
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let derived = std::process::Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&private)
        .output()
        .unwrap();
    assert!(
        derived.status.success(),
        "ssh-keygen -y: {}",
        String::from_utf8_lossy(&derived.stderr)
    );
    let derived = String::from_utf8(derived.stdout).unwrap();
    let public = read(&root, "/etc/ssh/ssh_host_ed25519_key.pub");
    let key_of = |line: &str| {
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    assert!(public
        .split_whitespace()
        .nth(2)
        .is_some_and(|c| c.starts_with("root@")));
    assert_eq!(key_of(&derived), key_of(&public));
    // Kept on the state disk as well, and a second key is a different one.
    assert_eq!(
        read(&root, "/var/lib/rancher/conf/ssh/ssh_host_ed25519_key.pub"),
        public
    );
    let other = tempfile::tempdir().unwrap();
    let other_root = sample(other.path());
    setup(&other_root, &InProcessEd25519);
    assert_ne!(
        key_of(&read(&other_root, "/etc/ssh/ssh_host_ed25519_key.pub")),
        key_of(&public)
    );
}

/// sshd's own check of the generated config (`sshd -t`). sshd comes from
/// OXOS_TEST_SSHD or /usr/sbin/sshd; without one the test says so and
/// passes.
#[test]
fn sshd_accepts_the_generated_config() {
    let sshd = std::env::var_os("OXOS_TEST_SSHD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/sshd"));
    if !sshd.exists() {
        eprintln!(
            "skipped: no sshd at {} (set OXOS_TEST_SSHD to an sshd binary)",
            sshd.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = sample(tmp.path());
    setup(&root, &SshKeygen);
    // sshd -t also needs the host's sshd user and /run/sshd: a config
    // that sshd must accept shows whether this machine can check at all.
    let baseline = root.join("/baseline.conf");
    std::fs::write(&baseline, "Port 22\n").unwrap();
    let out = std::process::Command::new(&sshd)
        .arg("-t")
        .arg("-f")
        .arg(&baseline)
        .arg("-h")
        .arg(root.join("/etc/ssh/ssh_host_ed25519_key"))
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "skipped: sshd -t fails on this machine even for a trivial config: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    // The drop-in as sshd's whole config, with the host keys made for this
    // root (the drop-in names none: sshd's defaults are /etc/ssh's).
    let drop_in = root.join("/etc/ssh/sshd_config.d/oxos.conf");
    let mut cmd = std::process::Command::new(&sshd);
    cmd.arg("-t").arg("-f").arg(&drop_in);
    for t in ["rsa", "ecdsa", "ed25519"] {
        cmd.arg("-h")
            .arg(root.join(&format!("/etc/ssh/ssh_host_{t}_key")));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "sshd -t: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // And sshd tells a broken option from a good one.
    std::fs::write(&drop_in, "Port 2222\nNoSuchOption yes\n").unwrap();
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "sshd -t accepted a bad option");
}

#[test]
fn the_cloud_config_is_applied_first_when_ros_is_there() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = sample(tmp.path());
    write(&root, "/etc/rc.local", "#!/bin/sh\necho rc\n");
    write(&root, "/usr/bin/ros", "#!/bin/sh\n");
    for path in ["/etc/rc.local", "/usr/bin/ros"] {
        std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let plan = setup(&root, &FakeKeygen::default());
    let argvs: Vec<Vec<String>> = plan.scripts.iter().map(|p| p.argv.clone()).collect();
    assert_eq!(
        argvs,
        [
            vec!["/usr/bin/ros", "cloud-init-execute", "--console"],
            vec!["/etc/rc.local"]
        ]
    );
}
