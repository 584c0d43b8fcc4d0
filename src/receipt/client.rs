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
//!   explicitly, so it never depends on the process default. [`install_provider`] installs ring
//!   as the process default too, for every other `reqwest::Client` in the process (reqwest
//!   panics when building a client with no provider installed).
//! - a CA file is read and checked once, at start (config validation): a missing file, a file
//!   with no certificate, or a certificate rustls cannot use is an error naming the key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why the webhook client could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The CA file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The CA file has no usable certificate.
    #[error("{path}: {reason}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the settings (protocol versions of the provider).
    #[error("TLS settings: {0}")]
    Tls(#[from] rustls::Error),
    /// reqwest could not build the client.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Installs ring as the process-wide rustls provider. Call it once at start, before any
/// `reqwest::Client` is built; later calls (and a provider installed by someone else) are
/// fine and change nothing.
pub fn install_provider() {
    // Err means a provider is already installed: that one stays, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads the PEM certificates of a private CA file and checks that rustls accepts each as a
/// trust anchor.
///
/// # Errors
/// [`ClientError::ReadCa`] when the file cannot be read, [`ClientError::BadCa`] when it holds
/// no certificate, a malformed PEM block, or a certificate that is not a usable anchor.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let pem = std::fs::read(path).map_err(|source| ClientError::ReadCa {
        path: path.to_owned(),
        source,
    })?;
    let bad = |reason: String| ClientError::BadCa {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no \"BEGIN CERTIFICATE\" block found".into()));
    }
    let mut store = RootCertStore::empty();
    for (i, c) in certs.iter().enumerate() {
        store
            .add(c.clone())
            .map_err(|e| bad(format!("certificate {} is not a usable CA: {e}", i + 1)))?;
    }
    Ok(certs)
}

/// The webhook client: `timeout` per request, https trusting the bundled roots plus
/// `extra_roots` (from [`load_ca_file`]).
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

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn ca_file_errors_say_what_is_wrong() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.pem");
        assert!(matches!(
            load_ca_file(&missing),
            Err(ClientError::ReadCa { .. })
        ));
        let empty = write(dir.path(), "empty.pem", "just text\n");
        let e = load_ca_file(&empty).expect_err("no certificate");
        assert!(e.to_string().contains("BEGIN CERTIFICATE"), "{e}");
        let junk = write(
            dir.path(),
            "junk.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        assert!(matches!(
            load_ca_file(&junk),
            Err(ClientError::BadCa { .. })
        ));
    }

    #[test]
    fn a_generated_ca_loads_and_builds_a_client() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-signed");
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), "ca.pem", &cert.pem());
        let roots = load_ca_file(&p).expect("loads");
        assert_eq!(roots.len(), 1);
        assert!(webhook_client(Duration::from_secs(1), &roots).is_ok());
    }
}
