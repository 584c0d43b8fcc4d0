//! The protocol-neutral channel worker: N binds to one center, one rate, one set of messages
//! in flight. SMPP and CMPP channels are this worker plus their own [`Wire`] and binds.
//!
//! ```text
//! dispatch ──OutboundMessage──▶ worker ──PartJob (rate-limited)──▶ shared part queue ──▶ binds
//!     ▲                           │  ▲                                                   │
//!     └────── Settled ────────────┘  └──────────────── BindReport ───────────────────────┘
//! ```
//!
//! Job: split each message into parts ([`Wire::build`]), pace the parts through the
//! channel's [`ChannelLimiter`] (governor rate + burst, steered by AIMD), hand them to
//! whichever bind has room, and account for every part's outcome until the message is
//! finished one way:
//! - every part accepted → [`Outcome::Sent`] with each part's center id;
//! - a throttle answer → AIMD halves the rate and the *same part* is queued again (part-level
//!   retry, same concatenation reference, so a half-sent long message still reassembles);
//! - a timeout or a lost bind → the same part is queued again, up to `local_retries` times;
//! - a temporary status (or local retries exhausted) → [`Outcome::Retry`] with a backoff
//!   delay, unless the retry policy's attempts are used up, then [`Outcome::Failed`];
//! - a permanent status or an unbuildable message → [`Outcome::Failed`].
//!
//! What a status means is the protocol's answer ([`Wire::classify`]); everything else here
//! is the same for every center.
//!
//! A message's outcome is reported only after every one of its parts that went out has come
//! back, so the store never requeues a message that still has parts in a window. The
//! outcome is the only report of a part's fate: there is no second, per-part event stream.
//!
//! Invariants: at most `capacity` (window × binds) messages are held *or finished but not
//! yet stored* — each takes a credit that comes back only when dispatch drops its
//! [`Settled`] after the store commit, so after a crash the center sees again at most one
//! window's worth of messages; the dispatch queue stays the only other buffer; the worker
//! never blocks on one channel while another could deadlock it — it waits on reports, the
//! part queue, the limiter and new messages in one `select!`.

use std::collections::{HashMap, VecDeque};

use compact_str::CompactString;
use rustc_hash::FxHashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{counter, gauge};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::channel::MessageId;
use crate::channel::egress::{
    BindReport, Disposition, OutboundMessage, Outcome, PartJob, PartOutcome, PartTag, RetryPolicy,
    Settled, WorkerHandle, WorkerLinks,
};
use crate::channel::limiter::{AimdConfig, ChannelLimiter, RateChange};
use crate::metrics::{
    CHANNEL_EMPTY_MESSAGE_IDS, CHANNEL_RATE, CHANNEL_RESPONSE_TIMEOUTS, CHANNEL_RESPONSES,
    CHANNEL_THROTTLED,
};
use crate::status::ChannelStatus;

/// Reports, or new messages, one turn of the worker's loop takes at most when more are
/// already queued: each turn builds its whole `select!`, so a burst taken one per turn cost
/// a turn per item.
const BURST: usize = 32;

/// What a protocol tells the neutral worker: how a message becomes parts and what a
/// response status means.
pub trait Wire: Send + Sync + 'static {
    /// One part's request body (SMPP `Sm`, CMPP `Submit`), validated to encode.
    type Part: Clone + Send + Sync + fmt::Debug + 'static;
    /// Why a message cannot be built (a permanent failure of the message).
    type Error: fmt::Display + Send;

    /// The parts of `msg`, in order; `reference` is fresh per message (concatenation).
    ///
    /// # Errors
    /// The message cannot be sent on this channel as configured; retrying will not help.
    fn build(
        &self,
        msg: &OutboundMessage,
        reference: u16,
    ) -> Result<Vec<Box<Self::Part>>, Self::Error>;

    /// What a response with `status` and `center_id` means for the part.
    fn classify(&self, status: u32, center_id: &str) -> Disposition;

    /// A status for logs and the client (`ESME_RINVDSTADR`, `CMPP result 8 (flow control)`).
    fn status_text(&self, status: u32) -> String;
}

/// The protocol-neutral settings of a channel worker.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Channel name.
    pub name: Arc<str>,
    /// Configured rate (msg/s): the AIMD ceiling.
    pub rate: NonZeroU32,
    /// Governor burst.
    pub burst: NonZeroU32,
    /// Message-level retries.
    pub retry: RetryPolicy,
    /// How many times one part is re-sent after a timeout or a lost bind before the whole
    /// message goes back to the store.
    pub local_retries: u32,
    /// How many throttle answers one part may collect before the message goes back to the
    /// store (a center that throttles forever must not pin messages in memory).
    pub throttle_retries: u32,
    /// How long messages not yet on the wire are held while no sending bind is up; then they
    /// go back to the store (their lease must not run out in here).
    pub hold_when_down: Duration,
    /// Messages held at once: window × sending binds.
    pub capacity: usize,
    /// Sending binds (sizes the shared part queue).
    pub binds: usize,
}

/// Starts the worker; `start_binds` starts the protocol's binds on the links it is given.
///
/// `input` is the bounded queue from dispatch (size it with [`Limits::capacity`]);
/// outcomes go to `outcomes` (dispatch; drop each [`Settled`] only after its store commit).
#[must_use]
pub fn spawn<W: Wire>(
    limits: Limits,
    wire: W,
    input: mpsc::Receiver<OutboundMessage>,
    outcomes: mpsc::Sender<Settled>,
    start_binds: impl FnOnce(WorkerLinks<W::Part>) -> Vec<JoinHandle<()>>,
) -> WorkerHandle {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (binds_up_tx, binds_up_rx) = watch::channel(0usize);
    let (rate_tx, rate_rx) = watch::channel(limits.rate.get());
    let capacity = limits.capacity.max(1);
    // The part queue is short: the limiter already paces it, and a long queue would only
    // hide parts from the binds' windows.
    let (parts_tx, parts_rx) = mpsc::channel(limits.binds.max(1));
    let (reports_tx, reports_rx) = mpsc::channel(capacity * 4 + 64);
    let binds = start_binds(WorkerLinks {
        parts: Arc::new(Mutex::new(parts_rx)),
        reports: reports_tx,
        shutdown: shutdown_rx.clone(),
    });
    let span = info_span!("channel", channel = %limits.name);
    let limiter = ChannelLimiter::new(AimdConfig::for_rate(limits.rate), limits.burst);
    let name = limits.name.to_string();
    let status = Arc::new(ChannelStatus::new(
        &name,
        limits.rate.get(),
        limits.binds,
        capacity,
        binds_up_rx.clone(),
        rate_rx.clone(),
    ));
    let worker = Worker {
        status: Arc::clone(&status),
        reference: rand::random(),
        limits,
        wire,
        limiter,
        messages: FxHashMap::default(),
        pending: VecDeque::new(),
        binds_up: Vec::new(),
        down_since: Some(Instant::now()),
        binds_up_tx,
        rate_tx,
        outcomes,
        credits: Arc::new(Semaphore::new(capacity)),
        responses: HashMap::new(),
        throttled: counter!(CHANNEL_THROTTLED, "channel" => name.clone()),
        timeouts: counter!(CHANNEL_RESPONSE_TIMEOUTS, "channel" => name.clone()),
        empty_ids: counter!(CHANNEL_EMPTY_MESSAGE_IDS, "channel" => name),
    };
    let task = tokio::spawn(
        async move {
            worker.run(input, parts_tx, reports_rx, shutdown_rx).await;
            for b in binds {
                let _ = b.await;
            }
        }
        .instrument(span),
    );
    WorkerHandle {
        binds_up: binds_up_rx,
        rate: rate_rx,
        status,
        shutdown: shutdown_tx,
        task,
    }
}

/// One part of a held message.
#[derive(Debug)]
struct PartSlot<P> {
    /// The request body until a bind takes it ([`Worker::next_job`]); a part sent again is
    /// built again from its message.
    body: Option<Box<P>>,
    center_id: Option<CompactString>,
    /// Re-sends after timeouts / lost binds.
    local_tries: u32,
    /// Throttle answers collected.
    throttled: u32,
    /// Out on a bind (or in the part queue) right now.
    out: bool,
}

/// Why a held message will not complete as sent.
#[derive(Debug, Clone)]
enum Verdict {
    Temporary { status: u32, reason: String },
    Permanent { status: u32, reason: String },
}

#[derive(Debug)]
struct Held<P> {
    /// The message (its attempt count included) and its concatenation reference, to build
    /// a part again for a re-send (`Wire::build` gives the same parts from them). Why not
    /// keep each body and hand a bind a copy: a copy per part sent (a box and the PDU's
    /// fields) for the few parts a throttle, a timeout or a lost bind sends again.
    msg: OutboundMessage,
    reference: u16,
    parts: Vec<PartSlot<P>>,
    verdict: Option<Verdict>,
    /// Released when dispatch has stored this message's outcome.
    credit: Option<OwnedSemaphorePermit>,
}

impl<P> Held<P> {
    /// A message just built into `bodies`, none of them sent yet.
    fn new(
        msg: OutboundMessage,
        reference: u16,
        bodies: Vec<Box<P>>,
        credit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        let parts = bodies
            .into_iter()
            .map(|body| PartSlot {
                body: Some(body),
                center_id: None,
                local_tries: 0,
                throttled: 0,
                out: false,
            })
            .collect();
        Self {
            msg,
            reference,
            parts,
            verdict: None,
            credit,
        }
    }

    fn outstanding(&self) -> usize {
        self.parts.iter().filter(|p| p.out).count()
    }
}

/// Queues part `tag` of `held` to be sent again (first in line), its body built again from
/// the message, unless the message already has a verdict. A message that no longer builds
/// (it built the same way moments ago, so this is not expected) gets a temporary verdict
/// instead: it goes back to the store.
fn send_again<W: Wire>(
    wire: &W,
    held: &mut Held<W::Part>,
    tag: PartTag,
    pending: &mut VecDeque<PartTag>,
) {
    if held.verdict.is_some() {
        return;
    }
    let index = usize::from(tag.part).saturating_sub(1);
    match wire.build(&held.msg, held.reference) {
        Ok(mut parts) if parts.len() == held.parts.len() && index < parts.len() && tag.part > 0 => {
            held.parts[index].body = Some(parts.swap_remove(index));
            pending.push_front(tag);
        }
        Ok(_) | Err(_) => {
            held.verdict = Some(Verdict::Temporary {
                status: 0,
                reason: "the part could not be built again to re-send".into(),
            });
        }
    }
}

struct Worker<W: Wire> {
    limits: Limits,
    wire: W,
    limiter: ChannelLimiter,
    /// Next concatenation reference (fresh per message, wrapping).
    reference: u16,
    messages: FxHashMap<MessageId, Held<W::Part>>,
    /// Parts waiting for a rate token and a queue slot, in send order.
    pending: VecDeque<PartTag>,
    binds_up: Vec<bool>,
    /// Since when no sending bind is up (`None` while one is).
    down_since: Option<Instant>,
    binds_up_tx: watch::Sender<usize>,
    rate_tx: watch::Sender<u32>,
    outcomes: mpsc::Sender<Settled>,
    /// `capacity` credits: one per message in care or awaiting its store write.
    credits: Arc<Semaphore>,
    /// Response counters by status, registered on first use (not per response).
    responses: HashMap<u32, metrics::Counter>,
    throttled: metrics::Counter,
    /// Submits whose response never came within the session's response timeout (a center
    /// that stalls or answers only some sequence numbers shows here first).
    timeouts: metrics::Counter,
    /// ESME_ROK responses without a message_id (retried, never indexed under "").
    empty_ids: metrics::Counter,
    /// What operators see of this channel (sent, throttles, window use, last errors).
    status: Arc<ChannelStatus>,
}

impl<W: Wire> Worker<W> {
    async fn run(
        mut self,
        mut input: mpsc::Receiver<OutboundMessage>,
        parts_tx: mpsc::Sender<PartJob<W::Part>>,
        mut reports: mpsc::Receiver<BindReport>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut parts_tx = Some(parts_tx);
        let mut input_open = true;
        let mut token_at: Option<Instant> = None;
        let mut spare: Option<OwnedSemaphorePermit> = None;
        self.publish_rate();
        loop {
            let stopping = *shutdown.borrow();
            if stopping && input_open {
                input_open = false;
                self.release_queued(&mut input).await;
            }
            if stopping && self.messages.is_empty() {
                // Nothing left to account for: let the binds see the queue close.
                parts_tx = None;
            }
            let now = Instant::now();
            let token_ready = token_at.is_none_or(|t| t <= now);
            // Parts enter the shared queue only while a sending bind is up: while none is,
            // they wait in `pending`, where they can still be handed back to the store.
            // Stale tags (parts of messages that failed or left) are dropped first, so a send
            // token is only spent when a live part is waiting.
            self.drop_stale_pending();
            self.status.set_in_use(self.messages.len());
            let can_send = !self.pending.is_empty()
                && token_ready
                && parts_tx.is_some()
                && self.down_since.is_none();
            // A message is taken only with a credit in hand (see [`Settled`]).
            let accepting = input_open && !stopping;
            tokio::select! {
                biased;
                report = reports.recv() => match report {
                    Some(r) => {
                        self.on_report(r).await;
                        // Reports come in bursts (a read of many responses): take what is
                        // already queued in this turn of the loop.
                        for _ in 1..BURST {
                            let Ok(r) = reports.try_recv() else { break };
                            self.on_report(r).await;
                        }
                    }
                    // Every bind has exited.
                    None => break,
                },
                permit = async {
                    match &parts_tx {
                        Some(tx) => tx.reserve().await,
                        None => std::future::pending().await,
                    }
                }, if can_send => {
                    let Ok(permit) = permit else { continue };
                    match self.limiter.try_acquire() {
                        Ok(()) => {
                            token_at = None;
                            if let Some(job) = self.next_job() {
                                permit.send(job);
                            }
                        }
                        Err(wait) => token_at = Some(Instant::now() + wait),
                    }
                }
                () = async {
                    match token_at {
                        Some(t) => tokio::time::sleep_until(t.into()).await,
                        None => std::future::pending().await,
                    }
                }, if !token_ready => token_at = None,
                () = async {
                    match self.down_since {
                        Some(t) => tokio::time::sleep_until((t + self.limits.hold_when_down).into()).await,
                        None => std::future::pending().await,
                    }
                }, if self.down_since.is_some() && !self.messages.is_empty() => {
                    self.hand_back_unsent().await;
                    self.down_since = Some(Instant::now());
                }
                permit = Arc::clone(&self.credits).acquire_owned(), if accepting && spare.is_none() => {
                    // Closed only if the semaphore is closed, which never happens.
                    spare = permit.ok();
                }
                msg = input.recv(), if accepting && spare.is_some() => match msg {
                    Some(m) => {
                        let credit = spare.take();
                        self.accept(m, credit).await;
                        // More already queued, each with a credit in hand: taken in this
                        // turn instead of two turns of the loop each.
                        for _ in 1..BURST {
                            let Ok(credit) = Arc::clone(&self.credits).try_acquire_owned() else {
                                break;
                            };
                            match input.try_recv() {
                                Ok(m) => self.accept(m, Some(credit)).await,
                                Err(_) => {
                                    spare = Some(credit);
                                    break;
                                }
                            }
                        }
                    }
                    None => input_open = false,
                },
                _ = shutdown.changed(), if !stopping => {}
            }
        }
        // The binds can all exit (shutdown) before this loop saw `stopping`: what dispatch
        // queued and the worker never took must still be handed back.
        if input_open {
            self.release_queued(&mut input).await;
        }
        // Binds are gone; anything still held could not be finished.
        let ids: Vec<MessageId> = self.messages.keys().copied().collect();
        for id in ids {
            if let Some(held) = self.messages.get_mut(&id) {
                for p in &mut held.parts {
                    p.out = false;
                }
                held.verdict.get_or_insert(Verdict::Temporary {
                    status: 0,
                    reason: "channel stopped".into(),
                });
            }
            self.finish(id).await;
        }
        info!("Channel worker stopped.");
    }

    fn publish_rate(&self) {
        self.rate_tx.send_replace(self.limiter.current_rate());
        gauge!(CHANNEL_RATE, "channel" => self.limits.name.to_string())
            .set(f64::from(self.limiter.current_rate()));
    }

    /// Takes a new message: builds its parts and queues them.
    async fn accept(&mut self, msg: OutboundMessage, credit: Option<OwnedSemaphorePermit>) {
        if self.messages.contains_key(&msg.id) {
            // Already in our care (e.g. leased again after a lease expired while it waited
            // here): overwriting the entry would orphan its parts in flight and send it twice.
            // The held copy reports the outcome; this copy's credit goes back on drop.
            warn!(
                id = msg.id,
                "Message already held by the worker; duplicate ignored."
            );
            return;
        }
        let reference = self.reference;
        self.reference = self.reference.wrapping_add(1);
        match self.wire.build(&msg, reference) {
            Ok(sms) => {
                let total = u16::try_from(sms.len()).unwrap_or(u16::MAX);
                for part in 1..=total {
                    self.pending.push_back(PartTag { id: msg.id, part });
                }
                self.messages
                    .insert(msg.id, Held::new(msg, reference, sms, credit));
            }
            Err(e) => {
                warn!(id = msg.id, error = %e, "Message cannot be sent on this channel.");
                self.status
                    .record_error(format!("message {}: cannot be built: {e}", msg.id));
                let _ = self
                    .outcomes
                    .send(Settled {
                        outcome: Outcome::Failed {
                            id: msg.id,
                            status: 0,
                            stat: "REJECTD",
                            reason: e.to_string(),
                        },
                        _credit: credit,
                    })
                    .await;
            }
        }
    }

    /// Whether `tag` still names a part to send (its message is held and has no verdict).
    fn is_live(&self, tag: PartTag) -> bool {
        self.messages.get(&tag.id).is_some_and(|held| {
            held.verdict.is_none() && usize::from(tag.part) <= held.parts.len() && tag.part > 0
        })
    }

    /// Pops stale tags off the front of `pending`, so its head (if any) is a live part.
    fn drop_stale_pending(&mut self) {
        while let Some(&tag) = self.pending.front() {
            if self.is_live(tag) {
                break;
            }
            self.pending.pop_front();
        }
    }

    /// The next part to put on the queue, skipping parts of messages that already failed.
    fn next_job(&mut self) -> Option<PartJob<W::Part>> {
        while let Some(tag) = self.pending.pop_front() {
            let Some(held) = self.messages.get_mut(&tag.id) else {
                continue;
            };
            if held.verdict.is_some() {
                continue;
            }
            let index = usize::from(tag.part) - 1;
            let Some(slot) = held.parts.get_mut(index) else {
                continue;
            };
            // Every tag queued has its body (`accept`, `send_again`).
            let Some(body) = slot.body.take() else {
                continue;
            };
            slot.out = true;
            return Some(PartJob { tag, body });
        }
        None
    }

    async fn on_report(&mut self, report: BindReport) {
        match report {
            BindReport::Up { bind, sends } => {
                if sends {
                    self.set_bind(bind, true);
                }
            }
            BindReport::Down { bind, reason } => {
                debug!(bind, %reason, "Bind down.");
                self.status
                    .record_error(format!("bind {bind} down: {reason}"));
                self.set_bind(bind, false);
            }
            BindReport::Outcome {
                tag,
                outcome,
                sent_at,
                at,
                ..
            } => self.on_outcome(tag, outcome, sent_at, at).await,
        }
    }

    fn set_bind(&mut self, bind: usize, up: bool) {
        if self.binds_up.len() <= bind {
            self.binds_up.resize(bind + 1, false);
        }
        self.binds_up[bind] = up;
        let n = self.binds_up.iter().filter(|u| **u).count();
        if n == 0 {
            self.down_since.get_or_insert_with(Instant::now);
        } else {
            self.down_since = None;
        }
        self.binds_up_tx.send_replace(n);
    }

    async fn on_outcome(
        &mut self,
        tag: PartTag,
        outcome: PartOutcome,
        sent_at: Instant,
        at: Instant,
    ) {
        let Some(held) = self.messages.get_mut(&tag.id) else {
            return;
        };
        let Some(slot) = held.parts.get_mut(usize::from(tag.part) - 1) else {
            return;
        };
        slot.out = false;
        match outcome {
            PartOutcome::Response { status, center_id } => {
                let name = &self.limits.name;
                self.responses
                    .entry(status)
                    .or_insert_with(|| {
                        counter!(CHANNEL_RESPONSES, "channel" => name.to_string(), "status" => format!("{status:#x}"))
                    })
                    .increment(1);
                let disposition = self.wire.classify(status, &center_id);
                if status == 0 && disposition != Disposition::Accepted {
                    self.empty_ids.increment(1);
                }
                match disposition {
                    Disposition::Accepted => {
                        slot.center_id = Some(center_id);
                        self.status.record_sent();
                        if self.limiter.on_success(at) != RateChange::Unchanged {
                            self.publish_rate();
                        }
                    }
                    Disposition::Throttled => {
                        self.throttled.increment(1);
                        self.status.record_throttle();
                        if let RateChange::Decreased(rate) = self.limiter.on_throttle(at, sent_at) {
                            info!(rate, "Center throttles; rate halved.");
                        }
                        slot.throttled += 1;
                        if slot.throttled > self.limits.throttle_retries {
                            held.verdict.get_or_insert(Verdict::Temporary {
                                status,
                                reason: "throttled too often".into(),
                            });
                        } else {
                            send_again(&self.wire, held, tag, &mut self.pending);
                        }
                        self.publish_rate();
                    }
                    Disposition::Temporary => {
                        let reason = if status == 0 {
                            "accepted without message_id".to_string()
                        } else {
                            self.wire.status_text(status)
                        };
                        held.verdict
                            .get_or_insert(Verdict::Temporary { status, reason });
                    }
                    Disposition::Permanent => {
                        held.verdict = Some(Verdict::Permanent {
                            status,
                            reason: self.wire.status_text(status),
                        });
                    }
                }
            }
            PartOutcome::Timeout | PartOutcome::Aborted => {
                if outcome == PartOutcome::Timeout {
                    self.timeouts.increment(1);
                }
                slot.local_tries += 1;
                if slot.local_tries > self.limits.local_retries {
                    let reason = if outcome == PartOutcome::Timeout {
                        "response timeout"
                    } else {
                        "bind lost"
                    };
                    held.verdict.get_or_insert(Verdict::Temporary {
                        status: 0,
                        reason: reason.into(),
                    });
                } else {
                    send_again(&self.wire, held, tag, &mut self.pending);
                }
            }
        }
        let Some(held) = self.messages.get(&tag.id) else {
            return;
        };
        let done = if held.verdict.is_some() {
            held.outstanding() == 0
        } else {
            held.parts.iter().all(|p| p.center_id.is_some())
        };
        if done {
            self.finish(tag.id).await;
        }
    }

    /// No sending bind for a while: messages with nothing on the wire go back to the store
    /// (not counted as a failed attempt here; the store's requeue counts one).
    async fn hand_back_unsent(&mut self) {
        let idle: Vec<MessageId> = self
            .messages
            .iter()
            .filter(|(_, h)| h.outstanding() == 0)
            .map(|(id, _)| *id)
            .collect();
        if !idle.is_empty() {
            info!(
                messages = idle.len(),
                "No bind up; handing messages back to the store."
            );
        }
        for id in idle {
            let Some(held) = self.messages.remove(&id) else {
                continue;
            };
            let _ = self
                .outcomes
                .send(Settled {
                    outcome: Outcome::Release {
                        id,
                        reason: "no bind up".into(),
                    },
                    _credit: held.credit,
                })
                .await;
        }
    }

    /// Reports a message whose parts are all back and removes it.
    /// Closes the input and hands back every message still queued in it: they were never
    /// attempted, so they go back to the store without using up a retry.
    async fn release_queued(&mut self, input: &mut mpsc::Receiver<OutboundMessage>) {
        input.close();
        while let Ok(m) = input.try_recv() {
            let _ = self
                .outcomes
                .send(Settled::new(Outcome::Release {
                    id: m.id,
                    reason: "channel stopped before sending".into(),
                }))
                .await;
        }
    }

    async fn finish(&mut self, id: MessageId) {
        let Some(mut held) = self.messages.remove(&id) else {
            return;
        };
        let held_credit = held.credit.take();
        let attempts = held.msg.attempt + 1;
        if let Some(Verdict::Permanent { reason, .. } | Verdict::Temporary { reason, .. }) =
            &held.verdict
        {
            self.status.record_error(format!("message {id}: {reason}"));
        }
        let outcome = match held.verdict {
            None => Outcome::Sent {
                id,
                center_ids: held
                    .parts
                    .into_iter()
                    .map(|p| p.center_id.unwrap_or_default())
                    .collect(),
            },
            Some(Verdict::Permanent { status, reason }) => Outcome::Failed {
                id,
                status,
                stat: "REJECTD",
                reason,
            },
            Some(Verdict::Temporary { status, reason }) => {
                let retry = attempts < self.limits.retry.max_attempts;
                if retry {
                    Outcome::Retry {
                        id,
                        attempts,
                        after: self.limits.retry.backoff.delay_random(attempts - 1),
                        reason,
                    }
                } else {
                    Outcome::Failed {
                        id,
                        status,
                        stat: "UNDELIV",
                        reason: format!("{reason} (after {attempts} attempts)"),
                    }
                }
            }
        };
        let _ = self
            .outcomes
            .send(Settled {
                outcome,
                _credit: held_credit,
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::egress::Content;
    use crate::channel::smpp::SmppWire;

    fn held(wire: &SmppWire, text: &str, reference: u16) -> Held<sluice_protocols::smpp::Sm> {
        let msg = OutboundMessage {
            id: 7,
            attempt: 0,
            from: Some("10690000".into()),
            to: "8613800138000".into(),
            content: Content::Text {
                text: text.into(),
                hint: None,
            },
        };
        let bodies = wire.build(&msg, reference).expect("builds");
        Held::new(msg, reference, bodies, None)
    }

    #[test]
    fn a_part_sent_again_is_built_as_it_was_sent_first() {
        let wire = SmppWire {
            parts: crate::channel::smpp::parts::PartSettings::default(),
        };
        let mut h = held(&wire, &"three parts of text, ".repeat(20), 0x4242);
        assert_eq!(h.parts.len(), 3);
        // A bind took part 2 (its body went with the PDU); the center throttled it.
        let first = h.parts[1].body.take().expect("queued with its body");
        let mut pending = VecDeque::new();
        let tag = PartTag { id: 7, part: 2 };
        send_again(&wire, &mut h, tag, &mut pending);
        assert_eq!(pending, [tag]);
        assert_eq!(
            h.parts[1].body.as_deref(),
            Some(&*first),
            "same text, same UDH reference"
        );
        // A message that already has a verdict sends nothing again.
        h.parts[1].body = None;
        h.verdict = Some(Verdict::Temporary {
            status: 0,
            reason: "timeout".into(),
        });
        send_again(&wire, &mut h, tag, &mut pending);
        assert_eq!(pending.len(), 1);
        assert!(h.parts[1].body.is_none());
    }
}
