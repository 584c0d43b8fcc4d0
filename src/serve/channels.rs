//! Starting the egress side for `serve`: per channel (SMPP, CMPP or MM7, one `spawn` per
//! kind) a worker, a dispatcher and a receipt consumer, wired together. An MM7 channel's
//! receipts and MO arrive over HTTP: its inbound side (sending on the same event queue the
//! receipt consumer reads) is collected in [`Started::mm7`] for `serve`'s router.
//!
//! ```text
//! store ─lease─▶ Dispatcher ─OutboundMessage─▶ worker ─▶ binds ─▶ center
//!   ▲               ▲   │                         │
//!   └─outcome ops───┘   └── wake (ingress commit) │ ChannelEvent
//!                                                 ▼
//!                                    Receipts::run_channel ─▶ store / outbox
//! ```
//!
//! Stop order per channel: on `stop_channels`, dispatch stops leasing and hands back what it
//! buffered, the worker is told to shut down (finishes or aborts what it holds, unbinds),
//! its outcome queue closes and dispatch writes the last outcomes. The receipt consumer keeps
//! going until `stop_rest`, so DLRs already received are applied.
//!
//! Dispatchers run on `serve`'s injected clock ([`AnyClock`]): due times, lease deadlines,
//! window gating, retry backoff and the expiry sweep all read it, and a manual clock's
//! advance wakes a dispatcher sleeping on a due time. The SMPP workers keep real time (session
//! timers, rate limits), which paces transport, not scheduling.
//!
//! Every configured channel starts: config validation has already refused a kind this build
//! cannot serve, so nothing is skipped and no route leads to a channel that never sends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use crate::channel::cmpp::{self, CmppChannelConfig};
use crate::channel::mm7::{self, Mm7ChannelConfig};
use crate::channel::smpp::{self, WorkerConfig};
use crate::clock::AnyClock;
use crate::config::{Config, Protocol};
use crate::dispatch::{DispatchConfig, DispatchLinks, Dispatcher};
use crate::receipt::Receipts;
use crate::route::ChannelHealth;
use crate::status::ChannelStatuses;
use crate::stop::Pauses;
use crate::store::GatewayStore;

/// Events buffered between a channel's binds and its receipt consumer.
const EVENT_QUEUE: usize = 16_384;

/// What the rest of `serve` needs from the started channels.
#[derive(Debug, Default)]
pub(crate) struct Started {
    /// Dispatcher wake-ups by channel name (ingress notifies after a durable commit).
    pub(crate) wakes: HashMap<String, Arc<Notify>>,
    /// Binds up per channel (`/readyz` wants at least one per channel).
    pub(crate) binds_up: Vec<watch::Receiver<usize>>,
    /// The inbound side (`/mm7/{channel}`) of the MM7 channels.
    pub(crate) mm7: mm7::inbound::Inbound,
    /// Every channel's live status, for the operators' channel view.
    pub(crate) statuses: ChannelStatuses,
}

/// Starts every channel.
///
/// # Errors
/// A message naming the channel whose windows cannot be parsed (config validation normally
/// catches it first).
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn(
    config: &Config,
    store: &GatewayStore,
    receipts: &Arc<Receipts>,
    health: &Arc<Mutex<ChannelHealth>>,
    stop_channels: &watch::Receiver<bool>,
    stop_rest: &watch::Receiver<bool>,
    channel_tasks: &mut JoinSet<()>,
    rest_tasks: &mut JoinSet<()>,
    address_override: &HashMap<String, String>,
    clock: &AnyClock,
    pauses: &Pauses,
) -> Result<Started, String> {
    let mut started = Started::default();
    let tz = config.time_zone();
    // One MMS content cache for every channel: a campaign's content is loaded once however
    // many channels carry it.
    let content = Arc::new(crate::dispatch::ContentCache::new(
        crate::dispatch::ContentCache::DEFAULT_BYTES,
    ));
    for (i, ch) in config.channels.iter().enumerate() {
        let addr = address_override
            .get(&ch.name)
            .cloned()
            .unwrap_or_else(|| format!("{}:{}", ch.host, ch.port));
        let windows = config
            .window_rules(&ch.name, "", None)
            .map_err(|e| format!("channels[{i}].windows: {e}"))?;
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let (capacity, start): (usize, Box<dyn FnOnce(_, _, _) -> _>) = match &ch.protocol {
            Protocol::Smpp(settings) => {
                let mut wc = WorkerConfig::from_config(ch, settings);
                wc.addr = addr;
                wc.tls = client_tls(i, ch)?;
                (
                    wc.capacity(),
                    Box::new(move |i, o, e| Ok(smpp::spawn(wc, i, o, e))),
                )
            }
            Protocol::Cmpp(settings) => {
                let mut cc = CmppChannelConfig::from_config(ch, settings, tz.clone());
                cc.addr = addr;
                cc.tls = client_tls(i, ch)?;
                (
                    cc.capacity(),
                    Box::new(move |i, o, e| Ok(cmpp::spawn(cc, i, o, e))),
                )
            }
            Protocol::Mm7(settings) => {
                let mc = Mm7ChannelConfig::from_config(ch, settings)?;
                started.mm7.add(mm7::inbound_channel(ch, ev_tx.clone())?);
                (
                    mc.capacity(),
                    Box::new(move |input, o, _events| {
                        mm7::spawn(mc, input, o).map_err(|e| format!("channels[{i}]: {e}"))
                    }),
                )
            }
        };
        let (in_tx, in_rx) = mpsc::channel(capacity);
        let (out_tx, out_rx) = mpsc::channel(capacity * 2 + 64);
        let handle = start(in_rx, out_tx, ev_tx)?;
        let wake = Arc::new(Notify::new());
        started.wakes.insert(ch.name.clone(), Arc::clone(&wake));
        started.binds_up.push(handle.binds_up.clone());
        let protocol = match &ch.protocol {
            Protocol::Smpp(_) => "smpp",
            Protocol::Cmpp(_) => "cmpp",
            Protocol::Mm7(_) => "mm7",
        };
        started.statuses.push(protocol, Arc::clone(&handle.status));
        let status = Arc::clone(&handle.status);
        let dc = DispatchConfig {
            tz: tz.clone(),
            windows,
            id_format: ch.message_id_format.format(),
            batch: ch.lease_batch as usize,
            ..DispatchConfig::new(&ch.name)
        };
        let dispatcher = Dispatcher::new(dc, store.clone(), clock.clone())
            .with_applied_sink(receipts.applied_sink(&ch.name))
            .with_content_cache(Arc::clone(&content));
        let paused = pauses.channel(&ch.name, Arc::clone(&wake));
        let links = DispatchLinks {
            to_worker: in_tx,
            outcomes: out_rx,
            binds_up: handle.binds_up.clone(),
            health: Arc::clone(health),
            wake,
            shutdown: stop_channels.clone(),
            paused,
        };
        let name = ch.name.clone();
        let mut stop = stop_channels.clone();
        channel_tasks.spawn(async move {
            let dispatch = tokio::spawn(dispatcher.run(links));
            let _ = stop.wait_for(|s| *s).await;
            handle.shutdown().await;
            match dispatch.await {
                Ok(Ok(stats)) => tracing::info!(channel = %name, ?stats, "Channel stopped."),
                Ok(Err(e)) => tracing::error!(channel = %name, error = %e, "Dispatch failed."),
                Err(e) => tracing::error!(channel = %name, error = %e, "Dispatch task panicked."),
            }
        });
        rest_tasks.spawn(Arc::clone(receipts).run_channel(
            ch.name.clone(),
            ch.dlr_id_format.format(),
            ev_rx,
            stop_rest.clone(),
            status,
        ));
    }
    Ok(started)
}

/// The channel's TLS client when it has `tls = true` (names and CA checked by config).
fn client_tls(
    i: usize,
    ch: &crate::config::ChannelConfig,
) -> Result<Option<crate::tls::client::ClientTls>, String> {
    ch.tls
        .as_ref()
        .map(|t| {
            crate::tls::client::ClientTls::new(&t.server_name, &ch.ca_roots)
                .map_err(|e| format!("channels[{i}].tls: {e}"))
        })
        .transpose()
}
