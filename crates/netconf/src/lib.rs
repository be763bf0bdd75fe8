//! # netconf: the network of OxOS (`ros netconf`)
//!
//! # Background
//!
//! RancherOS configured the network from `rancher.network` (COMPAT.md): per
//! interface (by name, glob or `mac=`) DHCP, static addresses, gateways,
//! MTU, bonds, bridges and VLANs, plus `dns.nameservers` and `dns.search`.
//! Its default was DHCP on `eth*`. OxOS reads the same keys. `ros netconf`
//! is the command of the `network` system service, which runs with the
//! host's network, PID and UTS namespaces, privileged, with /etc/resolv.conf
//! bind-mounted from the host.
//!
//! # Design
//!
//! - [`plan`] is pure: [`plan::Settings::from_config`] checks the whole
//!   section before anything is touched (a broken value stops netconf with
//!   the key and what was expected), [`plan::plan`] matches the kernel's
//!   links against it (MAC, then exact name, then the longest glob; the
//!   default when nothing is configured is DHCP on every Ethernet link,
//!   matched by link type, since NICs are named eth0, ens3 or enp0s3
//!   depending on the kernel), and [`plan::resolv_conf`] merges static and
//!   DHCP name servers.
//! - [`netlink`] reads links and applies a plan through `rtnetlink`:
//!   VLANs and bridges are created, links brought up with their MTU, then
//!   addresses and default routes are added, each request idempotent. A
//!   link the kernel refuses is logged and the others are still configured
//!   (`--once` then exits 1): one bad link must not keep the host offline.
//! - [`dhcp`] runs dhcpcd in the foreground for the DHCP links and restarts
//!   it with a backoff; dhcpcd calls netconf back as its hook script
//!   (`dhcp-hook`), which logs each lease in one line and rebuilds
//!   resolv.conf.
//! - [`resolv`] writes resolv.conf in place when it is a mount point (the
//!   bind-mounted file of the container, where rename fails with EBUSY) and
//!   atomically otherwise.
//! - [`cli`] is the command line; `--once` applies and exits after the first
//!   lease, `--dry-run` prints the plan.
//!
//! # Limitations
//!
//! - Links are read once at start: a link that appears later (hotplug) is
//!   configured when the service restarts.
//! - Bonds (`bond`, `bond_opts`), `dhcp_args`, `ipv4ll`, `pre_up`,
//!   `post_up`, `pre_cmds` and `post_cmds` are not supported yet: each one
//!   set is named in a warning and ignored. The proxy keys are not the
//!   network's: `ros docker-init` gives them to User Docker.
//! - DHCP is IPv4 only; IPv6 needs static addresses and `gateway_ipv6`.
//! - Addresses and routes that are no longer configured are not removed;
//!   dhcpcd runs persistent (`-p`), so stopping the service keeps leases.
//! - `rancher.network.dhcp_timeout` only bounds `--once`; the service waits
//!   for leases forever.

pub mod cli;
pub mod dhcp;
mod error;
pub mod netlink;
pub mod plan;
pub mod resolv;

pub use error::{Error, Result};
