//! Lane dispatch: per channel, lease ready messages from the store by priority lane and feed
//! the channel worker through a bounded queue; write the worker's outcomes back.
//!
//! # Lanes and fairness
//! Three lanes: `otp`, `notification`, `marketing`. [`LaneScheduler`] runs deficit round
//! robin over the lanes that have work, visiting them in that order, with weights
//! (default [`LaneWeights::default`]: otp 8, notification 3, marketing 1). While every lane is
//! backlogged, otp gets 8 of every 12 messages, notification 3 and marketing 1 — so otp
//! always goes first and gets most of the channel, and marketing is slowed but never starved.
//! A lane without work gives up its turn (and its deficit), so a lone lane gets the whole
//! channel.
//!
//! # Backpressure and waiting
//! The queue to the worker is bounded by the channel's window × binds
//! ([`crate::channel::worker::Limits::capacity`]); dispatch takes a slot
//! (`Sender::reserve`) *before* it leases, so nothing is leased that cannot be handed on, and
//! leases are taken in small batches per lane. When no lane has due work, dispatch sleeps until
//! the earliest due time in the store (`next_due`), the channel's next allowed window, or a
//! [`Notify`] from ingress or from the outcome writer after a requeue — no polling. A lane
//! whose lease came back empty is "dry"; while other lanes keep the channel busy, the dry
//! lanes are leased again once the earliest due time among them passes, so a retry or a
//! scheduled message in a high-priority lane never waits behind another lane's backlog. While the channel has no bind up, it does not lease at
//! all (messages would only sit in memory with their lease running), and it marks the channel
//! down in the shared [`ChannelHealth`] for route failover, up again when a bind returns.
//!
//! # Lease prefetch
//! A lane's next lease is requested while its current batch is still being handed to the
//! worker: once a hand-on leaves the lane's buffer at half a batch or less, one lease for
//! that lane is started in the background ([`LeaseAhead`]), and the buffer takes its messages
//! when it runs empty, so the worker does not wait on a store commit between batches.
//! Bounded: at most one lease ahead per lane, only for a lane that is not dry, and only
//! after a message went to the worker (a stalled worker stops the prefetching), so a lane
//! holds at most one batch and a half in memory. Everything that gives buffers back (a
//! stop, a pause, a closed window, shutdown) first waits for the lease ahead and gives its
//! messages back too. A buffered message whose lease ran out is dropped, not sent: the
//! store's recovery requeues it, and sending it could send it twice.
//! `sluice_dispatch_lease_wait_seconds` is the time dispatch waited on a lease with nothing
//! left for the lane (near zero while prefetch keeps up).
//!
//! # Time windows
//! The channel's windows and quiet hours ([`WindowRules`]) gate leasing; a message's own
//! `window` is checked after leasing and, when closed, the message is requeued at the window's
//! next opening with `Op::Release`, which does not count an attempt (ingress normally sets
//! `due_ms` inside the window already, so this is the rare case of a window configured after
//! insert). Every hand-back of a message that was never sent (buffers at shutdown or when the
//! channel window closes, the worker's `Outcome::Release`) is a release: only real send
//! failures use up the retry budget.
//!
//! # Emergency stops and pauses
//! The store's lease ends every message matching an active stop as `cancelled` instead of
//! handing it out. What dispatch already leased before a stop sits in its lane buffers: when
//! [`Store::stop_epoch`] changes (one atomic load per message handed on) it gives every
//! buffered message back with `Op::Release`, which the store cancels if a stop matches, and
//! leases again. While the channel's pause switch ([`DispatchLinks::paused`]) is on, it leases
//! nothing and gives its buffers back, as when no bind is up, but without marking the channel
//! down for route failover: the messages stay queued for this channel.
//!
//! # MMS content
//! An MMS record holds only its content's digest. [`outbound`] loads the body from the
//! store's content files through a [`ContentCache`] (bounded, default
//! [`ContentCache::DEFAULT_BYTES`]), so every recipient in flight shares one
//! `Arc<MmsContent>` and one copy of the bytes. A missing file (it should never happen: the
//! content is durable before the message commits) fails the message for good with `UNDELIV`
//! and counts `sluice_mms_content_missing_total`.
//!
//! # Outcomes
//! Outcomes waiting in the queue are written together, in one store commit (up to 1024),
//! with up to eight such commits waiting on the store at once ([`OUTCOME_COMMITS_IN_FLIGHT`]).
//! `Sent` → `Op::Submitted` per part with the center id normalised by
//! [`crate::channel::normalise_center_id`] (the receipt layer must use the same function on
//! DLR ids); `Retry` → `Op::Requeue` at now + backoff; `Release` → `Op::Release` due now;
//! `Failed` → `Op::Finish` (`rejected`
//! for `REJECTD`, `undeliverable` for `UNDELIV`).

use compact_str::CompactString;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::FuturesOrdered;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use metrics::{counter, gauge, histogram};
use sluice_protocols::smpp::IdFormat;
use sluice_protocols::sms::Encoding;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::channel::egress::{Content, MmsContent, OutboundMessage, Outcome, Settled};
use crate::channel::normalise_center_id;
use crate::clock::{Clock, from_ms, to_ms};
use crate::metrics::{
    CANCELLED, CHANNEL_QUEUE_DEPTH, DISPATCH_LEASE_WAIT, DISPATCH_LEASED, MMS_CONTENT_MISSING,
};
use crate::receipt::applied::{AppliedReceipt, AppliedSink};
use crate::route::ChannelHealth;
use crate::schedule::{WindowRules, next_allowed, parse_windows};
use crate::store::{
    EncodingHint, GatewayStore, Lane, Leased, Message, MessageId, MessageState, MessageStore, Op,
    OpResult, Payload, StoreError,
};

/// Most worker outcomes written in one store commit.
const MAX_OUTCOMES_PER_COMMIT: usize = 1024;

/// Outcome commits one channel may have waiting on the store at once. With one, outcomes
/// that arrive while a commit runs wait for it to end and then for a commit of their own —
/// two writer cycles; with more they join the writer's next group. Sooner-written submit
/// responses give the worker's credits back sooner and meet fewer receipts that overtook
/// them. Receipts held at full speed: 57 % with one, 38 % with two (BENCHMARKS.md, "The
/// store writer is saturated"); with the redo log and submit responses first in a group,
/// 32 % with two, 19 % with four, 10 % with eight (BENCHMARKS.md, "The redo log"). Each
/// batch still gives its credits back only after its own commit, so the bound on what a
/// crash sends again is unchanged.
const OUTCOME_COMMITS_IN_FLIGHT: usize = 8;

/// Relative share of each lane while all are backlogged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneWeights {
    /// One-time passwords.
    pub otp: u32,
    /// Transactional notifications.
    pub notification: u32,
    /// Marketing.
    pub marketing: u32,
}

impl Default for LaneWeights {
    /// otp 8 : notification 3 : marketing 1.
    fn default() -> Self {
        Self {
            otp: 8,
            notification: 3,
            marketing: 1,
        }
    }
}

impl LaneWeights {
    fn get(self, lane: Lane) -> u32 {
        match lane {
            Lane::Otp => self.otp,
            Lane::Notification => self.notification,
            Lane::Marketing => self.marketing,
        }
        .max(1)
    }
}

fn index(lane: Lane) -> usize {
    usize::from(lane.as_byte())
}

/// Deficit round robin over the three lanes (pure; see the module doc).
#[derive(Debug, Clone)]
pub struct LaneScheduler {
    weights: LaneWeights,
    deficit: [u32; 3],
    cursor: usize,
}

impl LaneScheduler {
    /// A scheduler starting a round at the otp lane.
    #[must_use]
    pub fn new(weights: LaneWeights) -> Self {
        Self {
            weights,
            deficit: [weights.get(Lane::Otp), 0, 0],
            cursor: 0,
        }
    }

    /// The lane to take the next message from, among those for which `has_work` is true;
    /// `None` when no lane has work.
    pub fn pick(&mut self, has_work: impl Fn(Lane) -> bool) -> Option<Lane> {
        if !Lane::ALL.iter().any(|l| has_work(*l)) {
            return None;
        }
        loop {
            let lane = Lane::ALL[self.cursor];
            if has_work(lane) {
                if self.deficit[self.cursor] > 0 {
                    self.deficit[self.cursor] -= 1;
                    return Some(lane);
                }
            } else {
                self.deficit[self.cursor] = 0;
            }
            self.cursor = (self.cursor + 1) % Lane::ALL.len();
            let next = Lane::ALL[self.cursor];
            if has_work(next) {
                self.deficit[self.cursor] += self.weights.get(next);
            }
        }
    }

    /// Gives back the turn of a pick that found no message after all.
    pub fn refund(&mut self, lane: Lane) {
        self.deficit[index(lane)] += 1;
    }
}

/// Per-channel dispatch settings.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Channel name (the store's ready-queue key).
    pub channel: String,
    /// Lease length: longer than a message can spend in the worker (queue + retries).
    pub lease: Duration,
    /// Messages leased per store round trip and lane.
    pub batch: usize,
    /// Lane weights.
    pub weights: LaneWeights,
    /// Time zone of windows.
    pub tz: TimeZone,
    /// The channel's windows and quiet hours.
    pub windows: WindowRules,
    /// How the center writes ids in submit_sm_resp (for normalisation).
    pub id_format: IdFormat,
    /// How often to end expired waiting messages through the store's expiry index
    /// ([`Store::sweep_expired`]), also while the channel is down or its window closed.
    pub sweep_every: Duration,
}

impl DispatchConfig {
    /// Defaults: 5 min lease, batches of 256 (one store commit leases a batch, so the batch
    /// bounds how many commits dispatch needs per second), default weights, Asia/Shanghai,
    /// no windows.
    #[must_use]
    pub fn new(channel: &str) -> Self {
        Self {
            channel: channel.to_owned(),
            lease: Duration::from_secs(300),
            batch: 256,
            weights: LaneWeights::default(),
            tz: TimeZone::get("Asia/Shanghai").unwrap_or(TimeZone::UTC),
            windows: WindowRules::default(),
            id_format: IdFormat::Auto,
            sweep_every: Duration::from_secs(30),
        }
    }
}

/// The wiring of one dispatcher.
#[derive(Debug)]
pub struct DispatchLinks {
    /// Bounded queue to the channel worker.
    pub to_worker: mpsc::Sender<OutboundMessage>,
    /// Outcomes from the worker (each dropped only after its store commit, which returns
    /// the worker's credit).
    pub outcomes: mpsc::Receiver<Settled>,
    /// Binds up in the channel (from the worker handle).
    pub binds_up: watch::Receiver<usize>,
    /// Shared route health, marked down/up as the channel loses/regains its binds.
    pub health: Arc<Mutex<ChannelHealth>>,
    /// Ingress (or anyone) notifies after inserting messages for this channel.
    pub wake: Arc<Notify>,
    /// `true` = stop leasing, finish outcomes, return.
    pub shutdown: watch::Receiver<bool>,
    /// The channel's pause switch: `true` = lease nothing until it turns off.
    pub paused: watch::Receiver<bool>,
}

/// Errors that stop a dispatcher.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The outcome writer task panicked or was cancelled.
    #[error("outcome writer: {0}")]
    Writer(String),
    /// A lease requested ahead panicked or was cancelled.
    #[error("lease ahead: {0}")]
    LeaseAhead(String),
}

/// Counters a dispatcher keeps (for tests and status output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchStats {
    /// Messages handed to the worker.
    pub dispatched: u64,
    /// Messages that expired while leasing or were ended by the expiry sweep.
    pub expired: u64,
    /// Messages a lease ended as `cancelled` (an emergency stop matched them).
    pub cancelled: u64,
    /// Outcomes written back.
    pub outcomes: u64,
}

/// One channel's dispatcher.
#[derive(Debug)]
pub struct Dispatcher<C: Clock> {
    config: DispatchConfig,
    store: GatewayStore,
    clock: C,
    lanes: LaneScheduler,
    buffers: [VecDeque<Message>; 3],
    /// Lanes whose last lease came back empty: no work until woken.
    dry: [bool; 3],
    /// The earliest due time in the store over the dry lanes, taken when a lane went dry:
    /// once the clock passes it, the dry flags are cleared even while other lanes keep the
    /// channel busy (a retry or scheduled otp message must not wait for the marketing
    /// backlog to drain).
    recheck_at: Option<Timestamp>,
    /// The channel's window is closed until then.
    closed_until: Option<Timestamp>,
    /// When to run the next expiry sweep.
    next_sweep: Timestamp,
    /// The store's stop epoch when the buffers were last known to be free of stopped messages.
    stop_epoch: u64,
    metrics: DispatchMetrics,
    stats: DispatchStats,
    /// MMS bodies in flight, by digest.
    content: Arc<ContentCache>,
    /// Where the held receipts applied by this channel's submit responses are reported (the
    /// receipt layer settles and counts them).
    applied: Option<AppliedSink>,
    /// Leases requested ahead, one at most per lane.
    ahead: LeaseAhead,
}

impl<C: Clock + Clone> Dispatcher<C> {
    /// Shares `cache` (e.g. one for every channel of a gateway) instead of this
    /// dispatcher's own.
    #[must_use]
    pub fn with_content_cache(mut self, cache: Arc<ContentCache>) -> Self {
        self.content = cache;
        self
    }

    /// Reports the held receipts this channel's submit responses apply to the receipt layer
    /// ([`crate::receipt::Receipts::applied_sink`]), which settles them, counts the messages
    /// they ended and wakes the outbox. Without it those messages' receipts still reach the
    /// outbox (the store queued them) but are neither counted nor pushed at once.
    #[must_use]
    pub fn with_applied_sink(mut self, sink: AppliedSink) -> Self {
        self.applied = Some(sink);
        self
    }

    /// A dispatcher for `config.channel` on `store`.
    #[must_use]
    pub fn new(config: DispatchConfig, store: impl Into<GatewayStore>, clock: C) -> Self {
        let next_sweep = clock.now();
        Self {
            metrics: DispatchMetrics::new(&config.channel),
            lanes: LaneScheduler::new(config.weights),
            config,
            store: store.into(),
            clock,
            buffers: Default::default(),
            dry: [false; 3],
            recheck_at: None,
            closed_until: None,
            next_sweep,
            stop_epoch: 0,
            stats: DispatchStats::default(),
            content: Arc::new(ContentCache::new(ContentCache::DEFAULT_BYTES)),
            applied: None,
            ahead: LeaseAhead::default(),
        }
    }

    /// Runs until shutdown and until the worker's outcome queue closes.
    ///
    /// Outcomes are written by a second task, so store commits for outcomes and for leases
    /// overlap (the store's writer groups them into the same fsync) instead of taking turns.
    ///
    /// # Errors
    /// [`DispatchError::Store`] when the store fails (the channel stops; leases expire and
    /// recovery re-queues the messages).
    pub async fn run(mut self, mut links: DispatchLinks) -> Result<DispatchStats, DispatchError> {
        let mut to_worker = Some(links.to_worker.clone());
        drop(links.to_worker);
        let mut writer = tokio::spawn(
            OutcomeWriter {
                store: self.store.clone(),
                clock: self.clock.clone(),
                id_format: self.config.id_format,
                wake: Arc::clone(&links.wake),
                applied: self.applied.clone(),
            }
            .run(links.outcomes),
        );
        let mut was_up: Option<bool> = None;
        let mut stopping = false;
        // A dropped pause sender leaves the switch where it was; stop watching it then, or
        // `changed()` would wake the loop forever.
        let mut pause_alive = true;
        loop {
            stopping |= *links.shutdown.borrow();
            if stopping {
                self.give_back_buffers(self.clock.now_ms()).await?;
                // Dropping the sender lets the worker drain and close its outcome queue,
                // which ends the writer.
                drop(to_worker.take());
                break;
            }
            let up = *links.binds_up.borrow() > 0;
            if was_up != Some(up) {
                self.mark_health(&links.health, up);
                was_up = Some(up);
            }
            if self.next_sweep <= self.clock.now() {
                self.sweep_expired().await?;
            }
            let paused = *links.paused.borrow();
            // Paused or no bind up: nothing may sit leased here (and a lease ahead started
            // just before the binds dropped must not hold its batch through the outage).
            if (paused || !up) && (self.buffers.iter().any(|b| !b.is_empty()) || self.ahead.any()) {
                self.give_back_buffers(self.clock.now_ms()).await?;
            }
            if self.recheck_at.is_some_and(|t| t <= self.clock.now()) {
                // Checked here rather than by a timer branch: while the worker keeps taking
                // messages the (biased) select never gets to a timer.
                self.wake_all();
            }
            let sending = up && !paused;
            let has_work = sending && self.has_work();
            let wake_at = if has_work { None } else { self.wake_time()? };
            tokio::select! {
                biased;
                written = &mut writer => {
                    // The writer only ends early when the store failed or the worker is gone.
                    self.stats.outcomes = flatten(written)?;
                    info!(channel = %self.config.channel, "Worker gone; dispatch stops.");
                    self.give_back_buffers(self.clock.now_ms()).await?;
                    return Ok(self.stats);
                }
                permit = async {
                    match &to_worker {
                        Some(tx) => tx.reserve().await,
                        None => std::future::pending().await,
                    }
                }, if has_work => {
                    let Ok(permit) = permit else {
                        // The worker is gone: stop leasing.
                        stopping = true;
                        continue;
                    };
                    if let Some(m) = self.next_message().await? {
                        permit.send(m);
                        self.stats.dispatched += 1;
                    }
                    if let Some(tx) = &to_worker {
                        self.metrics.worker_depth.set((tx.max_capacity() - tx.capacity()) as f64);
                    }
                }
                () = async {
                    match wake_at {
                        Some(t) => self.clock.sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                }, if !has_work && sending => self.wake_all(),
                () = links.wake.notified() => self.wake_all(),
                // Only wakes the loop: the sweep itself runs at the top of the next turn.
                () = self.clock.sleep_until(self.next_sweep) => {}
                _ = links.binds_up.changed() => {}
                changed = links.paused.changed(), if pause_alive => {
                    pause_alive = changed.is_ok();
                    self.wake_all();
                }
                _ = links.shutdown.changed() => {}
            }
        }
        self.stats.outcomes = flatten(writer.await)?;
        info!(channel = %self.config.channel, dispatched = self.stats.dispatched, "Dispatch stopped.");
        Ok(self.stats)
    }

    fn mark_health(&self, health: &Mutex<ChannelHealth>, up: bool) {
        let mut h = health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if up {
            h.mark_up(&self.config.channel);
        } else {
            h.mark_down(&self.config.channel, self.clock.now());
        }
    }

    /// Ends expired waiting messages of every channel (the store's expiry index), so their
    /// EXPIRED receipts do not wait for a lease that a down channel or a closed window
    /// would not take. A full batch schedules the next step at once.
    async fn sweep_expired(&mut self) -> Result<(), DispatchError> {
        const SWEEP_BATCH: usize = 1024;
        let now = self.clock.now();
        let n = self.store.sweep_expired(to_ms(now), SWEEP_BATCH).await?;
        self.stats.expired += n as u64;
        self.next_sweep = if n >= SWEEP_BATCH {
            now
        } else {
            now.checked_add(self.config.sweep_every)
                .unwrap_or(Timestamp::MAX)
        };
        if n > 0 {
            debug!(channel = %self.config.channel, expired = n, "Expired messages ended by the sweep.");
        }
        Ok(())
    }

    /// Every lane may have work again: lease each once more to find out.
    fn wake_all(&mut self) {
        self.dry = [false; 3];
        self.recheck_at = None;
    }

    /// The earliest due time in the store over the dry lanes (`None` when none is dry or
    /// their queues are empty).
    fn dry_lanes_due(&self) -> Result<Option<Timestamp>, DispatchError> {
        let mut earliest: Option<u64> = None;
        for lane in Lane::ALL {
            if !self.dry[index(lane)] {
                continue;
            }
            if let Some(due) = self.store.next_due(&self.config.channel, lane)? {
                earliest = Some(earliest.map_or(due, |e| e.min(due)));
            }
        }
        Ok(earliest.map(from_ms))
    }

    fn has_work(&self) -> bool {
        if self.closed_until.is_some_and(|t| t > self.clock.now()) {
            return false;
        }
        Lane::ALL
            .iter()
            .any(|l| !self.buffers[index(*l)].is_empty() || !self.dry[index(*l)])
    }

    /// When to look again while every lane is dry: the earliest due time in the store, but
    /// not before the channel's window opens.
    fn wake_time(&self) -> Result<Option<Timestamp>, DispatchError> {
        let mut earliest: Option<u64> = None;
        for lane in Lane::ALL {
            if let Some(due) = self.store.next_due(&self.config.channel, lane)? {
                earliest = Some(earliest.map_or(due, |e| e.min(due)));
            }
        }
        let Some(due) = earliest else {
            return Ok(None);
        };
        let due = from_ms(due)
            .max(self.clock.now())
            .max(self.closed_until.unwrap_or(Timestamp::MIN));
        Ok(Some(
            next_allowed(due, &self.config.tz, &self.config.windows).unwrap_or(due),
        ))
    }

    /// The next message by lane fairness, leasing a batch when the lane's buffer is empty.
    async fn next_message(&mut self) -> Result<Option<OutboundMessage>, DispatchError> {
        loop {
            let epoch = self.store.stop_epoch();
            if epoch != self.stop_epoch {
                // A stop was recorded: what was leased before it goes back through the store,
                // which cancels the matches; the rest is leased again.
                self.stop_epoch = epoch;
                self.give_back_buffers(self.clock.now_ms()).await?;
                self.wake_all();
            }
            let now = self.clock.now();
            let open = next_allowed(now, &self.config.tz, &self.config.windows);
            if open != Some(now) {
                // Outside the channel's windows: nothing may be sent now. Messages already
                // leased go back to their queues at the opening rather than sit here with
                // their lease running out (an expired lease would be leased twice).
                self.dry = [true; 3];
                self.closed_until = Some(open.unwrap_or(Timestamp::MAX));
                let due_ms = open.map_or(u64::MAX, to_ms);
                self.give_back_buffers(due_ms).await?;
                return Ok(None);
            }
            self.closed_until = None;
            let (buffers, dry) = (&self.buffers, &self.dry);
            let Some(lane) = self
                .lanes
                .pick(|l| !buffers[index(l)].is_empty() || !dry[index(l)])
            else {
                return Ok(None);
            };
            let i = index(lane);
            if self.buffers[i].is_empty() {
                let waited = std::time::Instant::now();
                let leased = match self.ahead.take(lane) {
                    Some(ahead) => join_lease(ahead).await?,
                    None => self.lease(lane, to_ms(now)).await?,
                };
                self.metrics
                    .lease_wait
                    .record(waited.elapsed().as_secs_f64());
                if !self.absorb(lane, leased)? {
                    self.lanes.refund(lane);
                    continue;
                }
            }
            let Some(message) = self.buffers[i].pop_front() else {
                continue;
            };
            self.metrics.lane_depth[i].set(self.buffers[i].len() as f64);
            if message
                .lease_until_ms
                .is_some_and(|until| until <= to_ms(now))
            {
                // Held past its lease (the worker stalled): the store's recovery requeues it,
                // and it may already be leased again, so it is not sent from here.
                warn!(id = %message.id, "Buffered message outlived its lease; left to recovery.");
                continue;
            }
            // A lane that took more than a quarter of the lease to hand on what it has so
            // far gets no lease ahead: the next batch would wait in the buffer until its
            // lease ran out, and a message past its lease may be leased and sent again.
            let quick = message
                .lease_until_ms
                .is_none_or(|until| until.saturating_sub(to_ms(now)) >= self.lease_ms() / 4 * 3);
            if quick {
                self.prefetch(lane, to_ms(now));
            }
            if let Some(window) = &message.window
                && let Ok(rules) = parse_windows(std::slice::from_ref(window))
            {
                let rules = WindowRules {
                    allowed: vec![rules],
                    quiet: Vec::new(),
                };
                if let Some(open) = next_allowed(now, &self.config.tz, &rules)
                    && open > now
                {
                    debug!(id = %message.id, "Message window closed; requeued at its opening.");
                    self.store
                        .submit(vec![Op::Release {
                            id: message.id,
                            due_ms: to_ms(open),
                        }])
                        .await?;
                    continue;
                }
            }
            let id = message.id;
            match outbound(message, &*self.store, &self.content) {
                Ok(m) => return Ok(Some(m)),
                Err(ContentUnavailable::Store(e)) => return Err(e.into()),
                Err(ContentUnavailable::Missing(digest)) => {
                    warn!(%id, digest = %crate::store::content::digest_hex(&digest),
                        "MMS content file missing; message failed.");
                    counter!(MMS_CONTENT_MISSING, "channel" => self.config.channel.clone())
                        .increment(1);
                    self.store
                        .submit(vec![Op::Finish {
                            id,
                            state: MessageState::Undeliverable,
                            stat: "UNDELIV".into(),
                            err: "content missing".into(),
                            now_ms: self.clock.now_ms(),
                        }])
                        .await?;
                }
            }
        }
    }

    /// One lease of up to a batch for `lane`, now.
    async fn lease(&self, lane: Lane, now_ms: u64) -> Result<Leased, DispatchError> {
        Ok(self
            .store
            .lease(
                &self.config.channel,
                lane,
                now_ms,
                self.config.batch.max(1),
                self.lease_ms(),
            )
            .await?)
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.config.lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// Starts the lease ahead for `lane` when [`LeaseAhead::wants`] says so.
    fn prefetch(&mut self, lane: Lane, now_ms: u64) {
        let i = index(lane);
        if !self
            .ahead
            .wants(lane, self.buffers[i].len(), self.dry[i], self.config.batch)
        {
            return;
        }
        let store = self.store.clone();
        let channel = self.config.channel.clone();
        let (limit, lease_ms) = (self.config.batch.max(1), self.lease_ms());
        self.ahead.start(
            lane,
            tokio::spawn(async move { store.lease(&channel, lane, now_ms, limit, lease_ms).await }),
        );
    }

    /// Takes a lease's answer into `lane`'s buffer and the counters; `false` when it brought
    /// no message (the lane is dry until woken or its next due time).
    fn absorb(&mut self, lane: Lane, leased: Leased) -> Result<bool, DispatchError> {
        let i = index(lane);
        self.stats.expired += leased.expired.len() as u64;
        self.stats.cancelled += leased.cancelled.len() as u64;
        if !leased.cancelled.is_empty() {
            counter!(CANCELLED).increment(leased.cancelled.len() as u64);
        }
        self.metrics.leased[i].increment(leased.messages.len() as u64);
        if leased.messages.is_empty() {
            self.dry[i] = true;
            self.recheck_at = self.dry_lanes_due()?;
            return Ok(false);
        }
        self.buffers[i].extend(leased.messages);
        Ok(true)
    }

    /// Leased-but-not-dispatched messages go back to their queues, due at `due_ms` (on
    /// shutdown: now; when the channel window closes: its next opening). Leases still
    /// running ahead are waited for and given back with them.
    async fn give_back_buffers(&mut self, due_ms: u64) -> Result<(), DispatchError> {
        // A lease ahead that failed must not keep the other lanes' buffers from going back:
        // its error is returned after them (what it may have leased comes back at lease
        // expiry; what the buffers hold would wait for it too if this returned early).
        let mut failed = None;
        for lane in Lane::ALL {
            if let Some(ahead) = self.ahead.take(lane) {
                let absorbed = match join_lease(ahead).await {
                    Ok(leased) => self.absorb(lane, leased).map(drop),
                    Err(e) => Err(e),
                };
                if let Err(e) = absorbed {
                    failed.get_or_insert(e);
                }
            }
        }
        let ops: Vec<Op> = self
            .buffers
            .iter_mut()
            .flat_map(|b| b.drain(..))
            .map(|m| Op::Release { id: m.id, due_ms })
            .collect();
        if !ops.is_empty() {
            let results = self.store.submit(ops).await?;
            self.stats.cancelled += count_cancelled(&results);
        }
        failed.map_or(Ok(()), Err)
    }
}

/// Leases requested ahead of need, at most one per lane (see "Lease prefetch" in the module
/// doc): the bound lives here, in one place.
#[derive(Debug, Default)]
struct LeaseAhead {
    running: [Option<tokio::task::JoinHandle<Result<Leased, StoreError>>>; 3],
}

impl LeaseAhead {
    /// Whether to lease ahead for `lane`, whose buffer holds `buffered` messages after a
    /// hand-on: none running for it yet, the lane not dry, and the buffer at half a `batch`
    /// or less.
    fn wants(&self, lane: Lane, buffered: usize, dry: bool, batch: usize) -> bool {
        self.running[index(lane)].is_none() && !dry && buffered <= batch.max(1) / 2
    }

    /// Records the lease started for `lane`.
    ///
    /// # Panics
    /// Never in release builds; a debug assertion checks that none was running.
    fn start(&mut self, lane: Lane, lease: tokio::task::JoinHandle<Result<Leased, StoreError>>) {
        debug_assert!(self.running[index(lane)].is_none(), "one lease ahead");
        self.running[index(lane)] = Some(lease);
    }

    /// Whether a lease is running ahead for any lane.
    fn any(&self) -> bool {
        self.running.iter().any(Option::is_some)
    }

    /// The lease running ahead for `lane`, if any.
    fn take(&mut self, lane: Lane) -> Option<tokio::task::JoinHandle<Result<Leased, StoreError>>> {
        self.running[index(lane)].take()
    }
}

async fn join_lease(
    lease: tokio::task::JoinHandle<Result<Leased, StoreError>>,
) -> Result<Leased, DispatchError> {
    lease
        .await
        .map_err(|e| DispatchError::LeaseAhead(e.to_string()))?
        .map_err(DispatchError::from)
}

/// How many of `results` ended a message as `cancelled` (a release or requeue that met an
/// active stop), counted in the metric too.
fn count_cancelled(results: &[OpResult]) -> u64 {
    let n = results
        .iter()
        .filter(|r| matches!(r, OpResult::Updated(MessageState::Cancelled)))
        .count() as u64;
    if n > 0 {
        counter!(CANCELLED).increment(n);
    }
    n
}

/// Writes the worker's outcomes to the store, batching what is waiting into one commit.
struct OutcomeWriter<C: Clock> {
    store: GatewayStore,
    clock: C,
    id_format: IdFormat,
    /// The dispatcher's wake: a requeue or release puts a message back in a ready queue the
    /// dispatcher may have marked dry, so it must look again.
    wake: Arc<Notify>,
    /// Where held receipts applied by the submit responses written here are reported.
    applied: Option<AppliedSink>,
}

impl<C: Clock> OutcomeWriter<C> {
    /// Until the worker closes the queue; returns how many outcomes were written.
    async fn run(self, mut outcomes: mpsc::Receiver<Settled>) -> Result<u64, DispatchError> {
        let mut written = 0u64;
        let mut writing = FuturesOrdered::new();
        let mut open = true;
        while open || !writing.is_empty() {
            tokio::select! {
                // A finished commit first: it gives credits back to the worker.
                biased;
                Some(done) = writing.next(), if !writing.is_empty() => done?,
                o = outcomes.recv(), if open && writing.len() < OUTCOME_COMMITS_IN_FLIGHT => {
                    let Some(o) = o else {
                        open = false;
                        continue;
                    };
                    // One store commit for every outcome already waiting: a commit per
                    // message would cap the channel at the disk's fsync rate.
                    let mut batch = vec![o];
                    while batch.len() < MAX_OUTCOMES_PER_COMMIT {
                        match outcomes.try_recv() {
                            Ok(o) => batch.push(o),
                            Err(_) => break,
                        }
                    }
                    written += batch.len() as u64;
                    writing.push_back(self.apply(batch));
                }
            }
        }
        Ok(written)
    }

    /// Writes a batch of worker outcomes to the store in one commit.
    async fn apply(&self, mut settled: Vec<Settled>) -> Result<(), DispatchError> {
        let mut ops = Vec::with_capacity(settled.len());
        // Which outcome each op came from: a submit response's answer that it applied a held
        // receipt names the receipt by its center id, read again from the outcome for those
        // (rare) answers instead of copied for every op.
        let mut from = Vec::with_capacity(settled.len());
        for (i, s) in settled.iter().enumerate() {
            self.ops_for(&s.outcome, &mut ops);
            from.resize(ops.len(), i);
        }
        let requeued = ops
            .iter()
            .any(|op| matches!(op, Op::Requeue { .. } | Op::Release { .. }));
        let submitted: Vec<Option<(MessageId, u16)>> = ops
            .iter()
            .map(|op| match op {
                Op::Submitted { id, part, .. } => Some((*id, *part)),
                _ => None,
            })
            .collect();
        let mut center_ids = None;
        // The worker's credits come back once the outcomes are durable: with the redo log,
        // when the log has them on disk, before the writer's turn to apply them.
        let (durable, on_disk) = oneshot::channel();
        let submit = self.store.submit_durable(ops, durable);
        tokio::pin!(submit);
        let results = tokio::select! {
            biased;
            r = &mut submit => r?,
            Ok(()) = on_disk => {
                // The credits go back now; what a held receipt's report needs is kept.
                center_ids = Some(sent_center_ids(&mut settled));
                settled.clear();
                submit.await?
            }
        };
        let center_ids = center_ids.unwrap_or_else(|| sent_center_ids(&mut settled));
        count_cancelled(&results);
        // A submit response that applied a receipt held for it (the receipt came first): the
        // store's answer says so, and the receipt layer hears it from here, once.
        let applied: Vec<AppliedReceipt> = submitted
            .into_iter()
            .zip(&results)
            .zip(from)
            .filter_map(|((sub, r), i)| match (sub, r) {
                (Some((id, part)), OpResult::ReceiptApplied { state, ended_in_ms }) => {
                    let raw = center_ids.get(i)?.get(usize::from(part).checked_sub(1)?)?;
                    Some(AppliedReceipt {
                        center_key: normalise_center_id(raw, self.id_format),
                        id,
                        state: *state,
                        ended_in_ms: *ended_in_ms,
                    })
                }
                _ => None,
            })
            .collect();
        if let Some(sink) = &self.applied {
            sink.report(applied);
        }
        if requeued {
            self.wake.notify_one();
        }
        // Durable and applied: the credits come back now if not already.
        drop(settled);
        Ok(())
    }

    /// The store ops for one outcome, pushed onto `ops`.
    fn ops_for(&self, outcome: &Outcome, ops: &mut Vec<Op>) {
        let now_ms = self.clock.now_ms();
        let op = match outcome {
            Outcome::Sent { id, center_ids } => {
                let parts = u16::try_from(center_ids.len()).unwrap_or(u16::MAX);
                ops.extend(center_ids.iter().enumerate().map(|(i, raw)| Op::Submitted {
                    id: MessageId(*id),
                    part: u16::try_from(i + 1).unwrap_or(u16::MAX),
                    parts,
                    center_id: normalise_center_id(raw, self.id_format),
                    now_ms,
                }));
                return;
            }
            Outcome::Retry {
                id, after, reason, ..
            } => {
                debug!(id, %reason, ?after, "Message requeued for retry.");
                let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
                Op::Requeue {
                    id: MessageId(*id),
                    due_ms: now_ms.saturating_add(after_ms),
                }
            }
            Outcome::Release { id, reason } => {
                debug!(id, %reason, "Unsent message handed back.");
                Op::Release {
                    id: MessageId(*id),
                    due_ms: now_ms,
                }
            }
            Outcome::Failed {
                id,
                status,
                stat,
                reason,
            } => {
                warn!(id, status, %reason, "Message failed.");
                let state = if *stat == "REJECTD" {
                    MessageState::Rejected
                } else {
                    MessageState::Undeliverable
                };
                Op::Finish {
                    id: MessageId(*id),
                    state,
                    stat: (*stat).to_owned(),
                    err: format!("{:03X}", (*status).min(0xFFF)),
                    now_ms,
                }
            }
        };
        ops.push(op);
    }
}

/// The raw center ids of each outcome in `settled` (none but for a sent one), taken out of
/// them: a held receipt's report names its center id ([`OutcomeWriter::apply`]).
fn sent_center_ids(settled: &mut [Settled]) -> Vec<Vec<CompactString>> {
    settled
        .iter_mut()
        .map(|s| match &mut s.outcome {
            Outcome::Sent { center_ids, .. } => std::mem::take(center_ids),
            _ => Vec::new(),
        })
        .collect()
}

fn flatten(
    joined: Result<Result<u64, DispatchError>, tokio::task::JoinError>,
) -> Result<u64, DispatchError> {
    joined.map_err(|e| DispatchError::Writer(e.to_string()))?
}

/// Metric handles, registered once per dispatcher (not per message).
#[derive(Debug)]
struct DispatchMetrics {
    worker_depth: metrics::Gauge,
    lane_depth: [metrics::Gauge; 3],
    leased: [metrics::Counter; 3],
    lease_wait: metrics::Histogram,
}

impl DispatchMetrics {
    fn new(channel: &str) -> Self {
        let gauge = |lane: &'static str| gauge!(CHANNEL_QUEUE_DEPTH, "channel" => channel.to_owned(), "lane" => lane);
        let leased = |lane: Lane| counter!(DISPATCH_LEASED, "channel" => channel.to_owned(), "lane" => lane_name(lane));
        Self {
            worker_depth: gauge("worker"),
            lane_depth: Lane::ALL.map(|l| gauge(lane_name(l))),
            leased: Lane::ALL.map(leased),
            lease_wait: histogram!(DISPATCH_LEASE_WAIT, "channel" => channel.to_owned()),
        }
    }
}

fn lane_name(lane: Lane) -> &'static str {
    match lane {
        Lane::Otp => "otp",
        Lane::Notification => "notification",
        Lane::Marketing => "marketing",
    }
}

/// MMS bodies by digest, shared by every message in flight that carries them: one load from
/// the content store and one copy in memory per distinct content, however many recipients.
/// Bounded by bytes; the oldest entry goes first (a campaign's one content stays hot).
#[derive(Debug)]
pub struct ContentCache {
    max_bytes: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    map: std::collections::HashMap<[u8; 32], Arc<MmsContent>>,
    order: VecDeque<[u8; 32]>,
    bytes: usize,
}

/// Why an MMS's content could not be handed to its channel.
#[derive(Debug)]
pub enum ContentUnavailable {
    /// No content file under this digest.
    Missing([u8; 32]),
    /// Reading it failed.
    Store(StoreError),
}

impl ContentCache {
    /// 64 MiB: a couple of hundred distinct 300 KB contents in flight at once.
    pub const DEFAULT_BYTES: usize = 64 * 1024 * 1024;

    /// A cache holding at most `max_bytes` of bodies (one larger body is still served, not
    /// kept).
    #[must_use]
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// Distinct contents held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The content of an MMS record: from the cache, else loaded with `load` and kept. The
    /// body (and, for equal subject and type, the whole `Arc`) is shared.
    ///
    /// # Errors
    /// [`ContentUnavailable`].
    pub fn get(
        &self,
        subject: Option<&str>,
        content_type: &str,
        digest: &[u8; 32],
        load: impl FnOnce(&[u8; 32]) -> Result<Option<Vec<u8>>, StoreError>,
    ) -> Result<Arc<MmsContent>, ContentUnavailable> {
        let same =
            |c: &MmsContent| c.subject.as_deref() == subject && c.content_type == content_type;
        if let Some(c) = self.lock().map.get(digest) {
            if same(c) {
                return Ok(Arc::clone(c));
            }
            return Ok(Arc::new(MmsContent {
                subject: subject.map(str::to_owned),
                content_type: content_type.to_owned(),
                body: c.body.clone(),
                digest: *digest,
            }));
        }
        let body = load(digest)
            .map_err(ContentUnavailable::Store)?
            .ok_or(ContentUnavailable::Missing(*digest))?;
        let c = Arc::new(MmsContent {
            subject: subject.map(str::to_owned),
            content_type: content_type.to_owned(),
            body: bytes::Bytes::from(body),
            digest: *digest,
        });
        let size = c.body.len();
        if size <= self.max_bytes {
            let mut inner = self.lock();
            while inner.bytes + size > self.max_bytes {
                let Some(old) = inner.order.pop_front() else {
                    break;
                };
                if let Some(gone) = inner.map.remove(&old) {
                    inner.bytes -= gone.body.len();
                }
            }
            if inner.map.insert(*digest, Arc::clone(&c)).is_none() {
                inner.order.push_back(*digest);
                inner.bytes += size;
            }
        }
        Ok(c)
    }
}

/// The channel's view of a stored message; an MMS's content comes from `cache` (loaded from
/// `store`'s content files on a miss). Takes the message: its text and addresses move into
/// the view instead of being copied (three allocations a message on the send path).
///
/// # Errors
/// [`ContentUnavailable`] for an MMS whose content cannot be loaded.
pub fn outbound(
    m: Message,
    store: &dyn MessageStore,
    cache: &ContentCache,
) -> Result<OutboundMessage, ContentUnavailable> {
    let content = match m.payload {
        Payload::Mms {
            subject,
            content_type,
            digest,
            ..
        } => Content::Mms(cache.get(subject.as_deref(), &content_type, &digest, |d| {
            store.load_content(d)
        })?),
        Payload::Text { text, encoding } => Content::Text {
            text,
            hint: match encoding {
                EncodingHint::Auto | EncodingHint::Gbk => None,
                EncodingHint::Gsm7 => Some(Encoding::Gsm7),
                EncodingHint::Latin1 => Some(Encoding::Latin1),
                EncodingHint::Ucs2 => Some(Encoding::Ucs2),
            },
        },
        Payload::Binary { data, udh } => Content::Binary { data, udh },
    };
    Ok(OutboundMessage {
        id: m.id.0,
        attempt: m.attempts,
        from: m.from,
        to: m.to,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &mut LaneScheduler, backlog: [usize; 3], n: usize) -> [usize; 3] {
        let mut left = backlog;
        let mut served = [0; 3];
        for _ in 0..n {
            let Some(lane) = s.pick(|l| left[index(l)] > 0) else {
                break;
            };
            left[index(lane)] -= 1;
            served[index(lane)] += 1;
        }
        served
    }

    #[test]
    fn weighted_shares_when_all_backlogged() {
        let mut s = LaneScheduler::new(LaneWeights::default());
        let served = run(&mut s, [10_000; 3], 1200);
        assert_eq!(served, [800, 300, 100]);
    }

    #[test]
    fn otp_goes_first() {
        let mut s = LaneScheduler::new(LaneWeights::default());
        let order: Vec<Lane> = (0..12).map(|_| s.pick(|_| true).unwrap()).collect();
        assert_eq!(&order[..8], &[Lane::Otp; 8]);
        assert_eq!(&order[8..11], &[Lane::Notification; 3]);
        assert_eq!(order[11], Lane::Marketing);
    }

    #[test]
    fn marketing_is_never_starved() {
        let mut s = LaneScheduler::new(LaneWeights::default());
        let mut left = [usize::MAX, usize::MAX, 5];
        let mut last_marketing = 0;
        for i in 0..100 {
            let lane = s.pick(|l| left[index(l)] > 0).unwrap();
            left[index(lane)] = left[index(lane)].saturating_sub(1);
            if lane == Lane::Marketing {
                assert!(
                    i - last_marketing <= 12,
                    "gap {} at {i}",
                    i - last_marketing
                );
                last_marketing = i;
            }
        }
        assert_eq!(left[2], 0);
    }

    #[test]
    fn lone_lane_gets_everything() {
        let mut s = LaneScheduler::new(LaneWeights::default());
        assert_eq!(run(&mut s, [0, 0, 50], 100), [0, 0, 50]);
        assert_eq!(s.pick(|_| false), None);
        let mut s = LaneScheduler::new(LaneWeights::default());
        assert_eq!(run(&mut s, [3, 0, 50], 20), [3, 0, 17]);
    }

    #[test]
    fn idle_lane_does_not_bank_credit() {
        let mut s = LaneScheduler::new(LaneWeights::default());
        // Only marketing for a long time: otp builds no deficit meanwhile.
        run(&mut s, [0, 0, 1000], 500);
        // Then all three: the shares of one round are still 8:3:1.
        let served = run(&mut s, [10_000; 3], 120);
        assert_eq!(served, [80, 30, 10]);
    }

    #[test]
    fn refund_restores_the_turn() {
        let mut s = LaneScheduler::new(LaneWeights {
            otp: 2,
            notification: 1,
            marketing: 1,
        });
        assert_eq!(s.pick(|_| true), Some(Lane::Otp));
        s.refund(Lane::Otp);
        assert_eq!(s.pick(|_| true), Some(Lane::Otp));
        assert_eq!(s.pick(|_| true), Some(Lane::Otp));
        assert_eq!(s.pick(|_| true), Some(Lane::Notification));
    }
}

#[cfg(test)]
mod content_tests {
    use super::*;
    use crate::store::{MessageKind, RedbBackend, Store, WriterConfig};

    fn mms_message(id: u64, digest: [u8; 32], subject: Option<&str>) -> Message {
        let mut m = Message::new(
            MessageId(id),
            "acme",
            "+8613800138000",
            Payload::Mms {
                subject: subject.map(str::to_owned),
                content_type: "multipart/related".into(),
                digest,
                size: 4,
            },
            "mm7",
            0,
            0,
        );
        m.kind = MessageKind::Mms;
        m
    }

    #[test]
    fn recipients_share_one_loaded_content_and_a_missing_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with_content(
            RedbBackend::open(dir.path()).unwrap(),
            WriterConfig::default(),
            0,
            &dir.path().join("content"),
        )
        .unwrap();
        let pin = store.put_content(b"body").unwrap();
        let d = *pin.digest();
        let cache = ContentCache::new(1024);
        let content = |m: Message| match outbound(m, &store, &cache).unwrap().content {
            Content::Mms(c) => c,
            other => panic!("not mms: {other:?}"),
        };
        let a = content(mms_message(1, d, Some("Hi")));
        let b = content(mms_message(2, d, Some("Hi")));
        assert!(Arc::ptr_eq(&a, &b), "one Arc for every recipient");
        assert_eq!(&a.body[..], b"body");
        assert_eq!(a.digest, d);
        // Another subject: its own Arc, the same bytes.
        let c = content(mms_message(3, d, None));
        assert_eq!(c.subject, None);
        assert_eq!(c.body.as_ptr(), a.body.as_ptr());
        assert_eq!(cache.len(), 1);
        match outbound(mms_message(4, [7; 32], None), &store, &cache) {
            Err(ContentUnavailable::Missing(x)) => assert_eq!(x, [7; 32]),
            other => panic!("expected missing content, got {other:?}"),
        }
    }

    #[test]
    fn the_cache_is_bounded_by_bytes() {
        let cache = ContentCache::new(10);
        let load = |n: usize| move |_: &[u8; 32]| Ok(Some(vec![0u8; n]));
        cache.get(None, "t", &[1; 32], load(6)).unwrap();
        cache.get(None, "t", &[2; 32], load(4)).unwrap();
        assert_eq!(cache.len(), 2);
        cache.get(None, "t", &[3; 32], load(5)).unwrap();
        assert_eq!(cache.len(), 2, "the oldest went");
        // Too big to keep, still served.
        let big = cache.get(None, "t", &[4; 32], load(11)).unwrap();
        assert_eq!(big.body.len(), 11);
        assert_eq!(cache.len(), 2);
        // A cached entry is served without loading.
        cache
            .get(None, "t", &[3; 32], |_| panic!("must come from the cache"))
            .unwrap();
    }
}

#[cfg(test)]
mod prefetch_tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::store::{RedbBackend, Store, WriterConfig};

    #[test]
    fn one_lease_ahead_per_lane_at_half_a_batch() {
        let mut ahead = LeaseAhead::default();
        let lane = Lane::Notification;
        // Above half a batch of 10: not yet; at half or below: yes; a dry lane never.
        assert!(!ahead.wants(lane, 6, false, 10));
        assert!(ahead.wants(lane, 5, false, 10));
        assert!(ahead.wants(lane, 0, false, 10));
        assert!(!ahead.wants(lane, 0, true, 10));
        // A batch of one prefetches once its buffer is empty.
        assert!(ahead.wants(lane, 0, false, 1));
        assert!(!ahead.wants(lane, 1, false, 1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = rt.enter();
        ahead.start(lane, tokio::spawn(async { Ok(Leased::default()) }));
        // One is running for this lane: no second, whatever the buffer; other lanes may.
        assert!(!ahead.wants(lane, 0, false, 10));
        assert!(ahead.wants(Lane::Otp, 0, false, 10));
        assert!(ahead.take(lane).is_some());
        assert!(ahead.wants(lane, 0, false, 10));
    }

    /// Leased and not yet handed on never exceeds a batch and a half per lane, while the
    /// next lease is already running when the buffer runs dry.
    #[tokio::test]
    async fn leased_ahead_stays_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let clock = SystemClock;
        let now = clock.now_ms();
        let store = Store::open(
            RedbBackend::open(dir.path()).unwrap(),
            WriterConfig::default(),
            now,
        )
        .unwrap();
        let messages: Vec<Message> = (0..100)
            .map(|i| {
                Message::new(
                    store.ids().next(now),
                    "acme",
                    "+8613800138000",
                    Payload::Text {
                        text: format!("m{i}"),
                        encoding: EncodingHint::Auto,
                    },
                    "c",
                    now,
                    now,
                )
            })
            .collect();
        let lane = messages[0].lane;
        store.insert_batch(messages).await.unwrap();
        let store: GatewayStore = store.into();
        let batch = 10;
        let config = DispatchConfig {
            batch,
            windows: WindowRules::default(),
            ..DispatchConfig::new("c")
        };
        let mut d = Dispatcher::new(config, Arc::clone(&store), clock);
        let i = index(lane);
        let mut handed = 0u64;
        for step in 0..60 {
            let m = d.next_message().await.unwrap().expect("a message");
            handed += 1;
            assert!(!m.to.is_empty());
            let buffered = d.buffers[i].len();
            // Started at half a batch, never a second one.
            assert_eq!(
                d.ahead.running[i].is_some(),
                buffered <= batch / 2,
                "step {step}: buffer {buffered}"
            );
            let in_flight = store.recount_queue_depths().unwrap().in_flight("c");
            assert!(
                in_flight <= handed + (batch + batch / 2) as u64,
                "step {step}: {in_flight} leased, {handed} handed on"
            );
        }
        // The lease ahead is given back with the buffer: nothing leased stays behind.
        d.give_back_buffers(clock.now_ms()).await.unwrap();
        assert!(d.ahead.running.iter().all(Option::is_none));
        assert_eq!(store.recount_queue_depths().unwrap().in_flight("c"), handed);
    }
}
