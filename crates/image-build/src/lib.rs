//! OxOS system image build (placeholder docs, rewritten below)

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
