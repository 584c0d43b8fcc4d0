//! The center simulator: fake SMSCs (SMPP) and ISMGs (CMPP) on local ports.
//!
//! [`Simulator::start`] binds every configured listener, then serves each accepted connection
//! in its own task; [`SimHandle`] gives the bound addresses, a tally snapshot and an orderly
//! shutdown (which writes the tally file if configured); [`SimHandle::snapshot_every`] also
//! keeps a live copy of the tally in a file while it runs. Behaviour per listener is in
//! [`crate::config::ListenerConfig`]. MM7 listeners are HTTP servers ([`mmsc`]). A listener
//! with `tls` serves TLS through a front that pipes each session to the center ([`tls`]).

pub(crate) mod center;
pub(crate) mod cmpp;
pub(crate) mod dlr;
mod mmsc;
mod mo;
mod smpp;
mod snapshot;
mod submit;
pub mod tls;
mod writer;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::{ListenerConfig, Protocol, SimConfig};
use crate::tally::{Tally, TallySnapshot};
use center::Center;

pub use dlr::Stat;
pub(crate) use smpp::put as smpp_put;

/// Why the simulator could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("listener {name:?} cannot bind {addr}: {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("listener {name:?}: protocol {protocol:?} is not implemented yet")]
    Unsupported { name: String, protocol: Protocol },
    #[error("listener {name:?}: {source}")]
    Tls { name: String, source: tls::TlsError },
    #[error("writing tally to {path}: {source}")]
    Tally {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// One bound listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundListener {
    pub name: String,
    pub protocol: Protocol,
    pub addr: SocketAddr,
}

/// Entry point; see [`Simulator::start`].
#[derive(Debug)]
pub struct Simulator;

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    listeners: Vec<BoundListener>,
    tally: Arc<Tally>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    tally_path: Option<std::path::PathBuf>,
}

impl Simulator {
    /// Binds all listeners (port 0 = any free port) and starts serving. Must be called inside
    /// a tokio runtime.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        config.validate()?;
        let tally = Arc::new(Tally::new());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut listeners = Vec::new();
        let mut sockets = Vec::new();
        for l in &config.listeners {
            let bind_err = |addr, source| SimError::Bind {
                name: l.name.clone(),
                addr,
                source,
            };
            // TLS: the public socket is the TLS front; the center serves plaintext on a
            // loopback socket of its own behind it.
            if let Some(files) = &l.tls {
                let acceptor = tls::acceptor(files).map_err(|source| SimError::Tls {
                    name: l.name.clone(),
                    source,
                })?;
                let public = TcpListener::bind(l.addr)
                    .await
                    .map_err(|e| bind_err(l.addr, e))?;
                let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
                let inner = TcpListener::bind(loopback)
                    .await
                    .map_err(|e| bind_err(loopback, e))?;
                let inner_addr = inner.local_addr().map_err(|e| bind_err(loopback, e))?;
                let addr = public.local_addr().map_err(|e| bind_err(l.addr, e))?;
                tasks.spawn(tls::front(
                    public,
                    acceptor,
                    inner_addr,
                    shutdown_rx.clone(),
                ));
                listeners.push(BoundListener {
                    name: l.name.clone(),
                    protocol: l.protocol,
                    addr,
                });
                sockets.push((l.clone(), inner));
                continue;
            }
            let sock = TcpListener::bind(l.addr)
                .await
                .map_err(|source| SimError::Bind {
                    name: l.name.clone(),
                    addr: l.addr,
                    source,
                })?;
            let addr = sock.local_addr().map_err(|source| SimError::Bind {
                name: l.name.clone(),
                addr: l.addr,
                source,
            })?;
            listeners.push(BoundListener {
                name: l.name.clone(),
                protocol: l.protocol,
                addr,
            });
            sockets.push((l.clone(), sock));
        }
        for (i, (cfg, sock)) in sockets.into_iter().enumerate() {
            let (dtx, drx) = mpsc::unbounded_channel();
            let seed = config.seed.map(|s| s.wrapping_add(i as u64 * 0x1000_0000));
            let center = Arc::new(Center::new(cfg, tally.clone(), dtx, seed));
            if center.cfg.protocol == Protocol::Mm7 && !center.cfg.stall {
                // HTTP: the MMSC sends its own reports and MOs (no binds to route them to).
                drop(drx);
                tasks.spawn(mmsc::serve(center, sock, shutdown_rx.clone()));
                continue;
            }
            tasks.spawn(dlr::run_scheduler(center.clone(), drx, shutdown_rx.clone()));
            tasks.spawn(mo::run_generator(center.clone(), shutdown_rx.clone()));
            tasks.spawn(accept_loop(center, sock, shutdown_rx.clone()));
        }
        tracing::info!(listeners = ?listeners, "simulator started");
        Ok(SimHandle {
            listeners,
            tally,
            shutdown,
            tasks,
            tally_path: config.tally_path,
        })
    }
}

impl SimHandle {
    /// Every listener with its bound address, in config order.
    pub fn listeners(&self) -> &[BoundListener] {
        &self.listeners
    }

    /// Bound addresses in config order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    /// The address of the first listener speaking `protocol`.
    pub fn addr_of(&self, protocol: Protocol) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.protocol == protocol)
            .map(|l| l.addr)
    }

    /// A copy of the counters now.
    pub fn tally(&self) -> TallySnapshot {
        self.tally.snapshot()
    }

    /// Rewrites the tally as JSON to `path` every `every` while the simulator runs (only when
    /// it changed; atomically, by rename), so another process can watch progress, e.g. wait
    /// until N messages arrived. Stops at [`Self::shutdown`]. Use the same path as the
    /// config's `tally_path` to have the exact final tally land in the same file.
    pub fn snapshot_every(&mut self, path: std::path::PathBuf, every: std::time::Duration) {
        self.tasks.spawn(snapshot::run(
            self.tally.clone(),
            path,
            every,
            self.shutdown.subscribe(),
        ));
    }

    /// Stops accepting, closes every connection, waits for all tasks and writes the tally
    /// file if configured (atomically, by rename). Returns the final tally.
    pub async fn shutdown(mut self) -> Result<TallySnapshot, SimError> {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        let snap = self.tally.snapshot();
        if let Some(path) = &self.tally_path {
            snap.write_json_atomic(path)
                .map_err(|source| SimError::Tally {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(snap)
    }
}

async fn accept_loop(center: Arc<Center>, sock: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = sock.accept() => r,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracing::debug!(listener = %center.cfg.name, %peer, "connection");
                center
                    .tally
                    .connections
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let sd = shutdown.clone();
                let c = center.clone();
                if c.cfg.stall {
                    conns.spawn(stall(stream, sd));
                } else {
                    match c.cfg.protocol {
                        Protocol::Smpp => conns.spawn(smpp::serve(c, stream, sd)),
                        Protocol::Cmpp => conns.spawn(cmpp::serve(c, stream, sd)),
                        // Served by `mmsc::serve` unless stalled (handled above).
                        Protocol::Mm7 => continue,
                    };
                }
            }
            Err(e) => {
                tracing::warn!(listener = %center.cfg.name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        while conns.try_join_next().is_some() {}
    }
    while conns.join_next().await.is_some() {}
}

/// Stall mode: keep the TCP connection, read and discard, never answer.
async fn stall(mut stream: TcpStream, mut shutdown: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// A listener config with every default and the given protocol (handy in tests).
pub fn listener(protocol: Protocol) -> ListenerConfig {
    ListenerConfig {
        protocol,
        name: format!("{protocol:?}").to_lowercase(),
        ..ListenerConfig::default()
    }
}
