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
//! The system image (the read-only file system mounted at `/usr`) carries
//! the system images already unpacked, as a store directory of its own at
//! `/usr/share/ros/store`, so that boot extracts nothing. The engine keeps
//! its writable store under its data root and must see both.
//!
//! ## Design
//!
//! The store is content addressed and every byte it keeps is digest verified.
//! Layout under the root directory (the engine passes `DATA_ROOT/image`):
//!
//! ```text
//! layers/<diffid-hex>/        unpacked layer, usable directly as an overlay lowerdir
//! layers/<diffid-hex>.size    bytes of file content in that layer
//! configs/<image-id-hex>.json image config blobs; id = sha256 of these bytes (as in Docker)
//! repositories.json           {"tags": {"busybox:latest": "sha256:.."},
//!                              "digests": {"sha256:<id>": ["busybox@sha256:<manifest>"]}}
//! staging/<random>/           work of one operation in progress; wiped by `open`
//! ```
//!
//! A directory in this layout is self-describing: copying it (or packing it
//! into a squashfs) copies the store. [`ImageStore::seal`] prepares one for
//! that (checks every layer is there, removes `staging/`, orphan layers and
//! temporary files).
//!
//! The set of images is the set of config files; tags and repo digests are
//! the only other metadata. Tags are kept in Docker's familiar form
//! (`busybox:latest`, `127.0.0.1:5000/foo:latest`).
//!
//! * A layer is unpacked once, keyed by its diff id (the sha256 of the
//!   uncompressed tar), and shared by every image that uses it. Unpacking
//!   streams the (decompressed) tar into `staging/` while hashing it; only when
//!   the hash matches the diff id named by the image config (and, for OCI
//!   blobs and registry downloads, the compressed bytes match their
//!   descriptor digest) is the directory renamed into `layers/`. Otherwise
//!   the staging directory is removed and the operation fails.
//! * Whiteouts are converted while unpacking: `.wh.NAME` becomes a 0:0
//!   character device `NAME` and `.wh..wh..opq` sets
//!   `trusted.overlay.opaque=y` on its directory, so layer directories stack
//!   directly as overlayfs lowerdirs. Ownership, modes, symlinks, hard
//!   links, device nodes, FIFOs, xattrs (`SCHILY.xattr.*`) and mtimes are
//!   kept. Entries with `..` or whose path goes through a symlink are
//!   refused, so nothing is ever written outside the layer directory.
//! * Metadata (`repositories.json`, configs, sizes) is written atomically:
//!   temp file, fsync, rename. An internal mutex serialises metadata
//!   changes, so the store is `Send + Sync` (and `Clone`, sharing state) and
//!   may be used from several threads.
//! * Every operation that takes input first does all its fallible work in
//!   staging and validates it, and only then commits under the lock: layers
//!   are renamed into place, then the configs are written, then the tags.
//!   A failure before commit leaves the store as it was; layers that were
//!   already present are never touched.
//! * `load` reads its tarball once as a stream, whatever the entry order
//!   (see the `archive` module); layers are never held in memory.
//! * Layer compression is detected by magic bytes (gzip, zstd, xz, or none).
//!   Decoders: `flate2` (miniz_oxide), `ruzstd` (pure Rust) and `liblzma`
//!   built from source with its `static` feature, so that `ros` links
//!   statically.
//! * `pull` uses `oci-client`; blobs are streamed to staging files while
//!   hashed, then go through the same unpack-and-commit path as `load`.
//!   Registries on 127.0.0.0/8, `localhost`, and those in
//!   [`PullOptions::insecure_registries`] (names, `host:port` or CIDRs) are
//!   reached over plain http.
//! * Removal follows `docker rmi`: see [`ImageStore::remove`]. Layers no
//!   image references any more are moved out of `layers/` into staging and
//!   then deleted, so a crash never leaves a half-deleted layer in place.
//!
//! ### Read-only stores
//!
//! [`ImageStore::open_with_read_only`] opens the writable store over any
//! number of read-only store directories (the system image's). They are
//! only ever read: no lock, no staging, no cleanup, no garbage collection
//! touches them, and a missing one is skipped with a warning so that boot
//! goes on. Their `repositories.json` and list of configs are read once, at
//! open.
//!
//! * Images: the union of all stores' `configs/`. A config is read from the
//!   writable store if it has it, else from the first read-only store that
//!   does. Read-only images are reported like the others.
//! * Tags and digests: the writable store's tag wins over a read-only
//!   store's of the same name (and an earlier read-only store's over a later
//!   one's); removing the writable tag uncovers the read-only one again.
//!   New tags, including tags of read-only images, go to the writable
//!   `repositories.json`.
//! * Layers are shared by diff id: [`ImageStore::layer_paths`] gives the
//!   writable store's directory when it has the layer, else a read-only
//!   store's. `load`, `pull` and `import` never add a layer that either
//!   store has; `pull` does not download it, and `load` does not unpack an
//!   uncompressed `blobs/sha256/<diffid>` entry (Docker 25+ `docker save`,
//!   uncompressed OCI layouts) but only checks its digest. The image config
//!   is written to the writable store all the same.
//! * A read-only image cannot be removed: naming it by id, or by a
//!   reference only a read-only store holds, is refused with
//!   [`Error::Conflict`] (the engine answers 409), even when forced.
//!   Untagging a writable tag of it works and leaves the image in place.
//! * Garbage collection deletes writable layers only, and counts the layers
//!   of read-only images as used (a container may run on the writable copy).
//!
//! ## Limitations
//!
//! * Only linux/amd64 is selected from multi-platform indexes.
//! * An OCI `org.opencontainers.image.ref.name` that is a bare tag
//!   (`latest`) names no repository and is ignored; full references and
//!   `io.containerd.image.name` are used.
//! * Layers left behind by a crash between the commit steps are not
//!   collected until some image is removed.
//! * Registry authentication is anonymous or basic (including token servers
//!   that accept basic credentials); credential helpers are not supported.
//! * Non-layer entries of an archive larger than 16 MiB are ignored; the
//!   legacy pre-1.10 `docker save` format (`repositories` only) is refused.
//! * `size` counts file content bytes, not allocated blocks.
//! * `load` still unpacks (into staging, then discards) layers already in a
//!   store when the archive names them otherwise than by diff id (legacy
//!   `docker save` `<id>/layer.tar`, compressed OCI blobs): the diff id is
//!   only known once the stream has been read.
//! * A writable copy of a layer that a read-only store also has is kept as
//!   long as any image, writable or read-only, uses that diff id.
//! * Read-only stores are taken as given: their contents are not verified
//!   again at open (they were verified when built, and the file system
//!   holding them is read-only). A writable tag pointing at an image of a
//!   read-only store no longer given finds no image; removing it just
//!   untags.

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
pub use unpack::decompressing_reader;

// The engine calls the store from `spawn_blocking` and drives `pull` in
// spawned tasks: these fail to compile if the bounds are lost.
const _: fn() = || {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<ImageStore>();
    send_sync::<Error>();
};

#[allow(dead_code)]
fn pull_future_is_send(store: &ImageStore) {
    fn send<T: Send>(_: T) {}
    send(store.pull("", &PullOptions::default(), &mut |_| {}));
}
