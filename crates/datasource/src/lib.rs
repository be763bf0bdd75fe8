//! OxOS datasources: where user-data and metadata come from.
//!
//! # Background
//!
//! A RancherOS machine learns its configuration at boot from a
//! "datasource": the kernel command line, a file, a URL, a config drive or
//! NoCloud seed disk, or a cloud's metadata service (EC2, GCE,
//! DigitalOcean, ...). `rancher.cloud_init.datasources` lists the sources
//! to try; the default is `[configdrive:/media/config-2]`. What a source
//! gives is user-data (a `#cloud-config`, a `#!` script, a `#compose` file,
//! or gzip of one of these) and metadata (hostname, SSH keys, network
//! config). RancherOS saved them under /var/lib/rancher/conf, where the
//! config layers and `cloud-init-execute` pick them up (COMPAT.md).
//!
//! # Design
//!
//! - [`Source`] is one entry of the list; [`parse_sources`] parses the list,
//!   expands `*`, and sets aside (as errors to log) names that are unknown
//!   or not supported yet, so one bad entry never stops the others. Each
//!   metadata service carries its base URL, so tests point it at a local
//!   server.
//! - [`fetch`] polls every source at once on tokio tasks. A source that is
//!   not available yet (connection refused, HTTP 5xx, device missing) is
//!   retried with a doubling wait; one that can never answer (`cmdline`
//!   without `cloud-config-url=`, or another cloud's metadata service at
//!   the shared 169.254.169.254) stops; one that fails for good (bad
//!   user-data, HTTP 403) stops and is reported. The first answer wins;
//!   answers ready at the same moment go by list order. The overall
//!   timeout bounds everything: a server that accepts and never replies is
//!   abandoned with the rest.
//! - [`userdata::decode`] recognises the user-data forms and wraps
//!   `#compose` into `rancher.services`.
//! - The config drive and NoCloud are read from a directory when the path
//!   holds one, otherwise from the block device with their label (the udev
//!   link under /dev/disk/by-label, else `blkid` without its cache),
//!   mounted read-only on a temporary directory for the read only. When the
//!   kernel lacks the file system, mounting is not permitted, or the label
//!   names an image file, the files are read in user space instead (ISO
//!   9660 with Rock Ridge or Joliet names, and FAT through `fatfs`).
//! - Network descriptions (OpenStack network_data.json, NoCloud
//!   network-config v1/v2, DigitalOcean interfaces) are translated into the
//!   `rancher.network` form ([`Metadata::network`]).
//! - [`save`] writes the results atomically to the COMPAT.md places under a
//!   root directory; [`load_metadata`] reads the metadata back for
//!   `config::layers::apply_metadata`. The library never reads
//!   /proc/cmdline itself and takes the root as an argument, so all of it
//!   runs against temporary directories in tests.
//!
//! # Example
//!
//! ```no_run
//! # async fn boot() -> Result<(), datasource::Error> {
//! use std::time::Duration;
//! let list = datasource::parse_sources(&["configdrive:/media/config-2", "ec2"]);
//! for problem in &list.problems {
//!     tracing::warn!("{problem}");
//! }
//! let options = datasource::FetchOptions::new(Duration::from_secs(60))
//!     .with_cmdline(std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
//! if let Some(fetched) = datasource::fetch(&list.sources, &options).await? {
//!     datasource::save(std::path::Path::new("/"), &fetched)?;
//! }
//! # Ok(()) }
//! ```
//!
//! # Limitations
//!
//! - packet, cloudstack, exoscale, azure, vmware, proxmox and aliyun are
//!   recognised and reported as not supported yet.
//! - Network translation is best effort: physical interfaces with static
//!   addresses, DHCP, gateways, MTU and nameservers; bonds, bridges and
//!   VLANs of the cloud's description are not translated. EC2 and GCE give
//!   no network config (they use DHCP).
//! - EC2 reads the hostname and the OpenSSH public keys, not the rest of the
//!   instance metadata; GCE reads no keys from the `windows-keys` or OS Login
//!   mechanisms.
//! - Without a mount, ISO files recorded in several extents, UDF and ext4
//!   are not supported (a clear error says so).
//! - The config drive is read from `openstack/latest` only (not from dated
//!   versions or the `ec2/` tree).
//! - `cloud-config-url=` is taken from the command line split at white
//!   space; a URL with spaces cannot be given.
//! - A blocking read of a device that hangs keeps its worker thread after
//!   the timeout (the fetch itself returns on time).
//! - User-data is limited to 64 MiB once decompressed.
//! - "Answers ready at the same moment" means answers that have arrived
//!   by the time the first one is handled; there is no grace period in
//!   which a source earlier in the list could still overtake.

pub mod cli;
mod disk;
mod error;
mod fetch;
mod http;
mod imagefs;
pub mod metadata;
mod save;
pub mod source;
pub mod userdata;

pub use error::{Error, Result};
pub use fetch::{cloud_config_url, fetch, FetchOptions, Fetched};
pub use metadata::Metadata;
pub use save::{load_metadata, mark_saved_at_boot, save, saved_at_boot, SavePaths, SAVED_AT_BOOT};
pub use source::{default_sources, parse_sources, Source, SourceList};
pub use userdata::UserData;
