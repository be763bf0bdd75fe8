//! # image-build: OxOS system images from Debian packages
//!
//! ## Background
//!
//! Every OxOS service runs from an image: the console, the network and
//! device managers, the user Docker engine. These images are made from
//! Debian packages (trixie, bookworm for the older engine) and nothing
//! else, without a Docker daemon, and a build must be repeatable: the same
//! inputs give the same image, byte for byte, and a package the archive
//! has since replaced is an error, never a silent drift.
//!
//! ## Design
//!
//! - **Recipes** ([`recipe`]): one directory per image under `images/`,
//!   declared as data (LinuxKit style, no hidden steps): `image.yml` names
//!   the suite, the mmdebstrap variant, the packages, build hooks, a
//!   cleanup list, and the runtime config (entrypoint, cmd, env, labels,
//!   ...); `files/` is copied into the root. `images/sets.yml` declares
//!   package sets that are not images (the kernel). Recipe errors name the
//!   file, the key path and what was expected.
//! - **The lock** ([`lock`]): `images/packages.lock` pins, per image and
//!   set, every package that ends up in it (name and exact version) and
//!   the request it was resolved for. `cargo xtask lock` refreshes it: an
//!   image is bootstrapped unpinned and its set is read back from the
//!   root's dpkg status (or, for `extract` images, from the downloaded
//!   `.deb` names); a set of `sets.yml` is resolved by an apt simulation
//!   (the packages and their dependency closure). A build pins every
//!   locked package (`--include=name=version`), then compares the root
//!   with the lock; a version the archive no longer has, a changed recipe
//!   request, or any difference fails and names `cargo xtask lock --only
//!   NAME`.
//! - **Bootstrap** ([`debian`]): behind the [`Bootstrap`] trait;
//!   [`Mmdebstrap`] runs `mmdebstrap --mode=root --format=directory` with
//!   `SOURCE_DATE_EPOCH`. Tests use a fake that writes a small tree.
//! - **Packing** ([`pack`]): the root becomes one gzip layer, reproducible
//!   (sorted entries, fixed mtimes, numeric owners, no atime, a gzip
//!   header without time); see the module for links, devices and
//!   whiteouts.
//! - **Output** ([`oci`]): one tarball per image that is both an OCI
//!   image layout and a `docker save` archive (`manifest.json` naming the
//!   same blobs), tagged `oxos/<name>:<version>`; the engine's
//!   `image-store` and both Docker generations load it. JSON is written
//!   with sorted keys so digests do not depend on map order.
//! - **Cache** ([`build`]): an image's inputs (builder version, mmdebstrap
//!   version and mirror, epoch, tag, recipe bytes, the `files/` tree, its
//!   lock entry) hash to a key stored next to the archive; an unchanged
//!   image is reused without running mmdebstrap.
//!
//! ## Example
//!
//! ```no_run
//! use image_build::{load_recipes, Builder, Lock, Mmdebstrap, DEFAULT_MIRROR};
//! use std::path::Path;
//!
//! # fn main() -> image_build::Result<()> {
//! let images = Path::new("images");
//! let lock = Lock::load(&images.join(image_build::LOCK_FILE))?;
//! // The kernel build reads its pinned packages the same way:
//! let kernel = lock.set("kernel")?;
//! for (name, version) in kernel.packages() {
//!     println!("{name}={version} from {}", kernel.suite());
//! }
//! let deb = Mmdebstrap::new(DEFAULT_MIRROR)?;
//! let builder = Builder {
//!     out_dir: "dist/images".into(),
//!     lock,
//!     epoch: 1_700_000_000,
//!     default_version: "0.1.0".into(),
//!     bootstrap: &deb,
//!     gzip_level: 6,
//! };
//! for recipe in load_recipes(images)? {
//!     let built = builder.build(&recipe, &mut |line| eprintln!("{line}"))?;
//!     println!("{} -> {}", built.tag, built.path.display());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## Limitations
//!
//! - One layer per image: images do not share a base layer.
//! - `extract` images get every `Depends` of their packages; the recipe's
//!   `exclude` list drops the files of those only maintainer scripts need
//!   (adduser, debconf, ...), but what a program really needs is checked
//!   only by the recipe's hooks (running it in a chroot).
//! - Cleanup globs run after the hooks; the lock pins Debian's packages
//!   but not what hooks fetch (hooks should not fetch).
//! - Extended attributes are not packed (file capabilities are lost);
//!   only overlayfs opaque markers are turned into `.wh..wh..opq`.
//! - Pins name versions of the suite's current archive only; there is no
//!   snapshot.debian.org fallback, so an archive update means a lock
//!   refresh.
//! - amd64 only; mmdebstrap runs in root mode, so building needs root.

pub mod build;
pub mod debian;
mod error;
pub mod lock;
pub mod oci;
pub mod pack;
pub mod recipe;

pub use build::{refresh_lock, Builder, BuiltImage, BUILDER_VERSION};
pub use debian::{Bootstrap, Mmdebstrap, DEFAULT_MIRROR};
pub use error::{Error, Result};
pub use lock::{Lock, PackageSet, LOCK_FILE};
pub use oci::{image_config, write_archive, ArchiveInfo};
pub use pack::{pack_layer, pack_layer_to_file, LayerInfo, PackOptions};
pub use recipe::{load_recipes, load_sets, PackageRequest, Recipe, RuntimeConfig, SetSpec};
