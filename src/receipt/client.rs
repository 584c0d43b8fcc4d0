//! The webhook HTTP client: plain http, or https through rustls with the *ring* provider.
//!
//! Job: build the one `reqwest::Client` that receipt and MO webhooks share, trusting
//! - the Mozilla root set compiled in through `webpki-roots`, and
//! - the operator's private CAs from `[webhooks] ca_file` (PEM, one or more certificates).
//!
//! Why compiled-in roots rather than the host's store (`rustls-native-certs`): the gateway
//! then trusts the same CAs on every node and in every image, including slim containers with
//! no `ca-certificates` package (where a system store is empty and every https webhook would
//! fail and retry forever). The cost: a root-set change needs a rebuild, and CAs installed
//! system-wide are not seen — private CAs go in `ca_file` instead, explicitly.
//!
//! Invariants:
//! - exactly one rustls provider exists in the build (ring; reqwest is built with
//!   `rustls-no-provider` and nothing depends on aws-lc-rs), and the client is given it
//!   explicitly, so it never depends on the process default ([`crate::tls::install_provider`]
//!   installs ring as the process default for every other client).
//! - a CA file is read and checked once, at start, by config validation through
//!   [`crate::tls::load_ca_file`].

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

/// Why the webhook client could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// rustls refused the settings (protocol versions of the provider).
    #[error("TLS settings: {0}")]
    Tls(#[from] rustls::Error),
    /// reqwest could not build the client.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The webhook client: `timeout` per request, https trusting the bundled roots plus
/// `extra_roots` (from [`crate::tls::load_ca_file`]).
///
/// # Errors
/// When a root is not usable or reqwest cannot build the client.
pub fn webhook_client(
    timeout: Duration,
    extra_roots: &[CertificateDer<'static>],
) -> Result<reqwest::Client, ClientError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for c in extra_roots {
        roots.add(c.clone())?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    // What reqwest offers itself with http2 on: h2 where the receiver speaks it, else 1.1.
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .tls_backend_preconfigured(tls)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_ca_loads_and_builds_a_client() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-signed");
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, cert.pem()).expect("write");
        let roots = crate::tls::load_ca_file(&p).expect("loads");
        assert_eq!(roots.len(), 1);
        assert!(webhook_client(Duration::from_secs(1), &roots).is_ok());
    }
}
