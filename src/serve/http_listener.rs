//! The accept loop of the HTTP listeners (API with the hosted campaign service and MM7
//! inbound, and the separate metrics listener): hyper's connection builder with the limits
//! of config `[limits]` set explicitly.
//!
//! Why not `axum::serve`: it builds hyper connections with hyper's defaults and no timer, so
//! a client dribbling its headers is never timed out and the header limits cannot be set.
//! Here:
//! - more than `max_headers` header fields, or a request head over `max_header_bytes` →
//!   hyper answers 431 and closes (HTTP/1.1); HTTP/2 announces the same list size;
//! - a request head not complete within `header_read_timeout` → the connection is closed
//!   (hyper starts the clock when it waits for a request, so this is also the idle
//!   keep-alive timeout);
//! - stop: no new connections; every open one finishes its request in flight and closes
//!   (hyper's graceful shutdown), and [`serve`] returns when the last has.
//!
//! Body limits are the handlers' (a 413 with a JSON body names the limit).

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::LimitsConfig;

/// Request head limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most header fields in a request.
    pub max_headers: usize,
    /// Most bytes of a request head (hyper's read buffer; at least 8192).
    pub max_header_bytes: usize,
    /// Longest time to read a request head.
    pub header_read_timeout: Duration,
}

impl HttpLimits {
    /// The HTTP keys of config `[limits]`.
    pub fn from_config(limits: &LimitsConfig) -> Self {
        Self {
            max_headers: limits.http_max_headers,
            max_header_bytes: limits.http_max_header_bytes,
            header_read_timeout: limits.http_header_read_timeout(),
        }
    }

    fn builder(&self) -> Builder<TokioExecutor> {
        let mut b = Builder::new(TokioExecutor::new());
        b.http1()
            .max_headers(self.max_headers)
            .max_buf_size(self.max_header_bytes)
            .header_read_timeout(self.header_read_timeout)
            .timer(TokioTimer::new());
        b.http2()
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX))
            .timer(TokioTimer::new());
        b
    }
}

/// Serves `app` on `listener` until `stop` turns true, then drains open connections.
///
/// `listener` is any axum listener: a plain `TcpListener`, or the TLS listener of
/// `tls::server`, which hands over sessions whose handshake is already done (so the
/// header read timeout starts after the handshake, which has its own).
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) where
    L: axum::serve::Listener,
    L::Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    L::Addr: std::fmt::Debug,
{
    let builder = limits.builder();
    let mut conns = JoinSet::new();
    loop {
        // axum's listeners retry failed accepts themselves (out of file descriptors and
        // the like: they wait rather than spin) and set TCP_NODELAY where it applies.
        let (socket, peer) = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let builder = builder.clone();
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop.clone();
        conns.spawn(async move {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(socket), service);
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(?peer, error = %e, "HTTP connection ended with an error.");
                        }
                        break;
                    }
                    _ = stop.wait_for(|s| *s), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}
