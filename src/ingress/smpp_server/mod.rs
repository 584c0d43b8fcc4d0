//! SMPP server for ESMEs that bind to sluice (`listeners.smpp`).
//!
//! Job: accept SMPP 3.4 / 5.0 binds from upstream clients, turn their submits into the same
//! validated, rate-charged, durably stored messages the HTTP API produces, and return
//! receipts and replies to them as deliver_sm.
//!
//! - Protocol: `sluice_protocols::smpp::session::smsc` (sans-IO) does bind states, windows,
//!   enquire_link, unbind and garbage handling; [`conn`] only moves bytes, time and events.
//! - Submits: [`submit`] maps them onto `ingress::message::validate` (the HTTP validation);
//!   then the account's rate (`rate`/`burst`, the HTTP limiter itself: one budget for both
//!   doors) is charged and `http::prepare_items` routes them; the submits of one batch of
//!   wake-ups are stored by one `http::commit_prepared` request (a task and a store
//!   request per submit cost more than the store's work on it). submit_sm_resp carries
//!   sluice's id (the one `GET /v1/messages/{id}` knows) and is written only after the
//!   store's commit. Over the rate or the bind's window: `ESME_RTHROTTLED`.
//! - Long messages are reassembled per connection (UDH or SAR) and stored as ONE message, so
//!   one receipt comes back for it. Its id is allocated at the first part; every part but
//!   the completing one is answered at once with that id (clients such as smpplib wait for
//!   each part's response before sending the next), and the completing part is answered
//!   only after the durable commit, carrying any refusal. Trade-off, documented: the early
//!   parts are acknowledged before they are durable; a restart or [`REASSEMBLY_TTL`] without
//!   the rest loses the incomplete message (its id then stays unknown to `GET`).
//! - Receipts and MO: [`deliver`] (per-account pump over the durable outboxes).
//! - Login: an account's `smpp_system_id` + SHA-256 of the password, compared in constant
//!   time; unknown id → `ESME_RINVSYSID`, wrong password → `ESME_RINVPASWD`, too many binds
//!   → `ESME_RBINDFAIL`. Failed binds from one IP are answered after a delay doubling from
//!   [`FAIL_DELAY_BASE`] up to [`FAIL_DELAY_MAX`], and a connection that does not bind in
//!   `bind_timeout` is closed.
//! - Abuse ([`guard`], config `[limits]`): per IP, open connections are capped (more are
//!   closed on accept), bind attempts are rated per second and failed binds lock the address
//!   out (both answered `ESME_RBINDFAIL` and closed); requests before a bind are answered
//!   `ESME_RINVBNDSTS` up to `max_unbound_requests`, then the connection is closed; a PDU
//!   started and left unfinished for `read_timeout` closes the connection; command_length
//!   under 16 or over the codec's limit is answered generic_nack `ESME_RINVCMDLEN` and closes
//!   it before anything of the claimed size is buffered. Each is counted in
//!   `sluice_smpp_server_abuse_total{reason}`.
//! - Shutdown: the listener stops accepting; every bind finishes its pending submits, then
//!   sends unbind and closes on unbind_resp (or after the response timeout).
//!
//! - Public contact rules: submits take the account's `smpp_lane`; a destination a rule
//!   refuses is never stored and its submit is answered `submit::REFUSED_BY_RULE`
//!   (ESME_RINVDSTADR). A submit_multi keeps its other destinations and is refused only
//!   when every destination is.
//!
//! Not done: schedule_delivery_time / validity_period are ignored (messages go at once and
//! expire by the gateway's rules); query_sm / cancel_sm / replace_sm are refused; submit_multi
//! returns the id of its first destination (each destination is its own message and gets its
//! own receipt).

pub mod conn;
pub mod deliver;
pub mod guard;
pub mod submit;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_protocols::smpp::Sm;
use sluice_protocols::smpp::session::smsc::BindKind;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::http::IngressState;
use crate::metrics as m;
use crate::store::GatewayStore;
use crate::tls::stream::MaybeTls;

pub use guard::{FAIL_DELAY_BASE, FAIL_DELAY_MAX, PeerLimits};

/// Longest wait for a bind after a connection opens.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence inside a half-sent PDU.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests answered `ESME_RINVBNDSTS` before a bind; the next one closes the connection.
pub const MAX_UNBOUND_REQUESTS: u32 = 10;
/// Open connections at once (bound or not); more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long parts of a long message wait for the rest.
pub const REASSEMBLY_TTL: Duration = Duration::from_secs(60);

/// An account's SMPP login, built from config.
#[derive(Debug, Clone)]
pub struct SmppLogin {
    /// Account name.
    pub account: String,
    /// system_id the ESME binds with.
    pub system_id: String,
    /// SHA-256 of the password.
    pub password_sha256: [u8; 32],
    /// Most binds at once.
    pub max_binds: usize,
    /// Per-bind window (submits and deliver_sm).
    pub window: usize,
    /// Lane of the account's submits (config `smpp_lane`; SMPP carries none).
    pub lane: crate::store::Lane,
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct SmppServerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Logins of every SMPP account.
    pub logins: Vec<SmppLogin>,
    /// deliver_sm / enquire_link / unbind response timeout.
    pub response_timeout: Duration,
    /// Silence before we send enquire_link.
    pub enquire_link_interval: Duration,
    /// Longest wait for a bind after connect.
    pub bind_timeout: Duration,
    /// Longest silence inside a half-sent PDU before the connection is closed.
    pub read_timeout: Duration,
    /// Requests answered `ESME_RINVBNDSTS` before a bind; the next one closes the connection.
    pub max_unbound_requests: u32,
    /// Per peer IP address: connections, bind rate, lockout.
    pub peers: PeerLimits,
    /// TLS on every connection (`listeners.smpp_tls`); `None`: plaintext.
    pub tls: Option<Arc<crate::tls::server::ServerTls>>,
}

impl SmppServerConfig {
    /// Defaults for `addr` and `logins`.
    pub fn new(addr: SocketAddr, logins: Vec<SmppLogin>) -> Self {
        Self {
            addr,
            logins,
            response_timeout: Duration::from_secs(10),
            enquire_link_interval: Duration::from_secs(30),
            bind_timeout: BIND_TIMEOUT,
            read_timeout: READ_TIMEOUT,
            max_unbound_requests: MAX_UNBOUND_REQUESTS,
            peers: PeerLimits::default(),
            tls: None,
        }
    }
}

impl SmppServerConfig {
    /// Takes the SMPP keys of config `[limits]`.
    #[must_use]
    pub fn with_limits(mut self, limits: &crate::config::LimitsConfig) -> Self {
        self.bind_timeout = limits.smpp_bind_timeout();
        self.read_timeout = limits.smpp_read_timeout();
        self.max_unbound_requests = limits.smpp_max_unbound_requests;
        self.peers = PeerLimits {
            max_connections: limits.smpp_max_connections_per_ip,
            binds_per_sec: limits.smpp_binds_per_ip_per_sec,
            lockout_failures: limits.smpp_lockout_failures,
            lockout: std::time::Duration::from_secs(limits.smpp_lockout_secs),
        };
        self
    }
}

/// What a deliver_sm carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutgoingKind {
    /// A receipt (receipt outbox).
    Receipt,
    /// A reply (MO outbox).
    Mo,
}

impl OutgoingKind {
    /// Metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Receipt => "receipt",
            Self::Mo => "mo",
        }
    }
}

/// An outbox entry on its way to a bind.
#[derive(Debug)]
pub struct Outgoing {
    /// Which outbox.
    pub kind: OutgoingKind,
    /// Entry sequence in that outbox.
    pub seq: u64,
    /// The PDU body.
    pub sm: Box<Sm>,
}

/// A bind's verdict on an entry.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    /// Which outbox.
    pub kind: OutgoingKind,
    /// Entry sequence.
    pub seq: u64,
    /// `true`: the ESME answered ESME_ROK (delete it).
    pub ok: bool,
}

#[derive(Debug, Default)]
struct Binds {
    next_id: u64,
    count: usize,
    receivers: Vec<(u64, mpsc::Sender<Outgoing>)>,
}

/// One account's live binds, shared by its connections and its pump.
#[derive(Debug)]
pub struct AccountHub {
    /// Account name.
    pub name: String,
    login: SmppLogin,
    binds: Mutex<Binds>,
    /// Signalled when a receiver bind comes or goes.
    pub changed: Notify,
    done: mpsc::UnboundedSender<Done>,
}

impl AccountHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Binds> {
        self.binds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues of the receiver / transceiver binds up now.
    pub fn receivers(&self) -> Vec<mpsc::Sender<Outgoing>> {
        self.lock()
            .receivers
            .iter()
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// Registers a bind; `None` when the account is at `max_binds`.
    fn register(&self, kind: BindKind, tx: Option<mpsc::Sender<Outgoing>>) -> Option<u64> {
        let mut b = self.lock();
        if b.count >= self.login.max_binds {
            return None;
        }
        b.count += 1;
        b.next_id += 1;
        let id = b.next_id;
        if kind.receives()
            && let Some(tx) = tx
        {
            b.receivers.push((id, tx));
        }
        drop(b);
        self.changed.notify_waiters();
        Some(id)
    }

    fn unregister(&self, id: u64) {
        let mut b = self.lock();
        b.count = b.count.saturating_sub(1);
        b.receivers.retain(|(i, _)| *i != id);
        drop(b);
        self.changed.notify_waiters();
    }
}

/// Everything connections share.
#[derive(Debug)]
pub struct Server {
    ingress: Arc<IngressState>,
    config: SmppServerConfig,
    /// By system_id.
    hubs: HashMap<String, Arc<AccountHub>>,
    /// Per peer IP: open connections, bind rate, failed binds.
    guard: Arc<guard::PeerGuard>,
}

/// The running server.
#[derive(Debug)]
pub struct Started {
    /// The address it listens on (resolves port 0).
    pub addr: SocketAddr,
}

/// Binds the listener and spawns the accept loop (into `conn_tasks`, stopped by
/// `stop_accept`) and one outbox pump per SMPP account (into `pump_tasks`, stopped by
/// `stop_pumps`).
///
/// # Errors
/// When the address cannot be bound.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    config: SmppServerConfig,
    ingress: Arc<IngressState>,
    store: impl Into<GatewayStore>,
    wake: Arc<Notify>,
    stop_accept: watch::Receiver<bool>,
    stop_pumps: watch::Receiver<bool>,
    conn_tasks: &mut JoinSet<()>,
    pump_tasks: &mut JoinSet<()>,
) -> std::io::Result<Started> {
    let store: GatewayStore = store.into();
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let mut hubs = HashMap::new();
    for login in &config.logins {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let hub = Arc::new(AccountHub {
            name: login.account.clone(),
            login: login.clone(),
            binds: Mutex::default(),
            changed: Notify::new(),
            done: done_tx,
        });
        pump_tasks.spawn(deliver::run(
            store.clone(),
            Arc::clone(&hub),
            done_rx,
            Arc::clone(&wake),
            stop_pumps.clone(),
        ));
        hubs.insert(login.system_id.clone(), hub);
    }
    let config_peers = config.peers;
    let server = Arc::new(Server {
        ingress,
        config,
        hubs,
        guard: Arc::new(guard::PeerGuard::new(config_peers)),
    });
    conn_tasks.spawn(accept_loop(listener, server, stop_accept));
    tracing::info!(%addr, "SMPP server listening.");
    Ok(Started { addr })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    server: Arc<Server>,
    mut stop: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        match accepted {
            Ok((socket, peer)) => {
                let Some(admitted) = server.guard.admit(peer.ip(), std::time::Instant::now())
                else {
                    tracing::info!(%peer, "SMPP connection refused: too many from this address.");
                    metrics::counter!(m::SMPP_SERVER_ABUSE, m::LABEL_REASON => "connections_per_ip")
                        .increment(1);
                    drop(socket);
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let server = Arc::clone(&server);
                let stop = stop.clone();
                let acceptor = server.config.tls.as_ref().map(|t| t.acceptor());
                conns.spawn(async move {
                    // The handshake runs in the connection's task (a slow client holds up
                    // only itself) and counts against the bind timeout.
                    let stream = match acceptor {
                        None => Some(MaybeTls::Plain(socket)),
                        Some(a) => {
                            let limit = server.config.bind_timeout;
                            match tokio::time::timeout(limit, a.accept(socket)).await {
                                Ok(Ok(s)) => Some(MaybeTls::from(s)),
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "SMPP TLS handshake failed.");
                                    None
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "SMPP TLS handshake timed out.");
                                    None
                                }
                            }
                        }
                    };
                    if let Some(stream) = stream {
                        conn::run(server, stream, peer, stop).await;
                    }
                    drop(admitted);
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "SMPP accept failed.");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    // Every connection unbinds on the same signal; wait for them.
    while conns.join_next().await.is_some() {}
}
