//! Unpacking layer tarballs into overlayfs-ready directories.
