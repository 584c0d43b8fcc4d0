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
//! Connections are pooled and kept alive (HTTP/1.1 keep-alive; HTTP/2 where an https
//! receiver offers it through ALPN, many requests then sharing one connection): up to
//! [`POOL_IDLE_PER_HOST`] idle connections per receiver, each kept [`POOL_IDLE`], so a busy
//! pump pays for its TCP and TLS handshakes once, not per POST. The pump reads each answer
//! to its end so its connection goes back to the pool. Plain-http receivers get HTTP/1.1
//! (no h2c upgrade: receivers rarely speak it and prior knowledge cannot be assumed).
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

/// Idle keep-alive connections kept per receiver: at least the pump's request concurrency
/// (`WebhookConfig::concurrency`, 32 by default), so a full window reuses its connections.
pub const POOL_IDLE_PER_HOST: usize = 64;
/// How long an idle connection is kept for the next POST.
pub const POOL_IDLE: Duration = Duration::from_secs(90);

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
        .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
        .pool_idle_timeout(POOL_IDLE)
        .tcp_nodelay(true)
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
