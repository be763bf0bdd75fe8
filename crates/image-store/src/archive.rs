//! Reading docker-archive and OCI image-layout tarballs.
