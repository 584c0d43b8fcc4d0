//! `sluice serve`: wiring and lifecycle of the whole gateway in one process.
//!
//! Start order (each step needs the previous ones):
//! 1. config (the caller loads it; the embedded default when no file is given);
//! 2. store: open, then return *every* lease to the ready queues (crash recovery: a single
//!    process owns the data directory, so leases found at start belong to a dead process);
//! 3. the embedded simulator, when `[simulator] enabled` (a fake SMSC for channel "sim", and
//!    an ISMG / MMSC for cmpp / mm7 channels pointing at its `cmpp_port` / `mm7_port`);
//! 4. receipts: the per-channel event consumers and the two webhook pumps (receipt outbox,
//!    MO outbox), sharing one http/https client (ring installed as the rustls provider first);
//! 5. channels + dispatch (one worker and one dispatcher per channel; MM7 channels also
//!    get their inbound `/mm7/{channel}` on the HTTP API listener);
//! 6. HTTP ingress (with the public rules: `rules.db` opened right after the store, its
//!    receipt consumer subscribed before channels start, `/v1/rules` on the API listener) (and the separate metrics listener, when configured), and the SMPP server
//!    for ESMEs when `listeners.smpp` is set (same ingress state: one rate budget per
//!    account; one outbox pump per SMPP account for receipts and replies).
//!
//! Shutdown (SIGTERM / ctrl-c, or [`Gateway::shutdown`]) runs the drain order
//! (docs/ARCHITECTURE.md): stop accepting (ingress answers 503, then the listener closes;
//! SMPP binds answer their pending submits, then unbind), stop leasing (dispatch),
//! wait for in-flight responses up to `drain_deadline`, unbind (the workers), let receipts
//! drain, and drop the store last so its writer flushes and joins. Anything still leased
//! when the deadline passes is requeued by lease recovery at the next start, so a restart
//! resumes where this process stopped (at-least-once).
//!
//! Housekeeping runs every `housekeeping_every`: lease recovery (a crashed or stuck worker's
//! messages come back) and a retention purge step. Every [`DEPTH_REFRESH`] the store's
//! in-memory queue counters and the writer's commit totals are copied into the `sluice_store_*`
//! metrics.
//!
//! # Time
//! Every scheduling decision reads [`ServeOptions::clock`]: ingress (`created_ms`, id time,
//! placement: route health, not_before / windows / quiet hours → due, expiry known at
//! placement), dispatch (leasing due messages, lease deadlines, window gating, retry backoff,
//! the expiry sweep, route health), and housekeeping (lease recovery, retention cutoff).
//! Periods stay in real time (the housekeeping tick, webhook retry backoff, SMPP session
//! timers, rate limits); they only decide how often the clock is read. Still on the system
//! clock, informational only: receipt and MO arrival times (`done_ms`, receipt `at`,
//! `received_at`, stamped by the channel worker when the PDU arrives) and the hold of early
//! DLRs in the receipt layer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::clock::{AnyClock, Clock};
use crate::config::{ChannelKind, Config};
use crate::ingress::account::{AccountSpec, Accounts, parse_key_hash};
use crate::ingress::batch::BatchLimits;
use crate::ingress::http::{IngressState, router};
use crate::ingress::message::SenderPolicy;
use crate::ingress::smpp_server::{SmppLogin, SmppServerConfig};
use crate::receipt::mo::MoAccount;
use crate::receipt::outbox::{Batching, OutboxAccount};
use crate::receipt::{ReceiptConfig, Receipts};
use crate::route::ChannelHealth;
use crate::rules::http::RulesApi;
use crate::rules::import::Imports;
use crate::rules::{AnyOperator, OperatorAuth, Rules};
use crate::store::{GatewayStore, StoreError, open_store};
use crate::tls::server::{ServerTls, TlsListener};

mod campaign_runtime;
mod channels;
pub mod http_listener;

/// How long a stop keeps filtering leases after its sweep ended: twice dispatch's lease time,
/// so every message in flight at the call has come back (and been cancelled) or been
/// submitted before the stop retires.
pub const STOP_HOLD: Duration = Duration::from_secs(600);

/// How often the store's queue counters are copied into the `sluice_store_queue_depth` and
/// `sluice_store_inflight` gauges (a memory read; no store access).
pub const DEPTH_REFRESH: Duration = Duration::from_secs(1);

/// Knobs of `serve` that are not in the config file.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Longest wait for in-flight messages at shutdown.
    pub drain_deadline: Duration,
    /// Lease recovery and purge period.
    pub housekeeping_every: Duration,
    /// Receipt layer settings.
    pub receipts: ReceiptConfig,
    /// Request size limits.
    pub limits: BatchLimits,
    /// Prometheus handle to serve on `/metrics` (install the recorder once per process).
    pub metrics: Option<PrometheusHandle>,
    /// Override the HTTP listen address (tests use port 0).
    pub http_addr: Option<SocketAddr>,
    /// Host the campaign service in this process (`/v1/campaign`), fed by the in-process
    /// receipt subscription. `None`: gateway only.
    pub campaign: Option<CampaignHost>,
    /// The clock every scheduling decision reads (see the module doc, "Time"). Tests pass a
    /// [`crate::clock::ManualClock`] to drive windows, `not_before`, expiry and retries
    /// through the whole pipeline without sleeping; on it, nothing due later than `now`
    /// moves until the test advances it.
    pub clock: AnyClock,
    /// The emergency stop sweeper's step size and retire period.
    pub stop_sweep: crate::stop::SweepConfig,
}

/// How `serve` hosts the campaign service in-process. `Debug` redacts the keys.
#[derive(Clone)]
pub struct CampaignHost {
    /// SQLite file of the campaign store.
    pub db: std::path::PathBuf,
    /// Plaintext API key of the account the campaign service sends with. The config keeps
    /// only key hashes, so the key comes from the operator (flag / environment).
    pub api_key: String,
    /// Development only: when the campaign database has no user yet, create the root
    /// organisation `province` and the user `admin` whose API key is this plaintext. `serve`
    /// sets it to the embedded config's development key when run without `--config`; a
    /// custom config gets no implicit user (`sluice campaign admin init` creates one).
    pub dev_admin_key: Option<String>,
}

impl std::fmt::Debug for CampaignHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CampaignHost")
            .field("db", &self.db)
            .field("api_key", &"<redacted>")
            .field(
                "dev_admin_key",
                &self.dev_admin_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            drain_deadline: Duration::from_secs(30),
            housekeeping_every: Duration::from_secs(5),
            receipts: ReceiptConfig::default(),
            limits: BatchLimits::default(),
            metrics: None,
            http_addr: None,
            campaign: None,
            clock: AnyClock::System,
            stop_sweep: crate::stop::SweepConfig::default(),
        }
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The embedded simulator could not start.
    #[error("simulator: {0}")]
    Simulator(String),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The config has something serve cannot use.
    #[error("config: {0}")]
    Config(String),
    /// The webhook client could not be built.
    #[error("webhook client: {0}")]
    Client(#[from] crate::receipt::client::ClientError),
    /// The campaign store could not be opened.
    #[error("campaign service: {0}")]
    Campaign(String),
    /// The public rules (`rules.db`) could not be opened.
    #[error("public rules: {0}")]
    Rules(#[from] crate::rules::RulesError),
    /// A listener's TLS certificate or key cannot be used.
    #[error("{key}: {source}")]
    Tls {
        /// The config key (`listeners.http_tls`, …).
        key: &'static str,
        /// Cause.
        source: crate::tls::server::CertError,
    },
}

/// Loads a listener's TLS pair (when configured) and starts watching its files.
fn listener_tls(
    config: &Config,
    which: &'static str,
    key: &'static str,
    files: Option<&crate::config::TlsFilesConfig>,
    alpn: &[&[u8]],
    stop: &watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) -> Result<Option<Arc<ServerTls>>, ServeError> {
    let Some(files) = files else {
        return Ok(None);
    };
    let tls = ServerTls::load(which, files.files(), alpn)
        .map_err(|source| ServeError::Tls { key, source })?;
    tls.spawn_watch(
        Duration::from_secs(config.listeners.tls_reload_secs),
        stop.clone(),
        tasks,
    );
    Ok(Some(tls))
}

/// An HTTP listener: plaintext, or TLS with its handshakes done before axum sees a
/// connection. One app serves either.
enum HttpListener {
    Plain(tokio::net::TcpListener),
    Tls(TlsListener),
}

impl HttpListener {
    fn new(tcp: tokio::net::TcpListener, tls: Option<&ServerTls>) -> std::io::Result<Self> {
        Ok(match tls {
            Some(tls) => Self::Tls(TlsListener::new(tcp, tls)?),
            None => Self::Plain(tcp),
        })
    }

    /// Serves `app` under `limits` until `stop` turns true (`http_listener::serve`).
    async fn serve(
        self,
        app: axum::Router,
        limits: http_listener::HttpLimits,
        stop: watch::Receiver<bool>,
    ) {
        use axum::serve::ListenerExt;
        match self {
            Self::Plain(l) => {
                let l = l.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                http_listener::serve(l, app, limits, stop).await;
            }
            Self::Tls(l) => http_listener::serve(l, app, limits, stop).await,
        }
    }
}

/// ALPN of the HTTP listeners: axum serves HTTP/2 and HTTP/1.1.
const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    http_addr: SocketAddr,
    smpp_addr: Option<SocketAddr>,
    state: Arc<IngressState>,
    store: GatewayStore,
    receipts: Arc<Receipts>,
    sim: Option<sluice_loadtest::SimHandle>,
    stop_http: watch::Sender<bool>,
    stop_channels: watch::Sender<bool>,
    stop_rest: watch::Sender<bool>,
    http_tasks: JoinSet<()>,
    channel_tasks: JoinSet<()>,
    rest_tasks: JoinSet<()>,
    drain_deadline: Duration,
    ready: Arc<AtomicBool>,
    /// The hosted campaign service, stopped after the receipt tasks have drained.
    campaign: Option<crate::campaign_cmd::wiring::InProcess>,
    /// Its runtime, dropped after it stopped.
    campaign_runtime: Option<campaign_runtime::CampaignRuntime>,
    rules: Arc<Rules>,
}

impl Gateway {
    /// Address the HTTP API listens on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Address the SMPP server listens on, when `listeners.smpp` is set.
    pub fn smpp_addr(&self) -> Option<SocketAddr> {
        self.smpp_addr
    }

    /// The store (tests inspect it).
    pub fn store(&self) -> &GatewayStore {
        &self.store
    }

    /// The receipt layer (subscribe here for receipts and replies).
    pub fn receipts(&self) -> &Arc<Receipts> {
        &self.receipts
    }

    /// The public contact rules.
    pub fn rules(&self) -> &Arc<Rules> {
        &self.rules
    }

    /// The embedded simulator, when running.
    pub fn simulator(&self) -> Option<&sluice_loadtest::SimHandle> {
        self.sim.as_ref()
    }

    /// Drains and stops everything (see the module doc for the order).
    pub async fn shutdown(mut self) {
        tracing::info!("Shutdown: ingress stops accepting.");
        self.ready.store(false, Ordering::Release);
        self.state.draining.store(true, Ordering::Release);
        let _ = self.stop_http.send(true);
        while self.http_tasks.join_next().await.is_some() {}
        tracing::info!("Shutdown: dispatch stops leasing; waiting for in-flight messages.");
        let _ = self.stop_channels.send(true);
        let drained = tokio::time::timeout(self.drain_deadline, async {
            while self.channel_tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                deadline_secs = self.drain_deadline.as_secs(),
                "Shutdown: drain deadline passed; leases will be recovered at the next start."
            );
            self.channel_tasks.abort_all();
        }
        let _ = self.stop_rest.send(true);
        while self.rest_tasks.join_next().await.is_some() {}
        if let Some(campaign) = self.campaign.take() {
            campaign.shutdown().await;
        }
        drop(self.campaign_runtime.take());
        if let Some(sim) = self.sim.take() {
            let _ = sim.shutdown().await;
        }
        tracing::info!("Shutdown: flushing the store.");
        drop(self.receipts);
        drop(self.state);
        drop(self.store);
    }
}

fn account_specs(config: &Config) -> Result<Vec<AccountSpec>, ServeError> {
    config
        .accounts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let key_sha256 = a
                .api_keys
                .iter()
                .enumerate()
                .map(|(j, h)| {
                    parse_key_hash(h).map_err(|r| {
                        ServeError::Config(format!("accounts[{i}].api_keys[{j}]: {r}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(AccountSpec {
                name: a.name.clone(),
                key_sha256,
                rate_per_sec: NonZeroU32::new(a.rate),
                burst: NonZeroU32::new(a.burst.max(a.rate.min(1))),
                senders: SenderPolicy {
                    allowed: allowed_senders(a),
                    default: a.default_sender.as_deref().map(Into::into),
                    callbacks: a.webhook_secret.is_some(),
                },
                webhook_url: a.webhook_url.clone(),
                mo_url: a.mo_url.clone(),
            })
        })
        .collect()
}

/// The SMPP logins of the accounts that have one (validated by `Config`).
fn smpp_logins(config: &Config) -> Result<Vec<SmppLogin>, ServeError> {
    config
        .accounts
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let system_id = a.smpp_system_id.clone()?;
            let hash = a.smpp_password_sha256.as_deref().unwrap_or("");
            Some(
                parse_key_hash(hash)
                    .map_err(|r| {
                        ServeError::Config(format!("accounts[{i}].smpp_password_sha256: {r}"))
                    })
                    .map(|password_sha256| SmppLogin {
                        account: a.name.clone(),
                        system_id,
                        password_sha256,
                        max_binds: usize::try_from(a.smpp_max_binds).unwrap_or(usize::MAX),
                        window: usize::try_from(a.smpp_window).unwrap_or(64),
                        lane: a.smpp_lane,
                    }),
            )
        })
        .collect()
}

/// The account's sender allow-list for ingress: `allowed_senders`, plus `number*` for each of
/// its service numbers (sending from `service number + extension`). Empty stays empty (any).
fn allowed_senders(a: &crate::config::AccountConfig) -> Vec<String> {
    let mut allowed = a.allowed_senders.clone();
    if !allowed.is_empty() {
        allowed.extend(a.service_numbers.iter().map(|n| format!("{n}*")));
    }
    allowed
}

/// The embedded simulator's config: an SMPP listener on 127.0.0.1:`port` that accepts the
/// credentials of every SMPP channel pointing at it, and — when a CMPP channel points at
/// `cmpp_port` — an ISMG there accepting those channels' SP codes and secrets, and — when
/// an MM7 channel points at `mm7_port` — an MMSC there ([`embedded_mmsc`]).
fn simulator_config(
    config: &Config,
    http: SocketAddr,
) -> Result<sluice_loadtest::SimConfig, ServeError> {
    let sim = &config.simulator;
    let accounts = |kind: ChannelKind, port: u16| -> Vec<sluice_loadtest::config::Account> {
        config
            .channels
            .iter()
            .filter(|c| c.kind() == kind && c.port == port && is_local(&c.host))
            .map(|c| {
                let (login, secret) = c.login();
                sluice_loadtest::config::Account {
                    system_id: login.to_owned(),
                    password: secret.to_owned(),
                    max_binds: 0,
                }
            })
            .collect()
    };
    let mut listeners = vec![sluice_loadtest::ListenerConfig {
        name: "sim".into(),
        addr: SocketAddr::from(([127, 0, 0, 1], sim.port)),
        accounts: accounts(ChannelKind::Smpp, sim.port),
        ..sluice_loadtest::ListenerConfig::default()
    }];
    let cmpp = accounts(ChannelKind::Cmpp, sim.cmpp_port);
    if !cmpp.is_empty() {
        listeners.push(sluice_loadtest::ListenerConfig {
            name: "sim-cmpp".into(),
            protocol: sluice_loadtest::config::Protocol::Cmpp,
            addr: SocketAddr::from(([127, 0, 0, 1], sim.cmpp_port)),
            accounts: cmpp,
            ..sluice_loadtest::ListenerConfig::default()
        });
    }
    if let Some(mmsc) = embedded_mmsc(config, http)? {
        listeners.push(mmsc);
    }
    Ok(sluice_loadtest::SimConfig {
        tally_path: None,
        seed: None,
        listeners,
    })
}

/// The embedded MMSC, when an `mm7` channel's `url` is plain http to 127.0.0.1:`mm7_port`:
/// it sends delivery reports and replies to the first such channel's `/mm7/{name}` on the
/// HTTP listener `http` (127.0.0.1 when it listens on every address).
///
/// # Errors
/// A setup it cannot honour, refused at start rather than left silently without reports:
/// HTTP port 0 (the MMSC would not know where to report), or inbound basic auth on the
/// channel (only the password's hash is configured, so the MMSC could not present it).
fn embedded_mmsc(
    config: &Config,
    http: SocketAddr,
) -> Result<Option<sluice_loadtest::ListenerConfig>, ServeError> {
    let sim = &config.simulator;
    let Some(channel) = config.channels.iter().find(|c| {
        matches!(&c.protocol, crate::config::Protocol::Mm7(m) if m.url.starts_with("http://"))
            && c.port == sim.mm7_port
            && is_local(&c.host)
    }) else {
        return Ok(None);
    };
    if http.port() == 0 {
        return Err(ServeError::Config(format!(
            "listeners.http: port 0, but the embedded simulator's MMSC (simulator.mm7_port, \
             channel {}) reports to the HTTP listener and needs its port before the bind",
            channel.name
        )));
    }
    if matches!(&channel.protocol, crate::config::Protocol::Mm7(m) if m.inbound_username.is_some())
    {
        return Err(ServeError::Config(format!(
            "channels.{}.inbound_username: the embedded simulator's MMSC cannot present the \
             channel's inbound password (only its hash is configured); remove the inbound \
             auth or point the channel's url at another MMSC",
            channel.name
        )));
    }
    let ip = if http.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        http.ip()
    };
    let mut mmsc = sluice_loadtest::ListenerConfig {
        name: "sim-mmsc".into(),
        protocol: sluice_loadtest::config::Protocol::Mm7,
        addr: SocketAddr::from(([127, 0, 0, 1], sim.mm7_port)),
        ..sluice_loadtest::ListenerConfig::default()
    };
    mmsc.mm7.vasp_url = Some(format!(
        "http://{}/mm7/{}",
        SocketAddr::new(ip, http.port()),
        channel.name
    ));
    Ok(Some(mmsc))
}

/// Starts the gateway described by `config`.
///
/// # Errors
/// [`ServeError`] when a part cannot start; whatever started is stopped again.
pub async fn start(config: Config, opts: ServeOptions) -> Result<Gateway, ServeError> {
    let config = Arc::new(config);
    let clock = opts.clock.clone();
    let store: GatewayStore = open_store(
        config.storage.backend,
        &config.storage.path,
        config.storage.writer(),
        clock.now_ms(),
    )?
    .into();
    tracing::info!(backend = store.backend_name(), path = %config.storage.path.display(), "Store open.");
    let rules = Arc::new(Rules::open(
        &config.storage.path.join("rules.db"),
        config.time_zone(),
        &config.rules.exempt_lanes,
        clock.clone(),
    )?);
    // `open_store` has already returned every lease of the previous run to its queue.
    store
        .set_stop_tags(config.storage.stop_tags.clone())
        .await?;

    let sim = if config.simulator.enabled {
        let handle = sluice_loadtest::Simulator::start(simulator_config(
            &config,
            opts.http_addr.unwrap_or(config.listeners.http),
        )?)
        .await
        .map_err(|e| ServeError::Simulator(e.to_string()))?;
        tracing::info!(addrs = ?handle.addrs(), "Embedded simulator started.");
        Some(handle)
    } else {
        None
    };

    let (stop_http, stop_http_rx) = watch::channel(false);
    let (stop_channels, stop_channels_rx) = watch::channel(false);
    let (stop_rest, stop_rest_rx) = watch::channel(false);
    let mut http_tasks = JoinSet::new();
    let mut channel_tasks = JoinSet::new();
    let mut rest_tasks = JoinSet::new();

    // Receipts.
    crate::tls::install_provider();
    let client = crate::receipt::client::webhook_client(
        opts.receipts.webhook.timeout,
        config.webhooks.ca_roots(),
    )?;
    let mo_accounts = config
        .accounts
        .iter()
        .map(|a| MoAccount {
            name: a.name.clone(),
            prefixes: a
                .default_sender
                .iter()
                .chain(a.allowed_senders.iter())
                .chain(a.service_numbers.iter())
                .cloned()
                .collect(),
            mo_url: a.mo_url.clone(),
            webhook_secret: a.webhook_secret.clone(),
            smpp: a.smpp_system_id.is_some(),
            batching: Batching::from_config(a.webhook_batch, a.webhook_linger_ms),
        })
        .collect();
    let receipts = Arc::new(Receipts::new(
        store.clone(),
        mo_accounts,
        opts.receipts,
        client,
    ));
    let pump = receipts.outbox_pump(
        config
            .accounts
            .iter()
            .map(|a| OutboxAccount {
                name: a.name.clone(),
                webhook_url: a.webhook_url.as_deref().map(Arc::from),
                webhook_secret: a.webhook_secret.clone(),
                smpp: a.smpp_system_id.is_some(),
                batching: Batching::from_config(a.webhook_batch, a.webhook_linger_ms),
            })
            .collect(),
    );
    rest_tasks.spawn(pump.run(stop_rest_rx.clone()));
    rest_tasks.spawn(receipts.mo_pump().run(stop_rest_rx.clone()));
    // Subscribed before channels start, so every delivered contact and unsubscribe reply
    // reaches the public rules.
    rest_tasks.spawn(crate::rules::feedback::run(
        Arc::clone(&rules),
        sluice_campaign::routing::MoSettings {
            service_numbers: Vec::new(),
            unsubscribe_keywords: config.campaign.unsubscribe_keywords.clone(),
        },
        receipts.subscribe(),
        stop_rest_rx.clone(),
    ));

    // Pause switches (what the previous run left on) and the stop sweeper, which resumes a
    // sweep the previous run did not finish.
    let pauses = Arc::new(crate::stop::Pauses::load(store.clone())?);
    let sweep_wake = Arc::new(tokio::sync::Notify::new());
    {
        let receipts = Arc::clone(&receipts);
        let sweeper = crate::stop::Sweeper::new(
            store.clone(),
            clock.clone(),
            opts.stop_sweep,
            Arc::clone(&sweep_wake),
            Arc::new(move || receipts.wake_outbox()),
        );
        rest_tasks.spawn(sweeper.run(stop_rest_rx.clone()));
    }

    // Channels and dispatch.
    let health = Arc::new(Mutex::new(ChannelHealth::default()));
    let mut overrides = HashMap::new();
    if let Some(sim) = &sim {
        let addrs = sim.addrs();
        for ch in &config.channels {
            // Listeners are in simulator_config's order: SMSC first, then the ISMG.
            let listener = match ch.kind() {
                ChannelKind::Smpp if ch.port == config.simulator.port => addrs.first(),
                ChannelKind::Cmpp if ch.port == config.simulator.cmpp_port => addrs.get(1),
                _ => None,
            };
            if let Some(addr) = listener
                && is_local(&ch.host)
            {
                overrides.insert(ch.name.clone(), addr.to_string());
            }
        }
    }
    let channels::Started {
        wakes,
        binds_up,
        mm7,
        statuses,
    } = channels::spawn(
        &config,
        &store,
        &receipts,
        &health,
        &stop_channels_rx,
        &stop_rest_rx,
        &mut channel_tasks,
        &mut rest_tasks,
        &overrides,
        &clock,
        &pauses,
    )
    .map_err(ServeError::Config)?;

    // Housekeeping.
    {
        let store = store.clone();
        let every = opts.housekeeping_every;
        let retention = config.storage.retention();
        let mut stop = stop_rest_rx.clone();
        let receipts = Arc::clone(&receipts);
        let clock = clock.clone();
        rest_tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                // Lease deadlines were set on this clock by dispatch: recovery must read the
                // same one, or a manual clock behind real time would requeue live leases.
                let now = clock.now_ms();
                match store.recover(now).await {
                    Ok(n) if n > 0 => tracing::info!(requeued = n, "Expired leases requeued."),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "Lease recovery failed."),
                }
                let cutoff =
                    now.saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
                purge_due(&store, cutoff, every / 2).await;
                // Expiries and failures finalised by dispatch land in the outbox too.
                receipts.wake_outbox();
            }
        });
    }

    // Store queue depths → gauges.
    {
        let store = store.clone();
        let channels: Vec<String> = config.channels.iter().map(|c| c.name.clone()).collect();
        let mut stop = stop_rest_rx.clone();
        rest_tasks.spawn(async move {
            let mut tick = tokio::time::interval(DEPTH_REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                crate::metrics::record_store_depths(&store.queue_depths(), &channels);
                crate::metrics::record_store_writer(store.stats());
                crate::metrics::record_outbox_held(store.outbox_held());
            }
        });
    }

    // HTTP.
    let ready = Arc::new(AtomicBool::new(true));
    let ready_fn = {
        let ready = Arc::clone(&ready);
        // Ready: not draining, and every channel has at least one bind up.
        Arc::new(move || ready.load(Ordering::Acquire) && binds_up.iter().all(|b| *b.borrow() > 0))
            as Arc<dyn Fn() -> bool + Send + Sync>
    };
    let place = crate::ingress::place::placement(
        Arc::clone(&config),
        Arc::clone(&health),
        Arc::clone(&rules),
    );
    // Wake a channel's dispatcher once a batch for it is durable.
    let on_commit: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(move |channel: &str| {
        if let Some(w) = wakes.get(channel) {
            w.notify_one();
        }
    });
    let state = Arc::new(IngressState {
        accounts: Accounts::new(account_specs(&config)?),
        store: store.clone(),
        place,
        on_commit,
        limits: opts.limits,
        metrics: opts.metrics.clone(),
        ready: ready_fn,
        now_ms: {
            let clock = clock.clone();
            Arc::new(move || clock.now_ms())
        },
        draining: AtomicBool::new(false),
        rules: Arc::clone(&rules),
        // Each MM7 channel's `max_content_bytes`; a route to any other channel gets the default.
        mms: crate::ingress::mms::MmsIngress::new(
            config
                .channels
                .iter()
                .filter_map(|c| Some((c.name.clone(), c.max_content_bytes()?)))
                .collect(),
        )
        .map_err(|e| ServeError::Config(e.to_string()))?,
    });
    // TLS pairs load before any listener binds: a bad file stops the start, naming its key.
    let http_tls = listener_tls(
        &config,
        "http",
        "listeners.http_tls",
        config.listeners.http_tls.as_ref(),
        HTTP_ALPN,
        &stop_rest_rx,
        &mut rest_tasks,
    )?;
    let smpp_tls = listener_tls(
        &config,
        "smpp",
        "listeners.smpp_tls",
        config.listeners.smpp_tls.as_ref(),
        &[],
        &stop_rest_rx,
        &mut rest_tasks,
    )?;
    let metrics_tls = listener_tls(
        &config,
        "metrics",
        "listeners.metrics_tls",
        config.listeners.metrics_tls.as_ref(),
        HTTP_ALPN,
        &stop_rest_rx,
        &mut rest_tasks,
    )?;
    let smpp_addr = match config.listeners.smpp {
        Some(addr) => {
            let mut cfg =
                SmppServerConfig::new(addr, smpp_logins(&config)?).with_limits(&config.limits);
            cfg.tls = smpp_tls;
            let started = crate::ingress::smpp_server::start(
                cfg,
                Arc::clone(&state),
                store.clone(),
                receipts.smpp_wake(),
                stop_http_rx.clone(),
                stop_rest_rx.clone(),
                &mut http_tasks,
                &mut rest_tasks,
            )
            .await
            .map_err(|source| ServeError::Listen { addr, source })?;
            Some(started.addr)
        }
        None => None,
    };
    let addr = opts.http_addr.unwrap_or(config.listeners.http);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    let http_addr = listener
        .local_addr()
        .map_err(|source| ServeError::Listen { addr, source })?;
    let mut campaign = None;
    // Operators: the accounts marked `operator`, and the hosted campaign service's operator
    // users (added below).
    let mut operator_sources: Vec<Arc<dyn OperatorAuth>> =
        vec![Arc::new(crate::ingress::operator::AccountOperators::new(
            Arc::clone(&state),
            config
                .accounts
                .iter()
                .filter(|a| a.operator)
                .map(|a| a.name.clone())
                .collect(),
        ))];
    let mut campaign_router = None;
    let mut campaign_runtime = None;
    if let Some(host) = &opts.campaign {
        let mut campaigns = sluice_campaign::Campaigns::open(&host.db)
            .map_err(|e| ServeError::Campaign(e.to_string()))?;
        if let Some(key) = &host.dev_admin_key {
            let made = sluice_campaign::identity::bootstrap(
                &mut campaigns.conn,
                "province",
                "admin",
                None,
                Some(key),
                jiff::Timestamp::now().as_second(),
            )
            .map_err(|e| ServeError::Campaign(e.to_string()))?;
            if made.is_some() {
                tracing::warn!(
                    "Campaign service bootstrapped with the development admin key (embedded config only; create real users and revoke it)."
                );
            }
        }
        // Each task sends from the account's service number + its extension; replies to it
        // come back to that task.
        campaigns.mo = crate::campaign_cmd::wiring::mo_settings(&config, &host.api_key);
        let svc = Arc::new(Mutex::new(campaigns));
        operator_sources.push(Arc::new(crate::campaign_cmd::wiring::CampaignOperators(
            Arc::clone(&svc),
        )));
        let rt = campaign_runtime::CampaignRuntime::start(config.runtime.campaign_workers())
            .map_err(|e| ServeError::Campaign(format!("starting its runtime: {e}")))?;
        // Launches go through the same HTTP API external platforms use, on our own address.
        // Its tasks are spawned on its own runtime.
        let (routes, hosted) = {
            let _on = rt.enter();
            crate::campaign_cmd::wiring::InProcess::start(
                svc,
                &receipts,
                &format!("http://{http_addr}"),
                &host.api_key,
                crate::campaign_cmd::wiring::FeedbackConfig::default(),
                Duration::from_secs(5),
            )
        };
        campaign_router = Some(rt.serve(routes));
        campaign_runtime = Some(rt);
        tracing::info!(db = %host.db.display(), "Campaign service hosted at /v1/campaign.");
        campaign = Some(hosted);
    }
    let operator_auth: Arc<dyn OperatorAuth> = Arc::new(AnyOperator(operator_sources));
    let operator_state = crate::ingress::operator::OperatorState {
        auth: Arc::clone(&operator_auth),
        ingress: Arc::clone(&state),
        pauses,
        channels: config.channels.iter().map(|c| c.name.clone()).collect(),
    };
    let mut app = router(Arc::clone(&state))
        .merge(crate::rules::http::router(Arc::new(RulesApi {
            rules: Arc::clone(&rules),
            auth: Arc::clone(&operator_auth),
            imports: Arc::new(Imports::new(config.storage.path.clone())),
        })))
        .merge(crate::ingress::cancel::router(
            crate::ingress::cancel::CancelState {
                ingress: Arc::clone(&state),
                sweep: sweep_wake,
                hold_ms: u64::try_from(STOP_HOLD.as_millis()).unwrap_or(u64::MAX),
            },
        ))
        .merge(crate::ingress::operator::router(operator_state.clone()))
        .merge(crate::ingress::channels_view::router(
            crate::ingress::channels_view::ChannelsViewState {
                operator: operator_state.clone(),
                statuses: Arc::new(statuses),
            },
        ))
        .merge(crate::ingress::lookup::router(operator_state))
        // MMSCs POST delivery reports and MO to /mm7/{channel}.
        .merge(crate::channel::mm7::inbound::router(Arc::new(mm7)));
    if let Some(routes) = campaign_router {
        app = app.merge(routes);
    }
    {
        let limits = http_listener::HttpLimits::from_config(&config.limits);
        let listener = HttpListener::new(listener, http_tls.as_deref())
            .map_err(|source| ServeError::Listen { addr, source })?;
        http_tasks.spawn(listener.serve(app, limits, stop_http_rx.clone()));
    }
    if let (Some(maddr), Some(handle)) = (config.listeners.metrics, opts.metrics.clone())
        && maddr != http_addr
    {
        let limits = http_listener::HttpLimits::from_config(&config.limits);
        spawn_metrics_listener(
            maddr,
            handle,
            metrics_tls,
            limits,
            stop_http_rx.clone(),
            &mut http_tasks,
        )
        .await?;
    }
    tracing::info!(addr = %http_addr, "HTTP API listening.");
    Ok(Gateway {
        http_addr,
        smpp_addr,
        state,
        store,
        receipts,
        sim,
        stop_http,
        stop_channels,
        stop_rest,
        http_tasks,
        channel_tasks,
        rest_tasks,
        drain_deadline: opts.drain_deadline,
        ready,
        campaign,
        campaign_runtime,
        rules,
    })
}

/// Serves `/metrics` alone on `addr` (ops often scrape a port the API does not share).
///
/// # Errors
/// A configured `listeners.metrics` that cannot be bound stops the start, like the API's own
/// listener: an operator who set it expects it to be scraped, not a line in the log.
async fn spawn_metrics_listener(
    addr: SocketAddr,
    handle: PrometheusHandle,
    tls: Option<Arc<ServerTls>>,
    limits: http_listener::HttpLimits,
    stop: watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) -> Result<(), ServeError> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let h = handle.clone();
            async move { h.render() }
        }),
    );
    let l = HttpListener::new(l, tls.as_deref())
        .map_err(|source| ServeError::Listen { addr, source })?;
    tasks.spawn(l.serve(app, limits, stop));
    Ok(())
}

/// Runs until SIGTERM or ctrl-c, then drains.
///
/// # Errors
/// When the gateway cannot start.
pub async fn run_until_signal(config: Config, opts: ServeOptions) -> Result<(), ServeError> {
    let gw = start(config, opts).await?;
    wait_for_signal().await;
    gw.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received."),
                    _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received."),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn is_local(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}

/// Messages the retention purge removes per store commit.
const PURGE_BATCH: usize = 1000;

/// Purges what the retention let go of, a commit of [`PURGE_BATCH`] at a time, until none is
/// left or `budget` has passed. One batch per tick purged at most 200 messages a second with
/// the 5 s tick, so a gateway taking more than that never caught up and its store grew for
/// ever; the budget keeps a backlog of purging (the first tick after a long stop) from taking
/// the writer from live traffic for long.
/// Returns how many it removed.
async fn purge_due(store: &GatewayStore, cutoff_ms: u64, budget: Duration) -> usize {
    let started = std::time::Instant::now();
    let mut purged = 0;
    loop {
        match store.purge(cutoff_ms, PURGE_BATCH).await {
            Ok(n) => {
                metrics::counter!(crate::metrics::STORE_PURGED).increment(n as u64);
                purged += n;
                if n < PURGE_BATCH || started.elapsed() >= budget {
                    return purged;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Purge failed.");
                return purged;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let text = r#"
[[accounts]]
name = "a"
rate = 10
[[channels]]
name = "c"
kind = "smpp"
host = "127.0.0.1"
port = 2775
system_id = "s"
rate = 10
"#;
        Config::parse(text, "test.toml").expect("valid config")
    }

    /// More than one batch let go of by the retention goes in one housekeeping pass (one
    /// batch per pass purged 200 messages a second: less than a busy gateway takes in).
    #[tokio::test]
    async fn purge_catches_up_with_more_than_a_batch() {
        use crate::store::{BackendKind, Message, MessageState, Op, Payload, WriterConfig};
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open_store(
            BackendKind::Redb,
            dir.path(),
            WriterConfig::default(),
            1_000,
        )
        .expect("store");
        let n = 2 * PURGE_BATCH + 500;
        let ids: Vec<_> = (0..n).map(|_| store.ids().next(1_000)).collect();
        let text = || Payload::Text {
            text: "hello".into(),
            encoding: Default::default(),
        };
        let inserts = ids
            .iter()
            .map(|id| {
                Op::Insert(Box::new(Message::new(
                    *id,
                    "a",
                    "+8613800138000",
                    text(),
                    "c",
                    1_000,
                    1_000,
                )))
            })
            .collect();
        store.submit(inserts).await.expect("insert");
        let finishes = ids
            .iter()
            .map(|id| Op::Finish {
                id: *id,
                state: MessageState::Failed,
                stat: "UNDELIV".into(),
                err: "000".into(),
                now_ms: 2_000,
            })
            .collect();
        store.submit(finishes).await.expect("finish");
        let store: GatewayStore = Arc::new(store);
        assert_eq!(purge_due(&store, 1_500, Duration::from_secs(60)).await, 0);
        assert_eq!(purge_due(&store, 3_000, Duration::from_secs(60)).await, n);
        assert_eq!(purge_due(&store, 3_000, Duration::from_secs(60)).await, 0);
    }

    #[test]
    fn account_specs_parse_key_hashes() {
        let mut c = config();
        c.accounts[0].api_keys = vec![crate::config::hash_api_key("k")];
        let specs = account_specs(&c).expect("specs");
        assert_eq!(
            specs[0].key_sha256,
            vec![crate::ingress::account::key_hash("k")]
        );
        c.accounts[0].api_keys = vec!["nothex".into()];
        assert!(account_specs(&c).is_err());
    }
}
