//! Receipts and replies: from channel events to the client and the campaign service.
//!
//! ```text
//! channel worker ──ChannelEvent (per channel mpsc)──▶ Receipts::run_channel
//!      Receipt ─▶ correlate: Op::Receipt(channel, normalised id) ─▶ store (aggregates parts,
//!                 writes the outbox entry in the same commit when the message is final)
//!      Mo      ─▶ mo: route by sender prefix ─▶ Op::MoEnqueue into the account's MO outbox
//!                 (same commit as the batch's receipts) ─▶ subscribers
//!   (the center's deliver_sm is answered only after that commit: DeliverAck)
//! store outbox    ─▶ OutboxPump<ReceiptOutbox> ─▶ subscribers + callback_url / webhook_url
//! store MO outbox ─▶ OutboxPump<MoOutbox>      ─▶ mo_url            (both retried until 2xx)
//! ```
//!
//! - [`correlate`]: stat words → part states, id normalisation, early-DLR accounting.
//! - [`applied`]: held receipts a submit response applied, reported by dispatch (the one
//!   path by which this layer learns a held receipt is settled; the store is not polled).
//! - [`outbox`]: the webhook pump, generic over the kind of entry (batches, the in-flight
//!   limit, outbox gauges); receipts.
//! - [`receiver`]: pacing per webhook receiver (adaptive concurrency, shared backoff).
//! - [`mo`]: reply routing; the MO outbox kind.
//! - [`client`]: the webhook HTTP client (http, and https over rustls + ring).
//!
//! Submit outcomes are *not* written here: dispatch turns the worker's per-message outcome
//! into `Op::Submitted` / `Op::Requeue` / `Op::Finish` (see `src/dispatch.rs`), which keeps
//! one writer per fact; channels send this layer only what centers send unasked.
//!
//! In-process subscribers ([`Receipts::subscribe`]) get a [`Notification`] for every receipt
//! event and every MO over a `tokio::sync::broadcast` channel: a subscriber that lags by more
//! than the channel capacity misses events (it sees `RecvError::Lagged`), so the campaign
//! service should treat it as a fast path and reconcile from `GET /v1/messages/{id}`.

pub mod applied;
pub mod client;
pub mod correlate;
pub mod mo;
pub mod outbox;
pub mod receiver;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use compact_str::CompactString;
use sluice_protocols::smpp::IdFormat;
use tokio::sync::{Notify, broadcast, mpsc, watch};

use crate::channel::{ChannelEvent, DeliverAck};
use crate::metrics as m;
use crate::status::ChannelStatus;
use crate::store::{GatewayStore, MessageState, Op, OpResult, ReceiptEvent};
use applied::{AppliedQueues, AppliedReceipt, AppliedSink};
use correlate::{Pending, center_key, part_state};
use mo::{MoEvent, MoOutbox, MoRouter};
use outbox::{Backlog, OutboxAccount, OutboxPump, PumpProbe, ReceiptOutbox};

/// Most channel events applied in one store commit.
const MAX_BATCH: usize = 1024;

/// What in-process subscribers receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// A message reached its final state (the webhook body). Shared: every subscriber of the
    /// broadcast receives a copy of the notification, so one event is read by all of them.
    Receipt(Arc<ReceiptEvent>),
    /// A reply arrived.
    Mo(MoEvent),
}

/// Receipt-layer settings.
#[derive(Debug, Clone, Copy)]
pub struct ReceiptConfig {
    /// How long a DLR for an unknown center id waits for its submit response before it is
    /// counted as unmatched.
    pub hold_for: Duration,
    /// Most early DLRs tracked at once.
    pub max_pending: usize,
    /// How often held DLRs are checked against `hold_for` (a timer over the in-memory
    /// pending map; a held DLR that its submit response applies is settled at once, through
    /// [`applied`], whatever this period).
    pub sweep_every: Duration,
    /// Subscriber channel capacity.
    pub subscriber_capacity: usize,
    /// Webhook settings (receipts and MO).
    pub webhook: outbox::WebhookConfig,
}

impl Default for ReceiptConfig {
    fn default() -> Self {
        Self {
            hold_for: Duration::from_secs(120),
            max_pending: 100_000,
            sweep_every: Duration::from_secs(1),
            subscriber_capacity: 65_536,
            webhook: outbox::WebhookConfig::default(),
        }
    }
}

/// The receipt layer. Share it in an `Arc`.
#[derive(Debug)]
pub struct Receipts {
    store: GatewayStore,
    cfg: ReceiptConfig,
    subscribers: broadcast::Sender<Notification>,
    outbox_wake: Arc<Notify>,
    mo_wake: Arc<Notify>,
    smpp_wake: Arc<Notify>,
    mo_router: MoRouter,
    /// Shared by both pumps (one connection pool; see [`client::webhook_client`]).
    client: reqwest::Client,
    backlog: Arc<Backlog>,
    /// What the receipt pump and the MO pump keep and measured (see [`Receipts::probes`]).
    probes: (Arc<PumpProbe>, Arc<PumpProbe>),
    /// Per channel, dispatch's reports of held receipts its submit responses applied.
    applied: AppliedQueues,
}

/// What one op of a receipt-layer commit was for.
enum Applied {
    /// A DLR, under its center id as the center wrote it: normalised again only for the
    /// answers that name it (held, stale, unmatched), not copied for every receipt.
    Receipt(CompactString),
    /// An MO kept in its account's MO outbox.
    Mo(MoEvent),
}

impl Receipts {
    /// A receipt layer over `store` with MO routing data; webhooks go through `client`.
    pub fn new(
        store: impl Into<GatewayStore>,
        mo_accounts: Vec<mo::MoAccount>,
        cfg: ReceiptConfig,
        client: reqwest::Client,
    ) -> Self {
        let (subscribers, _) = broadcast::channel(cfg.subscriber_capacity.max(1));
        Self {
            store: store.into(),
            cfg,
            subscribers,
            outbox_wake: Arc::new(Notify::new()),
            mo_wake: Arc::new(Notify::new()),
            smpp_wake: Arc::new(Notify::new()),
            mo_router: MoRouter::new(mo_accounts),
            client,
            backlog: Arc::default(),
            probes: (Arc::default(), Arc::default()),
            applied: AppliedQueues::default(),
        }
    }

    /// Where `channel`'s dispatcher reports the held receipts its submit responses applied
    /// (see [`applied`]); [`Receipts::run_channel`] for the same channel takes them.
    pub fn applied_sink(&self, channel: &str) -> AppliedSink {
        self.applied.sink(channel)
    }

    /// Figures of the receipt pump and of the MO pump, in that order: their in-memory state
    /// (bounded whatever the backlog) and the outbox depths they last measured.
    pub fn probes(&self) -> (Arc<PumpProbe>, Arc<PumpProbe>) {
        (Arc::clone(&self.probes.0), Arc::clone(&self.probes.1))
    }

    /// Subscribes to receipts and replies (see the module doc for the lag rule).
    pub fn subscribe(&self) -> broadcast::Receiver<Notification> {
        self.subscribers.subscribe()
    }

    /// Wakes the outbox pump (call after finalising messages elsewhere).
    pub fn wake_outbox(&self) {
        self.outbox_wake.notify_one();
        self.smpp_wake.notify_waiters();
    }

    /// Signalled whenever receipts or replies were added to an outbox: the SMPP server's
    /// pumps wait on it (`notify_waiters`: every pump wakes; each rescans its account).
    pub fn smpp_wake(&self) -> Arc<Notify> {
        Arc::clone(&self.smpp_wake)
    }

    /// The receipt outbox pump for `accounts` (each with its `webhook_url`), sharing this
    /// layer's subscribers and wake-up.
    pub fn outbox_pump(&self, accounts: Vec<OutboxAccount>) -> OutboxPump<ReceiptOutbox> {
        OutboxPump::new(
            self.store.clone(),
            accounts,
            self.cfg.webhook,
            self.client.clone(),
            self.subscribers.clone(),
            Arc::clone(&self.outbox_wake),
            Arc::clone(&self.backlog),
        )
        .with_probe(Arc::clone(&self.probes.0))
    }

    /// The MO outbox pump over every routing account (each with its `mo_url`), woken when
    /// an MO is kept.
    pub fn mo_pump(&self) -> OutboxPump<MoOutbox> {
        let accounts = self
            .mo_router
            .accounts()
            .iter()
            .map(|a| OutboxAccount {
                name: a.name.clone(),
                webhook_url: a.mo_url.as_deref().map(Arc::from),
                webhook_secret: a.webhook_secret.clone(),
                smpp: a.smpp,
                batching: a.batching,
            })
            .collect();
        OutboxPump::new(
            self.store.clone(),
            accounts,
            self.cfg.webhook,
            self.client.clone(),
            self.subscribers.clone(),
            Arc::clone(&self.mo_wake),
            Arc::clone(&self.backlog),
        )
        .with_probe(Arc::clone(&self.probes.1))
    }

    /// Consumes one channel's events until the sender side closes, and dispatch's reports of
    /// held receipts it applied ([`Receipts::applied_sink`]) until `shutdown` (so a late
    /// submit response still settles them); gives up held receipts after `hold_for`.
    /// `dlr_format` is how the center writes ids inside receipts; `status` is the channel's
    /// live status, whose receipt latency window this feeds (submit → final receipt).
    pub async fn run_channel(
        self: Arc<Self>,
        channel: String,
        dlr_format: IdFormat,
        mut events: mpsc::Receiver<ChannelEvent>,
        mut shutdown: watch::Receiver<bool>,
        status: Arc<ChannelStatus>,
    ) {
        let mut pending = Pending::new(self.cfg.hold_for, self.cfg.max_pending);
        let mut applied = self.applied.receiver(&channel);
        let finals = FinalCounts::new(status);
        let mut give_up = tokio::time::interval(self.cfg.sweep_every);
        give_up.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut open = true;
        loop {
            tokio::select! {
                // Reports first: a settled receipt must not be given up by a tick that
                // happened to come at the same turn.
                biased;
                Some(mut reports) = applied.recv() => {
                    reports.extend(drain(&mut applied));
                    self.settle(&channel, reports, &mut pending, &finals);
                }
                ev = events.recv(), if open => match ev {
                    Some(ev) => {
                        // Take whatever else is already queued: one store commit for all.
                        let mut batch = vec![ev];
                        while batch.len() < MAX_BATCH {
                            match events.try_recv() {
                                Ok(ev) => batch.push(ev),
                                Err(_) => break,
                            }
                        }
                        self.handle(&channel, dlr_format, batch, &mut pending, &finals).await;
                    }
                    None => open = false,
                },
                _ = give_up.tick() => self.give_up(&channel, &mut pending),
                changed = shutdown.changed() => {
                    // A dropped sender means the owner is gone: stop as for shutdown.
                    let stop = changed.is_err() || *shutdown.borrow();
                    if stop {
                        // Drain what the channel already sent, then what dispatch reported
                        // (its last outcomes were written before this layer is stopped).
                        let mut batch = Vec::new();
                        while let Ok(ev) = events.try_recv() {
                            batch.push(ev);
                        }
                        self.handle(&channel, dlr_format, batch, &mut pending, &finals).await;
                        self.settle(&channel, drain(&mut applied), &mut pending, &finals);
                        return;
                    }
                }
            }
            if !open && *shutdown.borrow() {
                self.settle(&channel, drain(&mut applied), &mut pending, &finals);
                return;
            }
        }
    }

    /// Held receipts that dispatch's submit responses applied: forgotten here, the messages
    /// they ended counted (the one place besides [`Receipts::handle`] that a receipt's final
    /// state is counted), and the outbox woken for the receipts they queued.
    fn settle(
        &self,
        channel: &str,
        reports: Vec<AppliedReceipt>,
        pending: &mut Pending,
        finals: &FinalCounts,
    ) {
        if reports.is_empty() {
            return;
        }
        let mut ended = 0;
        for r in reports {
            pending.settle(&r.center_key);
            if let Some(latency_ms) = r.ended_in_ms
                && r.state.is_final()
            {
                finals.count(r.state, latency_ms);
                ended += 1;
            }
        }
        if ended > 0 {
            self.wake_outbox();
        }
        metrics::gauge!(m::RECEIPTS_PENDING, m::LABEL_CHANNEL => channel.to_owned())
            .set(pending.len() as f64);
    }

    /// Held receipts no submit response applied within `hold_for`: counted as unmatched.
    fn give_up(&self, channel: &str, pending: &mut Pending) {
        if pending.is_empty() {
            return;
        }
        let given_up = pending.give_up(Instant::now());
        for key in &given_up {
            tracing::warn!(%channel, center_id = %key, "Receipt matched no message in time.");
        }
        if !given_up.is_empty() {
            metrics::counter!(m::RECEIPTS_UNMATCHED, m::LABEL_CHANNEL => channel.to_owned())
                .increment(given_up.len() as u64);
        }
        metrics::gauge!(m::RECEIPTS_PENDING, m::LABEL_CHANNEL => channel.to_owned())
            .set(pending.len() as f64);
    }

    /// Handles a batch of events: receipts and kept MOs as one store commit; MOs nobody
    /// keeps go to subscribers at once.
    async fn handle(
        &self,
        channel: &str,
        dlr_format: IdFormat,
        events: Vec<ChannelEvent>,
        pending: &mut Pending,
        finals: &FinalCounts,
    ) {
        let mut applied = Vec::new();
        let mut ops = Vec::new();
        // The center's deliver_sm_resp waits on these: answered only once the commit below
        // is durable (or told to retry when it fails), so no receipt or MO is lost to a crash.
        let mut acks = Vec::new();
        for ev in events {
            match ev {
                ChannelEvent::Receipt {
                    center_id,
                    stat,
                    err,
                    at,
                    ack,
                    ..
                } => {
                    acks.push(ack);
                    ops.push(Op::Receipt {
                        channel: channel.into(),
                        center_id: center_key(&center_id, dlr_format),
                        part_state: part_state(&stat),
                        stat,
                        err,
                        now_ms: ms(at),
                    });
                    applied.push(Applied::Receipt(center_id));
                }
                ChannelEvent::Mo {
                    from,
                    to,
                    text,
                    at,
                    ack,
                    ..
                } => {
                    let (event, keep) = self.mo_event(from, to, text, at);
                    match keep {
                        Some(account) => {
                            acks.push(ack);
                            ops.push(Op::MoEnqueue {
                                account,
                                event: event.clone(),
                            });
                            applied.push(Applied::Mo(event));
                        }
                        None => {
                            // Nobody to keep it for: subscribers are all there is.
                            ack.done();
                            let _ = self.subscribers.send(Notification::Mo(event));
                        }
                    }
                }
            }
        }
        if ops.is_empty() {
            return;
        }
        let results = match self.store.submit(ops).await {
            Ok(r) => {
                acks.iter().for_each(DeliverAck::done);
                r
            }
            Err(e) => {
                acks.iter().for_each(DeliverAck::fail);
                // The center was told to resend them (ESME_RX_T_APPN); the message stays
                // `sent` (visible in GET) rather than being guessed, and subscribers hear of
                // an MO when its resend is kept.
                tracing::error!(%channel, error = %e, n = applied.len(), "Store failed applying receipts and replies.");
                return;
            }
        };
        let mut ended = 0;
        let mut kept_mo = 0;
        for (what, result) in applied.into_iter().zip(results) {
            let raw = match what {
                Applied::Receipt(raw) => raw,
                Applied::Mo(event) => {
                    if let OpResult::Invalid(reason) = &result {
                        tracing::error!(%channel, %reason, "Reply not kept; published only.");
                    } else {
                        kept_mo += 1;
                    }
                    let _ = self.subscribers.send(Notification::Mo(event));
                    continue;
                }
            };
            match result {
                OpResult::ReceiptApplied {
                    state,
                    ended_in_ms: Some(latency_ms),
                } if state.is_final() => {
                    finals.count(state, latency_ms);
                    ended += 1;
                }
                OpResult::ReceiptApplied { .. } => {}
                OpResult::ReceiptHeld => {
                    let key = center_key(&raw, dlr_format);
                    tracing::debug!(%channel, center_id = %key, "Receipt held for its submit response.");
                    metrics::counter!(m::RECEIPTS_EARLY, m::LABEL_CHANNEL => channel.to_owned())
                        .increment(1);
                    if !pending.hold(key, Instant::now()) {
                        metrics::counter!(m::RECEIPTS_UNMATCHED, m::LABEL_CHANNEL => channel.to_owned())
                            .increment(1);
                    }
                }
                OpResult::Stale(_) => {
                    tracing::debug!(%channel, center_id = %raw, "Repeated receipt for a final message.");
                }
                other => {
                    metrics::counter!(m::RECEIPTS_UNMATCHED, m::LABEL_CHANNEL => channel.to_owned())
                        .increment(1);
                    tracing::debug!(%channel, center_id = %raw, ?other, "Receipt not applied.");
                }
            }
        }
        if ended > 0 {
            self.wake_outbox();
        }
        if kept_mo > 0 {
            self.mo_wake.notify_one();
            self.smpp_wake.notify_waiters();
        }
    }

    /// Routes an MO: its event, and the account whose MO outbox keeps it (one with a
    /// `mo_url`; `None`: not stored).
    fn mo_event(
        &self,
        from: String,
        to: String,
        text: String,
        at: SystemTime,
    ) -> (MoEvent, Option<String>) {
        metrics::counter!(m::MO_RECEIVED).increment(1);
        let account = self.mo_router.route(&to);
        let keep = account
            .filter(|a| a.mo_url.is_some() || a.smpp)
            .map(|a| a.name.clone());
        let event = MoEvent {
            account: account.map(|a| a.name.clone()),
            from,
            to,
            text,
            received_at: crate::clock::rfc3339(ms(at)).into(),
        };
        (event, keep)
    }
}

/// Counts a final state in `sluice_receipts_total` and its DLR latency, in the metrics and
/// in the channel's status (the operators' receipt latency): the one place that counter
/// moves. Called only by this layer, with what the store answered when a receipt made the
/// message final — `Op::Receipt`, or the `Op::Submitted` that applied a held receipt (see
/// [`applied`]), both `ReceiptApplied { ended_in_ms: Some(_) }` — never for a repeated
/// receipt (`Stale`), so each message counts once however many parts it has, and without
/// reading the message back. Its metric handles are registered once per channel task:
/// looking them up by name and label for every receipt was a third of this layer's time.
struct FinalCounts {
    status: Arc<ChannelStatus>,
    latency: metrics::Histogram,
    by_state: Vec<(MessageState, metrics::Counter)>,
}

impl FinalCounts {
    fn new(status: Arc<ChannelStatus>) -> Self {
        Self {
            status,
            latency: metrics::histogram!(m::DLR_LATENCY),
            by_state: MessageState::FINAL
                .into_iter()
                .map(|s| {
                    (
                        s,
                        metrics::counter!(m::RECEIPTS, m::LABEL_STATE => s.as_str()),
                    )
                })
                .collect(),
        }
    }

    fn count(&self, state: MessageState, latency_ms: u64) {
        match self.by_state.iter().find(|(s, _)| *s == state) {
            Some((_, c)) => c.increment(1),
            None => metrics::counter!(m::RECEIPTS, m::LABEL_STATE => state.as_str()).increment(1),
        }
        self.latency.record(latency_ms as f64 / 1000.0);
        self.status.record_receipt_latency(latency_ms);
    }
}

/// Every report already queued.
fn drain(applied: &mut mpsc::UnboundedReceiver<Vec<AppliedReceipt>>) -> Vec<AppliedReceipt> {
    let mut all = Vec::new();
    while let Ok(more) = applied.try_recv() {
        all.extend(more);
    }
    all
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
