//! The QEMU command line, the config drive, and the detached boot that waits
//! for patterns on the serial console.
//!
//! The rules of the design hold for every boot: `-accel tcg`, and user-mode
//! networking with `restrict=on` whose only way in is an SSH port forwarded
//! from 127.0.0.1. Nothing else is ever added.

use anyhow::{bail, Context, Result};
use regex::Regex;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to boot from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Medium {
    Iso,
    Disk,
}

/// Where the serial console goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serial {
    /// The terminal (`-nographic`: serial and QEMU monitor on stdio, Ctrl-A X
    /// quits).
    Terminal,
    /// A file; no monitor, nothing on stdio.
    File(PathBuf),
}

/// UEFI firmware: a read-only code image and a writable copy of the
/// variable store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uefi {
    pub code: PathBuf,
    pub vars: PathBuf,
}

/// Everything one boot is made of.
#[derive(Clone, Debug)]
pub struct Machine {
    pub medium: Medium,
    pub image: PathBuf,
    pub mem_mb: u32,
    pub ssh_port: Option<u16>,
    /// The guest port `ssh_port` forwards to (22 unless rancher.ssh.port).
    pub ssh_guest_port: u16,
    pub config_drive: Option<PathBuf>,
    /// A raw disk attached before the config drive.
    pub extra_disk: Option<PathBuf>,
    /// A unix socket for QEMU's monitor (detached boots only).
    pub monitor: Option<PathBuf>,
    /// A USB keyboard on an xHCI controller, as bare-metal machines and
    /// servers' remote consoles have.
    pub usb_keyboard: bool,
    pub uefi: Option<Uefi>,
    pub serial: Serial,
    /// QEMU loads this kernel itself instead of the medium's boot loader,
    /// with a command line of the caller's choice (the medium is still
    /// attached: the initrd finds the system image on it).
    pub kernel: Option<DirectKernel>,
    /// Serves a user-data file at [`USER_DATA_URL`] inside the guest's
    /// network (a `guestfwd` to a program; nothing leaves the machine).
    pub user_data_server: Option<PathBuf>,
}

/// A kernel, its initrd and command line for `-kernel`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectKernel {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
}

/// Where the guest finds the user-data that [`Machine::user_data_server`]
/// serves: an address of QEMU's user network that QEMU itself answers.
pub const USER_DATA_URL: &str = "http://10.0.2.100/user-data";
/// The address and port of [`USER_DATA_URL`], as `guestfwd` names them.
const USER_DATA_ADDR: &str = "10.0.2.100:80";

/// The arguments of `qemu-system-x86_64` for `m`.
pub fn args(m: &Machine) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&["-accel", "tcg", "-machine", "pc", "-cpu", "max"]);
    push(&["-m", &m.mem_mb.to_string(), "-smp", "2"]);
    // A kernel panic or a reboot ends QEMU instead of looping.
    push(&["-no-reboot"]);
    let mut nic = "user,restrict=on,model=virtio-net-pci".to_string();
    if let Some(port) = m.ssh_port {
        nic.push_str(&format!(
            ",hostfwd=tcp:127.0.0.1:{port}-:{}",
            m.ssh_guest_port
        ));
    }
    if let Some(script) = &m.user_data_server {
        // QEMU runs the program for each connection of the guest to the
        // address, with the connection on its stdin and stdout; `restrict`
        // leaves explicit forwards alone. Commas in an option value are
        // doubled.
        nic.push_str(&format!(
            ",guestfwd=tcp:{USER_DATA_ADDR}-cmd:/bin/sh {}",
            script.display().to_string().replace(',', ",,")
        ));
    }
    push(&["-nic", &nic]);
    match &m.serial {
        Serial::Terminal => push(&["-nographic"]),
        Serial::File(log) => {
            let monitor = match &m.monitor {
                Some(socket) => format!("unix:{},server=on,wait=off", socket.display()),
                None => "none".into(),
            };
            push(&[
                "-display",
                "none",
                "-monitor",
                &monitor,
                "-serial",
                &format!("file:{}", log.display()),
            ])
        }
    }
    if let Some(uefi) = &m.uefi {
        push(&[
            "-drive",
            &format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                uefi.code.display()
            ),
            "-drive",
            &format!("if=pflash,format=raw,unit=1,file={}", uefi.vars.display()),
        ]);
    }
    if let Some(k) = &m.kernel {
        push(&[
            "-kernel",
            &k.kernel.display().to_string(),
            "-initrd",
            &k.initrd.display().to_string(),
            "-append",
            &k.cmdline,
        ]);
    }
    match m.medium {
        Medium::Iso => push(&[
            "-drive",
            &format!(
                "file={},format=raw,if=ide,media=cdrom,readonly=on",
                m.image.display()
            ),
            "-boot",
            "order=d",
        ]),
        Medium::Disk => push(&[
            "-drive",
            &format!("file={},format=qcow2,if=virtio", m.image.display()),
            "-boot",
            "order=c",
        ]),
    }
    if let Some(disk) = &m.extra_disk {
        push(&[
            "-drive",
            &format!("file={},format=raw,if=virtio", disk.display()),
        ]);
    }
    if let Some(drive) = &m.config_drive {
        push(&[
            "-drive",
            &format!("file={},format=raw,if=virtio,readonly=on", drive.display()),
        ]);
    }
    if m.usb_keyboard {
        push(&["-device", "qemu-xhci", "-device", "usb-kbd"]);
    }
    a
}

/// UEFI firmware from Debian's `ovmf` package: the 4M build if present,
/// else the 2M one. The variable store is copied to `vars_copy` (QEMU writes
/// to it).
pub fn find_ovmf(vars_copy: &Path) -> Result<Uefi> {
    let dir = Path::new("/usr/share/OVMF");
    for (code, vars) in [
        ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
        ("OVMF_CODE.fd", "OVMF_VARS.fd"),
    ] {
        let (code, vars) = (dir.join(code), dir.join(vars));
        if code.is_file() && vars.is_file() {
            std::fs::copy(&vars, vars_copy).with_context(|| {
                format!("cannot copy {} to {}", vars.display(), vars_copy.display())
            })?;
            return Ok(Uefi {
                code,
                vars: vars_copy.to_path_buf(),
            });
        }
    }
    bail!("no OVMF firmware in /usr/share/OVMF (install the ovmf package)")
}

/// How the cloud-config of `xtask run --cloud-config` reaches the guest:
/// the datasources a user would bring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Datasource {
    /// An OpenStack config drive: an ISO 9660 image labelled config-2 (the
    /// default list of datasources finds it).
    ConfigDrive,
    /// The same layout on a FAT file system labelled config-2.
    ConfigDriveFat,
    /// A NoCloud seed: an ISO labelled cidata with user-data and meta-data
    /// (needs `rancher.cloud_init.datasources=[nocloud]`, which `xtask run`
    /// puts on the command line).
    Nocloud,
    /// Served over HTTP at [`USER_DATA_URL`] (needs
    /// `rancher.cloud_init.datasources=[url:...]`, also put on the command
    /// line).
    Url,
}

impl Datasource {
    /// The `rancher.cloud_init.datasources` entry that finds this source,
    /// when the default list does not.
    pub fn entry(self) -> Option<String> {
        match self {
            Datasource::ConfigDrive | Datasource::ConfigDriveFat => None,
            Datasource::Nocloud => Some("nocloud".into()),
            Datasource::Url => Some(format!("url:{USER_DATA_URL}")),
        }
    }
}

/// The OpenStack config drive layout (`openstack/latest/user_data`, and
/// `meta_data.json` when given) under `dir`: [`make_config_drive`] turns it
/// into a drive labelled `config-2`.
pub fn config_drive_tree(dir: &Path, user_data: &[u8], meta_data: Option<&[u8]>) -> Result<()> {
    let latest = dir.join("openstack/latest");
    std::fs::create_dir_all(&latest)
        .with_context(|| format!("cannot create {}", latest.display()))?;
    std::fs::write(latest.join("user_data"), user_data)
        .with_context(|| format!("cannot write {}/user_data", latest.display()))?;
    if let Some(meta) = meta_data {
        std::fs::write(latest.join("meta_data.json"), meta)
            .with_context(|| format!("cannot write {}/meta_data.json", latest.display()))?;
    }
    Ok(())
}

/// The NoCloud seed layout under `dir`: `user-data`, and `meta-data` (the
/// given file, a JSON object being YAML too, or an instance id).
pub fn nocloud_tree(dir: &Path, user_data: &[u8], meta_data: Option<&[u8]>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join("user-data"), user_data)
        .with_context(|| format!("cannot write {}/user-data", dir.display()))?;
    std::fs::write(
        dir.join("meta-data"),
        meta_data.unwrap_or(b"instance-id: oxos-run\n"),
    )
    .with_context(|| format!("cannot write {}/meta-data", dir.display()))?;
    Ok(())
}

/// Builds the drive `out` for `source` from `cloud_config` (and the
/// metadata file `meta_data`); `work` is scratch space. Returns false for
/// [`Datasource::Url`], which has no drive.
pub fn make_config_drive(
    source: Datasource,
    cloud_config: &Path,
    meta_data: Option<&Path>,
    work: &Path,
    out: &Path,
) -> Result<bool> {
    let user_data = std::fs::read(cloud_config)
        .with_context(|| format!("cannot read cloud-config {}", cloud_config.display()))?;
    let meta = meta_data
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    let _ = std::fs::remove_dir_all(work);
    let _ = std::fs::remove_file(out);
    // The tools' messages go to stderr: `xtask run --detach` prints only
    // QEMU's pid and log on stdout, which callers parse.
    let iso = |label: &str| {
        crate::cmd::run_step(
            "config drive",
            Command::new("xorriso")
                .args(["-as", "mkisofs", "-quiet", "-J", "-R", "-V", label, "-o"])
                .arg(out)
                .arg(work)
                .stdout(std::io::stderr()),
        )
    };
    match source {
        Datasource::ConfigDrive => {
            config_drive_tree(work, &user_data, meta.as_deref())?;
            iso("config-2")?;
        }
        Datasource::Nocloud => {
            nocloud_tree(work, &user_data, meta.as_deref())?;
            iso("cidata")?;
        }
        Datasource::ConfigDriveFat => {
            config_drive_tree(work, &user_data, meta.as_deref())?;
            // 4 MiB of FAT12 with OpenStack's label; mtools copies the tree
            // in without a mount.
            crate::cmd::run_step(
                "config drive (FAT)",
                Command::new("mkfs.fat")
                    .args(["-C", "-n", "config-2"])
                    .arg(out)
                    .arg("4096")
                    .stdout(std::io::stderr()),
            )?;
            crate::cmd::run_step(
                "config drive (FAT) files",
                Command::new("mcopy")
                    .args(["-s", "-Q", "-i"])
                    .arg(out)
                    .arg(work.join("openstack"))
                    .arg("::/")
                    .stdout(std::io::stderr()),
            )?;
        }
        Datasource::Url => return Ok(false),
    }
    Ok(true)
}

/// Writes the program that QEMU runs for each connection to
/// [`USER_DATA_URL`] (see [`Machine::user_data_server`]): it reads the
/// request and answers with `user_data` for `GET /user-data`, 404 for
/// anything else. A shell script, as QEMU wants a command line; it reads
/// the file at each request, so a test may change it between boots.
pub fn user_data_server(script: &Path, user_data: &Path) -> Result<()> {
    if user_data.display().to_string().contains('\'') {
        bail!("{}: the path has a quote", user_data.display());
    }
    let body = format!(
        r#"# Serves {file} as http://10.0.2.100/user-data, one request per run.
IFS= read -r request
while IFS= read -r line; do
    case "$line" in ""|"$(printf '\r')") break ;; esac
done
set -- $request
if [ "$1" = GET ] && [ "$2" = /user-data ] && [ -f '{file}' ]; then
    printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' "$(wc -c < '{file}')"
    cat '{file}'
else
    printf 'HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
fi
"#,
        file = user_data.display()
    );
    std::fs::write(script, body).with_context(|| format!("cannot write {}", script.display()))
}

/// Waits until every pattern has matched the serial log, QEMU has exited, or
/// `timeout` has passed. Returns the patterns that never matched.
pub fn wait_for(
    child: &mut Child,
    log: &Path,
    patterns: &[Regex],
    timeout: Duration,
) -> Result<Vec<String>> {
    let start = Instant::now();
    loop {
        let text = std::fs::read(log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let missing = unmatched(patterns, &text);
        if missing.is_empty() {
            return Ok(missing);
        }
        if let Some(status) = child.try_wait().context("cannot wait for qemu")? {
            eprintln!("xtask: qemu exited ({status}) before every pattern matched");
            return Ok(missing);
        }
        if start.elapsed() >= timeout {
            eprintln!("xtask: timeout after {} s", timeout.as_secs());
            return Ok(missing);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The patterns that do not match `text`.
pub fn unmatched(patterns: &[Regex], text: &str) -> Vec<String> {
    patterns
        .iter()
        .filter(|p| !p.is_match(text))
        .map(|p| p.as_str().to_string())
        .collect()
}

/// Starts QEMU with stdio detached (serial to a file, QEMU's own messages
/// to `errors`), in its own process group so that a Ctrl-C of the caller
/// does not reach it.
pub fn spawn_detached(qemu: &str, args: &[String], errors: &Path) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let err = std::fs::File::create(errors)
        .with_context(|| format!("cannot create {}", errors.display()))?;
    Command::new(qemu)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {qemu}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            medium: Medium::Iso,
            image: "dist/oxos.iso".into(),
            mem_mb: 1024,
            ssh_port: None,
            ssh_guest_port: 22,
            config_drive: None,
            extra_disk: None,
            monitor: None,
            usb_keyboard: false,
            uefi: None,
            serial: Serial::Terminal,
            kernel: None,
            user_data_server: None,
        }
    }

    fn value_after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn every_boot_uses_tcg_and_restricted_user_networking_only() {
        for medium in [Medium::Iso, Medium::Disk] {
            let mut m = machine();
            m.medium = medium;
            m.ssh_port = Some(2222);
            let a = args(&m);
            assert_eq!(value_after(&a, "-accel"), ["tcg"]);
            assert_eq!(
                value_after(&a, "-nic"),
                ["user,restrict=on,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22"]
            );
            assert!(!a.iter().any(|x| x == "-netdev" || x == "-net"));
            assert!(!a.iter().any(|x| x.contains("0.0.0.0")));
        }
        let a = args(&machine());
        assert_eq!(
            value_after(&a, "-nic"),
            ["user,restrict=on,model=virtio-net-pci"]
        );
        // rancher.ssh.port moves sshd: the forward follows it.
        let mut m = machine();
        m.ssh_port = Some(2300);
        m.ssh_guest_port = 2222;
        assert_eq!(
            value_after(&args(&m), "-nic"),
            ["user,restrict=on,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2300-:2222"]
        );
    }

    #[test]
    fn iso_boots_from_cdrom_and_disk_from_virtio_qcow2() {
        let a = args(&machine());
        assert_eq!(
            value_after(&a, "-drive"),
            ["file=dist/oxos.iso,format=raw,if=ide,media=cdrom,readonly=on"]
        );
        assert_eq!(value_after(&a, "-boot"), ["order=d"]);
        let mut m = machine();
        m.medium = Medium::Disk;
        m.image = "dist/oxos.qcow2".into();
        let a = args(&m);
        assert_eq!(
            value_after(&a, "-drive"),
            ["file=dist/oxos.qcow2,format=qcow2,if=virtio"]
        );
        assert_eq!(value_after(&a, "-boot"), ["order=c"]);
    }

    #[test]
    fn detached_serial_goes_to_the_log_file_without_a_monitor() {
        let mut m = machine();
        m.serial = Serial::File("/tmp/x/serial.log".into());
        let a = args(&m);
        assert_eq!(value_after(&a, "-serial"), ["file:/tmp/x/serial.log"]);
        assert_eq!(value_after(&a, "-monitor"), ["none"]);
        assert!(!a.iter().any(|x| x == "-nographic"));
        let a = args(&machine());
        assert!(a.iter().any(|x| x == "-nographic"));
        assert!(value_after(&a, "-serial").is_empty());
    }

    #[test]
    fn uefi_adds_read_only_code_and_writable_vars_and_config_drive_a_disk() {
        let mut m = machine();
        m.uefi = Some(Uefi {
            code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            vars: "/tmp/vars.fd".into(),
        });
        m.config_drive = Some("/tmp/config.iso".into());
        m.mem_mb = 512;
        let a = args(&m);
        let drives = value_after(&a, "-drive");
        assert!(drives.contains(
            &"if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
        ));
        assert!(drives.contains(&"if=pflash,format=raw,unit=1,file=/tmp/vars.fd"));
        assert!(drives.contains(&"file=/tmp/config.iso,format=raw,if=virtio,readonly=on"));
        assert_eq!(value_after(&a, "-m"), ["512"]);
    }

    #[test]
    fn a_usb_keyboard_comes_with_its_xhci_controller_only_when_asked() {
        let mut m = machine();
        assert!(value_after(&args(&m), "-device").is_empty());
        m.usb_keyboard = true;
        assert_eq!(value_after(&args(&m), "-device"), ["qemu-xhci", "usb-kbd"]);
    }

    #[test]
    fn config_drive_tree_has_the_openstack_layout() {
        let dir = tempfile::tempdir().unwrap();
        config_drive_tree(dir.path(), b"#cloud-config\nhostname: a\n", None).unwrap();
        let data = std::fs::read(dir.path().join("openstack/latest/user_data")).unwrap();
        assert_eq!(data, b"#cloud-config\nhostname: a\n");
        assert!(!dir.path().join("openstack/latest/meta_data.json").exists());
        config_drive_tree(dir.path(), b"#cloud-config\n", Some(b"{}")).unwrap();
        let meta = std::fs::read(dir.path().join("openstack/latest/meta_data.json")).unwrap();
        assert_eq!(meta, b"{}");
    }

    #[test]
    fn nocloud_seed_has_user_data_and_meta_data() {
        let dir = tempfile::tempdir().unwrap();
        nocloud_tree(dir.path(), b"#cloud-config\n", None).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("user-data")).unwrap(),
            b"#cloud-config\n"
        );
        let meta = std::fs::read_to_string(dir.path().join("meta-data")).unwrap();
        assert!(meta.starts_with("instance-id:"), "{meta}");
    }

    #[test]
    fn the_url_datasource_is_a_guest_forward_to_a_program_and_nothing_else() {
        let mut m = machine();
        m.ssh_port = Some(2222);
        m.user_data_server = Some("/w/a,b/serve.sh".into());
        assert_eq!(
            value_after(&args(&m), "-nic"),
            [
                "user,restrict=on,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22,\
              guestfwd=tcp:10.0.2.100:80-cmd:/bin/sh /w/a,,b/serve.sh"
            ]
        );
        assert_eq!(
            Datasource::Url.entry().unwrap(),
            format!("url:{USER_DATA_URL}")
        );
        assert_eq!(Datasource::ConfigDriveFat.entry(), None);
    }

    /// The server answers a request as an HTTP client expects (run with
    /// the request on stdin, as QEMU's guestfwd does).
    #[test]
    fn the_user_data_server_answers_get_user_data_and_404_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let (script, data) = (dir.path().join("serve.sh"), dir.path().join("ud.yml"));
        std::fs::write(&data, "#cloud-config\nhostname: h\n").unwrap();
        user_data_server(&script, &data).unwrap();
        let ask = |request: &str| {
            use std::io::Write;
            let mut child = Command::new("/bin/sh")
                .arg(&script)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(request.as_bytes())
                .unwrap();
            String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
        };
        let ok = ask("GET /user-data HTTP/1.1\r\nHost: 10.0.2.100\r\n\r\n");
        assert_eq!(
            ok,
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 26\r\n\
             Connection: close\r\n\r\n#cloud-config\nhostname: h\n"
        );
        let missing = ask("GET /meta-data HTTP/1.1\r\n\r\n");
        assert!(
            missing.starts_with("HTTP/1.0 404 Not Found\r\n"),
            "{missing}"
        );
    }

    #[test]
    fn direct_kernel_boot_adds_kernel_initrd_and_command_line() {
        let mut m = machine();
        m.kernel = Some(DirectKernel {
            kernel: "/d/vmlinuz".into(),
            initrd: "/d/initrd.img".into(),
            cmdline: "console=ttyS0 -- cc.hostname=h".into(),
        });
        let a = args(&m);
        assert_eq!(value_after(&a, "-kernel"), ["/d/vmlinuz"]);
        assert_eq!(value_after(&a, "-initrd"), ["/d/initrd.img"]);
        assert_eq!(
            value_after(&a, "-append"),
            ["console=ttyS0 -- cc.hostname=h"]
        );
        // The medium stays: the initrd finds the system image on it.
        assert_eq!(
            value_after(&a, "-drive"),
            ["file=dist/oxos.iso,format=raw,if=ide,media=cdrom,readonly=on"]
        );
    }

    #[test]
    fn unmatched_lists_the_patterns_missing_from_the_log() {
        let pats = [
            Regex::new(r"Linux version 6\.").unwrap(),
            Regex::new("Attempted to kill init").unwrap(),
        ];
        let log = "[    0.000000] Linux version 6.12.1 (debian)\n";
        assert_eq!(unmatched(&pats, log), ["Attempted to kill init"]);
        assert!(unmatched(&pats, "Linux version 6.1\nAttempted to kill init!").is_empty());
    }
}
