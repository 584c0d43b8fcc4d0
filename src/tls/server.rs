//! Server-side TLS of the gateway's listeners (HTTP API, metrics, SMPP server): a
//! certificate and key loaded from PEM files, reloaded when the files change.
//!
//! Reload: a watch task compares each file's modification time and length every
//! `listeners.tls_reload_secs`; when either changed it loads both again. New handshakes use
//! the new certificate (the resolver hands rustls the current one per handshake); sessions
//! already up keep theirs. A pair that cannot be loaded at start is a start error naming the
//! config key; at reload it is logged, counted in `sluice_tls_reloads_total{result="failed"}`
//! and the previous certificate stays in use (a half-copied file does not take a listener
//! down; the next change is tried again).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::metrics::{LABEL_LISTENER, TLS_RELOADS};

/// Longest a client may take over its TLS handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a certificate / key pair cannot be used: the same two causes as a CA file (a file
/// that cannot be read, or one with nothing usable in it), told by one type.
pub use super::PemError as CertError;

/// Where a listener's certificate chain and private key are (both PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Modification time and length of both files: what the watch compares.
type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(files: &CertFiles) -> Stamp {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.modified().ok(), m.len()))
            .unwrap_or((None, 0))
    };
    [one(&files.cert), one(&files.key)]
}

/// Reads and checks a certificate / key pair.
///
/// # Errors
/// [`CertError`] when a file is missing, holds no certificate or key, the key is of a kind
/// ring cannot sign with, or the key does not belong to the certificate.
pub fn load_pair(files: &CertFiles) -> Result<CertifiedKey, CertError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let bad = |path: &Path, reason: String| CertError::Bad {
        path: path.to_owned(),
        reason,
    };
    let pem = read(&files.cert)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&files.cert, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            &files.cert,
            "no \"BEGIN CERTIFICATE\" block found".into(),
        ));
    }
    let pem = read(&files.key)?;
    // The error text of a key parse never carries key bytes.
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| bad(&files.key, format!("no usable PEM private key: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| bad(&files.key, format!("key refused: {e}")))?;
    Ok(certified)
}

/// The certificate rustls hands out, swapped on reload.
#[derive(Debug)]
struct Current {
    key: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A poisoned lock still holds a valid certificate.
        let key = self
            .key
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(Arc::clone(&key))
    }
}

/// One listener's TLS: its rustls config and the files it reloads from.
#[derive(Debug)]
pub struct ServerTls {
    listener: &'static str,
    files: CertFiles,
    current: Arc<Current>,
    config: Arc<ServerConfig>,
    seen: Mutex<Stamp>,
}

/// What a reload check did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The files did not change.
    Unchanged,
    /// The files changed and the new pair is in use.
    Reloaded,
    /// The files changed but do not load; the previous pair stays in use.
    Failed,
}

impl ServerTls {
    /// Loads the pair for `listener` (a metric label: `http`, `metrics`, `smpp`).
    /// `alpn`: protocols offered (HTTP: `h2`, `http/1.1`; SMPP: none).
    ///
    /// # Errors
    /// [`CertError`] when the pair cannot be used (see [`load_pair`]).
    pub fn load(
        listener: &'static str,
        files: CertFiles,
        alpn: &[&[u8]],
    ) -> Result<Arc<Self>, CertError> {
        let seen = stamp(&files);
        let key = load_pair(&files)?;
        let current = Arc::new(Current {
            key: RwLock::new(Arc::new(key)),
        });
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| CertError::Bad {
                    path: files.cert.clone(),
                    reason: e.to_string(),
                })?
                .with_no_client_auth()
                .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(Self {
            listener,
            files,
            current,
            config: Arc::new(config),
            seen: Mutex::new(seen),
        }))
    }

    /// The acceptor for new connections (each handshake asks for the current certificate).
    #[must_use]
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.config))
    }

    /// Loads the pair again if either file changed since the last look.
    pub fn reload_if_changed(&self) -> Reload {
        let now = stamp(&self.files);
        {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *seen == now {
                return Reload::Unchanged;
            }
            // Remember this state whatever happens: a bad file is reported once, not every
            // tick, and tried again at its next change.
            *seen = now;
        }
        match load_pair(&self.files) {
            Ok(key) => {
                *self
                    .current
                    .key
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(key);
                metrics::counter!(TLS_RELOADS, LABEL_LISTENER => self.listener, "result" => "ok")
                    .increment(1);
                tracing::info!(listener = self.listener, cert = %self.files.cert.display(),
                    "TLS certificate reloaded.");
                Reload::Reloaded
            }
            Err(e) => {
                metrics::counter!(TLS_RELOADS, LABEL_LISTENER => self.listener, "result" => "failed")
                    .increment(1);
                tracing::warn!(listener = self.listener, error = %e,
                    "TLS certificate not reloaded; the previous one stays in use.");
                Reload::Failed
            }
        }
    }

    /// Checks the files every `every` until `stop` turns true.
    pub fn spawn_watch(
        self: &Arc<Self>,
        every: Duration,
        mut stop: watch::Receiver<bool>,
        tasks: &mut JoinSet<()>,
    ) {
        let me = Arc::clone(self);
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let me = Arc::clone(&me);
                // File reads and key parsing off the async threads.
                let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
            }
        });
    }
}

/// An accept loop for `axum::serve` that completes each TLS handshake in its own task (a
/// slow or silent client cannot hold up the others) and hands over finished sessions only.
/// A handshake that fails or takes longer than [`HANDSHAKE_TIMEOUT`] drops the connection.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    accept_task: tokio::task::AbortHandle,
}

impl TlsListener {
    /// Starts accepting on `tcp` with `tls`.
    ///
    /// # Errors
    /// When the listener has no local address.
    pub fn new(tcp: TcpListener, tls: &ServerTls) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = tls.acceptor();
        let listener = tls.listener;
        let (tx, ready) = mpsc::channel(64);
        let accept_task = tokio::spawn(async move {
            loop {
                let (sock, peer) = match tcp.accept().await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(listener, error = %e, "Accept failed.");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = sock.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(s)) => {
                            let _ = tx.send((s, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(listener, %peer, error = %e, "TLS handshake failed.");
                        }
                        Err(_) => {
                            tracing::debug!(listener, %peer, "TLS handshake timed out.");
                        }
                    }
                });
            }
        })
        .abort_handle();
        Ok(Self {
            local,
            ready,
            accept_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(s) => s,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, cn: &str) -> (CertFiles, CertificateDer<'static>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).expect("cert");
        let files = CertFiles {
            cert: dir.join("c.pem"),
            key: dir.join("c.key"),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write");
        std::fs::write(&files.key, key.serialize_pem()).expect("write");
        (files, cert.der().clone())
    }

    fn served(tls: &ServerTls) -> CertificateDer<'static> {
        let key = tls.current.key.read().expect("lock");
        key.cert[0].clone()
    }

    #[test]
    fn reload_swaps_a_good_pair_and_keeps_the_old_one_on_a_bad_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, first) = write_pair(dir.path(), "first");
        let tls = ServerTls::load("http", files.clone(), &[]).expect("loads");
        assert_eq!(served(&tls), first);
        assert_eq!(tls.reload_if_changed(), Reload::Unchanged);

        let (_, second) = write_pair(dir.path(), "second-with-a-longer-name");
        assert_eq!(tls.reload_if_changed(), Reload::Reloaded);
        assert_eq!(served(&tls), second);

        std::fs::write(&files.key, "garbage\n").expect("write");
        assert_eq!(tls.reload_if_changed(), Reload::Failed);
        assert_eq!(served(&tls), second, "the last good pair stays");
        // Reported once per change, not every look.
        assert_eq!(tls.reload_if_changed(), Reload::Unchanged);
    }

    #[test]
    fn start_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, _) = write_pair(dir.path(), "x");
        let missing = CertFiles {
            cert: dir.path().join("nope.pem"),
            key: files.key.clone(),
        };
        let e = ServerTls::load("http", missing, &[]).expect_err("missing cert");
        assert!(e.to_string().contains("nope.pem"), "{e}");
        // A key that is not the certificate's.
        let (other, _) = {
            let d2 = tempfile::tempdir().expect("tempdir");
            let p = write_pair(d2.path(), "y");
            let key = std::fs::read(&p.0.key).expect("read");
            std::fs::write(dir.path().join("other.key"), key).expect("write");
            (dir.path().join("other.key"), ())
        };
        let mismatched = CertFiles {
            cert: files.cert.clone(),
            key: other,
        };
        let e = ServerTls::load("http", mismatched, &[]).expect_err("wrong key");
        assert!(e.to_string().contains("other.key"), "{e}");
    }
}
