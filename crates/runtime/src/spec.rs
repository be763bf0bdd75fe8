//! [`RunConfig`] to OCI runtime spec, with Docker's defaults.
//!
//! # Design
//!
//! [`generate`] is a pure function of the container's [`RunConfig`] and of
//! [`Facts`], the few things read from the system (the resolved user, the
//! cgroup version, device nodes). [`Facts::gather`] reads them; the unit
//! tests build them by hand.
//!
//! What Docker (moby's `oci.DefaultSpec` and `daemon/oci_linux.go`) does, and
//! so what this module does:
//!
//! - namespaces mount, pid, ipc, uts and network (new, empty: only `lo`),
//!   each replaced by the host's with `host_*`; cgroup namespace on cgroup v2;
//! - mounts `/proc`, `/dev` (tmpfs), `/dev/pts`, `/dev/shm`, `/dev/mqueue`,
//!   `/sys` (read-only unless privileged), `/sys/fs/cgroup`, then the bind
//!   mounts in order (`rbind`, `ro`/`rw`, propagation, `rprivate` by default);
//! - Docker's default capability set, changed by `cap_add`/`cap_drop` exactly
//!   as Docker's `TweakCapabilities` does (`ALL` included);
//! - default devices (null, zero, full, random, urandom, tty) and a device
//!   cgroup that denies everything else; extra devices with their permissions;
//! - Docker's masked and read-only paths of `/proc` and `/sys`;
//! - `RLIMIT_NOFILE` 1048576, `no_new_privileges` off;
//! - never more than the runtime holds: capabilities it lacks are left out,
//!   and `RLIMIT_NOFILE` is lowered to what it may set (both only matter when
//!   `ros` itself runs confined, as in a test container);
//! - privileged: every capability, every device node of the host, no masked
//!   or read-only paths, `/sys` and `/sys/fs/cgroup` writable.
//!
//! # Limitations
//!
//! - No seccomp profile: libcontainer's seccomp support needs libseccomp,
//!   which is left out so that `ros` links statically. Containers run with the
//!   capability set and namespaces as their only confinement.
//! - No AppArmor/SELinux labels, no user namespaces.
//! - On cgroup v2 the device rules are written to the spec but only enforced
//!   when libcontainer is built with eBPF device support (it is not).
//! - Shared bind propagation needs the source to be on a shared mount of the
//!   host; this is not checked.

use crate::error::{Error, Result};
use crate::protocol::{BindMount, DeviceMapping, RunConfig};
use crate::user::ExecUser;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice,
    LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// `PATH` given to processes whose environment has none (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capabilities.
pub const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability (what a privileged container gets), in the order of
/// their numbers in the kernel: `ALL_CAPABILITIES[n]` is capability `n`.
pub const ALL_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// Paths of /proc and /sys hidden from unprivileged containers (Docker's).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths of /proc mounted read-only in unprivileged containers (Docker's).
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `RLIMIT_NOFILE` of container processes.
pub const DEFAULT_NOFILE: u64 = 1_048_576;

/// A device node to create in the container, with its device cgroup access.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedDevice {
    pub device: LinuxDevice,
    /// Any of "r", "w", "m".
    pub access: String,
}

/// What [`generate`] needs from the system besides the [`RunConfig`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The container's process identity ([`crate::user::resolve_in_root`]).
    pub user: ExecUser,
    /// The host uses the unified cgroup v2 hierarchy.
    pub cgroup_v2: bool,
    /// Every device node of the host; only read for privileged containers.
    pub host_devices: Vec<LinuxDevice>,
    /// `RunConfig::devices` resolved to device nodes.
    pub devices: Vec<MappedDevice>,
    /// The capabilities the runtime itself holds; a container cannot be
    /// given more, so the others are left out (None: all).
    pub available_capabilities: Option<Capabilities>,
    /// The highest `RLIMIT_NOFILE` the runtime can set (None: no bound below
    /// [`DEFAULT_NOFILE`]).
    pub max_nofile: Option<u64>,
}

impl Facts {
    /// Reads the facts for `cfg` from the system; `rootfs` is the mounted
    /// root filesystem of the container (for /etc/passwd and /etc/group).
    pub fn gather(cfg: &RunConfig, rootfs: &Path) -> Result<Facts> {
        let user = crate::user::resolve_in_root(rootfs, &cfg.user)?;
        let mut devices = Vec::new();
        for mapping in &cfg.devices {
            devices.extend(resolve_device_mapping(mapping)?);
        }
        let host_devices = if cfg.privileged {
            host_devices(Path::new("/dev"))
        } else {
            Vec::new()
        };
        let available = own_capabilities();
        let max_nofile = match &available {
            Some(caps) if !caps.contains(&Capability::SysResource) => {
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                    .ok()
                    .map(|(_, hard)| hard)
            }
            _ => std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
        };
        Ok(Facts {
            user,
            cgroup_v2: is_cgroup_v2(),
            host_devices,
            devices,
            available_capabilities: available,
            max_nofile,
        })
    }
}

/// The effective capabilities of this process (None when unknown).
pub fn own_capabilities() -> Option<Capabilities> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    let bits = u64::from_str_radix(hex.trim(), 16).ok()?;
    Some(capabilities_from_bits(bits))
}

/// The capabilities whose bits are set in a kernel capability mask.
pub fn capabilities_from_bits(bits: u64) -> Capabilities {
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(n, _)| bits & (1u64 << n) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// True when /sys/fs/cgroup is the cgroup v2 (unified) hierarchy.
pub fn is_cgroup_v2() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// The device node at `path`, or None when it is not a character or block
/// device.
fn device_at(path: &Path, container_path: PathBuf) -> Result<Option<LinuxDevice>> {
    use nix::sys::stat::{lstat, major, minor, SFlag};
    let st = lstat(path).map_err(|e| Error::InvalidDevice {
        path: path.to_path_buf(),
        reason: e.desc().to_lowercase(),
    })?;
    let typ = match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFCHR => LinuxDeviceType::C,
        SFlag::S_IFBLK => LinuxDeviceType::B,
        _ => return Ok(None),
    };
    Ok(Some(
        LinuxDeviceBuilder::default()
            .path(container_path)
            .typ(typ)
            .major(major(st.st_rdev) as i64)
            .minor(minor(st.st_rdev) as i64)
            .file_mode(st.st_mode & 0o7777)
            .uid(st.st_uid)
            .gid(st.st_gid)
            .build()?,
    ))
}

/// `--device HOST:CONTAINER:PERMS`: one node, or every node under a directory
/// (as Docker does).
fn resolve_device_mapping(m: &DeviceMapping) -> Result<Vec<MappedDevice>> {
    let access = if m.permissions.is_empty() {
        "rwm".to_string()
    } else if m.permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        m.permissions.clone()
    } else {
        return Err(Error::InvalidDevice {
            path: m.path_on_host.clone(),
            reason: format!("invalid permissions {:?}", m.permissions),
        });
    };
    let in_container = if m.path_in_container.is_empty() {
        m.path_on_host.clone()
    } else {
        PathBuf::from(&m.path_in_container)
    };
    let meta = std::fs::metadata(&m.path_on_host).map_err(|e| Error::InvalidDevice {
        path: m.path_on_host.clone(),
        reason: e.to_string().to_lowercase(),
    })?;
    if meta.is_dir() {
        let mut out = Vec::new();
        let mut found = Vec::new();
        walk_devices(&m.path_on_host, &mut found);
        for (host_path, device) in found {
            let rel = host_path
                .strip_prefix(&m.path_on_host)
                .unwrap_or(&host_path)
                .to_path_buf();
            let mut device = device;
            device.set_path(in_container.join(rel));
            out.push(MappedDevice {
                device,
                access: access.clone(),
            });
        }
        return Ok(out);
    }
    // Follow a symlink such as /dev/disk/by-id/... to the node itself.
    let real = std::fs::canonicalize(&m.path_on_host).map_err(|e| Error::InvalidDevice {
        path: m.path_on_host.clone(),
        reason: e.to_string().to_lowercase(),
    })?;
    match device_at(&real, in_container)? {
        Some(device) => Ok(vec![MappedDevice { device, access }]),
        None => Err(Error::InvalidDevice {
            path: m.path_on_host.clone(),
            reason: "not a character or block device".to_string(),
        }),
    }
}

fn walk_devices(dir: &Path, out: &mut Vec<(PathBuf, LinuxDevice)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            walk_devices(&path, out);
        } else if let Ok(Some(dev)) = device_at(&path, path.clone()) {
            out.push((path, dev));
        }
    }
}

/// Every character and block device under `dev` (normally /dev), as Docker's
/// `HostDevices`: the directories of other mounts (pts, shm, mqueue, ...) and
/// /dev/console are skipped.
pub fn host_devices(dev: &Path) -> Vec<LinuxDevice> {
    const SKIP_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dev) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            if !SKIP_DIRS.iter().any(|s| name == *s) {
                let mut found = Vec::new();
                walk_devices(&path, &mut found);
                out.extend(found.into_iter().map(|(_, d)| d));
            }
        } else if name != "console" {
            if let Ok(Some(d)) = device_at(&path, path.clone()) {
                out.push(d);
            }
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

/// Parses "CAP_SYS_ADMIN", "sys_admin", "SYS_ADMIN".
pub fn parse_capability(name: &str) -> Result<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare).map_err(|_| Error::UnknownCapability(name.to_string()))
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

/// The capability set of a container, as Docker's `TweakCapabilities`.
pub fn capabilities(
    privileged: bool,
    cap_add: &[String],
    cap_drop: &[String],
) -> Result<Capabilities> {
    if privileged {
        return Ok(ALL_CAPABILITIES.iter().copied().collect());
    }
    let parse = |list: &[String]| -> Result<Vec<Capability>> {
        list.iter()
            .filter(|c| !is_all(c))
            .map(|c| parse_capability(c))
            .collect()
    };
    let add = parse(cap_add)?;
    let drop = parse(cap_drop)?;
    let caps: Capabilities = if cap_add.iter().any(|c| is_all(c)) {
        ALL_CAPABILITIES
            .iter()
            .filter(|c| !drop.contains(c))
            .copied()
            .collect()
    } else if cap_drop.iter().any(|c| is_all(c)) {
        add.into_iter().collect()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .filter(|c| !drop.contains(c))
            .copied()
            .chain(add)
            .collect()
    };
    Ok(caps)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// Docker's default mounts.
fn default_mounts(privileged: bool) -> Result<Vec<Mount>> {
    let sys_mode = if privileged { "rw" } else { "ro" };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"],
        )?,
    ])
}

/// Propagation of a bind mount, normalized to the recursive form.
fn propagation(m: &BindMount) -> Result<&'static str> {
    Ok(match m.propagation.as_str() {
        "" | "rprivate" => "rprivate",
        "private" => "private",
        "shared" => "shared",
        "rshared" => "rshared",
        "slave" => "slave",
        "rslave" => "rslave",
        other => {
            return Err(Error::InvalidPropagation {
                propagation: other.to_string(),
                destination: m.destination.clone(),
            })
        }
    })
}

fn bind_mount(m: &BindMount) -> Result<Mount> {
    if !m.destination.starts_with('/') {
        return Err(Error::InvalidConfig(format!(
            "mount destination {:?} is not an absolute path",
            m.destination
        )));
    }
    let options = [
        "rbind",
        if m.read_only { "ro" } else { "rw" },
        propagation(m)?,
    ];
    Ok(MountBuilder::default()
        .destination(&m.destination)
        .typ("bind")
        .source(&m.source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn cgroup_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .access(access);
    if let Some(t) = typ {
        b = b.typ(t);
    }
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    Ok(b.build()?)
}

/// Docker's device cgroup: deny all, then allow mknod and the default nodes.
fn default_device_rules() -> Result<Vec<LinuxDeviceCgroup>> {
    use LinuxDeviceType::{B, C};
    let allow = |typ, major, minor, access| cgroup_rule(true, Some(typ), major, minor, access);
    Ok(vec![
        cgroup_rule(false, None, None, None, "rwm")?,
        allow(C, None, None, "m")?,
        allow(B, None, None, "m")?,
        allow(C, Some(1), Some(3), "rwm")?,    // null
        allow(C, Some(1), Some(5), "rwm")?,    // zero
        allow(C, Some(1), Some(7), "rwm")?,    // full
        allow(C, Some(5), Some(0), "rwm")?,    // tty
        allow(C, Some(1), Some(8), "rwm")?,    // random
        allow(C, Some(1), Some(9), "rwm")?,    // urandom
        allow(C, Some(136), None, "rwm")?,     // pts
        allow(C, Some(5), Some(2), "rwm")?,    // ptmx
        allow(C, Some(10), Some(200), "rwm")?, // tun
    ])
}

fn default_devices() -> Result<Vec<LinuxDevice>> {
    let dev = |path: &str, major, minor| -> Result<LinuxDevice> {
        Ok(LinuxDeviceBuilder::default()
            .path(path)
            .typ(LinuxDeviceType::C)
            .major(major)
            .minor(minor)
            .file_mode(0o666u32)
            .uid(0u32)
            .gid(0u32)
            .build()?)
    };
    Ok(vec![
        dev("/dev/null", 1, 3)?,
        dev("/dev/zero", 1, 5)?,
        dev("/dev/full", 1, 7)?,
        dev("/dev/random", 1, 8)?,
        dev("/dev/urandom", 1, 9)?,
        dev("/dev/tty", 5, 0)?,
    ])
}

/// The environment of the container's process: `cfg.env` plus `PATH` and
/// `HOME` when missing.
fn environment(env: &[String], user: &ExecUser) -> Vec<String> {
    let mut out = env.to_vec();
    let has = |key: &str| env.iter().any(|e| e.split('=').next() == Some(key));
    if !has("PATH") {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has("HOME") {
        out.push(format!("HOME={}", user.home));
    }
    out
}

/// The hostname of a container that has its own UTS namespace: the
/// configured one, else the first 12 characters of the id (as Docker).
fn hostname(cfg: &RunConfig) -> String {
    match &cfg.hostname {
        Some(h) if !h.is_empty() => h.clone(),
        _ => cfg.id.chars().take(12).collect(),
    }
}

/// Builds the OCI runtime spec of a container.
pub fn generate(cfg: &RunConfig, facts: &Facts) -> Result<Spec> {
    if cfg.args.is_empty() {
        return Err(Error::InvalidConfig("no command given".to_string()));
    }
    if cfg.rootfs.target.as_os_str().is_empty() {
        return Err(Error::InvalidConfig("no rootfs target given".to_string()));
    }
    let mut caps = capabilities(cfg.privileged, &cfg.cap_add, &cfg.cap_drop)?;
    if let Some(available) = &facts.available_capabilities {
        caps.retain(|c| {
            let ok = available.contains(c);
            if !ok {
                tracing::debug!("leaving out capability {c}: the runtime does not hold it");
            }
            ok
        });
    }
    let nofile = facts
        .max_nofile
        .map_or(DEFAULT_NOFILE, |m| m.min(DEFAULT_NOFILE));
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()?;
    let user = UserBuilder::default()
        .uid(facts.user.uid)
        .gid(facts.user.gid)
        .additional_gids(facts.user.additional_gids.clone())
        .build()?;
    let cwd = if cfg.cwd.is_empty() {
        "/"
    } else {
        cfg.cwd.as_str()
    };
    if !cwd.starts_with('/') {
        return Err(Error::InvalidConfig(format!(
            "working directory {cwd:?} is not an absolute path"
        )));
    }
    let mut process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(cfg.args.clone())
        .env(environment(&cfg.env, &facts.user))
        .cwd(cwd)
        .capabilities(capabilities)
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(nofile)
            .soft(nofile)
            .build()?])
        .build()?;
    process.set_oom_score_adj(cfg.oom_score_adj);
    // Unset rather than false: the kernel default is off, and libcontainer
    // warns about seccomp whenever the field is present.
    process.set_no_new_privileges(None);

    // Namespaces.
    let mut namespaces = vec![LinuxNamespaceType::Mount];
    for (shared, typ) in [
        (cfg.host_pid, LinuxNamespaceType::Pid),
        (cfg.host_ipc, LinuxNamespaceType::Ipc),
        (cfg.host_uts, LinuxNamespaceType::Uts),
        (cfg.host_network, LinuxNamespaceType::Network),
    ] {
        if !shared {
            namespaces.push(typ);
        }
    }
    if facts.cgroup_v2 {
        namespaces.push(LinuxNamespaceType::Cgroup);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()?;

    // Mounts, and the rootfs propagation that shared/slave binds need.
    let mut mounts = default_mounts(cfg.privileged)?;
    let mut rootfs_propagation = None;
    for m in &cfg.mounts {
        mounts.push(bind_mount(m)?);
        match propagation(m)? {
            "shared" | "rshared" => rootfs_propagation = Some("shared"),
            "slave" | "rslave" if rootfs_propagation.is_none() => {
                rootfs_propagation = Some("slave")
            }
            _ => {}
        }
    }

    // Devices and the device cgroup.
    let (devices, device_rules) = if cfg.privileged {
        let mut devices = facts.host_devices.clone();
        for m in &facts.devices {
            if !devices.iter().any(|d| d.path() == m.device.path()) {
                devices.push(m.device.clone());
            }
        }
        (devices, vec![cgroup_rule(true, None, None, None, "rwm")?])
    } else {
        let mut devices = default_devices()?;
        let mut rules = default_device_rules()?;
        for m in &facts.devices {
            devices.retain(|d| d.path() != m.device.path());
            devices.push(m.device.clone());
            rules.push(cgroup_rule(
                true,
                Some(m.device.typ()),
                Some(m.device.major()),
                Some(m.device.minor()),
                &m.access,
            )?);
        }
        (devices, rules)
    };

    // Resources.
    let r = &cfg.resources;
    let mut resources = LinuxResourcesBuilder::default().devices(device_rules);
    if r.memory.is_some() || r.memory_swap.is_some() {
        let mut mem = LinuxMemoryBuilder::default();
        if let Some(m) = r.memory {
            mem = mem.limit(m);
        }
        if let Some(s) = r.memory_swap {
            mem = mem.swap(s);
        }
        resources = resources.memory(mem.build()?);
    }
    if r.cpu_shares.is_some()
        || r.cpu_quota.is_some()
        || r.cpu_period.is_some()
        || r.cpuset_cpus.is_some()
    {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(v) = r.cpu_shares {
            cpu = cpu.shares(v);
        }
        if let Some(v) = r.cpu_quota {
            cpu = cpu.quota(v);
        }
        if let Some(v) = r.cpu_period {
            cpu = cpu.period(v);
        }
        if let Some(v) = &r.cpuset_cpus {
            cpu = cpu.cpus(v.clone());
        }
        resources = resources.cpu(cpu.build()?);
    }
    if let Some(limit) = r.pids_limit {
        // Docker: 0 or a negative value means unlimited.
        let limit = if limit <= 0 { -1 } else { limit };
        resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
    }

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .devices(devices)
        .resources(resources.build()?);
    if !cfg.cgroup_path.is_empty() {
        linux = linux.cgroups_path(PathBuf::from(&cfg.cgroup_path));
    }
    if let Some(p) = rootfs_propagation {
        linux = linux.rootfs_propagation(p);
    }
    if cfg.privileged {
        linux = linux
            .masked_paths(Vec::<String>::new())
            .readonly_paths(Vec::<String>::new());
    } else {
        linux = linux
            .masked_paths(
                MASKED_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .readonly_paths(
                READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            );
    }

    let root = RootBuilder::default()
        .path(&cfg.rootfs.target)
        .readonly(cfg.read_only_rootfs)
        .build()?;
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(root)
        .process(process)
        .mounts(mounts)
        .linux(linux.build()?)
        .build()?;
    spec.set_hostname((!cfg.host_uts).then(|| hostname(cfg)));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Resources, Rootfs};

    fn base() -> RunConfig {
        RunConfig {
            id: "0123456789abcdef0123".to_string(),
            args: vec!["sh".to_string()],
            env: vec!["FOO=bar".to_string()],
            rootfs: Rootfs {
                target: PathBuf::from("/run/c/rootfs"),
                ..Default::default()
            },
            cgroup_path: "/system-docker/0123".to_string(),
            ..Default::default()
        }
    }

    fn facts() -> Facts {
        Facts {
            user: ExecUser {
                uid: 1000,
                gid: 100,
                additional_gids: vec![10],
                home: "/home/u".to_string(),
            },
            ..Default::default()
        }
    }

    fn namespaces(spec: &Spec) -> Vec<LinuxNamespaceType> {
        spec.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect()
    }

    fn mount_of<'a>(spec: &'a Spec, dest: &str) -> &'a Mount {
        spec.mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new(dest))
            .unwrap_or_else(|| panic!("no mount {dest}"))
    }

    fn opts(m: &Mount) -> Vec<String> {
        m.options().clone().unwrap_or_default()
    }

    fn caps(spec: &Spec) -> Capabilities {
        spec.process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .clone()
            .unwrap()
    }

    #[test]
    fn namespaces_follow_host_flags() {
        use LinuxNamespaceType::*;
        type Tweak = fn(&mut RunConfig, &mut Facts);
        let cases: &[(&str, Tweak, &[LinuxNamespaceType])] = &[
            ("default", |_, _| {}, &[Mount, Pid, Ipc, Uts, Network]),
            (
                "host network",
                |c, _| c.host_network = true,
                &[Mount, Pid, Ipc, Uts],
            ),
            (
                "host pid",
                |c, _| c.host_pid = true,
                &[Mount, Ipc, Uts, Network],
            ),
            (
                "host ipc+uts",
                |c, _| {
                    c.host_ipc = true;
                    c.host_uts = true
                },
                &[Mount, Pid, Network],
            ),
            (
                "cgroup v2",
                |_, f| f.cgroup_v2 = true,
                &[Mount, Pid, Ipc, Uts, Network, Cgroup],
            ),
        ];
        for (name, tweak, want) in cases {
            let (mut c, mut f) = (base(), facts());
            tweak(&mut c, &mut f);
            let spec = generate(&c, &f).unwrap();
            assert_eq!(namespaces(&spec), *want, "{name}");
        }
    }

    #[test]
    fn hostname_only_with_own_uts_namespace() {
        let spec = generate(&base(), &facts()).unwrap();
        assert_eq!(spec.hostname().as_deref(), Some("0123456789ab"));
        let mut c = base();
        c.hostname = Some("web".to_string());
        assert_eq!(
            generate(&c, &facts()).unwrap().hostname().as_deref(),
            Some("web")
        );
        c.host_uts = true;
        assert_eq!(generate(&c, &facts()).unwrap().hostname(), &None);
    }

    #[test]
    fn runtime_limits_bound_capabilities_and_nofile() {
        // Mask of CHOWN (0), KILL (5) and SYS_RESOURCE (24).
        let bits = 1 | (1 << 5) | (1 << 24);
        let available = capabilities_from_bits(bits);
        assert_eq!(
            available,
            [Capability::Chown, Capability::Kill, Capability::SysResource]
                .into_iter()
                .collect()
        );
        let mut c = base();
        c.privileged = true;
        let f = Facts {
            available_capabilities: Some(available.clone()),
            max_nofile: Some(4096),
            ..facts()
        };
        let spec = generate(&c, &f).unwrap();
        assert_eq!(caps(&spec), available);
        let p = spec.process().as_ref().unwrap();
        let nofile = &p.rlimits().as_ref().unwrap()[0];
        assert_eq!((nofile.soft(), nofile.hard()), (4096, 4096));
    }

    #[test]
    fn capabilities_like_docker() {
        use Capability::*;
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let default: Capabilities = DEFAULT_CAPABILITIES.iter().copied().collect();
        let all: Capabilities = ALL_CAPABILITIES.iter().copied().collect();
        let with = |extra: &[Capability], without: &[Capability]| -> Capabilities {
            default
                .iter()
                .chain(extra)
                .filter(|c| !without.contains(c))
                .copied()
                .collect()
        };
        let cases: Vec<(bool, Vec<String>, Vec<String>, Capabilities)> = vec![
            (false, s(&[]), s(&[]), default.clone()),
            (false, s(&["NET_ADMIN"]), s(&[]), with(&[NetAdmin], &[])),
            (
                false,
                s(&["cap_sys_admin"]),
                s(&["CAP_CHOWN", "kill"]),
                with(&[SysAdmin], &[Chown, Kill]),
            ),
            (false, s(&["ALL"]), s(&[]), all.clone()),
            (
                false,
                s(&["all"]),
                s(&["SYS_ADMIN"]),
                all.iter().filter(|c| **c != SysAdmin).copied().collect(),
            ),
            (
                false,
                s(&["NET_BIND_SERVICE"]),
                s(&["ALL"]),
                [NetBindService].into_iter().collect(),
            ),
            (false, s(&[]), s(&["ALL"]), Capabilities::new()),
            (true, s(&[]), s(&["ALL"]), all.clone()),
        ];
        for (privileged, add, drop, want) in cases {
            let mut c = base();
            c.privileged = privileged;
            c.cap_add = add.clone();
            c.cap_drop = drop.clone();
            let spec = generate(&c, &facts()).unwrap();
            assert_eq!(
                caps(&spec),
                want,
                "privileged={privileged} add={add:?} drop={drop:?}"
            );
        }
        let mut c = base();
        c.cap_add = s(&["CAP_NOPE"]);
        assert_eq!(
            generate(&c, &facts()).unwrap_err().to_string(),
            "unknown capability \"CAP_NOPE\""
        );
    }

    #[test]
    fn privileged_drops_confinement() {
        let spec = generate(&base(), &facts()).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string()));
        assert!(linux
            .readonly_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/sys".to_string()));
        assert!(opts(mount_of(&spec, "/sys")).contains(&"ro".to_string()));
        assert!(opts(mount_of(&spec, "/sys/fs/cgroup")).contains(&"ro".to_string()));
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap();
        assert!(!rules[0].allow(), "first device rule denies all");

        let mut c = base();
        c.privileged = true;
        let host_dev = LinuxDeviceBuilder::default()
            .path("/dev/sda")
            .typ(LinuxDeviceType::B)
            .major(8)
            .minor(0)
            .build()
            .unwrap();
        let f = Facts {
            host_devices: vec![host_dev.clone()],
            ..facts()
        };
        let spec = generate(&c, &f).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.masked_paths().as_ref().unwrap().is_empty());
        assert!(linux.readonly_paths().as_ref().unwrap().is_empty());
        assert!(opts(mount_of(&spec, "/sys")).contains(&"rw".to_string()));
        assert_eq!(linux.devices().as_ref().unwrap(), &vec![host_dev]);
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow() && rules[0].typ().is_none());
    }

    #[test]
    fn default_and_extra_devices() {
        let mut f = facts();
        let fuse = LinuxDeviceBuilder::default()
            .path("/dev/fuse")
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .build()
            .unwrap();
        f.devices.push(MappedDevice {
            device: fuse,
            access: "rw".to_string(),
        });
        let spec = generate(&base(), &f).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let paths: Vec<_> = linux
            .devices()
            .as_ref()
            .unwrap()
            .iter()
            .map(|d| d.path().display().to_string())
            .collect();
        for p in [
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
            "/dev/tty",
            "/dev/fuse",
        ] {
            assert!(paths.contains(&p.to_string()), "{p} in {paths:?}");
        }
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap();
        let last = rules.last().unwrap();
        assert_eq!(
            (last.allow(), last.major(), last.minor()),
            (true, Some(10), Some(229))
        );
        assert_eq!(last.access().as_deref(), Some("rw"));
    }

    #[test]
    fn bind_mounts_and_propagation() {
        let bind = |dest: &str, ro: bool, prop: &str| BindMount {
            source: PathBuf::from("/srv"),
            destination: dest.to_string(),
            read_only: ro,
            propagation: prop.to_string(),
        };
        let cases: &[(&[BindMount], &[&str], Option<&str>)] = &[
            (&[], &[], None),
            (
                &[bind("/data", false, "")],
                &["rbind", "rw", "rprivate"],
                None,
            ),
            (
                &[bind("/data", true, "rslave")],
                &["rbind", "ro", "rslave"],
                Some("slave"),
            ),
            (
                &[bind("/data", false, "rshared")],
                &["rbind", "rw", "rshared"],
                Some("shared"),
            ),
            (
                &[bind("/x", false, "shared"), bind("/data", false, "slave")],
                &["rbind", "rw", "slave"],
                Some("shared"),
            ),
        ];
        for (mounts, want_opts, want_prop) in cases {
            let mut c = base();
            c.mounts = mounts.to_vec();
            let spec = generate(&c, &facts()).unwrap();
            if !mounts.is_empty() {
                let m = mount_of(&spec, "/data");
                assert_eq!(m.typ().as_deref(), Some("bind"));
                assert_eq!(m.source().as_deref(), Some(Path::new("/srv")));
                assert_eq!(opts(m), *want_opts);
            }
            assert_eq!(
                spec.linux()
                    .as_ref()
                    .unwrap()
                    .rootfs_propagation()
                    .as_deref(),
                *want_prop,
                "{mounts:?}"
            );
        }
        let mut c = base();
        c.mounts = vec![bind("/data", false, "sideways")];
        assert!(generate(&c, &facts()).is_err());
        c.mounts = vec![bind("data", false, "")];
        assert!(generate(&c, &facts()).is_err());
    }

    #[test]
    fn default_mounts_are_docker_s() {
        let spec = generate(&base(), &facts()).unwrap();
        let dests: Vec<_> = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm"
            ]
        );
    }

    #[test]
    fn process_user_env_and_limits() {
        let mut c = base();
        c.cwd = "/work".to_string();
        c.oom_score_adj = Some(-500);
        c.read_only_rootfs = true;
        let spec = generate(&c, &facts()).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().gid(), 100);
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[10u32][..]));
        let env = p.env().as_ref().unwrap();
        assert!(env.contains(&"FOO=bar".to_string()));
        assert!(env.contains(&format!("PATH={DEFAULT_PATH}")));
        assert!(env.contains(&"HOME=/home/u".to_string()));
        assert_eq!(p.cwd(), Path::new("/work"));
        assert_eq!(p.oom_score_adj(), Some(-500));
        assert_ne!(p.no_new_privileges(), Some(true));
        let nofile = &p.rlimits().as_ref().unwrap()[0];
        assert_eq!(
            (nofile.typ(), nofile.soft(), nofile.hard()),
            (
                PosixRlimitType::RlimitNofile,
                DEFAULT_NOFILE,
                DEFAULT_NOFILE
            )
        );
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        assert_eq!(
            spec.root().as_ref().unwrap().path(),
            Path::new("/run/c/rootfs")
        );
        assert_eq!(
            spec.linux().as_ref().unwrap().cgroups_path().as_deref(),
            Some(Path::new("/system-docker/0123"))
        );

        // Explicit PATH and HOME win.
        c.env = vec!["PATH=/bin".to_string(), "HOME=/x".to_string()];
        let spec = generate(&c, &facts()).unwrap();
        assert_eq!(
            spec.process().as_ref().unwrap().env().as_ref().unwrap(),
            &c.env
        );

        c.args.clear();
        assert!(generate(&c, &facts()).is_err());
    }

    #[test]
    fn resources_map_to_cgroup_settings() {
        let mut c = base();
        c.resources = Resources {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            cpuset_cpus: Some("0".to_string()),
            pids_limit: Some(100),
        };
        let spec = generate(&c, &facts()).unwrap();
        let r = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        let mem = r.memory().unwrap();
        assert_eq!((mem.limit(), mem.swap()), (Some(64 << 20), Some(128 << 20)));
        let cpu = r.cpu().clone().unwrap();
        assert_eq!(
            (
                cpu.shares(),
                cpu.quota(),
                cpu.period(),
                cpu.cpus().as_deref()
            ),
            (Some(512), Some(50_000), Some(100_000), Some("0"))
        );
        assert_eq!(r.pids().unwrap().limit(), 100);

        let spec = generate(&base(), &facts()).unwrap();
        let r = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        assert!(r.memory().is_none() && r.cpu().is_none() && r.pids().is_none());
    }

    #[test]
    fn device_mappings_resolve_host_nodes() {
        let m = DeviceMapping {
            path_on_host: PathBuf::from("/dev/null"),
            path_in_container: "/dev/mynull".to_string(),
            permissions: "rw".to_string(),
        };
        let got = resolve_device_mapping(&m).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].device.path(), Path::new("/dev/mynull"));
        assert_eq!((got[0].device.major(), got[0].device.minor()), (1, 3));
        assert_eq!(got[0].access, "rw");

        let bad = DeviceMapping {
            path_on_host: PathBuf::from("/etc/hostname"),
            ..Default::default()
        };
        assert!(resolve_device_mapping(&bad).is_err());
        let bad_perm = DeviceMapping {
            permissions: "rwx".to_string(),
            ..m
        };
        assert!(resolve_device_mapping(&bad_perm).is_err());

        let all = host_devices(Path::new("/dev"));
        assert!(all.iter().any(|d| d.path() == Path::new("/dev/null")));
        assert!(!all.iter().any(|d| d.path().starts_with("/dev/pts")));
    }
}
