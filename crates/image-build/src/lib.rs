//! OxOS system image build: recipes under `images/<name>/`, the package lock,
//! and packing root filesystems into OCI layers. Not built yet.
