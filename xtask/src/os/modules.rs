//! Kernel module selection: which modules go into the initrd and the system
//! image, closed over their dependencies as `modules.dep` lists them.
//!
//! The kernel package ships about 4000 modules (100 MB); OxOS keeps the ones a
//! container host on common virtual and physical machines needs. A selection
//! is a list of module names plus directory prefixes (everything below, e.g.
//! all of netfilter); [`ModuleIndex::closure`] adds every dependency, so a
//! staged tree never misses one, and names that are neither a module nor
//! built into the kernel are an error (a typo in a list must not go unseen).

use anyhow::{bail, Result};
use std::collections::{BTreeMap, BTreeSet};

/// A set of modules to stage: names (as `modprobe` spells them, `-` and `_`
/// alike) and directory prefixes relative to the modules directory.
pub struct Selection {
    pub names: &'static [&'static str],
    pub dirs: &'static [&'static str],
}

/// What the initrd needs to find and mount the system image: the disk and
/// CD-ROM controllers QEMU and common machines have, USB sticks, and the file
/// systems the image lives in (iso9660 on the ISO, ext4 on the installed
/// disk's boot partition) and is made of (squashfs, erofs), with `loop`.
pub const INITRD: Selection = Selection {
    names: &[
        "virtio_blk",
        "virtio_scsi",
        "virtio_pci",
        "sd_mod",
        "sr_mod",
        "ahci",
        "ata_piix",
        "ata_generic",
        "nvme",
        "usb_storage",
        "uas",
        "xhci_pci",
        "ehci_pci",
        "ohci_pci",
        "uhci_hcd",
        "isofs",
        "squashfs",
        "erofs",
        "loop",
        "ext4",
        "crc32c_generic",
        "nls_utf8",
    ],
    dirs: &[],
};

/// The modules of the running system (in the system image, /usr/lib/modules):
/// virtio, common storage and network drivers, the file systems, and what
/// Docker and RancherOS networking use (bridge, veth, vxlan, netfilter,
/// bonding, 802.1q VLANs, macvlan, ipvlan, overlay).
pub const SYSTEM: Selection = Selection {
    names: &[
        // storage
        "virtio_blk",
        "virtio_scsi",
        "sd_mod",
        "sr_mod",
        "ahci",
        "ata_piix",
        "ata_generic",
        "nvme",
        "usb_storage",
        "uas",
        "xhci_pci",
        "ehci_pci",
        "ohci_pci",
        "uhci_hcd",
        "mptspi",
        "vmw_pvscsi",
        "hv_storvsc",
        "xen_blkfront",
        "dm_mod",
        "loop",
        // network
        "virtio_net",
        "e1000",
        "e1000e",
        "igb",
        "ixgbe",
        "r8169",
        "tg3",
        "bnx2",
        "vmxnet3",
        "hv_netvsc",
        "xen_netfront",
        "ena",
        "tun",
        "veth",
        "bridge",
        "br_netfilter",
        "vxlan",
        "bonding",
        "8021q",
        "macvlan",
        "ipvlan",
        "dummy",
        "ip_vs",
        "ip_vs_rr",
        "af_packet_diag",
        // input: the ACPI power button (acpid reads it through evdev);
        // USB keyboards and mice (bare-metal machines, servers' remote
        // consoles: the PS/2 keyboard is built in) and Hyper-V's synthetic
        // keyboard (its generation 2 machines have no PS/2 one)
        "button",
        "evdev",
        "usbhid",
        "hid_generic",
        "hyperv_keyboard",
        // virtual machine helpers
        "virtio_balloon",
        "virtio_console",
        "virtio_rng",
        "vmw_vsock_virtio_transport",
        "vmw_balloon",
        // file systems
        "ext4",
        "xfs",
        "btrfs",
        "vfat",
        "isofs",
        "squashfs",
        "erofs",
        "overlay",
        "fuse",
        "nls_cp437",
        "nls_iso8859_1",
        "nls_ascii",
        "nls_utf8",
        "crc32c_generic",
    ],
    dirs: &[
        "kernel/net/netfilter/",
        "kernel/net/ipv4/netfilter/",
        "kernel/net/ipv6/netfilter/",
        "kernel/net/bridge/netfilter/",
    ],
};

/// The module graph of one kernel, read from `modules.dep` and
/// `modules.builtin`.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    /// Module path (relative to the modules directory) -> its dependencies.
    deps: BTreeMap<String, Vec<String>>,
    /// Normalised module name -> path.
    by_name: BTreeMap<String, String>,
    /// Normalised names of modules built into the kernel.
    builtin: BTreeSet<String>,
}

/// `kernel/fs/ext4/ext4.ko.xz` -> `ext4`; `-` becomes `_` as modprobe does.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

impl ModuleIndex {
    /// Reads the text of `modules.dep` (`path: dep dep ...` per line) and
    /// `modules.builtin` (one path per line).
    pub fn parse(modules_dep: &str, modules_builtin: &str) -> Result<Self> {
        let mut index = ModuleIndex::default();
        for (n, line) in modules_dep.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some((path, deps)) = line.split_once(':') else {
                bail!("modules.dep line {}: no ':' in {line:?}", n + 1);
            };
            let path = path.trim().to_string();
            let deps = deps.split_whitespace().map(str::to_string).collect();
            index.by_name.insert(module_name(&path), path.clone());
            index.deps.insert(path, deps);
        }
        index.builtin = modules_builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(module_name)
            .collect();
        Ok(index)
    }

    /// Number of modules the kernel ships.
    pub fn len(&self) -> usize {
        self.deps.len()
    }

    /// The module files of `selection` and everything they depend on,
    /// transitively. Built-in names are skipped; unknown names and prefixes
    /// that match nothing are errors.
    pub fn closure(&self, selection: &Selection) -> Result<BTreeSet<String>> {
        let mut todo: Vec<String> = Vec::new();
        let mut unknown = Vec::new();
        for name in selection.names {
            let name = name.replace('-', "_");
            match self.by_name.get(&name) {
                Some(path) => todo.push(path.clone()),
                None if self.builtin.contains(&name) => {}
                None => unknown.push(name),
            }
        }
        if !unknown.is_empty() {
            bail!(
                "kernel modules not found (neither in modules.dep nor built in): {}",
                unknown.join(" ")
            );
        }
        for dir in selection.dirs {
            let before = todo.len();
            todo.extend(self.deps.keys().filter(|p| p.starts_with(dir)).cloned());
            if todo.len() == before {
                bail!("no kernel modules under {dir}");
            }
        }
        let mut done = BTreeSet::new();
        while let Some(path) = todo.pop() {
            if !done.insert(path.clone()) {
                continue;
            }
            match self.deps.get(&path) {
                Some(deps) => todo.extend(deps.iter().cloned()),
                None => bail!("modules.dep names {path} as a dependency but has no line for it"),
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz kernel/fs/mbcache.ko.xz kernel/lib/crc16.ko.xz
kernel/fs/jbd2/jbd2.ko.xz:
kernel/fs/mbcache.ko.xz:
kernel/lib/crc16.ko.xz:
kernel/drivers/scsi/sr_mod.ko.xz: kernel/drivers/cdrom/cdrom.ko.xz kernel/drivers/scsi/scsi_mod.ko.xz
kernel/drivers/cdrom/cdrom.ko.xz:
kernel/drivers/scsi/scsi_mod.ko.xz: kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/scsi/scsi_common.ko.xz:
kernel/net/netfilter/nf_conntrack.ko.xz: kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko.xz
kernel/net/netfilter/xt_nat.ko.xz: kernel/net/netfilter/nf_nat.ko.xz
kernel/net/netfilter/nf_nat.ko.xz: kernel/net/netfilter/nf_conntrack.ko.xz
kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko.xz:
kernel/drivers/net/usb/r8152.ko.xz:
kernel/drivers/virtio/virtio-mem.ko.xz:
";
    const BUILTIN: &str = "kernel/drivers/virtio/virtio_pci.ko\nkernel/fs/binfmt_script.ko\n";

    fn paths(set: &BTreeSet<String>) -> Vec<&str> {
        set.iter().map(String::as_str).collect()
    }

    #[test]
    fn closure_adds_transitive_dependencies() {
        let index = ModuleIndex::parse(DEP, BUILTIN).unwrap();
        let sel = Selection {
            names: &["sr_mod"],
            dirs: &[],
        };
        assert_eq!(
            paths(&index.closure(&sel).unwrap()),
            [
                "kernel/drivers/cdrom/cdrom.ko.xz",
                "kernel/drivers/scsi/scsi_common.ko.xz",
                "kernel/drivers/scsi/scsi_mod.ko.xz",
                "kernel/drivers/scsi/sr_mod.ko.xz",
            ]
        );
    }

    #[test]
    fn directory_prefixes_take_everything_below_and_their_deps() {
        let index = ModuleIndex::parse(DEP, BUILTIN).unwrap();
        let sel = Selection {
            names: &["ext4"],
            dirs: &["kernel/net/netfilter/"],
        };
        let got = index.closure(&sel).unwrap();
        assert!(got.contains("kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko.xz"));
        assert!(got.contains("kernel/net/netfilter/xt_nat.ko.xz"));
        assert!(got.contains("kernel/fs/jbd2/jbd2.ko.xz"));
        assert!(!got.contains("kernel/drivers/net/usb/r8152.ko.xz"));
        assert_eq!(got.len(), 8);
    }

    #[test]
    fn builtin_names_are_skipped_and_dashes_match_underscores() {
        let index = ModuleIndex::parse(DEP, BUILTIN).unwrap();
        let sel = Selection {
            names: &["virtio_pci", "virtio_mem", "binfmt-script"],
            dirs: &[],
        };
        assert_eq!(
            paths(&index.closure(&sel).unwrap()),
            ["kernel/drivers/virtio/virtio-mem.ko.xz"]
        );
    }

    #[test]
    fn unknown_names_and_empty_prefixes_are_errors() {
        let index = ModuleIndex::parse(DEP, BUILTIN).unwrap();
        let err = index
            .closure(&Selection {
                names: &["ext4", "virtio_bkl"],
                dirs: &[],
            })
            .unwrap_err();
        assert!(err.to_string().contains("virtio_bkl"), "{err}");
        let err = index
            .closure(&Selection {
                names: &[],
                dirs: &["kernel/net/bluetooth/"],
            })
            .unwrap_err();
        assert!(err.to_string().contains("kernel/net/bluetooth/"), "{err}");
    }

    #[test]
    fn a_dependency_without_its_own_line_is_an_error() {
        let index = ModuleIndex::parse("kernel/a.ko: kernel/missing.ko\n", "").expect("parses");
        let err = index
            .closure(&Selection {
                names: &["a"],
                dirs: &[],
            })
            .unwrap_err();
        assert!(err.to_string().contains("kernel/missing.ko"), "{err}");
    }

    #[test]
    fn malformed_lines_are_rejected() {
        let err = ModuleIndex::parse("kernel/a.ko\n", "").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn module_names_drop_directory_and_compression_suffix() {
        assert_eq!(module_name("kernel/fs/ext4/ext4.ko.xz"), "ext4");
        assert_eq!(
            module_name("kernel/drivers/virtio/virtio-mem.ko"),
            "virtio_mem"
        );
        assert_eq!(module_name("kernel/x/y.ko.zst"), "y");
    }
}
