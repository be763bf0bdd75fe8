//! Stage 1, in the initrd: mounts, modules, system image, state, switch root.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{mount, MsFlags};

use crate::probe::DeviceSpec;
use crate::{kmod, loopdev, probe, Error};

/// Labels of the boot media that carry the system image.
pub const MEDIA_LABELS: &[&str] = &["OXOS", "RANCHER_BOOT"];
/// Where the system image is on a boot medium.
pub const SYSTEM_IMAGE: &str = "oxos/system.img";
/// How long to wait for the boot medium to show up.
const MEDIA_WAIT: Duration = Duration::from_secs(30);

fn io(what: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let what = what.into();
    move |e| Error::Io {
        what,
        source: std::io::Error::from(e),
    }
}

fn mkdir(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|source| Error::Io {
        what: format!("create {}", path.display()),
        source,
    })
}

/// Mounts `fstype` `source` on `target` (created first).
pub fn mount_fs(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), Error> {
    mkdir(target)?;
    mount(Some(source), target, Some(fstype), flags, data).map_err(io(format!(
        "mount {source} ({fstype}) on {}",
        target.display()
    )))
}

/// The API file systems every Linux system needs, and cgroup2 with every
/// controller enabled for the containers below the root.
pub fn early_mounts() -> Result<(), Error> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    mount_fs("proc", Path::new("/proc"), "proc", nosuid, None)?;
    mount_fs("sysfs", Path::new("/sys"), "sysfs", nosuid, None)?;
    mount_fs(
        "devtmpfs",
        Path::new("/dev"),
        "devtmpfs",
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )?;
    mount_fs(
        "devpts",
        Path::new("/dev/pts"),
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("gid=5,mode=620,ptmxmode=666"),
    )?;
    mount_fs(
        "shm",
        Path::new("/dev/shm"),
        "tmpfs",
        nosuid,
        Some("mode=1777"),
    )?;
    mount_fs(
        "run",
        Path::new("/run"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )?;
    mount_fs(
        "cgroup2",
        Path::new("/sys/fs/cgroup"),
        "cgroup2",
        nosuid,
        Some("nsdelegate"),
    )?;
    enable_controllers(Path::new("/sys/fs/cgroup"));
    make_engine_cgroup(Path::new("/sys/fs/cgroup"));
    Ok(())
}

/// Makes the system engine's parent cgroup now, while PID 1 runs alone,
/// rather than with the first container.
///
/// The first memory cgroup below the root switches on the kernel's memcg
/// static keys (and the first cpuset cgroup the cpuset ones), which
/// patches their call sites in slab and page allocation on every CPU. On
/// hardware and under KVM that is safe at any time; under QEMU's
/// multi-threaded TCG, a CPU that was allocating while the first container
/// started has twice died with "Oops: int3" in `kmem_cache_alloc` or
/// `__kmalloc`, the breakpoint of the patch, in the system tests. Here no
/// other CPU is busy. The engine makes the directory itself when it is
/// missing, so a failure here is only logged.
fn make_engine_cgroup(root: &Path) {
    let dir = root.join(engine::engine::DEFAULT_CGROUP_PARENT);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::warn!("cgroup2: cannot make {}: {e}", dir.display());
    }
}

/// Enables every available cgroup v2 controller for the children of `root`.
pub fn enable_controllers(root: &Path) {
    let Ok(available) = std::fs::read_to_string(root.join("cgroup.controllers")) else {
        tracing::warn!("cgroup2: no cgroup.controllers; containers get no resource limits");
        return;
    };
    for controller in available.split_whitespace() {
        if let Err(e) = std::fs::write(
            root.join("cgroup.subtree_control"),
            format!("+{controller}"),
        ) {
            tracing::warn!("cgroup2: cannot enable the {controller} controller: {e}");
        }
    }
}

/// Reads the kernel release (`uname -r`).
fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The initrd's modules that no device asks for, loaded at once: the file
/// systems stage 1 mounts (the boot medium: ext4 or ISO 9660; the system
/// image: squashfs on a loop device; the state: ext4) and what they ask
/// the kernel for by name. The initrd's other modules are drivers, loaded
/// for the devices present ([`InitrdModules`]).
const FILESYSTEM_MODULES: &[&str] = &[
    "loop",
    "squashfs",
    "erofs",
    "ext4",
    "isofs",
    "crc32c_generic",
    "nls_utf8",
];

/// How long stage 1 looks for the boot medium with the drivers of the
/// devices present before it loads every module of the initrd, for
/// hardware whose driver no device alias names. Devices that take longer
/// to show up (a USB stick: enumeration, then usb-storage's settle time of
/// 1 s) get the old way, every module.
const ALL_MODULES_AFTER: Duration = Duration::from_secs(2);

/// Stage 1's kernel modules: the file systems, and the drivers of the
/// devices present, as udev's coldplug would load them (each device's
/// `modalias` through the initrd's modules.alias). Drivers bring new
/// devices (the disks behind a controller, a USB stick behind its host
/// controller), so [`InitrdModules::poll`] looks again while stage 1 waits
/// for the boot medium. The initrd holds drivers for many machines (IDE,
/// AHCI, NVMe, virtio, USB); loading all of them, as stage 1 once did,
/// took 2.2 s of a boot under QEMU without KVM, most of it for hardware
/// the machine does not have. The system's coldplug in stage 2 loads the
/// drivers of every device anyway.
struct InitrdModules {
    index: kmod::ModuleIndex,
    /// Device aliases already looked at.
    seen: std::collections::BTreeSet<String>,
    started: Instant,
    /// Every module was loaded ([`ALL_MODULES_AFTER`]).
    all: bool,
}

impl InitrdModules {
    /// Reads the initrd's module index and loads the file systems and the
    /// drivers of the devices present; None (logged) without an index.
    fn load(release: &str) -> Option<Self> {
        let dir = Path::new("/lib/modules").join(release);
        let index = match kmod::ModuleIndex::load(&dir) {
            Ok(index) => index,
            Err(e) => {
                tracing::warn!("no initrd modules: {e}");
                return None;
            }
        };
        let mut modules = Self {
            index,
            seen: Default::default(),
            started: Instant::now(),
            all: false,
        };
        let filesystems: Vec<String> = FILESYSTEM_MODULES
            .iter()
            .filter(|m| modules.index.resolve(m).is_ok())
            .map(|m| m.to_string())
            .collect();
        let drivers = modules.new_drivers();
        // Drivers first: the boot medium shows up while the file systems
        // load.
        let (loaded, failed) = modules.load_all(&[drivers.as_slice(), &filesystems].concat());
        tracing::info!(
            "loaded {loaded} initrd modules for {} devices and the file systems ({failed} failed, {} at a time)",
            modules.seen.len(),
            kmod::load_threads()
        );
        Some(modules)
    }

    /// The drivers of the devices that appeared since the last look.
    fn new_drivers(&mut self) -> Vec<String> {
        let aliases = kmod::device_aliases(Path::new("/sys"));
        let new: Vec<String> = aliases.difference(&self.seen).cloned().collect();
        self.seen.extend(new.iter().cloned());
        kmod::drivers_for(&self.index, &new)
    }

    /// Loads `names`; returns how many loaded and how many failed (each
    /// failure logged).
    fn load_all(&self, names: &[String]) -> (usize, usize) {
        let errors = kmod::load_parallel(&self.index, names, kmod::load_threads());
        for (_, e) in &errors {
            tracing::warn!("{e}");
        }
        (names.len() - errors.len(), errors.len())
    }

    /// Loads the drivers of new devices, and every module of the initrd
    /// once [`ALL_MODULES_AFTER`] has passed.
    fn poll(&mut self) {
        let drivers = self.new_drivers();
        if !drivers.is_empty() {
            let (loaded, _) = self.load_all(&drivers);
            tracing::info!("loaded {loaded} initrd modules for new devices");
        }
        if !self.all && self.started.elapsed() >= ALL_MODULES_AFTER {
            self.all = true;
            let names: Vec<String> = self.index.names().map(str::to_string).collect();
            tracing::info!(
                "still waiting after {} s with the drivers of the devices present; loading every initrd module",
                ALL_MODULES_AFTER.as_secs()
            );
            let (loaded, failed) = self.load_all(&names);
            tracing::info!("loaded {loaded} initrd modules ({failed} failed)");
        }
    }
}

/// Polls until `find` gives something or `wait` has passed.
fn wait_for<T>(wait: Duration, mut find: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(found) = find() {
            return Some(found);
        }
        if start.elapsed() >= wait {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Finds the boot medium, mounts it read-only on `media` and the system image
/// on `system`.
fn mount_system_image(
    media: &Path,
    system: &Path,
    modules: &mut Option<InitrdModules>,
) -> Result<(), Error> {
    let sys = Path::new("/sys");
    let dev = Path::new("/dev");
    let (device, found) = wait_for(MEDIA_WAIT, || {
        modules.iter_mut().for_each(InitrdModules::poll);
        let devices = probe::block_devices(sys, dev);
        MEDIA_LABELS
            .iter()
            .find_map(|label| probe::find_label(&devices, label))
    })
    .ok_or_else(|| {
        Error::NoDevice(
            format!("labelled {}", MEDIA_LABELS.join(" or ")),
            MEDIA_WAIT.as_secs(),
        )
    })?;
    tracing::info!(
        "boot medium: {} ({}, label {})",
        device.display(),
        found.fstype,
        found.label
    );
    mount_fs(
        &device.to_string_lossy(),
        media,
        found.fstype,
        MsFlags::MS_RDONLY,
        None,
    )?;
    let image = media.join(SYSTEM_IMAGE);
    let attached = loopdev::attach_read_only(dev, &image)?;
    let loop_dev = attached.device.clone();
    mount_fs(
        &loop_dev.to_string_lossy(),
        system,
        "squashfs",
        MsFlags::MS_RDONLY | MsFlags::MS_NODEV,
        None,
    )?;
    tracing::info!(
        "system image: {} on {}",
        image.display(),
        loop_dev.display()
    );
    Ok(())
}

/// What the command line says about the state partition.
#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    /// `rancher.state.dev`.
    pub dev: String,
    /// `rancher.state.fstype` (`auto`: what the device holds).
    pub fstype: String,
    /// `rancher.state.wait`: wait for the device to show up.
    pub wait: bool,
    /// `rancher.state.required`: without it, boot stops.
    pub required: bool,
    /// `rancher.state.autoformat`: empty disks that may be formatted.
    pub autoformat: Vec<String>,
    /// `rancher.state.directory`: a directory of the state used as the root.
    pub directory: Option<String>,
}

impl StateConfig {
    /// Reads `rancher.state.*` from a config (the command line's layer).
    pub fn from_config(config: &config::Config) -> Self {
        let get = |key: &str| config.get(key).ok().flatten().cloned();
        let text = |key: &str| match get(key) {
            Some(serde_norway::Value::String(s)) => Some(s),
            Some(serde_norway::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let flag = |key: &str| {
            matches!(get(key), Some(serde_norway::Value::Bool(true)))
                || text(key).is_some_and(|s| s == "true")
        };
        let autoformat = match get("rancher.state.autoformat") {
            Some(serde_norway::Value::Sequence(items)) => items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(serde_norway::Value::String(s)) => vec![s],
            _ => Vec::new(),
        };
        StateConfig {
            dev: text("rancher.state.dev").unwrap_or_else(|| "LABEL=RANCHER_STATE".into()),
            fstype: text("rancher.state.fstype").unwrap_or_else(|| "auto".into()),
            wait: flag("rancher.state.wait"),
            required: flag("rancher.state.required"),
            autoformat,
            directory: text("rancher.state.directory").filter(|d| !d.is_empty()),
        }
    }
}

/// Whether the first MiB of a device is all zeros (an empty disk).
fn is_empty_disk(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut buf = vec![0u8; 1 << 20];
    file.read_exact(&mut buf).is_ok() && buf.iter().all(|b| *b == 0)
}

/// The label an autoformatted state disk gets (found by the default
/// `rancher.state.dev` at every later boot).
const AUTOFORMAT_LABEL: &str = "RANCHER_STATE";
/// Debian's mke2fs with its libraries and loader, in the initrd (the build
/// puts them there; see xtask's os/tools.rs).
const TOOLS: &str = "/usr/lib/oxos-tools";

/// Formats `disk` as ext4 labelled [`AUTOFORMAT_LABEL`] with mke2fs, run
/// through the loader that comes with it.
fn format_state(disk: &Path) -> Result<(), Error> {
    let tools = Path::new(TOOLS);
    let out = std::process::Command::new(tools.join("ld-linux-x86-64.so.2"))
        .arg("--library-path")
        .arg(tools)
        .arg(tools.join("mke2fs"))
        .args(["-q", "-F", "-t", "ext4", "-L", AUTOFORMAT_LABEL])
        .arg(disk)
        .output()
        .map_err(|source| Error::Io {
            what: format!("run {TOOLS}/mke2fs"),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "mke2fs {} failed ({}): {}",
            disk.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Mounts the state on `target`; returns false (and mounts a tmpfs there)
/// when there is none.
fn mount_state(
    state: &StateConfig,
    target: &Path,
    modules: &mut Option<InitrdModules>,
) -> Result<bool, Error> {
    let sys = Path::new("/sys");
    let dev = Path::new("/dev");
    let found = match DeviceSpec::parse(&state.dev) {
        Ok(spec) => {
            let wait = if state.wait {
                Duration::from_secs(10)
            } else {
                Duration::from_secs(3)
            };
            wait_for(wait, || {
                modules.iter_mut().for_each(InitrdModules::poll);
                spec.find(sys, dev)
            })
        }
        Err(e) => {
            tracing::error!("rancher.state.dev: {e}");
            None
        }
    };
    if let Some((device, probed)) = found {
        let fstype = match (state.fstype.as_str(), &probed) {
            ("auto", Some(p)) => p.fstype.to_string(),
            ("auto", None) => "ext4".to_string(),
            (other, _) => other.to_string(),
        };
        let condition = match crate::probe::ext4_clean(&device) {
            Some(true) => ", clean",
            Some(false) => ", NOT cleanly unmounted (the journal is replayed)",
            None => "",
        };
        match mount_fs(
            &device.to_string_lossy(),
            target,
            &fstype,
            MsFlags::empty(),
            None,
        ) {
            Ok(()) => {
                tracing::info!("state: {} ({fstype}) mounted{condition}", device.display());
                return Ok(true);
            }
            Err(e) => tracing::error!("state: {e}"),
        }
    } else {
        tracing::warn!("state: no device {}", state.dev);
        for disk in &state.autoformat {
            let path = PathBuf::from(disk);
            if !path.exists() || !is_empty_disk(&path) {
                continue;
            }
            tracing::info!("state: {disk} is empty and listed in rancher.state.autoformat: formatting it as ext4 {AUTOFORMAT_LABEL}");
            if let Err(e) = format_state(&path) {
                tracing::error!("state: {e}");
                continue;
            }
            match mount_fs(disk, target, "ext4", MsFlags::empty(), None) {
                Ok(()) => {
                    tracing::info!("state: {disk} (ext4) mounted, formatted at this boot");
                    return Ok(true);
                }
                Err(e) => tracing::error!("state: {e}"),
            }
        }
    }
    if state.required {
        return Err(Error::Other(format!(
            "rancher.state.required is set and the state {} cannot be mounted",
            state.dev
        )));
    }
    tracing::warn!("state: none; running from memory, nothing will persist across a reboot");
    mount_fs(
        "state",
        target,
        "tmpfs",
        MsFlags::empty(),
        Some("mode=0755"),
    )?;
    Ok(false)
}

/// The initrd's `ros` (stage 1 runs it as /init). The system image ships
/// an empty /usr/bin/ros in its place, and ros is bound over it: one copy
/// of ros on the boot medium instead of two (5 MB of the ISO).
const INITRD_ROS: &str = "/init";

/// Where, on a state disk, stage 1 keeps the copy of the initrd's ros that
/// the system runs (relative to the root).
pub const ROS_ON_STATE: &str = "var/lib/oxos/ros";

/// Deletes the initrd's files (not crossing into mounts), as switch_root
/// does, so that their memory is freed; [`INITRD_ROS`] is kept when it is
/// the system's /usr/bin/ros (`keep_ros`).
fn free_initramfs(dir: &Path, root_dev: u64, keep_ros: bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != root_dev {
            continue;
        }
        if meta.is_dir() {
            free_initramfs(&path, root_dev, keep_ros);
            let _ = std::fs::remove_dir(&path);
        } else if !keep_ros || path != Path::new(INITRD_ROS) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Moves `/dev`, `/proc`, `/sys`, `/run` into `new_root`, then each of
/// `keep` (a mount of the initrd, and where it goes in the new root), makes
/// `new_root` the root, and frees the initrd (but for its ros when
/// `keep_ros`).
fn switch_root(new_root: &Path, keep: &[(&Path, &str)], keep_ros: bool) -> Result<(), Error> {
    let moves = ["/dev", "/proc", "/sys", "/run"]
        .iter()
        .map(|api| (Path::new(*api), *api))
        .chain(keep.iter().copied());
    for (from, to) in moves {
        let target = new_root.join(to.trim_start_matches('/'));
        mkdir(&target)?;
        mount(
            Some(from),
            &target,
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(io(format!(
            "move {} to {}",
            from.display(),
            target.display()
        )))?;
    }
    let root_dev = std::fs::metadata("/").map(|m| m.dev()).unwrap_or(0);
    std::env::set_current_dir(new_root).map_err(|source| Error::Io {
        what: format!("enter {}", new_root.display()),
        source,
    })?;
    free_initramfs(Path::new("/"), root_dev, keep_ros);
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(io("move the new root to /"))?;
    nix::unistd::chroot(".").map_err(io("chroot into the new root"))?;
    std::env::set_current_dir("/").map_err(|source| Error::Io {
        what: "enter /".into(),
        source,
    })
}

/// Binds ros over the system image's empty `usr/bin/ros` (read-only); a
/// system image that holds ros itself keeps it. Returns whether the
/// system runs the initrd's file, which must then be kept.
///
/// With the state on a disk (`persistent`), the system runs a copy of the
/// initrd's ros on it ([`ROS_ON_STATE`], written only when it differs), and
/// the initrd's file is freed: ros's 15 MB are then page cache that the
/// kernel reads as needed and may drop under pressure, as any
/// distribution's init on its root disk, instead of memory held for good.
/// Without a state disk, or when the copy cannot be written (a full disk),
/// the system runs the initrd's file, as it stays in memory.
fn bind_ros(usr: &Path, root: &Path, persistent: bool) -> Result<bool, Error> {
    let target = usr.join("bin/ros");
    let empty = std::fs::metadata(&target).is_ok_and(|m| m.is_file() && m.len() == 0);
    if !empty {
        return Ok(false);
    }
    let initrd = PathBuf::from(INITRD_ROS);
    let source = if persistent {
        let copy = root.join(ROS_ON_STATE);
        match copy_if_changed(&initrd, &copy) {
            Ok(wrote) => {
                tracing::info!(
                    "ros: running the copy in /{ROS_ON_STATE} on the state disk ({})",
                    if wrote {
                        "written at this boot"
                    } else {
                        "unchanged"
                    }
                );
                copy
            }
            Err(e) => {
                tracing::warn!(
                    "ros: cannot copy it to /{ROS_ON_STATE} on the state disk ({e}); it stays in memory"
                );
                initrd.clone()
            }
        }
    } else {
        initrd.clone()
    };
    mount(
        Some(source.as_path()),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(io(format!(
        "bind {} as {}",
        source.display(),
        target.display()
    )))?;
    let _ = mount(
        None::<&str>,
        &target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    );
    Ok(source == initrd)
}

/// Makes `to` an executable copy of `from` unless it is one already: a new
/// file beside it with mode 0755, synced, renamed over it, and the
/// directory synced ([`runtime::protocol::write_atomic_with_mode`]), so
/// that a power cut leaves the old copy or the new one. Returns whether it
/// wrote.
pub fn copy_if_changed(from: &Path, to: &Path) -> std::io::Result<bool> {
    let content = std::fs::read(from)?;
    let same = std::fs::metadata(to).is_ok_and(|m| m.is_file() && m.mode() & 0o777 == 0o755)
        && std::fs::read(to).is_ok_and(|old| old == content);
    if same {
        return Ok(false);
    }
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    atomic_file::Options::new()
        .mode(0o755)
        .write(to, &content)?;
    Ok(true)
}

/// Stage 1. Ends by executing stage 2; returns only on failure.
pub fn run(after_dashes: &[String]) -> Result<Infallible, Error> {
    early_mounts()?;
    let release = kernel_release();
    tracing::info!(
        "OxOS {} starting on Linux {release} (PID 1, stage 1)",
        env!("CARGO_PKG_VERSION")
    );
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let layers = config::cmdline::parse(&cmdline);
    let mut merged = layers.kernel.clone();
    merged.merge(&config::cmdline::parse(&format!("-- {}", after_dashes.join(" "))).after_dashes);

    let mut modules = InitrdModules::load(&release);

    // /sysroot is the new root; the media and system image are mounted
    // inside its /run once /run has moved, so mount them aside first.
    let media = Path::new("/media-boot");
    let system = Path::new("/system");
    mount_system_image(media, system, &mut modules)?;

    let new_root = Path::new("/sysroot");
    let state = StateConfig::from_config(&merged);
    let persistent = mount_state(&state, new_root, &mut modules)?;
    let root = match &state.directory {
        Some(dir) => {
            let root = new_root.join(dir.trim_start_matches('/'));
            mkdir(&root)?;
            mount(
                Some(root.as_path()),
                new_root,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(io(format!("bind {} as the root", root.display())))?;
            new_root.to_path_buf()
        }
        None => new_root.to_path_buf(),
    };
    // /usr from the system image, read-only.
    let usr = root.join("usr");
    mkdir(&usr)?;
    mount(
        Some(system.join("usr").as_path()),
        &usr,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(io("bind the system image's /usr"))?;
    let _ = mount(
        None::<&str>,
        &usr,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    );
    let keep_ros = bind_ros(&usr, &root, persistent)?;
    if !persistent {
        std::fs::write(root.join(".oxos-ephemeral"), "state is in memory\n").ok();
    }
    // The media and the system image stay reachable under /run/oxos.
    switch_root(
        &root,
        &[(media, "/run/oxos/media"), (system, "/run/oxos/system")],
        keep_ros,
    )?;
    tracing::info!("switched to the new root; starting stage 2");
    let exe = CString::new("/usr/bin/ros").unwrap_or_default();
    let mut argv: Vec<CString> = ["init", "--stage2", "--"]
        .iter()
        .map(|s| CString::new(*s).unwrap_or_default())
        .collect();
    argv.extend(
        after_dashes
            .iter()
            .filter_map(|a| CString::new(a.as_str()).ok()),
    );
    match nix::unistd::execv(&exe, &argv) {
        Ok(never) => match never {},
        Err(e) => Err(io("run /usr/bin/ros init --stage2")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_settings_from_the_command_line() {
        let c = config::cmdline::parse(
            "console=ttyS0 rancher.state.dev=LABEL=MYSTATE rancher.state.wait \
             rancher.state.autoformat=[/dev/sda,/dev/vda] rancher.state.directory=/os",
        );
        let s = StateConfig::from_config(&c.kernel);
        assert_eq!(s.dev, "LABEL=MYSTATE");
        assert!(s.wait);
        assert!(!s.required);
        assert_eq!(s.autoformat, ["/dev/sda", "/dev/vda"]);
        assert_eq!(s.directory.as_deref(), Some("/os"));
        let d = StateConfig::from_config(&config::cmdline::parse("quiet").kernel);
        assert_eq!(d.dev, "LABEL=RANCHER_STATE");
        assert_eq!(d.fstype, "auto");
        assert!(!d.wait);
    }

    #[test]
    fn ros_is_copied_only_when_it_changed_and_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("init");
        let to = dir.path().join("state/var/lib/oxos/ros");
        std::fs::write(&from, b"ros 1").unwrap();
        assert!(copy_if_changed(&from, &to).unwrap());
        assert_eq!(std::fs::read(&to).unwrap(), b"ros 1");
        let meta = std::fs::metadata(&to).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o755);

        // The same ros again: the file is not written (same inode, same
        // time), so a boot costs a read, not a write.
        assert!(!copy_if_changed(&from, &to).unwrap());
        let again = std::fs::metadata(&to).unwrap();
        assert_eq!(
            (again.ino(), again.mtime_nsec()),
            (meta.ino(), meta.mtime_nsec())
        );

        // A new ros (an upgrade) replaces it, and nothing is left beside it.
        std::fs::write(&from, b"ros 2, longer").unwrap();
        assert!(copy_if_changed(&from, &to).unwrap());
        assert_eq!(std::fs::read(&to).unwrap(), b"ros 2, longer");
        let names: Vec<_> = std::fs::read_dir(to.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["ros"]);

        // A copy that lost its execute bits is written again.
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(copy_if_changed(&from, &to).unwrap());

        // A place that cannot be written is an error, and the old copy stays.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"").unwrap();
        assert!(copy_if_changed(&from, &blocked.join("ros")).is_err());
        assert_eq!(std::fs::read(&to).unwrap(), b"ros 2, longer");
    }

    #[test]
    fn an_empty_disk_is_all_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("d");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(2 << 20)
            .unwrap();
        assert!(is_empty_disk(&disk));
        std::fs::write(&disk, b"data").unwrap();
        assert!(!is_empty_disk(&disk));
    }
}
