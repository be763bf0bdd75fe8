//! `mounts` and swap for real, in a mount namespace of the test's own (a
//! `unshare -m` helper process), so nothing lands in the host's view.
//! Needs root; skipped (with the reason printed) otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A process sitting in a fresh, private mount namespace; killed on drop,
/// which takes its mounts with it.
struct Namespace {
    child: Child,
}

impl Namespace {
    fn new() -> Namespace {
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare runs");
        let ns = Namespace { child };
        let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        for _ in 0..500 {
            if std::fs::read_link(ns.path()).is_ok_and(|l| l != ours) {
                return ns;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("unshare -m did not enter a new mount namespace");
    }

    fn path(&self) -> PathBuf {
        format!("/proc/{}/ns/mnt", self.child.id()).into()
    }

    /// Its mountinfo lines whose mount point is `target`.
    fn mounts_on(&self, target: &Path) -> Vec<String> {
        let info = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.child.id())).unwrap();
        lines_on(&info, target)
    }

    /// `ls` of a directory as the namespace sees it.
    fn ls(&self, dir: &Path) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--mount={}", self.path().display()))
            .arg("ls")
            .arg(dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_on(info: &str, target: &Path) -> Vec<String> {
    info.lines()
        .filter(|l| l.split(' ').nth(4) == Some(target.to_str().unwrap()))
        .map(str::to_owned)
        .collect()
}

/// A loop device over a file, detached on drop.
struct Loop(String);

impl Loop {
    fn new(image: &Path) -> Option<Loop> {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(image)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| Loop(String::from_utf8_lossy(&out.stdout).trim().to_owned()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn config_with(text: &str) -> (tempfile::TempDir, config::Config) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("var/lib/rancher/conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("cloud-config.yml"), text).unwrap();
    let config = config::load(&config::Root::new(dir.path())).unwrap();
    (dir, config)
}

fn host(ns: &Namespace, dev_disk: &Path) -> cloudinit::Host {
    cloudinit::Host {
        proc_sys: "/nonexistent".into(),
        mount_ns: Some(ns.path()),
        dev_disk: dev_disk.to_owned(),
    }
}

#[test]
fn mounts_land_in_the_given_namespace_once() {
    if !is_root() {
        eprintln!("skipped: mounting needs root");
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(base.path()).unwrap();
    let b = base.display();
    std::fs::create_dir_all(base.join("src")).unwrap();
    std::fs::write(base.join("src/marker"), "m").unwrap();

    // Two ext4 images on loop devices, one named by label through a
    // /dev/disk of the test's own, one of type auto.
    let ext4 = |name: &str, label: &str| {
        let image = base.join(name);
        std::fs::File::create(&image)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let made = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", label])
            .arg(&image)
            .status()
            .is_ok_and(|s| s.success());
        if made {
            Loop::new(&image)
        } else {
            None
        }
    };
    let lo = ext4("data.img", "CITEST").zip(ext4("auto.img", ""));
    let dev_disk = base.join("dev-disk");
    std::fs::create_dir_all(dev_disk.join("by-label")).unwrap();
    let mut text = format!(
        "mounts:\n  - [tmpfs, {b}/t/deep/er, tmpfs, 'size=1m,mode=0700,nosuid']\n  - [{b}/src, {b}/b, '', 'bind,ro']\n  - [{b}/src, {b}/c, none, bind]\n  - [{b}/src, {b}/c, none, 'bind,remount,ro,nosuid']\n"
    );
    match &lo {
        Some((lo, auto)) => {
            std::os::unix::fs::symlink(&lo.0, dev_disk.join("by-label/CITEST")).unwrap();
            text += &format!(
                "  - [LABEL=CITEST, {b}/e, ext4, 'noatime']\n  - [{}, {b}/auto]\n",
                auto.0
            );
        }
        None => eprintln!(
            "note: no ext4 loop device (mkfs.ext4 or losetup failed); tmpfs and bind only"
        ),
    }
    let (_root, config) = config_with(&text);
    let ns = Namespace::new();
    let failures = cloudinit::pre_console(&config, &host(&ns, &dev_disk));
    assert!(failures.is_empty(), "{failures:#?}");

    let t = base.join("t/deep/er");
    let on_t = ns.mounts_on(&t);
    assert_eq!(on_t.len(), 1, "{on_t:?}");
    assert!(on_t[0].contains(" - tmpfs tmpfs "), "{}", on_t[0]);
    assert!(on_t[0].contains("nosuid"), "{}", on_t[0]);
    assert!(on_t[0].contains("size=1024k"), "{}", on_t[0]);
    assert!(on_t[0].contains("mode=700"), "{}", on_t[0]);
    let on_b = ns.mounts_on(&base.join("b"));
    assert_eq!(on_b.len(), 1, "{on_b:?}");
    assert!(
        on_b[0].split(' ').nth(5).unwrap().starts_with("ro"),
        "{}",
        on_b[0]
    );
    assert!(ns.ls(&base.join("b")).contains("marker"));
    let on_c = ns.mounts_on(&base.join("c"));
    assert_eq!(on_c.len(), 1, "{on_c:?}");
    let c_opts = on_c[0].split(' ').nth(5).unwrap();
    assert!(
        c_opts.starts_with("ro,nosuid"),
        "remounted read-only: {}",
        on_c[0]
    );
    if lo.is_some() {
        let on_e = ns.mounts_on(&base.join("e"));
        assert_eq!(on_e.len(), 1, "{on_e:?}");
        assert!(on_e[0].contains(" - ext4 "), "{}", on_e[0]);
        assert!(on_e[0].contains("noatime"), "{}", on_e[0]);
        assert!(ns.ls(&base.join("e")).contains("lost+found"));
        let on_auto = ns.mounts_on(&base.join("auto"));
        assert_eq!(on_auto.len(), 1, "{on_auto:?}");
        assert!(
            on_auto[0].contains(" - ext4 "),
            "type auto found ext4: {}",
            on_auto[0]
        );
    }

    // Not in our own namespace: the mount points exist (created through the
    // shared directory) but hold nothing here.
    let ours = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(lines_on(&ours, &t).is_empty());
    assert!(t.is_dir());

    // Again: every entry is already there, nothing is stacked.
    let failures = cloudinit::pre_console(&config, &host(&ns, &dev_disk));
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(ns.mounts_on(&t).len(), 1);
    assert_eq!(ns.mounts_on(&base.join("b")).len(), 1);
    assert_eq!(ns.mounts_on(&base.join("c")).len(), 1);
    if lo.is_some() {
        assert_eq!(ns.mounts_on(&base.join("e")).len(), 1);
        assert_eq!(ns.mounts_on(&base.join("auto")).len(), 1);
    }
    drop(ns);
}

#[test]
fn a_wrong_type_or_a_missing_namespace_is_a_clear_error() {
    if !is_root() {
        eprintln!("skipped: mounting needs root");
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let b = base.path().display();
    let (_root, config) = config_with(&format!(
        "mounts:\n  - [tmpfs, {b}/x, nosuchfs, '']\n  - [tmpfs, {b}/y, tmpfs, 'loop']\n  - [tmpfs, {b}/z, tmpfs, '']\n"
    ));
    let ns = Namespace::new();
    let failures = cloudinit::pre_console(&config, &host(&ns, Path::new("/dev/disk")));
    assert_eq!(
        failures,
        [
            format!("mounts[0]: tmpfs on {b}/x: unknown file system type nosuchfs"),
            format!("mounts[1]: tmpfs on {b}/y: not supported yet: the loop option (set up a loop device in bootcmd and name /dev/loopN)"),
        ]
    );
    assert_eq!(ns.mounts_on(&base.path().join("z")).len(), 1);

    let mut gone = host(&ns, Path::new("/dev/disk"));
    gone.mount_ns = Some("/nonexistent/ns/mnt".into());
    let failures = cloudinit::pre_console(&config, &gone);
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(
        failures[0].starts_with("mounts: failed to open the mount namespace /nonexistent/ns/mnt"),
        "{}",
        failures[0]
    );
}

/// swapoff on drop, so a failing test leaves no swap on.
struct SwapOff(PathBuf);

impl Drop for SwapOff {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::swapoff(c.as_ptr()) };
    }
}

fn swaps() -> String {
    std::fs::read_to_string("/proc/swaps").unwrap()
}

#[test]
fn swap_is_enabled_once_and_a_wrong_signature_is_named() {
    if !is_root() {
        eprintln!("skipped: swapon needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(dir.path()).unwrap();
    let file = dir.join("swapfile");
    // Written out, not sparse: the kernel refuses a swap file with holes.
    std::fs::write(&file, vec![0u8; 8 << 20]).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let plain = dir.join("plain");
    std::fs::write(&plain, vec![0u8; 1 << 20]).unwrap();
    let ok = Command::new("mkswap")
        .arg(&file)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: mkswap is missing or failed");
        return;
    }
    let (_root, config) = config_with(&format!(
        "mounts:\n  - [{f}, none, swap, 'sw,pri=3']\n  - [{p}, none, swap, sw]\n",
        f = file.display(),
        p = plain.display()
    ));
    let _off = SwapOff(file.clone());
    let ns = Namespace::new();
    let failures = cloudinit::pre_console(&config, &host(&ns, Path::new("/dev/disk")));
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert_eq!(
        failures[0],
        format!(
            "mounts[1]: {p} on none: {p} is not a swap area (no SWAPSPACE2 signature at offset {o}; run mkswap on it first)",
            p = plain.display(),
            o = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).unwrap().unwrap() - 10
        )
    );
    let line = swaps()
        .lines()
        .find(|l| l.starts_with(file.to_str().unwrap()))
        .map(str::to_owned);
    let line = line.expect("the swap file is listed in /proc/swaps");
    assert_eq!(
        line.split_whitespace().nth(4),
        Some("3"),
        "priority: {line}"
    );
    assert!(!swaps().contains(plain.to_str().unwrap()));

    // Again: already on, not an error.
    let failures = cloudinit::pre_console(&config, &host(&ns, Path::new("/dev/disk")));
    assert_eq!(failures.len(), 1, "{failures:#?}");
}
