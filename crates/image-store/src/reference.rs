//! Image reference normalisation, as Docker does it.
//!
//! Parsing is `oci_spec::distribution::Reference` (a port of Docker's
//! `distribution/reference`), which already applies the Docker Hub defaults
//! (`busybox` -> `docker.io/library/busybox:latest`). This module only adds
//! the "familiar" form Docker shows to users (`busybox:latest`).

use oci_spec::distribution::Reference;

use crate::error::{Error, Result};

const HUB: &str = "docker.io";
const OFFICIAL: &str = "library/";

/// Parses a user-supplied reference; a missing tag becomes `latest`.
pub(crate) fn parse(name: &str) -> Result<Reference> {
    let r: Reference = name.parse().map_err(|e| Error::InvalidReference {
        reference: name.to_string(),
        reason: format!("{e}"),
    })?;
    // Docker refuses upper-case repository names; the regexp used by
    // oci-spec would otherwise read "Foo" as a domain-less name.
    if r.repository().chars().any(|c| c.is_ascii_uppercase()) {
        return Err(Error::InvalidReference {
            reference: name.to_string(),
            reason: "repository name must be lowercase".to_string(),
        });
    }
    Ok(r)
}

/// The repository name in familiar form: `busybox`, `user/app`,
/// `127.0.0.1:5000/foo`.
pub(crate) fn familiar_repository(r: &Reference) -> String {
    if r.registry() == HUB {
        let repo = r.repository();
        match repo.strip_prefix(OFFICIAL) {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => repo.to_string(),
        }
    } else {
        format!("{}/{}", r.registry(), r.repository())
    }
}

/// `name:tag` in familiar form, or `None` for a digest-only reference.
pub(crate) fn familiar_tagged(r: &Reference) -> Option<String> {
    r.tag().map(|t| format!("{}:{}", familiar_repository(r), t))
}

/// Normalises a reference to the familiar `name:tag` form (`busybox` ->
/// `busybox:latest`; `name@digest` stays `name@digest`).
pub(crate) fn normalize(name: &str) -> Result<String> {
    let r = parse(name)?;
    match (r.tag(), r.digest()) {
        (Some(t), _) => Ok(format!("{}:{}", familiar_repository(&r), t)),
        (None, Some(d)) => Ok(format!("{}@{}", familiar_repository(&r), d)),
        (None, None) => Ok(format!("{}:latest", familiar_repository(&r))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        for (input, want) in [
            ("busybox", "busybox:latest"),
            ("busybox:1.36", "busybox:1.36"),
            ("library/busybox", "busybox:latest"),
            ("docker.io/library/busybox:latest", "busybox:latest"),
            ("index.docker.io/library/busybox", "busybox:latest"),
            ("user/app", "user/app:latest"),
            ("127.0.0.1:5000/foo", "127.0.0.1:5000/foo:latest"),
            ("localhost/foo:v1", "localhost/foo:v1"),
            ("quay.io/a/b/c:x", "quay.io/a/b/c:x"),
        ] {
            assert_eq!(normalize(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn rejects_invalid_references() {
        for bad in ["", "Busybox", "foo:bad tag", "a//b", "foo@sha256:12"] {
            assert!(
                matches!(normalize(bad), Err(Error::InvalidReference { .. })),
                "{bad} should be refused"
            );
        }
    }
}
