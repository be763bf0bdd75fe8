//! OxOS system image build (placeholder docs, rewritten below)

mod error;
pub mod lock;
pub mod recipe;

pub use error::{Error, Result};
pub use lock::{Lock, PackageSet, LOCK_FILE};
pub use recipe::{load_recipes, load_sets, PackageRequest, Recipe, RuntimeConfig, SetSpec};
