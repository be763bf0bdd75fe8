//! `cargo xtask build`, `run` and `boot`: the OxOS boot media and the QEMU
//! runner.
//!
//! # Background
//!
//! OxOS boots like RancherOS: firmware -> GRUB -> its kernel (Debian's
//! source and configuration, trimmed) with an initrd whose `/init` is
//! `ros`, which finds a read-only system image with `/usr` (kernel modules,
//! firmware, `ros`, `os-config.yml`, the system images), mounts it and goes
//! on from the state partition
//! (`LABEL=RANCHER_STATE`). Everything is made from Debian packages and the
//! workspace, on an ordinary Debian host, without a container daemon.
//!
//! # Design
//!
//! `build` is a chain of steps; each writes into its own directory under
//! `target/oxos-build/` and records the key of its inputs there (a SHA-256 of
//! everything it is made from, see [`Cache`]). A step whose key is unchanged
//! is not run again, so a second build with nothing changed only re-runs
//! `cargo build` of the static `ros` (which itself does nothing then) and
//! copies the results. The steps:
//!
//! 1. host packages ([`BUILD_PACKAGES`], installed when missing);
//! 2. the kernel: [`kernel`] fetches trixie's `linux-image-amd64` through a
//!    private apt configuration, unpacks it and runs `depmod` over it;
//!    [`kernel_build`] compiles OxOS's kernel from `linux-source` of the
//!    same version with that package's configuration, trimmed to the
//!    module sets and changed by `kernel.config`;
//! 3. `ros`, statically linked and not position-independent
//!    (`+crt-static`, `relocation-model=static`, glibc target, release
//!    profile), in its own target directory so that it does not disturb the
//!    workspace's dynamic builds;
//! 4. the system image: [`modules::SYSTEM`] closed over `modules.dep`,
//!    staged with its own `depmod`, plus `os-config.yml` and an empty
//!    `bin/ros` (stage 1 binds the initrd's ros there), packed twice as a
//!    squashfs: xz with the x86 filter for the ISO (size), lz4hc for the
//!    installed disk (read speed; see `SystemImage`);
//! 5. the initrd: `/init` = `ros` and [`modules::INITRD`] (what finding and
//!    mounting the system image needs), a newc cpio compressed with xz for
//!    the ISO and with lz4 for the disk and `dist/`;
//! 6. the ISO: `grub-mkrescue` for GRUB's boot files, then xorriso for a
//!    hybrid image (El Torito BIOS and UEFI boot images, and an MBR so that
//!    it boots from a USB stick);
//! 7. the disk: [`disk`] builds a raw MBR disk from file system images
//!    (boot partition `RANCHER_BOOT` with GRUB, kernel, initrd and system
//!    image; an EFI system partition with GRUB's EFI binary; empty ext4
//!    `RANCHER_STATE`), installs GRUB's BIOS boot code, and `qemu-img`
//!    converts it;
//! 8. `dist/`: `vmlinuz`, `initrd.img`, `oxos.iso`, `oxos.qcow2` and
//!    `sizes.txt` ([`sizes`]).
//!
//! Media layout, for the boot sequence to rely on: the system image is
//! `/oxos/system.img` on the ISO (volume id `OXOS`) and on the boot
//! partition; kernel and initrd are `/boot/vmlinuz` and `/boot/initrd.img`.
//! The kernel command line is [`CMDLINE`] (plus [`ISO_CMDLINE`] on the ISO).
//!
//! `run` boots `dist/` in QEMU under the design's rules ([`qemu`]): `-accel
//! tcg`, user networking with `restrict=on` and at most an SSH port on
//! 127.0.0.1. `--expect REGEX` makes it a test: boot detached, wait for
//! every pattern on the serial log, stop QEMU, succeed or fail.
//!
//! # Limitations
//!
//! - PID 1 is the init crate's work, run as `/init` (`rdinit=/init`); this
//!   module only provides the media and checks the boot from the outside
//!   (`run --expect`): kernel line, "PID 1, stage 1", "OxOS is up".
//! - No firmware files are chosen yet (`/usr/lib/firmware` is empty): the
//!   virtual machines the tests use need none.
//! - The system images are not in the system image yet (they come from
//!   `cargo xtask images`).
//! - The ISO's GRUB carries every GRUB module of both platforms
//!   (xz-compressed, about 6 MB of the ISO); trimming them to the ones used
//!   is left for when the size budget needs it.

mod disk;
mod kernel;
mod kernel_build;
mod modules;
pub mod qemu;
mod sizes;
mod tools;

use crate::cmd::{cargo, run_step, target_dir, workspace_root};
use anyhow::{bail, Context, Result};
use clap::Args;
use regex::Regex;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Host packages the build and the QEMU runner use.
pub const BUILD_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "qemu-utils",
    "ovmf",
    "xorriso",
    "mtools",
    "dosfstools",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "grub-common",
    "squashfs-tools",
    "e2fsprogs",
    "fdisk",
    "cpio",
    "zstd",
    "xz-utils",
    "lz4",
    "kmod",
    "mmdebstrap",
    // The kernel's build (kernel_build.rs).
    "make",
    "gcc",
    "bc",
    "bison",
    "flex",
    "libelf-dev",
    "libssl-dev",
    "openssl",
    "perl",
];

/// The system images inside the system image, unpacked in the engine's
/// store layout at [`STORE_DIR`] so that boot extracts nothing. The other
/// recipes under `images/` are built too and shipped as archives in
/// `dist/images/` (load one into the system engine with
/// `system-docker load`, or drop it into
/// /var/lib/rancher/preload/system-docker).
pub const SYSTEM_IMAGES: &[&str] = &[
    "os-base",
    "udev",
    "acpid",
    "syslog",
    "network",
    "ntp",
    "console",
    "docker-26.1",
];

/// Links to `ros` in the system image, by the names it answers to.
const PERSONALITIES: &[(&str, &str)] = &[
    ("usr/bin/system-docker", "ros"),
    ("usr/bin/system-dockerd", "ros"),
    ("usr/sbin/modprobe", "../bin/ros"),
    ("usr/sbin/reboot", "../bin/ros"),
    ("usr/sbin/poweroff", "../bin/ros"),
    ("usr/sbin/halt", "../bin/ros"),
    ("usr/sbin/shutdown", "../bin/ros"),
];

/// Where the system image holds the read-only image store (under /).
pub const STORE_DIR: &str = "usr/share/ros/store";

/// Bumped when a step's recipe changes in a way its inputs do not show, so
/// that cached outputs of the old recipe are rebuilt.
const RECIPE: &str = "oxos-build-1";

/// The kernel command line of every boot medium. `console=ttyS0` comes last
/// so that it is `/dev/console`, which the serial log and tests read;
/// `rdinit=/init` names the initrd's `ros`; `panic=10` reboots after a panic
/// (QEMU runs with `-no-reboot`, so a panic ends the VM).
///
/// `transparent_hugepage=never`: Debian's kernel turns transparent huge
/// pages on (`always`), and khugepaged then raises `vm.min_free_kbytes` for
/// them (44 MiB on a 1 GiB machine, up to 5% of memory), which with the
/// watermarks derived from it keeps about 110 MiB more of a 1 GiB machine
/// from every program. Databases that often run in containers (Redis,
/// MongoDB and others) ask for huge pages to be off anyway.
/// docs/configuration.md tells how to turn them back on.
pub const CMDLINE: &str = "console=tty0 console=ttyS0,115200n8 rdinit=/init \
                           rancher.state.dev=LABEL=RANCHER_STATE rancher.state.wait panic=10 \
                           transparent_hugepage=never";
/// Added on the ISO: format an empty first disk as the state partition.
pub const ISO_CMDLINE: &str = "rancher.state.autoformat=[/dev/sda,/dev/vda]";

const OS_CONFIG: &str = include_str!("os/os-config.yml");

/// The OS's default configuration as shipped: `os-config.yml` with
/// `${OXOS_VERSION}` (the tag of the system images) filled in.
pub fn os_config() -> String {
    OS_CONFIG.replace("${OXOS_VERSION}", env!("CARGO_PKG_VERSION"))
}

/// Loads the system images into a fresh image store at `dir/store` with
/// the engine's own loader (so the layout is exactly what the engine reads,
/// every layer digest-checked), then seals it for packing.
fn make_store(images: &[&image_build::BuiltImage], dir: &Path) -> Result<()> {
    let root = dir.join("store");
    let store = image_store::ImageStore::open(&root)
        .with_context(|| format!("cannot open an image store at {}", root.display()))?;
    for image in images {
        let file = std::fs::File::open(&image.path)
            .with_context(|| format!("cannot open {}", image.path.display()))?;
        let loaded = store
            .load(std::io::BufReader::new(file), &mut |_| {})
            .with_context(|| format!("cannot load {} into the store", image.path.display()))?;
        eprintln!(
            "xtask: store: {}",
            loaded
                .iter()
                .flat_map(|i| i.tags.clone())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // Every layer checked present, the work space and temporary files gone.
    store
        .seal()
        .with_context(|| format!("cannot seal the image store {}", root.display()))?;
    std::fs::write(dir.join("uncompressed"), tree_size(&root)?.to_string())?;
    Ok(())
}

#[derive(Args, Clone, Default)]
pub struct BuildArgs {
    /// Download the trixie package index again (otherwise the cached one is
    /// used and the kernel stays what it was).
    #[arg(long)]
    pub refresh: bool,
    /// Size of the installed disk image (oxos.qcow2) in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 4096)]
    pub disk_size: u64,
    /// Do not install missing host packages (fail instead).
    #[arg(long)]
    pub no_install: bool,
    /// Debian mirror for the system images.
    #[arg(long, default_value = image_build::DEFAULT_MIRROR)]
    pub mirror: String,
    /// Build only the images the system image holds (not docker-20.10,
    /// debian-console, ...): what the end-to-end tests boot, sooner.
    #[arg(long)]
    pub system_images_only: bool,
}

#[derive(Args, Clone)]
pub struct RunArgs {
    /// Boot dist/oxos.iso as a CD-ROM (the default).
    #[arg(long, conflicts_with = "disk")]
    pub iso: bool,
    /// Boot dist/oxos.qcow2 as a virtio disk (writes to it).
    #[arg(long)]
    pub disk: bool,
    /// Give FILE to the guest as its user-data, through --datasource.
    #[arg(long, value_name = "FILE")]
    pub cloud_config: Option<PathBuf>,
    /// How --cloud-config reaches the guest: an OpenStack config drive
    /// (ISO or FAT, labelled config-2, openstack/latest/user_data), a
    /// NoCloud seed (ISO labelled cidata), or HTTP from a URL inside QEMU's
    /// user network (http://10.0.2.100/user-data). For nocloud and url,
    /// `rancher.cloud_init.datasources` goes on the kernel command line
    /// (direct kernel boot, as with --append) unless --append sets it.
    #[arg(long, value_enum, value_name = "KIND", default_value = "config-drive")]
    pub datasource: qemu::Datasource,
    /// With --cloud-config on a drive: FILE as the metadata (the config
    /// drive's meta_data.json, NoCloud's meta-data; a JSON object such as
    /// {"hostname": "h", "public_keys": {"k": "ssh-ed25519 ..."}} serves
    /// both).
    #[arg(long, value_name = "FILE", requires = "cloud_config")]
    pub meta_data: Option<PathBuf>,
    /// Boot dist/vmlinuz and dist/initrd.img directly (QEMU's -kernel) with
    /// the medium's command line plus ARGS, for example
    /// `rancher.modules=[dummy] -- cc.hostname=h` (words after `--` go to
    /// init: COMPAT.md). The medium stays attached; UEFI is not used.
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub append: Option<String>,
    /// Guest memory in MB.
    #[arg(long, value_name = "MB", default_value_t = 1024)]
    pub mem: u32,
    /// Forward 127.0.0.1:N on the host to the guest's SSH port.
    #[arg(long, value_name = "N")]
    pub ssh_port: Option<u16>,
    /// The guest's SSH port that --ssh-port forwards to: 22, or the
    /// cloud-config's rancher.ssh.port.
    #[arg(long, value_name = "N", default_value_t = 22)]
    pub ssh_guest_port: u16,
    /// Run in the background with the serial console in a log file; print
    /// QEMU's pid and the log path.
    #[arg(long)]
    pub detach: bool,
    /// Boot with UEFI firmware (OVMF) instead of SeaBIOS.
    #[arg(long)]
    pub uefi: bool,
    /// Boot detached, wait until REGEX appears on the serial console (all of
    /// them when repeated), stop QEMU; fail on timeout or an early exit.
    #[arg(long, value_name = "REGEX")]
    pub expect: Vec<String>,
    /// Seconds to wait for --expect.
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    pub timeout: u64,
    /// Serial log file for --detach and --expect (default under
    /// target/oxos-build/runs/).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// With --disk: boot this qcow2 instead of dist/oxos.qcow2 (for
    /// example an overlay made with `qemu-img create -b dist/oxos.qcow2`,
    /// which keeps the built disk pristine across boots).
    #[arg(long, value_name = "FILE", requires = "disk")]
    pub disk_image: Option<PathBuf>,
    /// Attach FILE (raw) as an extra virtio disk, before the config drive
    /// (the first virtio disk, /dev/vda, when booting the ISO).
    #[arg(long, value_name = "FILE")]
    pub extra_disk: Option<PathBuf>,
    /// Serve QEMU's monitor on this unix socket (for example to send
    /// `system_powerdown`, the ACPI power button).
    #[arg(long, value_name = "SOCKET")]
    pub monitor: Option<PathBuf>,
    /// Attach a USB keyboard on an xHCI controller, as bare-metal machines
    /// and servers' remote consoles have (QEMU's own keyboard is PS/2)
    #[arg(long)]
    pub usb_keyboard: bool,
}

#[derive(Args)]
pub struct BootArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// What [`build`] wrote to `dist/`.
pub struct Artifacts {
    pub iso: PathBuf,
    pub qcow2: PathBuf,
}

impl Artifacts {
    /// The artefacts of an earlier build.
    fn in_dist() -> Self {
        let dist = dist_dir();
        Artifacts {
            iso: dist.join("oxos.iso"),
            qcow2: dist.join("oxos.qcow2"),
        }
    }
}

pub fn build_cmd(args: &BuildArgs) -> Result<()> {
    build(args).map(|_| ())
}

pub fn run_cmd(args: &RunArgs) -> Result<()> {
    run(&Artifacts::in_dist(), args)
}

pub fn boot(args: &BootArgs) -> Result<()> {
    let artifacts = build(&args.build)?;
    run(&artifacts, &args.run)
}

fn dist_dir() -> PathBuf {
    workspace_root().join("dist")
}

fn build_dir() -> PathBuf {
    target_dir().join("oxos-build")
}

/// Step outputs keyed by their inputs: `<root>/<name>/` holds the output of
/// the inputs whose key is in `<root>/<name>.key`.
struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Runs `make` into a fresh `<root>/<name>/` unless the recorded key is
    /// `key`; returns the directory.
    fn step(
        &self,
        name: &str,
        key: &str,
        make: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let dir = self.root.join(name);
        let stamp = self.root.join(format!("{name}.key"));
        if dir.is_dir() && std::fs::read_to_string(&stamp).is_ok_and(|k| k == key) {
            eprintln!("xtask: == {name}: cached");
            return Ok(dir);
        }
        let _ = std::fs::remove_file(&stamp);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let started = Instant::now();
        make(&dir).with_context(|| format!("{name} failed"))?;
        std::fs::write(&stamp, key).with_context(|| format!("cannot write {}", stamp.display()))?;
        eprintln!(
            "xtask: == {name}: built in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(dir)
    }
}

/// SHA-256 over length-prefixed parts (so that parts cannot run together).
fn key(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// SHA-256 of a file's content.
fn file_digest(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex::encode(h.finalize()))
}

fn mkdirs(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        mkdirs(parent)?;
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
}

/// Hard-links `from` to `to` (replacing `to`), copying when a link is not
/// possible (e.g. `dist/` on another file system).
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        std::fs::remove_file(to).with_context(|| format!("cannot remove {}", to.display()))?;
    }
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    copy(from, to)
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len())
}

/// Bytes of all regular files below `dir`.
fn tree_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += tree_size(&entry.path())?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Copies the tree `from` into `to` (directories, regular files, symlinks).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    mkdirs(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&src)?;
            std::os::unix::fs::symlink(&target, &dst)
                .with_context(|| format!("cannot create symlink {}", dst.display()))?;
        } else {
            copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Paths below `dir` relative to it, directories before their contents,
/// sorted (for a reproducible cpio archive).
fn tree_paths(dir: &Path, prefix: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let rel = prefix.join(entry.file_name());
        out.push(rel.clone());
        if entry.file_type()?.is_dir() {
            tree_paths(&entry.path(), &rel, out)?;
        }
    }
    Ok(())
}

/// Builds everything the OS is made of into `dist/`.
pub fn build(args: &BuildArgs) -> Result<Artifacts> {
    let started = Instant::now();
    if args.no_install {
        eprintln!("xtask: not checking host packages (--no-install)");
    } else {
        crate::test::install_host_packages(BUILD_PACKAGES)?;
    }
    let build = build_dir();
    mkdirs(&build)?;
    // The system images build (mostly downloading and unpacking packages)
    // while the kernel is fetched and ros compiles.
    let images_out = dist_dir().join("images");
    let mirror = args.mirror.clone();
    let only: Option<&'static [&'static str]> = args.system_images_only.then_some(SYSTEM_IMAGES);
    let images_job = {
        let out = images_out.clone();
        std::thread::spawn(move || crate::images::build_some(only, &out, &mirror))
    };
    let cache = Cache {
        root: build.clone(),
    };

    // The kernel.
    let apt = kernel::Apt::new(&build.join("apt"))?;
    apt.update(args.refresh)?;
    let deb = apt.fetch_kernel(&build.join("debs"))?;
    let deb_name = deb
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let debian_key = key(&[RECIPE.as_bytes(), deb_name.as_bytes()]);
    let debian_dir = cache.step("kernel-debian", &debian_key, |dir| {
        kernel::unpack(&deb, dir)
    })?;
    let debian = kernel::locate(&debian_dir)?;
    let module_index = |k: &kernel::Kernel| -> Result<modules::ModuleIndex> {
        let read = |name: &str| {
            let p = k.modules.join(name);
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
        };
        modules::ModuleIndex::parse(&read("modules.dep")?, &read("modules.builtin")?)
    };
    // OxOS's kernel, from Debian's source of the same version, keeping the
    // modules of OxOS's selection as Debian's index closes it.
    let debian_index = module_index(&debian)?;
    let mut kept: BTreeSet<String> = debian_index.closure(&modules::SYSTEM)?;
    kept.extend(debian_index.closure(&modules::INITRD)?);
    let kept: Vec<String> = kept
        .iter()
        .map(|path| modules::module_name(path))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let source_deb = apt.fetch_source(&deb, &build.join("debs"))?;
    let fragment =
        kernel_build::Fragment::parse("xtask/src/os/kernel.config", kernel_build::FRAGMENT)?;
    let kernel_key = key(&[
        RECIPE.as_bytes(),
        b"kernel-build-1",
        deb_name.as_bytes(),
        source_deb
            .file_name()
            .unwrap_or_default()
            .as_encoded_bytes(),
        kernel_build::FRAGMENT.as_bytes(),
        kept.join("\n").as_bytes(),
    ]);
    let kernel_dir = cache.step("kernel", &kernel_key, |dir| {
        let inputs = kernel_build::Inputs {
            debian: &debian,
            source_deb: &source_deb,
            modules: &kept,
            fragment: &fragment,
        };
        kernel_build::build(&inputs, &build.join("kernel-source"), dir)
    })?;
    let k = kernel::locate(&kernel_dir)?;
    let index = module_index(&k)?;
    let system_modules = index.closure(&modules::SYSTEM)?;
    let initrd_modules = index.closure(&modules::INITRD)?;
    eprintln!(
        "xtask: kernel {}: {} modules, {} for the system image, {} for the initrd",
        k.version,
        index.len(),
        system_modules.len(),
        initrd_modules.len()
    );

    // Module staging: the selected modules with their own depmod, kept
    // apart from ros so that a changed ros does not stage them again.
    let module_list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join("\n");
    let system_modules_key = key(&[
        RECIPE.as_bytes(),
        b"decompressed",
        kernel_key.as_bytes(),
        module_list(&system_modules).as_bytes(),
    ]);
    let system_modules_dir = cache.step("modules-system", &system_modules_key, |dir| {
        stage_modules(&k, &system_modules, &dir.join("usr"))
    })?;
    let initrd_modules_key = key(&[
        RECIPE.as_bytes(),
        b"decompressed",
        kernel_key.as_bytes(),
        module_list(&initrd_modules).as_bytes(),
    ]);
    let initrd_modules_dir = cache.step("modules-initrd", &initrd_modules_key, |dir| {
        stage_modules(&k, &initrd_modules, dir)
    })?;

    // The static ros.
    let ros = build_static_ros(&build.join("ros-target"))?;
    let ros_digest = file_digest(&ros)?;

    // The system images, loaded into a store as the engine keeps one.
    let images = images_job
        .join()
        .map_err(|_| anyhow::anyhow!("the system image build stopped unexpectedly"))??;
    let embedded = SYSTEM_IMAGES
        .iter()
        .map(|name| {
            images
                .iter()
                .find(|b| b.name == *name)
                .with_context(|| format!("no recipe images/{name}/image.yml for the system image"))
        })
        .collect::<Result<Vec<_>>>()?;
    let ids: Vec<&str> = embedded.iter().map(|b| b.id.as_str()).collect();
    let store_key = key(&[RECIPE.as_bytes(), b"store-1", ids.join(",").as_bytes()]);
    let store_dir = cache.step("store", &store_key, |dir| make_store(&embedded, dir))?;
    let os_config = os_config();

    // The system image.
    let system_key = key(&[
        RECIPE.as_bytes(),
        b"store, owners and xattrs kept, personalities, ros from the initrd, xz 1M and lz4hc 32K",
        system_modules_key.as_bytes(),
        os_config.as_bytes(),
        store_key.as_bytes(),
    ]);
    let system_dir = cache.step("system-image", &system_key, |dir| {
        let root = dir.join("root");
        copy_tree(&system_modules_dir, &root)?;
        mkdirs(&root.join("usr/lib/firmware"))?;
        // ros itself is the initrd's: stage 1 binds it over this empty
        // file, so the boot medium holds one copy (5 MB).
        mkdirs(&root.join("usr/bin"))?;
        std::fs::write(root.join("usr/bin/ros"), b"")
            .context("cannot create the system image's usr/bin/ros")?;
        std::fs::set_permissions(
            root.join("usr/bin/ros"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        // ros's personalities (it looks at the name it was run by).
        for (link, target) in PERSONALITIES {
            let path = root.join(link);
            mkdirs(path.parent().unwrap_or(&root))?;
            std::os::unix::fs::symlink(target, &path)
                .with_context(|| format!("cannot create symlink {}", path.display()))?;
        }
        let config = root.join("usr/share/ros/os-config.yml");
        mkdirs(config.parent().unwrap_or(&root))?;
        std::fs::write(&config, &os_config)
            .with_context(|| format!("cannot write {}", config.display()))?;
        // Hard links: the store is not copied, and owners, modes and the
        // overlay xattrs of its layers are kept as they are.
        let store = root.join(STORE_DIR);
        run_step(
            "link the image store into the system image",
            Command::new("cp")
                .arg("-a")
                .arg("--link")
                .arg(store_dir.join("store"))
                .arg(&store),
        )?;
        let size = tree_size(&root)?;
        std::fs::write(dir.join("uncompressed"), size.to_string())?;
        for compression in [SystemImage::Iso, SystemImage::Disk] {
            run_step(
                &format!("mksquashfs {}", compression.file_name()),
                Command::new("mksquashfs")
                    .arg(&root)
                    .arg(dir.join(compression.file_name()))
                    .arg("-noappend")
                    .args(compression.mksquashfs_args())
                    // Owners and xattrs are kept: the layers' files belong
                    // to their users and whiteouts carry
                    // trusted.overlay.opaque.
                    .args(["-xattrs", "-no-progress"])
                    .args(["-mkfs-time", "0", "-all-time", "0", "-quiet"]),
            )?;
        }
        std::fs::remove_dir_all(&root).ok();
        Ok(())
    })?;
    let system_img = system_dir.join(SystemImage::Iso.file_name());
    let disk_system_img = system_dir.join(SystemImage::Disk.file_name());

    // The initrd.
    // mke2fs for rancher.state.autoformat, with its libraries.
    let tool_debs = tools::fetch(&apt, &build.join("debs"))?;
    let tool_names: Vec<String> = tool_debs
        .iter()
        .map(|d| {
            d.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let tools_key = key(&[
        RECIPE.as_bytes(),
        tools::package_names().as_bytes(),
        tool_names.join(" ").as_bytes(),
    ]);
    let tools_dir = cache.step("tools", &tools_key, |dir| tools::stage(&tool_debs, dir))?;
    let initrd_key = key(&[
        RECIPE.as_bytes(),
        b"xz for the ISO, lz4 for the rest",
        initrd_modules_key.as_bytes(),
        ros_digest.as_bytes(),
        tools_key.as_bytes(),
    ]);
    let initrd_dir = cache.step("initrd", &initrd_key, |dir| {
        make_initrd(&initrd_modules_dir, &tools_dir, &ros, dir)
    })?;
    let initrd = initrd_dir.join(INITRD);
    let initrd_iso = initrd_dir.join(INITRD_ISO);

    // The ISO.
    let iso_cfg = grub_cfg(&medium_cmdline(qemu::Medium::Iso), None);
    let iso_key = key(&[
        RECIPE.as_bytes(),
        b"no locales, themes, fonts; xz modules; remastered, EFI image to size",
        kernel_key.as_bytes(),
        system_key.as_bytes(),
        initrd_key.as_bytes(),
        iso_cfg.as_bytes(),
    ]);
    let iso_dir = cache.step("iso", &iso_key, |dir| {
        make_iso(&k.vmlinuz, &initrd_iso, &system_img, &iso_cfg, dir)
    })?;
    let iso = iso_dir.join("oxos.iso");

    // The installed disk.
    let disk_cfg = grub_cfg(&medium_cmdline(qemu::Medium::Disk), Some("RANCHER_BOOT"));
    let disk_key = key(&[
        RECIPE.as_bytes(),
        b"disk with EFI system partition, lz4hc system image",
        kernel_key.as_bytes(),
        system_key.as_bytes(),
        initrd_key.as_bytes(),
        disk_cfg.as_bytes(),
        args.disk_size.to_string().as_bytes(),
    ]);
    let disk_dir = cache.step("disk", &disk_key, |dir| {
        make_disk(
            &k.vmlinuz,
            &initrd,
            &disk_system_img,
            &disk_cfg,
            args.disk_size,
            dir,
        )
    })?;
    let qcow2 = disk_dir.join("oxos.qcow2");

    // dist/
    let dist = dist_dir();
    mkdirs(&dist)?;
    // What QEMU only reads is hard-linked from the cache; the disk image,
    // which a boot writes to, is copied so that the cache stays pristine.
    for (from, name) in [
        (&k.vmlinuz, "vmlinuz"),
        (&initrd, "initrd.img"),
        (&iso, "oxos.iso"),
    ] {
        link_or_copy(from, &dist.join(name))?;
    }
    // A new file, not an overwrite: a QEMU still running keeps its old one.
    let dist_qcow2 = dist.join("oxos.qcow2");
    if dist_qcow2.exists() {
        std::fs::remove_file(&dist_qcow2)
            .with_context(|| format!("cannot remove {}", dist_qcow2.display()))?;
    }
    copy(&qcow2, &dist_qcow2)?;
    let mut entries = size_entries(
        &k,
        &system_dir,
        &initrd_dir,
        &iso,
        &qcow2,
        (system_modules.len(), initrd_modules.len()),
    )?;
    entries.extend(images.iter().map(|b| sizes::Entry {
        name: b.name.clone(),
        size: b.size,
        uncompressed: b.unpacked_size,
        note: if SYSTEM_IMAGES.contains(&b.name.as_str()) {
            format!("{}: in the system image (size = archive)", b.tag)
        } else {
            format!("{}: dist/images/{}.tar only", b.tag, b.name)
        },
    }));
    let report = sizes::report(&entries);
    std::fs::write(dist.join("sizes.txt"), &report).context("cannot write dist/sizes.txt")?;
    eprint!("{report}");
    eprintln!(
        "xtask: build finished in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        dist.display()
    );
    Ok(Artifacts {
        iso: dist.join("oxos.iso"),
        qcow2: dist.join("oxos.qcow2"),
    })
}

fn size_entries(
    k: &kernel::Kernel,
    system_dir: &Path,
    initrd_dir: &Path,
    iso: &Path,
    qcow2: &Path,
    (system_count, initrd_count): (usize, usize),
) -> Result<Vec<sizes::Entry>> {
    let read_number = |p: PathBuf| -> Result<u64> {
        std::fs::read_to_string(&p)
            .with_context(|| format!("cannot read {}", p.display()))?
            .trim()
            .parse()
            .with_context(|| format!("{} holds no number", p.display()))
    };
    let iso_size = file_size(iso)?;
    let vmlinuz = file_size(&k.vmlinuz)?;
    // Both initrds hold one cpio, both system images one tree.
    let initrd_cpio = read_number(initrd_dir.join("uncompressed"))?;
    let system_tree = read_number(system_dir.join("uncompressed"))?;
    Ok(vec![
        sizes::Entry {
            name: "oxos.iso".into(),
            size: iso_size,
            uncompressed: iso_size,
            note: "hybrid ISO: BIOS and UEFI (GRUB), USB stick".into(),
        },
        sizes::Entry {
            name: "vmlinuz".into(),
            size: vmlinuz,
            uncompressed: vmlinuz,
            note: format!("{} from Debian's source (self-decompressing bzImage)", k.version),
        },
        sizes::Entry {
            name: "initrd.img".into(),
            size: file_size(&initrd_dir.join(INITRD))?,
            uncompressed: initrd_cpio,
            note: format!(
                "lz4 cpio (disk, dist/): /init = static ros, {initrd_count} modules"
            ),
        },
        sizes::Entry {
            name: "initrd.img (ISO)".into(),
            size: file_size(&initrd_dir.join(INITRD_ISO))?,
            uncompressed: initrd_cpio,
            note: "the same cpio, xz, on the ISO".into(),
        },
        sizes::Entry {
            name: "system.img".into(),
            size: file_size(&system_dir.join(SystemImage::Iso.file_name()))?,
            uncompressed: system_tree,
            note: format!(
                "squashfs (xz) /usr on the ISO: os-config.yml, {system_count} modules, {} system images (ros: the initrd's)",
                SYSTEM_IMAGES.len()
            ),
        },
        sizes::Entry {
            name: SystemImage::Disk.file_name().into(),
            size: file_size(&system_dir.join(SystemImage::Disk.file_name()))?,
            uncompressed: system_tree,
            note: "the same /usr, squashfs (lz4hc, 32K blocks), on the installed disk as oxos/system.img"
                .into(),
        },
        sizes::Entry {
            name: "oxos.qcow2".into(),
            size: file_size(qcow2)?,
            uncompressed: read_number(qcow2.with_file_name("virtual-size"))?,
            note: "installed disk (uncompressed = virtual size)".into(),
        },
    ])
}

/// Builds `ros` statically linked (release profile) into `target` and
/// returns the binary. Cargo does nothing when no source changed.
fn build_static_ros(target: &Path) -> Result<PathBuf> {
    run_step(
        "static release build of ros",
        cargo()
            .args(["build", "--release", "--package", "ros"])
            .args(["--target", "x86_64-unknown-linux-gnu", "--target-dir"])
            .arg(target)
            // Static and not position-independent: a static-pie binary
            // relocates its 0.5 MB of `.data.rel.ro` when it starts, and
            // those pages become private memory of each process; PID 1, a
            // shim per system container, netconf and the console's init
            // are all `ros` (about 5 MB on a booted system). The price is
            // that the binary's own addresses are not randomised (the
            // heap's, stack's and libraries' mappings still are).
            .env(
                "RUSTFLAGS",
                "-C target-feature=+crt-static -C relocation-model=static",
            ),
    )?;
    let ros = target.join("x86_64-unknown-linux-gnu/release/ros");
    let bytes = std::fs::read(&ros).with_context(|| format!("cannot read {}", ros.display()))?;
    if !is_static_elf(&bytes)? {
        bail!(
            "{} is dynamically linked (it has an ELF interpreter)",
            ros.display()
        );
    }
    if is_position_independent(&bytes)? {
        bail!(
            "{} is position-independent (ELF type DYN): each ros process would \
             relocate its data at start and keep it as private memory",
            ros.display()
        );
    }
    Ok(ros)
}

/// Whether an ELF file is position-independent (`e_type` ET_DYN, as a PIE
/// or static-pie executable is) rather than linked at fixed addresses
/// (ET_EXEC).
fn is_position_independent(bytes: &[u8]) -> Result<bool> {
    const ET_EXEC: u16 = 2;
    const ET_DYN: u16 = 3;
    match Elf64::new(bytes)?.u16_at(0x10) {
        Some(ET_DYN) => Ok(true),
        Some(ET_EXEC) => Ok(false),
        Some(other) => bail!("ELF type {other} is not an executable"),
        None => bail!("truncated ELF header"),
    }
}

/// The bytes of a 64-bit little-endian ELF file, for the few header
/// fields the build checks; they are read by hand rather than pulling in
/// an ELF crate.
struct Elf64<'a>(&'a [u8]);

impl<'a> Elf64<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self> {
        if bytes.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
            bail!("not a 64-bit little-endian ELF file");
        }
        Ok(Elf64(bytes))
    }

    fn u16_at(&self, o: usize) -> Option<u16> {
        self.0
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32_at(&self, o: usize) -> Option<u32> {
        self.0
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64_at(&self, o: usize) -> Option<u64> {
        self.0
            .get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }
}

/// Whether an ELF64 little-endian executable has no program interpreter
/// (PT_INTERP), i.e. the kernel can run it without a dynamic loader.
fn is_static_elf(bytes: &[u8]) -> Result<bool> {
    let elf = Elf64::new(bytes)?;
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (elf.u64_at(0x20), elf.u16_at(0x36), elf.u16_at(0x38))
    else {
        bail!("truncated ELF header");
    };
    const PT_INTERP: u32 = 3;
    for i in 0..phnum as usize {
        let at = usize::try_from(phoff)? + i * phentsize as usize;
        match elf.u32_at(at) {
            Some(PT_INTERP) => return Ok(false),
            Some(_) => {}
            None => bail!("truncated ELF program header table"),
        }
    }
    Ok(true)
}

/// Copies the module files `set` of kernel `k` to `base/lib/modules/KVER/`
/// with the kernel's builtin lists and runs `depmod -b base` over them.
///
/// Debian's `.ko.xz` files are stored decompressed (`.ko`): the media
/// compress them anyway, better than file by file (the ISO's initrd: 7.98
/// against 8.06 MB; the ISO's system image: 76.0 against 76.8 MB), and the
/// kernel loads them without decompressing each one with xz (in an
/// alternated A/B under TCG, stage 1's 37 modules took 1.66-2.0 s against
/// 2.03-2.21 s; the boots' other figures were within their noise).
fn stage_modules(k: &kernel::Kernel, set: &BTreeSet<String>, base: &Path) -> Result<()> {
    let dest = base.join("lib/modules").join(&k.version);
    for rel in set {
        let from = k.modules.join(rel);
        match rel.strip_suffix(".xz") {
            Some(plain) => decompress_xz(&from, &dest.join(plain))?,
            None => copy(&from, &dest.join(rel))?,
        }
    }
    for list in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        copy(&k.modules.join(list), &dest.join(list))?;
    }
    run_step(
        &format!("depmod ({} modules in {})", set.len(), base.display()),
        Command::new("depmod").arg("-b").arg(base).arg(&k.version),
    )
}

/// Writes the xz file `from` decompressed to `to`.
fn decompress_xz(from: &Path, to: &Path) -> Result<()> {
    let input =
        std::fs::File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    if let Some(parent) = to.parent() {
        mkdirs(parent)?;
    }
    let mut output =
        std::fs::File::create(to).with_context(|| format!("cannot create {}", to.display()))?;
    std::io::copy(&mut liblzma::read::XzDecoder::new(input), &mut output)
        .with_context(|| format!("cannot decompress {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// The initrd's file in the initrd step's directory for the disk and
/// `dist/` (lz4).
const INITRD: &str = "initrd.img";
/// The ISO's initrd in the same directory (xz), installed on the ISO as
/// `/boot/initrd.img`.
const INITRD_ISO: &str = "initrd-iso.img";

/// The initrd in `dir`, a newc cpio of `dir/root` compressed twice:
/// [`INITRD_ISO`] (xz, for the ISO's size) and [`INITRD`] (lz4, for
/// everything else); `uncompressed` is the cpio's size.
fn make_initrd(modules: &Path, tools: &Path, ros: &Path, dir: &Path) -> Result<()> {
    let root = dir.join("root");
    copy_tree(modules, &root)?;
    copy_tree(tools, &root)?;
    copy(ros, &root.join("init"))?;
    for d in ["dev", "proc", "sys", "run", "tmp"] {
        mkdirs(&root.join(d))?;
    }
    let mut paths = Vec::new();
    tree_paths(&root, Path::new(""), &mut paths)?;
    let list: String = paths.iter().map(|p| format!("{}\n", p.display())).collect();
    let cpio_path = dir.join("initrd.cpio");
    let out = std::fs::File::create(&cpio_path)
        .with_context(|| format!("cannot create {}", cpio_path.display()))?;
    eprintln!(
        "xtask: == initrd cpio: cpio -o -H newc ({} entries)",
        paths.len()
    );
    let mut child = Command::new("cpio")
        .args(["-o", "-H", "newc", "--reproducible", "-R", "0:0", "--quiet"])
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(out)
        .spawn()
        .context("initrd cpio: cannot start cpio")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(list.as_bytes())
            .context("initrd cpio: cannot write the file list")?;
    }
    let status = child.wait().context("initrd cpio: cannot wait for cpio")?;
    if !status.success() {
        bail!("cpio failed ({status}) for the initrd");
    }
    std::fs::write(dir.join("uncompressed"), file_size(&cpio_path)?.to_string())?;
    run_step(
        "compress the ISO's initrd (xz)",
        // xz with the x86 filter, CRC32 (what the kernel's unpacker
        // checks): 10% smaller than zstd -19, mostly on ros.
        Command::new("xz")
            .args(["-q", "-f", "-k", "-T1", "--check=crc32", "--x86"])
            .args(["--lzma2=preset=9e,dict=32MiB", "-S", ".xz"])
            .arg(&cpio_path),
    )?;
    std::fs::rename(cpio_path.with_extension("cpio.xz"), dir.join(INITRD_ISO))
        .context("cannot name the ISO's initrd")?;
    run_step(
        "compress the initrd (lz4) for the disk and direct kernel boot",
        // No size target there: lz4 (the kernel's legacy format, -l) is
        // unpacked several times faster than xz (under TCG the kernel
        // took 2.5 s to unpack the xz initrd), for about 3 MB more.
        Command::new("lz4")
            .args(["-q", "-f", "-l", "-9"])
            .arg(&cpio_path)
            .arg(dir.join(INITRD)),
    )?;
    std::fs::remove_file(&cpio_path).ok();
    std::fs::remove_dir_all(&root).ok();
    Ok(())
}

/// GRUB's configuration: serial and screen console, one entry booting
/// `/boot/vmlinuz` with `cmdline`. With `label`, GRUB first finds the
/// partition of that label (the installed disk); the ISO's GRUB already has
/// its root set to the ISO.
fn grub_cfg(cmdline: &str, label: Option<&str>) -> String {
    let search = label
        .map(|l| format!("  search --no-floppy --label {l} --set=root\n"))
        .unwrap_or_default();
    format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input console serial\n\
         terminal_output console serial\n\
         set timeout=1\n\
         set default=0\n\
         menuentry \"OxOS\" {{\n\
         {search}  linux /boot/vmlinuz {cmdline}\n\
         \x20 initrd /boot/initrd.img\n\
         }}\n"
    )
}

/// The hybrid ISO `dir/oxos.iso`.
///
/// GRUB's own `grub-mkrescue` makes GRUB's boot files: a small ISO holding
/// only them and grub.cfg. Its tree is then mastered again with xorriso,
/// with the same boot records (El Torito BIOS and EFI images, the hybrid
/// MBR for USB sticks, GPT and APM entries) but an EFI image sized to its
/// content: grub-mkrescue always makes a 2.88 MB floppy image for a
/// 200 KB GRUB, and adds an HFS+ tree for Macs. Both would count against
/// the ISO's 100 MB.
fn make_iso(vmlinuz: &Path, initrd: &Path, system: &Path, cfg: &str, dir: &Path) -> Result<()> {
    let grub_tree = dir.join("grub-root");
    mkdirs(&grub_tree.join("boot/grub"))?;
    std::fs::write(grub_tree.join("boot/grub/grub.cfg"), cfg).context("cannot write grub.cfg")?;
    let grub_iso = dir.join("grub.iso");
    run_step(
        "grub-mkrescue",
        Command::new("grub-mkrescue")
            .arg("-o")
            .arg(&grub_iso)
            .arg(&grub_tree)
            // No translations, themes or fonts (the menu is text on screen
            // and serial), GRUB's modules xz-compressed: 14 MB less.
            .args(["--locales=", "--themes=", "--fonts=", "--compress=xz"])
            .args(["--", "-volid", "OXOS"]),
    )?;
    let root = dir.join("root");
    run_step(
        "extract GRUB's boot files",
        Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(&grub_iso)
            .args(["-extract", "/"])
            .arg(&root),
    )?;
    // Extracted files are read-only, as on the ISO.
    run_step(
        "make GRUB's boot files writable",
        Command::new("chmod").arg("-R").arg("u+w").arg(&root),
    )?;
    trim_grub_modules(&root.join("boot/grub"))?;
    // The EFI image, again, with GRUB's EFI program only.
    let bootx64 = dir.join("bootx64.efi");
    run_step(
        "take GRUB's EFI program",
        Command::new("mcopy")
            .arg("-n")
            .arg("-i")
            .arg(root.join("efi.img"))
            .arg("::/efi/boot/bootx64.efi")
            .arg(&bootx64),
    )?;
    for extra in ["efi.img", "System", "mach_kernel", "boot.catalog"] {
        let path = root.join(extra);
        if path.is_dir() {
            std::fs::remove_dir_all(&path).ok();
        } else {
            std::fs::remove_file(&path).ok();
        }
    }
    // FAT12 with room for the program and the file system's own blocks.
    let efi_kib = (file_size(&bootx64)? / 1024 + 96).div_ceil(32) * 32;
    let efi_img = root.join("efi.img");
    run_step(
        "EFI boot image",
        Command::new("mkfs.fat")
            .args(["-C", "-n", "OXOS-EFI"])
            .arg(&efi_img)
            .arg(efi_kib.to_string()),
    )?;
    run_step(
        "EFI boot image directories",
        Command::new("mmd")
            .arg("-i")
            .arg(&efi_img)
            .args(["::/efi", "::/efi/boot"]),
    )?;
    run_step(
        "EFI boot image program",
        Command::new("mcopy")
            .arg("-i")
            .arg(&efi_img)
            .arg(&bootx64)
            .arg("::/efi/boot/bootx64.efi"),
    )?;
    copy(vmlinuz, &root.join("boot/vmlinuz"))?;
    copy(initrd, &root.join("boot/initrd.img"))?;
    copy(system, &root.join("oxos/system.img"))?;
    // grub-mkrescue's boot records (`xorriso -report_el_torito as_mkisofs`
    // of its ISO), the first 16 sectors (GRUB's hybrid MBR) taken from it.
    let mbr = format!(
        "--interval:local_fs:0s-15s:zero_mbrpt,zero_gpt,zero_apm:{}",
        grub_iso.display()
    );
    run_step(
        "master the ISO",
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-r", "-V", "OXOS"])
            .args(["--grub2-mbr", &mbr, "--protective-msdos-label"])
            .args(["-partition_cyl_align", "off", "-partition_offset", "0"])
            .args(["-partition_hd_cyl", "64", "-partition_sec_hd", "32"])
            .args(["-apm-block-size", "2048"])
            .args(["-efi-boot-part", "--efi-boot-image", "-c", "/boot.catalog"])
            .args(["-b", "/boot/grub/i386-pc/eltorito.img", "-no-emul-boot"])
            .args([
                "-boot-load-size",
                "4",
                "-boot-info-table",
                "--grub2-boot-info",
            ])
            .args(["-eltorito-alt-boot", "-e", "/efi.img", "-no-emul-boot"])
            .arg("-o")
            .arg(dir.join("oxos.iso"))
            .arg(&root),
    )?;
    std::fs::remove_dir_all(&root).ok();
    std::fs::remove_dir_all(&grub_tree).ok();
    std::fs::remove_file(&grub_iso).ok();
    std::fs::remove_file(&bootx64).ok();
    Ok(())
}

/// GRUB modules the ISO's menu can need (with what they depend on): the
/// commands of [`grub_cfg`], file systems and partition maps to find
/// files, decompressors, video for the EFI console, and a few commands for
/// the GRUB shell (`e` or `c` in the menu).
const GRUB_MODULES: &[&str] = &[
    "normal",
    "serial",
    "terminal",
    "linux",
    "boot",
    "configfile",
    "echo",
    "test",
    "search",
    "search_label",
    "search_fs_label",
    "search_fs_uuid",
    "iso9660",
    "part_msdos",
    "part_gpt",
    "fat",
    "ext2",
    "gzio",
    "xzio",
    "zstd",
    "halt",
    "reboot",
    "ls",
    "cat",
    "all_video",
];

/// Removes from `grub_dir`'s platform directories every module that
/// [`GRUB_MODULES`] does not need (closed over GRUB's own moddep.lst, read
/// from the installed grub packages since the ISO's copy is compressed).
fn trim_grub_modules(grub_dir: &Path) -> Result<()> {
    for platform in ["i386-pc", "x86_64-efi"] {
        let dir = grub_dir.join(platform);
        if !dir.is_dir() {
            continue;
        }
        let moddep = Path::new("/usr/lib/grub").join(platform).join("moddep.lst");
        let text = std::fs::read_to_string(&moddep)
            .with_context(|| format!("cannot read {}", moddep.display()))?;
        let deps: std::collections::BTreeMap<&str, Vec<&str>> = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(m, d)| (m.trim(), d.split_whitespace().collect()))
            .collect();
        let mut wanted = std::collections::BTreeSet::new();
        let mut stack: Vec<&str> = GRUB_MODULES.to_vec();
        while let Some(m) = stack.pop() {
            if wanted.insert(m) {
                stack.extend(deps.get(m).into_iter().flatten().copied());
            }
        }
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if let Some(module) = name.strip_suffix(".mod") {
                if !wanted.contains(module) {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("cannot remove {}", path.display()))?;
                }
            }
        }
    }
    Ok(())
}

/// The two packings of the system image: the same `/usr`, compressed for
/// the medium it is on.
///
/// The ISO has a size target (at most 100 MB with User Docker), so its
/// image is xz with the x86 filter (BCJ) in 1 MiB blocks: 20% smaller than
/// zstd -15 here, mostly on the Go binaries of User Docker. But xz is slow
/// to decompress, and squashfs decompresses blocks on every read from a
/// cold page cache: in a booted guest under TCG, reading dockerd and
/// containerd (148 MB) took 45 s, nearly all of it in xz.
///
/// The installed disk has no size target, so its image is lz4 (high
/// compression): 64% larger than xz (124 against 76 MB, in 128 KiB blocks)
/// and 17 times faster to read (on the build host, cold cache, those two
/// files: 0.18 s against 3.08 s; zstd -19 took 0.29 s at 87 MB).
///
/// Its blocks are 32 KiB. LZ4's window is 64 KiB, so small blocks cost it
/// little: 128.5 MB against 118.6 MB in 128 KiB blocks (16 KiB: 135.4
/// MB). What squashfs keeps in memory is sized by the block: per mount, a
/// data block for each CPU's decompressor, three cached fragment blocks,
/// and lz4's input and output buffers for each CPU, 9 blocks with two
/// CPUs: 288 KiB instead of 1,152 KiB (in a probe boot, vmallocinfo
/// showed lz4_init's four buffers at 36 KiB each, a guard page included),
/// and the per-CPU part grows with the CPUs. And a page fault
/// decompresses the whole block around the page: with 256 MiB of memory,
/// where the page cache cannot hold User Docker's programs, three `docker
/// run` in a row after the boot took 19.3, 14.0 and 12.0 s against 21.0,
/// 16.3 and 14.5 s with 128 KiB blocks (a probe boot each, the same build
/// otherwise).
#[derive(Clone, Copy)]
enum SystemImage {
    Iso,
    Disk,
}

impl SystemImage {
    /// The file in the system-image step's directory. On both media it is
    /// installed as `/oxos/system.img`.
    fn file_name(self) -> &'static str {
        match self {
            SystemImage::Iso => "system.img",
            SystemImage::Disk => "system-disk.img",
        }
    }

    fn mksquashfs_args(self) -> &'static [&'static str] {
        match self {
            SystemImage::Iso => &["-comp", "xz", "-Xbcj", "x86", "-b", "1M"],
            SystemImage::Disk => &["-comp", "lz4", "-Xhc", "-b", "32K"],
        }
    }
}

/// The installed disk `dir/oxos.qcow2` (and `dir/virtual-size`).
fn make_disk(
    vmlinuz: &Path,
    initrd: &Path,
    system: &Path,
    cfg: &str,
    disk_mib: u64,
    dir: &Path,
) -> Result<()> {
    let root = dir.join("boot-root");
    copy(vmlinuz, &root.join("boot/vmlinuz"))?;
    copy(initrd, &root.join("boot/initrd.img"))?;
    copy(system, &root.join("oxos/system.img"))?;
    let grub = root.join("boot/grub");
    std::fs::write(
        {
            mkdirs(&grub)?;
            grub.join("grub.cfg")
        },
        cfg,
    )
    .context("cannot write grub.cfg")?;
    // GRUB's modules (BIOS and UEFI), loaded by the core images from the
    // boot partition.
    for platform in ["i386-pc", "x86_64-efi"] {
        let lib = Path::new("/usr/lib/grub").join(platform);
        for entry in std::fs::read_dir(&lib)
            .with_context(|| format!("cannot read {} (grub packages)", lib.display()))?
        {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "mod" || e == "lst") {
                if let Some(name) = path.file_name() {
                    copy(&path, &grub.join(platform).join(name))?;
                }
            }
        }
    }
    let grub_lib = Path::new("/usr/lib/grub/i386-pc");
    // Boot partition: twice the content, at least 256 MiB.
    let content_mib = tree_size(&root)? / (1024 * 1024) + 1;
    let boot_mib = (content_mib * 2).max(256);
    let l = disk::layout(boot_mib, disk_mib)?;

    let boot_img = dir.join("boot.ext4");
    let state_img = dir.join("state.ext4");
    let esp_img = dir.join("esp.fat");
    let raw = dir.join("disk.raw");
    for (path, sectors) in [
        (&boot_img, l.boot_sectors),
        (&esp_img, l.esp_sectors),
        (&state_img, l.state_sectors),
        (&raw, l.total_sectors),
    ] {
        std::fs::File::create(path)
            .and_then(|f| f.set_len(sectors * disk::SECTOR))
            .with_context(|| format!("cannot create {}", path.display()))?;
    }
    // GRUB 2.06 cannot read ext4 with metadata_csum_seed (incompatible
    // feature); orphan_file is left out for the same older readers.
    run_step(
        "mkfs.ext4 RANCHER_BOOT",
        Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-L",
                "RANCHER_BOOT",
                "-O",
                "^metadata_csum_seed,^orphan_file",
            ])
            .arg("-d")
            .arg(&root)
            .arg(&boot_img),
    )?;
    run_step(
        "mkfs.ext4 RANCHER_STATE",
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "RANCHER_STATE"])
            .arg(&state_img),
    )?;
    let mut sfdisk = Command::new("sfdisk");
    sfdisk
        .args(["-q", "--no-reread", "--no-tell-kernel"])
        .arg(&raw)
        .stdin(Stdio::piped());
    eprintln!(
        "xtask: == partition table: {}",
        crate::cmd::display(&sfdisk)
    );
    let mut child = sfdisk
        .spawn()
        .context("partition table: cannot start sfdisk")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(disk::sfdisk_script(&l).as_bytes())?;
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("sfdisk failed ({status}) on {}", raw.display());
    }
    disk::copy_sparse_at(&boot_img, &raw, l.boot_start * disk::SECTOR)?;
    disk::copy_sparse_at(&state_img, &raw, l.state_start * disk::SECTOR)?;
    let core = dir.join("core.img");
    let early = dir.join("early.cfg");
    std::fs::write(
        &early,
        "search --no-floppy --label RANCHER_BOOT --set=root\nset prefix=($root)/boot/grub\n",
    )?;
    // UEFI: GRUB's EFI binary on the EFI system partition.
    let efi = dir.join("BOOTX64.EFI");
    run_step(
        "grub-mkimage (UEFI core)",
        Command::new("grub-mkimage")
            .args(["-O", "x86_64-efi", "-p", "/boot/grub", "-c"])
            .arg(&early)
            .arg("-o")
            .arg(&efi)
            .args(["part_msdos", "ext2", "search", "search_label"]),
    )?;
    run_step(
        "mkfs.vfat EFI system partition",
        Command::new("mkfs.vfat").args(["-n", "EFI"]).arg(&esp_img),
    )?;
    run_step(
        "mmd EFI/BOOT",
        Command::new("mmd")
            .arg("-i")
            .arg(&esp_img)
            .args(["::/EFI", "::/EFI/BOOT"]),
    )?;
    run_step(
        "mcopy BOOTX64.EFI",
        Command::new("mcopy")
            .arg("-i")
            .arg(&esp_img)
            .arg(&efi)
            .arg("::/EFI/BOOT/BOOTX64.EFI"),
    )?;
    disk::copy_sparse_at(&esp_img, &raw, l.esp_start * disk::SECTOR)?;
    run_step(
        "grub-mkimage (BIOS core)",
        Command::new("grub-mkimage")
            .args(["-O", "i386-pc", "-p", "/boot/grub", "-c"])
            .arg(&early)
            .arg("-o")
            .arg(&core)
            .args(["biosdisk", "part_msdos", "ext2", "search", "search_label"]),
    )?;
    disk::install_bios_boot(&raw, &grub_lib.join("boot.img"), &core)?;
    run_step(
        "qemu-img convert",
        Command::new("qemu-img")
            .args(["convert", "-c", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(dir.join("oxos.qcow2")),
    )?;
    std::fs::write(
        dir.join("virtual-size"),
        (l.total_sectors * disk::SECTOR).to_string(),
    )?;
    for p in [&boot_img, &state_img, &esp_img, &raw] {
        std::fs::remove_file(p).ok();
    }
    std::fs::remove_dir_all(&root).ok();
    Ok(())
}

/// The direct kernel boot that `args` asks for: with --append, or a
/// datasource the default list does not find (its entry then goes on the
/// command line, unless --append names the datasources itself).
fn direct_kernel(args: &RunArgs, medium: qemu::Medium) -> Result<Option<qemu::DirectKernel>> {
    let entry = args
        .cloud_config
        .as_ref()
        .and_then(|_| args.datasource.entry());
    if args.append.is_none() && entry.is_none() {
        return Ok(None);
    }
    if args.uefi {
        bail!("--uefi cannot be combined with --append or --datasource nocloud/url (QEMU loads the kernel itself)");
    }
    dist_direct_kernel(kernel_cmdline(
        medium,
        entry.as_deref(),
        args.append.as_deref(),
    ))
    .map(Some)
}

/// Direct kernel boot of the built `dist/vmlinuz` and `dist/initrd.img`
/// with `cmdline`; an error when `cargo xtask build` has not made them.
pub fn dist_direct_kernel(cmdline: String) -> Result<qemu::DirectKernel> {
    let dist = dist_dir();
    let (kernel, initrd) = (dist.join("vmlinuz"), dist.join("initrd.img"));
    for f in [&kernel, &initrd] {
        if !f.is_file() {
            bail!(
                "{} does not exist: run `cargo xtask build` first",
                f.display()
            );
        }
    }
    Ok(qemu::DirectKernel {
        kernel,
        initrd,
        cmdline,
    })
}

/// The command line that the medium's GRUB gives the kernel: [`CMDLINE`],
/// plus [`ISO_CMDLINE`] on the ISO.
pub fn medium_cmdline(medium: qemu::Medium) -> String {
    match medium {
        qemu::Medium::Iso => format!("{CMDLINE} {ISO_CMDLINE}"),
        qemu::Medium::Disk => CMDLINE.to_string(),
    }
}

/// The medium's command line, the datasource `entry` (unless `append`
/// names the datasources), then `append`. Words after a `--` in `append`
/// stay last, where the kernel hands them to init.
pub fn kernel_cmdline(medium: qemu::Medium, entry: Option<&str>, append: Option<&str>) -> String {
    let mut line = medium_cmdline(medium);
    let append = append.unwrap_or("");
    if let Some(entry) = entry.filter(|_| !append.contains("rancher.cloud_init.datasources")) {
        line.push_str(&format!(" rancher.cloud_init.datasources=[{entry}]"));
    }
    if !append.trim().is_empty() {
        line.push(' ');
        line.push_str(append.trim());
    }
    line
}

/// Boots the built image in QEMU.
pub fn run(artifacts: &Artifacts, args: &RunArgs) -> Result<()> {
    let medium = if args.disk {
        qemu::Medium::Disk
    } else {
        qemu::Medium::Iso
    };
    let image = match (medium, &args.disk_image) {
        (qemu::Medium::Disk, Some(own)) => own,
        (qemu::Medium::Iso, _) => &artifacts.iso,
        (qemu::Medium::Disk, None) => &artifacts.qcow2,
    };
    if !image.is_file() {
        bail!(
            "{} does not exist: run `cargo xtask build` first",
            image.display()
        );
    }
    let patterns = args
        .expect
        .iter()
        .map(|p| Regex::new(p).with_context(|| format!("invalid --expect regex {p:?}")))
        .collect::<Result<Vec<_>>>()?;
    let runs = build_dir().join("runs");
    mkdirs(&runs)?;
    let id = std::process::id();
    let drive = runs.join(format!("config-drive-{id}.img"));
    let mut user_data_server = None;
    let config_drive = match &args.cloud_config {
        Some(file) if args.datasource == qemu::Datasource::Url => {
            let script = runs.join(format!("user-data-server-{id}.sh"));
            let file = file
                .canonicalize()
                .with_context(|| format!("cannot read cloud-config {}", file.display()))?;
            qemu::user_data_server(&script, &file)?;
            user_data_server = Some(script);
            None
        }
        Some(file) => {
            qemu::make_config_drive(
                args.datasource,
                file,
                args.meta_data.as_deref(),
                &runs.join(format!("config-drive-{id}")),
                &drive,
            )?;
            Some(drive)
        }
        None => None,
    };
    let kernel = direct_kernel(args, medium)?;
    let uefi = if args.uefi {
        Some(qemu::find_ovmf(&runs.join(format!("ovmf-vars-{id}.fd")))?)
    } else {
        None
    };
    let background = args.detach || !patterns.is_empty();
    let log = args
        .log
        .clone()
        .unwrap_or_else(|| runs.join(format!("serial-{id}.log")));
    let machine = qemu::Machine {
        medium,
        image: image.clone(),
        mem_mb: args.mem,
        ssh_port: args.ssh_port,
        ssh_guest_port: args.ssh_guest_port,
        config_drive,
        extra_disk: args.extra_disk.clone(),
        monitor: args.monitor.clone(),
        usb_keyboard: args.usb_keyboard,
        uefi,
        serial: if background {
            qemu::Serial::File(log.clone())
        } else {
            qemu::Serial::Terminal
        },
        kernel,
        user_data_server,
    };
    let qemu_args = qemu::args(&machine);
    let qemu_bin = "qemu-system-x86_64";
    eprintln!("xtask: == qemu: {qemu_bin} {}", qemu_args.join(" "));
    if !background {
        let status = Command::new(qemu_bin)
            .args(&qemu_args)
            .status()
            .with_context(|| format!("cannot start {qemu_bin}"))?;
        if !status.success() {
            bail!("qemu failed ({status})");
        }
        return Ok(());
    }
    if log.exists() {
        std::fs::remove_file(&log).with_context(|| format!("cannot remove {}", log.display()))?;
    }
    let errors = log.with_extension("qemu-stderr");
    let mut child = qemu::spawn_detached(qemu_bin, &qemu_args, &errors)?;
    eprintln!(
        "xtask: qemu running, pid {}, serial log {}",
        child.id(),
        log.display()
    );
    if patterns.is_empty() {
        println!("{} {}", child.id(), log.display());
        return Ok(());
    }
    let started = Instant::now();
    let missing = qemu::wait_for(
        &mut child,
        &log,
        &patterns,
        Duration::from_secs(args.timeout),
    );
    let _ = child.kill();
    let _ = child.wait();
    let missing = missing?;
    if missing.is_empty() {
        eprintln!(
            "xtask: every pattern seen on the serial console after {:.1} s (log {})",
            started.elapsed().as_secs_f64(),
            log.display()
        );
        return Ok(());
    }
    let text = std::fs::read(&log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    eprintln!("xtask: last lines of {}:", log.display());
    for line in tail.iter().rev() {
        eprintln!("  | {line}");
    }
    let qemu_errors = std::fs::read_to_string(&errors).unwrap_or_default();
    if !qemu_errors.trim().is_empty() {
        eprintln!("xtask: qemu said:\n{}", qemu_errors.trim_end());
    }
    bail!(
        "serial console never showed {} (log {})",
        missing.join(", "),
        log.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_gets_the_datasource_unless_append_names_one() {
        let iso = kernel_cmdline(qemu::Medium::Iso, Some("nocloud"), None);
        assert_eq!(
            iso,
            format!("{CMDLINE} {ISO_CMDLINE} rancher.cloud_init.datasources=[nocloud]")
        );
        let disk = kernel_cmdline(
            qemu::Medium::Disk,
            Some("nocloud"),
            Some("rancher.modules=[dummy] -- rancher.cloud_init.datasources=[nocloud,cmdline]"),
        );
        assert_eq!(
            disk,
            format!(
                "{CMDLINE} rancher.modules=[dummy] -- rancher.cloud_init.datasources=[nocloud,cmdline]"
            )
        );
        // After `--` stays last, with the datasource before it.
        let after = kernel_cmdline(
            qemu::Medium::Disk,
            Some("nocloud"),
            Some("-- cc.hostname=h"),
        );
        assert!(after.ends_with("rancher.cloud_init.datasources=[nocloud] -- cc.hostname=h"));
    }

    #[test]
    fn grub_config_boots_the_kernel_with_serial_console_last() {
        let cfg = grub_cfg(CMDLINE, Some("RANCHER_BOOT"));
        assert!(cfg.contains("search --no-floppy --label RANCHER_BOOT --set=root"));
        let linux = cfg
            .lines()
            .find(|l| l.trim_start().starts_with("linux "))
            .unwrap();
        assert!(linux.contains("rdinit=/init"));
        let consoles: Vec<&str> = linux
            .split_whitespace()
            .filter(|w| w.starts_with("console="))
            .collect();
        assert_eq!(consoles.last(), Some(&"console=ttyS0,115200n8"));
        assert!(cfg.contains("initrd /boot/initrd.img"));
        assert!(!grub_cfg(CMDLINE, None).contains("search"));
    }

    #[test]
    fn keys_change_with_any_part_and_do_not_run_together() {
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        assert_eq!(key(&[b"x"]), key(&[b"x"]));
        assert_ne!(key(&[b"x"]), key(&[b"y"]));
    }

    #[test]
    fn cache_runs_a_step_again_only_when_its_key_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache {
            root: dir.path().to_path_buf(),
        };
        let mut runs = 0;
        for k in ["one", "one", "two"] {
            cache
                .step("s", k, |d| {
                    runs += 1;
                    std::fs::write(d.join("out"), k)?;
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(runs, 2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("s/out")).unwrap(),
            "two"
        );
        // A failed step leaves no key behind, so it runs again.
        assert!(cache.step("s", "three", |_| bail!("broken")).is_err());
        let mut ran = false;
        cache
            .step("s", "three", |_| {
                ran = true;
                Ok(())
            })
            .unwrap();
        assert!(ran);
    }

    #[test]
    fn static_elf_detection_reads_the_program_headers() {
        // The test binary itself is dynamically linked.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static_elf(&me).unwrap());
        // A minimal static ELF: header only, no program headers.
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        assert!(is_static_elf(&elf).unwrap());
        assert!(is_static_elf(b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn position_independence_is_read_from_the_elf_type() {
        // Rust builds the test binary as a PIE (ET_DYN).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(is_position_independent(&me).unwrap());
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x10] = 2; // ET_EXEC
        assert!(!is_position_independent(&elf).unwrap());
        elf[0x10] = 1; // ET_REL, an object file
        assert!(is_position_independent(&elf).is_err());
        assert!(is_position_independent(b"\x7fELF\x02\x01").is_err());
    }
}
