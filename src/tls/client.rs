//! Client-side TLS toward SMPP and CMPP centers: the roots a channel trusts (its
//! `ca_file`, or the Mozilla roots built into sluice without one) and the name its
//! certificate must carry (`server_name`, else `host`).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use super::stream::MaybeTls;

/// Why a channel's TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    /// `server_name` (or `host`) is neither a DNS name nor an IP address.
    #[error("{0:?} is not a DNS name or IP address")]
    Name(String),
    /// rustls refused the set-up.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// A channel's TLS client: connector and the expected server name.
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// A client trusting `ca` (empty: the bundled web PKI roots) and expecting
    /// `server_name` in the center's certificate.
    ///
    /// # Errors
    /// [`ClientTlsError`] for a bad name or a refused configuration.
    pub fn new(server_name: &str, ca: &[CertificateDer<'static>]) -> Result<Self, ClientTlsError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| ClientTlsError::Name(server_name.to_owned()))?;
        let mut roots = rustls::RootCertStore::empty();
        if ca.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        } else {
            for c in ca {
                roots.add(c.clone())?;
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name: name,
        })
    }

    /// Runs the handshake over `tcp`.
    ///
    /// # Errors
    /// The handshake's I/O or certificate error.
    pub async fn connect(&self, tcp: TcpStream) -> std::io::Result<MaybeTls> {
        let s = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await?;
        Ok(s.into())
    }
}
