//! The certificate authorities that OxOS's HTTPS clients trust.
//!
//! # Background
//!
//! PID 1 and the small system containers (os-base) have no
//! `/etc/ssl/certs`: the system image is `/usr` only, and a CA bundle in
//! every image would be one more thing to keep fresh. reqwest's rustls
//! verifier refuses to build a client when the system has no CA
//! certificate at all ("No CA certificates were loaded from the system"),
//! so without this crate `system-docker pull`, `services_include` URLs and
//! the network datasources could not use HTTPS.
//!
//! # Design
//!
//! [`roots`] returns the system's certificates (`SSL_CERT_FILE`,
//! `SSL_CERT_DIR`, the usual Debian paths, through rustls-native-certs)
//! when there are any, so that a user's own CA in the console's
//! /etc/ssl/certs, or a file named by `SSL_CERT_FILE`, is honoured; when
//! there are none, Mozilla's roots compiled into ros (webpki-root-certs).
//! The callers hand them to their reqwest client with
//! `tls_certs_only(tls_roots::reqwest_roots())`.
//!
//! Some clients cannot be told: oci-client builds a default reqwest client
//! inside every `Client` it makes, and reqwest panics there when the system
//! has no CA. So PID 1 also calls [`export_bundle`] at start: when the
//! roots are Mozilla's, it writes them as a PEM bundle under /run and
//! points `SSL_CERT_FILE` at it, which every rustls client of the process
//! then reads as "the system's" certificates.

use std::path::Path;
use std::sync::OnceLock;

use base64::Engine;

/// Where the trusted roots came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The system's certificate store.
    System,
    /// Mozilla's roots compiled into ros.
    Mozilla,
}

/// The trusted roots, DER encoded, and where they came from.
#[derive(Debug, Clone)]
pub struct Roots {
    /// Each certificate, DER encoded.
    pub der: Vec<Vec<u8>>,
    /// Where they came from.
    pub source: Source,
}

/// The roots to trust, read once per process: the system's when it has
/// any, Mozilla's otherwise.
pub fn roots() -> &'static Roots {
    static ROOTS: OnceLock<Roots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let system = rustls_native_certs::load_native_certs();
        for error in &system.errors {
            tracing::debug!("CA certificates: {error}");
        }
        choose(system.certs.into_iter().map(|c| c.to_vec()).collect())
    })
}

/// The system's certificates when there are any, else Mozilla's.
fn choose(system: Vec<Vec<u8>>) -> Roots {
    if system.is_empty() {
        Roots {
            der: webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| c.to_vec())
                .collect(),
            source: Source::Mozilla,
        }
    } else {
        Roots {
            der: system,
            source: Source::System,
        }
    }
}

/// The roots as reqwest certificates, for `ClientBuilder::tls_certs_only`.
pub fn reqwest_roots() -> impl Iterator<Item = reqwest::Certificate> {
    roots()
        .der
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der).ok())
}

/// The roots as a PEM bundle (what /etc/ssl/certs/ca-certificates.crt holds).
pub fn pem(roots: &Roots) -> String {
    let mut out = String::new();
    for der in &roots.der {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let text = base64::engine::general_purpose::STANDARD.encode(der);
        for line in text.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// When the system has no CA certificates, writes Mozilla's roots to
/// `path` (a temporary file renamed into place) and sets `SSL_CERT_FILE`
/// to it for this process and its children. Returns whether it did.
///
/// Call it while the process has one thread (the environment is process
/// wide).
pub fn export_bundle(path: &Path) -> std::io::Result<bool> {
    let roots = roots();
    if roots.source == Source::System {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    // Certificates are public: readable by all, as /etc/ssl/certs is.
    atomic_file::Options::new()
        .mode(0o644)
        .durable(false)
        .write(path, pem(roots).as_bytes())?;
    std::env::set_var("SSL_CERT_FILE", path);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_system_certificates_mozillas_are_trusted() {
        let roots = choose(Vec::new());
        assert_eq!(roots.source, Source::Mozilla);
        assert!(roots.der.len() > 100, "{} roots", roots.der.len());
        // Every one is a DER SEQUENCE.
        assert!(roots.der.iter().all(|c| c.first() == Some(&0x30)));
    }

    #[test]
    fn the_pem_bundle_is_read_back_as_the_same_certificates() {
        let roots = choose(Vec::new());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        std::fs::write(&path, pem(&roots)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let back: Vec<Vec<u8>> = text
            .split("-----BEGIN CERTIFICATE-----\n")
            .skip(1)
            .map(|block| {
                let body: String = block
                    .split("-----END CERTIFICATE-----")
                    .next()
                    .unwrap()
                    .lines()
                    .collect();
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .unwrap()
            })
            .collect();
        assert_eq!(back, roots.der);
        assert!(text.lines().all(|l| l.len() <= 64));
    }

    #[test]
    fn the_systems_certificates_win_when_there_are_any() {
        let roots = choose(vec![vec![0x30, 0x00]]);
        assert_eq!(roots.source, Source::System);
        assert_eq!(roots.der, [vec![0x30, 0x00]]);
    }
}
