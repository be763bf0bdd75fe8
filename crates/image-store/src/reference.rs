//! Image reference normalisation, as Docker does it.
//!
//! References are parsed here by hand, following Docker's
//! `distribution/reference` grammar and its Docker Hub defaults (`busybox` ->
//! `docker.io/library/busybox:latest`), into `oci_spec`'s `Reference` (the type
//! `oci-client` pulls with). oci-spec's own parser is not used because it
//! compiles a large regular expression that then stays resident (about 4 MB),
//! more than the whole daemon is allowed at idle. This module also gives the
//! "familiar" form Docker shows to users (`busybox:latest`).

use oci_spec::distribution::Reference;

use crate::error::{Error, Result};

const HUB: &str = "docker.io";
const OFFICIAL: &str = "library/";

/// Parses a user-supplied reference; a missing tag becomes `latest`.
pub(crate) fn parse(name: &str) -> Result<Reference> {
    let bad = |reason: &str| Error::InvalidReference {
        reference: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(bad("empty reference"));
    }
    if name.len() > 255 + 72 + 129 {
        return Err(bad("reference too long"));
    }
    let (rest, digest) = match name.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (name, None),
    };
    // A tag is a ':' after the last '/' (a ':' before it is a port).
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (path, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let mut chars = tag.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok
            || tag.len() > 128
            || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(bad("invalid tag"));
        }
    }
    if let Some(digest) = digest {
        let ok = match digest.split_once(':') {
            Some(("sha256", hex)) => hex.len() == 64,
            Some(("sha384", hex)) => hex.len() == 96,
            Some(("sha512", hex)) => hex.len() == 128,
            _ => false,
        } && digest.split_once(':').is_some_and(|(_, h)| {
            h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        });
        if !ok {
            return Err(bad("invalid digest"));
        }
    }
    if path.is_empty() {
        return Err(bad("empty repository name"));
    }
    // The domain, as Docker's splitDomain.
    let (mut domain, mut repository) = match path.split_once('/') {
        Some((left, right)) if left.contains('.') || left.contains(':') || left == "localhost" => {
            (left.to_string(), right.to_string())
        }
        _ => (HUB.to_string(), path.to_string()),
    };
    if domain == "index.docker.io" {
        domain = HUB.to_string();
    }
    if domain == HUB && !repository.contains('/') {
        repository = format!("{OFFICIAL}{repository}");
    }
    if !domain
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
    {
        return Err(bad("invalid registry host"));
    }
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        // Docker refuses upper-case repository names.
        return Err(bad("repository name must be lowercase"));
    }
    for component in repository.split('/') {
        let valid = !component.is_empty()
            && component
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && component.starts_with(|c: char| c.is_ascii_alphanumeric())
            && component.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            return Err(bad("invalid repository name"));
        }
    }
    if domain.len() + 1 + repository.len() > 255 {
        return Err(bad("repository name must not be more than 255 characters"));
    }
    Ok(match (tag, digest) {
        (Some(t), Some(d)) => {
            Reference::with_tag_and_digest(domain, repository, t.to_string(), d.to_string())
        }
        (None, Some(d)) => Reference::with_digest(domain, repository, d.to_string()),
        (Some(t), None) => Reference::with_tag(domain, repository, t.to_string()),
        (None, None) => Reference::with_tag(domain, repository, "latest".to_string()),
    })
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

#[cfg(test)]
mod parse_tests {
    use super::parse;

    #[test]
    fn references_parse_as_docker_does() {
        let cases = [
            (
                "busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                None,
            ),
            ("user/app:1.0", "docker.io", "user/app", Some("1.0"), None),
            (
                "index.docker.io/library/alpine",
                "docker.io",
                "library/alpine",
                Some("latest"),
                None,
            ),
            (
                "127.0.0.1:5000/foo",
                "127.0.0.1:5000",
                "foo",
                Some("latest"),
                None,
            ),
            ("localhost/a/b:x_y", "localhost", "a/b", Some("x_y"), None),
            (
                "test.com:5000",
                "docker.io",
                "library/test.com",
                Some("5000"),
                None,
            ),
        ];
        for (input, registry, repo, tag, digest) in cases {
            let r = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (r.registry(), r.repository(), r.tag(), r.digest()),
                (registry, repo, tag, digest),
                "{input}"
            );
        }
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse(&format!("busybox@{d}")).unwrap();
        assert_eq!((r.tag(), r.digest()), (None, Some(d.as_str())));
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in [
            "",
            "Busybox",
            "a@sha256:abc",
            "a:-x",
            "a//b",
            "-a",
            "a:",
            "reg.io/",
            "a b",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
