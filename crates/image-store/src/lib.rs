//! # image-store: images and layers of the system engine
//!
//! ## Background
//!
//! The system engine runs every OxOS service from an image. Images arrive as
//! tarballs (`docker save` archives and OCI image layouts preloaded at boot or
//! sent through the API), as root-filesystem tarballs (`docker import`), or
//! from a registry (`docker pull`). The engine needs the unpacked layers as
//! overlayfs lower directories, and the image configuration to build OCI
//! runtime specs.
//!
//! ## Design
//!
//! The store is content addressed and every byte it keeps is digest verified.
//! Layout under the root directory (the engine passes `DATA_ROOT/image`):
//!
//! ```text
//! layers/<diffid-hex>/        unpacked layer, usable directly as an overlay lowerdir
//! layers/<diffid-hex>.size    bytes on disk of that layer (written once)
//! configs/<image-id-hex>.json image config blobs; id = sha256 of these bytes
//! repositories.json           {"tags": {"busybox:latest": "sha256:.."}, "digests": {..}}
//! staging/                    in-progress work; wiped by `open`
//! ```
//!
//! * A layer is unpacked once, keyed by its diff id (the sha256 of the
//!   uncompressed tar), and shared by every image that uses it. Unpacking
//!   streams the (decompressed) tar into `staging/` while hashing it; only when
//!   the hash matches the diff id named by the image config (and, for registry
//!   and OCI blobs, the compressed digest matches its descriptor) is the
//!   directory renamed into `layers/`. Otherwise the staging directory is
//!   removed and the operation fails.
//! * Whiteouts are converted while unpacking: `.wh.NAME` becomes a 0:0
//!   character device `NAME` and `.wh..wh..opq` sets
//!   `trusted.overlay.opaque=y` on its directory, so layer directories stack
//!   directly as overlayfs lowerdirs.
//! * Metadata (`repositories.json`, configs) is written atomically: temp file,
//!   fsync, rename. An internal mutex serialises metadata changes, so the
//!   store is `Send + Sync` and may be used from several threads.
//! * Every operation that takes input first does all its fallible work in
//!   staging and only then commits: layers are renamed into place, then the
//!   config, then the tags. A failure before commit leaves the store as it
//!   was; layers that were already present are never touched.
//! * Layer compression is detected by magic bytes (gzip, zstd, xz, or none)
//!   with pure-Rust decoders so that `ros` links statically.
//!
//! ## Limitations
//!
//! * Only linux/amd64 is selected from multi-platform indexes.
//! * Garbage collection of layers happens on `remove`; layers left behind by
//!   a crash between commit steps are not collected until an image using
//!   them is removed.
//! * Registry authentication is anonymous or basic (including token servers
//!   that accept basic credentials); credential helpers are not supported.

mod archive;
mod error;
mod model;
mod pull;
mod reference;
mod store;
mod unpack;

pub use error::Error;
pub use model::{ContainerConfig, HistoryEntry, Image, ImageConfig};
pub use pull::{PullOptions, PullProgress};
pub use store::{ImageStore, LoadedImage, Removed};
