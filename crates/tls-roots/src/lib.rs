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
//! The callers hand the DER certificates to their client (reqwest's
//! `tls_certs_only`, oci-client's `ClientConfig::tls_certs_only`).

use std::sync::OnceLock;

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
    fn the_systems_certificates_win_when_there_are_any() {
        let roots = choose(vec![vec![0x30, 0x00]]);
        assert_eq!(roots.source, Source::System);
        assert_eq!(roots.der, [vec![0x30, 0x00]]);
    }
}
