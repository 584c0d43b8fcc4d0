//! TLS in front of a simulated center (`tls` of a listener): the public socket speaks TLS,
//! each connection's handshake is completed here and its plaintext piped to the center's
//! own loopback listener, so the SMSC / ISMG / MMSC code serves plain TCP unchanged.
//!
//! The certificate is read once at start (the simulator needs no reload).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Certificate chain and key (PEM files) of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Why the TLS front cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    Files {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The rustls acceptor for `files` (ring, the workspace's one provider).
pub fn acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let bad = |path: &Path, reason: String| TlsError::Files {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(&files.cert, e.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad(&files.key, e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TLS on `public` and pipes each session to `inner` until shutdown.
pub(crate) async fn front(
    public: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    inner: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        let (sock, peer) = tokio::select! {
            r = public.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "TLS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let acceptor = acceptor.clone();
        let mut sd = shutdown.clone();
        conns.spawn(async move {
            let _ = sock.set_nodelay(true);
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let Ok(plain) = TcpStream::connect(inner).await else {
                return;
            };
            let _ = plain.set_nodelay(true);
            let (mut tls, mut plain) = (tls, plain);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut tls, &mut plain) => {}
                _ = sd.changed() => {}
            }
        });
        while conns.try_join_next().is_some() {}
    }
    conns.shutdown().await;
}
